"""Box-to-Caption (B2C): five captions from an image's object boxes, after RemoteCLIP (Sec. III).

The paper's code was never released; this is a reconstruction from its text and examples:

* caption 1 names the objects whose box centre lies in a central region of the image
  ("3 ships and a harbor in the middle of the picture."),
* caption 2 names the others ("Many small vehicles at the edge of the picture."),
* captions 3-5 each describe the counts of a random subset of the image's categories
  ("There are 4 large vehicles, a small vehicle and 5 planes in the picture.").

Counts are digits, one object is "a"/"an", and counts above a threshold become a vague quantifier
("many", "lots of", ...). Segmentation regions (boxes from Mask-to-Box) and stuff classes
(buildings, water, ...) are not counted in digits: a box around one connected region of a mask is
no countable object, so they are phrased as quantities of regions, as the paper's segmentation
examples are ("Lots of buildings ...", "a large deal of places with cars"): "a place with cars",
"a few places with buildings", "several places with water", above the threshold a vague
quantifier. Every random choice comes from the `rng` argument, so a seed fixes the captions.

A region with no objects gets no "There is nothing in the middle of the picture." caption by
default: the paper never shows one, and one identical sentence on many images is a false
negative for every other image in a contrastive batch that carries it. Its slot gets one more
count caption instead; `B2COptions.describe_empty_regions` brings the sentence back.
"""
from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import numpy as np

from remoteclip_jax.data import classnames
from remoteclip_jax.data.types import Box

# Classes never captioned by default (segmentation "no object" labels).
DEFAULT_IGNORE = classnames.NON_OBJECT_CLASSES
# Amorphous classes, phrased as places even when boxed by a detector, with the word used for each.
DEFAULT_STUFF = {
    "building": "buildings", "buildings": "buildings", "road": "roads", "roads": "roads",
    "water": "water", "barren": "barren land", "barren land": "barren land", "forest": "forest",
    "agricultural": "farmland", "farmland": "farmland", "low vegetation": "low vegetation",
    "tree": "trees", "trees": "trees", "grass": "grass", "vegetation": "vegetation",
}


@dataclasses.dataclass(frozen=True)
class B2COptions:
    """Parameters of Box-to-Caption. Defaults follow the RemoteCLIP paper where it gives them.

    Attributes:
        center_fraction: side of the central region as a fraction of the image side; a box is
            "in the middle" when its centre lies in the centred rectangle of that relative size
            (0.5: the middle half of the width and of the height).
        many_threshold: counts above this become a vague quantifier (paper: 10).
        vague_quantifiers: words used for counts above the threshold, chosen at random.
        include_difficult: count DOTA/DIOR `difficult` objects (they are real objects; set False
            to drop them as the detection benchmarks do).
        ignore_classes: normalised class names never captioned.
        stuff_classes: normalised class name -> place word; these are phrased as quantities
            of regions ("a few places with <word>") instead of being counted, like every
            segmentation region (`Box.region`).
        few_regions / some_regions: quantity words for 2-3 regions and for 4 up to
            `many_threshold` regions (one region is "a place with ...").
        num_count_captions: how many count-based captions follow the two location captions.
        max_categories_per_caption: at most this many categories in one count caption.
        max_location_categories: a location caption lists at most this many categories, the
            most frequent first (0: all). Keeps captions within CLIP's 77 tokens on scenes with
            many classes, so the "... at the edge of the picture" ending survives truncation.
        both_probability: chance that a two-category count caption uses the
            "There are both X and Y" form (no counts).
        center_templates / edge_templates / count_templates: sentence forms; `{objects}` is the
            object list, `{be}` "is" for a single singular item, else "are".
        both_template: the two-category form, with `{a}` and `{b}`.
        describe_empty_regions: caption a region without objects with `empty_center` /
            `empty_edge` (off by default: see the module docstring); when off, that slot gets
            one more count caption, so there are always `2 + num_count_captions` captions.
        empty_center / empty_edge: captions when no object lies in that region.
    """
    center_fraction: float = 0.5
    many_threshold: int = 10
    vague_quantifiers: tuple[str, ...] = ("many", "lots of", "a quantity of", "a large deal of",
                                          "a crowd of")
    include_difficult: bool = True
    ignore_classes: tuple[str, ...] = DEFAULT_IGNORE
    stuff_classes: tuple[tuple[str, str], ...] = tuple(DEFAULT_STUFF.items())
    num_count_captions: int = 3
    max_categories_per_caption: int = 3
    max_location_categories: int = 6
    both_probability: float = 0.25
    center_templates: tuple[str, ...] = (
        "{objects} in the middle of the picture.",
        "There {be} {objects} in the middle of the picture.",
        "In the middle of the picture there {be} {objects}.",
    )
    edge_templates: tuple[str, ...] = (
        "{objects} at the edge of the picture.",
        "There {be} {objects} at the edge of the picture.",
        "At the edge of the picture there {be} {objects}.",
    )
    count_templates: tuple[str, ...] = (
        "There {be} {objects} in the picture.",
        "{objects} {be} located in the picture.",
        "The picture contains {objects}.",
        "{objects} in the picture.",
    )
    both_template: str = "There are both {a} and {b} in the picture."
    few_regions: tuple[str, ...] = ("a few", "some")
    some_regions: tuple[str, ...] = ("several", "some", "a number of")
    describe_empty_regions: bool = False
    empty_center: str = "There is nothing in the middle of the picture."
    empty_edge: str = "There is nothing at the edge of the picture."


def captioned_boxes(boxes: Sequence[Box], options: B2COptions | None = None,
                    dataset: str = "") -> list[Box]:
    """The boxes B2C describes: those left after the difficult and ignore filters."""
    return [box for box, _ in _kept_names(boxes, options or B2COptions(), dataset)]


def _kept_names(boxes: Sequence[Box], options: B2COptions, dataset: str) -> list[tuple[Box, str]]:
    ignore = {classnames.normalize_class_name(c) for c in options.ignore_classes}
    kept = []
    for box in boxes:
        if box.difficult and not options.include_difficult:
            continue
        name = classnames.normalize_class_name(box.category, dataset)
        if name and name not in ignore:
            kept.append((box, name))
    return kept


def count_objects(boxes: Sequence[Box], options: B2COptions | None = None,
                  dataset: str = "") -> dict[str, int]:
    """Exact number of objects per normalised category, after the difficult/ignore filters.

    Args:
        boxes: the image's boxes.
        options: B2C options (only `include_difficult` and `ignore_classes` matter here).
        dataset: dataset name for class-name normalisation.

    Returns:
        {"small vehicle": 12, "ship": 3, ...}, keys sorted by name.
    """
    options = options or B2COptions()
    counts = collections.Counter(name for _, name in _kept_names(boxes, options, dataset))
    return dict(sorted(counts.items()))


def count_phrase(name: str, count: int, rng: np.random.Generator,
                 options: B2COptions | None = None) -> str:
    """"a ship", "3 ships" or "many ships" (a vague quantifier above the threshold)."""
    options = options or B2COptions()
    if count == 1:
        return f"{classnames.indefinite_article(name)} {name}"
    if count > options.many_threshold:
        return f"{_choice(options.vague_quantifiers, rng)} {classnames.pluralize(name)}"
    return f"{count} {classnames.pluralize(name)}"


def region_phrase(name: str, count: int, rng: np.random.Generator,
                  options: B2COptions | None = None, word: str | None = None) -> str:
    """"a place with cars", "a few places with cars", "lots of cars": regions, never digits.

    Args:
        name: normalised class name.
        count: number of regions (connected mask components or stuff boxes).
        rng: source of the quantity word.
        options: B2C options (quantity words, threshold).
        word: the word after "with" (default: the plural, or the mass noun itself).
    """
    options = options or B2COptions()
    word = word or classnames.pluralize(name)
    if count == 1:
        return f"a place with {word}"
    if count > options.many_threshold:
        quantifier = _choice(options.vague_quantifiers, rng)
        # "lots of buildings" or "lots of places with buildings"; a mass noun takes the second
        # form only ("many water" is no English).
        if name in classnames.MASS_NOUNS or word != classnames.pluralize(name) \
                or rng.random() < 0.5:
            return f"{quantifier} places with {word}"
        return f"{quantifier} {word}"
    words = options.few_regions if count <= 3 else options.some_regions
    return f"{_choice(words, rng)} places with {word}"


def _choice(words: Sequence[str], rng: np.random.Generator) -> str:
    return words[int(rng.integers(len(words)))]


def _join(items: Sequence[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(template: str, phrases: Sequence[str], singular: bool) -> str:
    text = template.format(objects=_join(phrases), be="is" if singular else "are")
    return text[:1].upper() + text[1:]


# Region-phrased categories carry this prefix in B2C's internal names, so that one class present
# as objects and as mask regions is described each way; never part of a caption or count.
_REGION = "\x00region:"


def _label(box: Box, name: str, stuff: dict[str, str]) -> str:
    return _REGION + name if box.region or name in stuff else name


class _Describer:
    """Builds object lists for one image: things counted in digits, regions in quantity words."""

    def __init__(self, options: B2COptions, rng: np.random.Generator):
        self.options = options
        self.rng = rng
        self.stuff = dict(options.stuff_classes)

    def is_region(self, label: str) -> bool:
        return label.startswith(_REGION)

    def phrase(self, label: str, count: int) -> tuple[str, bool]:
        """The phrase for `count` of a category and whether it takes a singular verb."""
        if self.is_region(label):
            name = label[len(_REGION):]
            text = region_phrase(name, count, self.rng, self.options, self.stuff.get(name))
            return text, text.startswith("a place with")
        return count_phrase(label, count, self.rng, self.options), count == 1

    def phrases(self, counts: Sequence[tuple[str, int]]) -> tuple[list[str], bool]:
        """Returns the list items and whether they take a singular verb (one singular item)."""
        items = [self.phrase(label, count) for label, count in counts]
        # A list of several items takes a plural verb ("a harbor and a ship are").
        return [text for text, _ in items], len(items) == 1 and items[0][1]

    def pick(self, templates: Sequence[str]) -> str:
        return templates[int(self.rng.integers(len(templates)))]


def _ordered_counts(names: Sequence[str]) -> list[tuple[str, int]]:
    # Objects before regions, most frequent first, then alphabetical: a fixed order, so only
    # `rng` varies the captions.
    counts = collections.Counter(names)
    return sorted(counts.items(),
                  key=lambda item: (item[0].startswith(_REGION), -item[1], item[0]))


_MAX_REDRAWS = 8


def _count_caption(all_counts: Sequence[tuple[str, int]], describer: _Describer) -> str:
    options, rng = describer.options, describer.rng
    k = int(rng.integers(1, min(options.max_categories_per_caption, len(all_counts)) + 1))
    chosen = [all_counts[i] for i in rng.choice(len(all_counts), size=k, replace=False)]
    things = [(n, c) for n, c in chosen if not describer.is_region(n)]
    if len(things) == 2 and len(chosen) == 2 and rng.random() < options.both_probability:
        a, b = (classnames.pluralize(n) if c > 1 else
                f"{classnames.indefinite_article(n)} {n}" for n, c in things)
        text = options.both_template.format(a=a, b=b)
        return text[:1].upper() + text[1:]
    phrases, singular = describer.phrases(chosen)
    return _sentence(describer.pick(options.count_templates), phrases, singular)


def box_to_captions(boxes: Sequence[Box], width: int, height: int, *, rng: np.random.Generator,
                    options: B2COptions | None = None, dataset: str = "") -> list[str]:
    """Five captions (two location-based, three count-based) for an image with these boxes.

    Args:
        boxes: the image's object boxes in pixel coordinates.
        width: image width in pixels (defines the central region).
        height: image height in pixels.
        rng: source of every random choice (templates, categories, quantifiers).
        options: B2C parameters; defaults documented on `B2COptions`.
        dataset: dataset name, for class-name normalisation ("dota", "dior", ...).

    Returns:
        `2 + options.num_count_captions` captions (a location caption first where its region
        holds objects, count captions in the slots of empty regions unless
        `describe_empty_regions`), or an empty list when no box survives the difficult/ignore
        filters (the caller decides whether to skip such an image).
    """
    options = options or B2COptions()
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    kept = _kept_names(boxes, options, dataset)
    if not kept:
        return []
    describer = _Describer(options, rng)
    kept = [(box, _label(box, name, describer.stuff)) for box, name in kept]

    margin_x = width * (1.0 - options.center_fraction) / 2.0
    margin_y = height * (1.0 - options.center_fraction) / 2.0
    center, edge = [], []
    for box, name in kept:
        cx, cy = (box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0
        inside = margin_x <= cx <= width - margin_x and margin_y <= cy <= height - margin_y
        (center if inside else edge).append(name)

    captions = []
    extra_count_captions = 0
    for names, templates, empty in ((center, options.center_templates, options.empty_center),
                                    (edge, options.edge_templates, options.empty_edge)):
        if names:
            counts = _ordered_counts(names)
            if options.max_location_categories:
                counts = counts[:options.max_location_categories]
            phrases, singular = describer.phrases(counts)
            captions.append(_sentence(describer.pick(templates), phrases, singular))
        elif options.describe_empty_regions:
            captions.append(empty)
        else:
            extra_count_captions += 1

    all_counts = _ordered_counts([name for _, name in kept])
    for _ in range(options.num_count_captions + extra_count_captions):
        # Redraw a few times rather than repeat a caption: five distinct captions teach more.
        for _attempt in range(_MAX_REDRAWS):
            caption = _count_caption(all_counts, describer)
            if caption not in captions:
                break
        captions.append(caption)
    return captions

