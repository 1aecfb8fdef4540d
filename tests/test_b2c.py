"""Box-to-Caption: captions pinned on known boxes (counts, plurals, quantifiers, location, regions,
empty regions, seed)."""
import dataclasses
import re

import numpy as np
import pytest

from remoteclip_jax.data import b2c, classnames
from remoteclip_jax.data.b2c import B2COptions, box_to_captions, count_objects
from remoteclip_jax.data.types import Box

# Single templates make every sentence predictable, so the tests pin whole strings.
FIXED = B2COptions(
    center_templates=("{objects} in the middle of the picture.",),
    edge_templates=("{objects} at the edge of the picture.",),
    count_templates=("There {be} {objects} in the picture.",),
    both_probability=0.0,
)
# The same, with the "There is nothing ..." sentences for empty regions.
WITH_EMPTY = dataclasses.replace(FIXED, describe_empty_regions=True)


def _box(category, cx, cy, size=4.0, **kw):
    return Box(category, cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2, **kw)


def _captions(boxes, options=FIXED, seed=0, dataset="dota", size=100):
    return box_to_captions(boxes, size, size, rng=np.random.default_rng(seed), options=options,
                           dataset=dataset)


def test_location_captions_split_centre_from_edge():
    boxes = [_box("ship", 50, 50), _box("ship", 45, 55), _box("harbor", 5, 5),
             _box("small-vehicle", 95, 50)]
    captions = _captions(boxes)
    assert len(captions) == 5
    assert captions[0] == "2 ships in the middle of the picture."
    # Edge list: equal counts are ordered by name.
    assert captions[1] == "A harbor and a small vehicle at the edge of the picture."


def test_centre_region_boundary_follows_center_fraction():
    # Centre at x=24 lies outside the middle half [25, 75]; with fraction 0.6 ([20, 80]) inside.
    boxes = [_box("plane", 24, 50)]
    assert _captions(boxes, WITH_EMPTY)[0] == FIXED.empty_center
    assert _captions(boxes, WITH_EMPTY)[1] == "A plane at the edge of the picture."
    wide = dataclasses.replace(WITH_EMPTY, center_fraction=0.6)
    assert _captions(boxes, wide)[0] == "A plane in the middle of the picture."
    assert _captions(boxes, wide)[1] == wide.empty_edge


def test_count_caption_uses_digits_articles_and_exact_counts():
    boxes = [_box("large-vehicle", 10, 10)] * 4 + [_box("small-vehicle", 12, 12)] + \
        [_box("plane", 90, 90)] * 5
    captions = _captions(boxes)
    for caption in captions[2:]:
        for number, noun in re.findall(r"(\d+) ([a-z ]+?)(?:,| and| in)", caption):
            expected = {"large vehicles": 4, "planes": 5}[noun]
            assert int(number) == expected, caption
        assert "a small vehicle" in caption or "small vehicle" not in caption, caption
    assert count_objects(boxes, dataset="dota") == {"large vehicle": 4, "plane": 5,
                                                    "small vehicle": 1}


def test_counts_above_threshold_become_vague_quantifiers():
    boxes = [_box("ship", 5, 5)] * 11 + [_box("ship", 50, 50)] * 10
    captions = _captions(boxes)
    # 10 in the centre is not above the threshold: a digit. 11 at the edge: a quantifier.
    assert captions[0] == "10 ships in the middle of the picture."
    edge_word = captions[1][: -len(" ships at the edge of the picture.")].lower()
    assert edge_word in FIXED.vague_quantifiers
    assert all(re.search(r"\d", c) is None for c in captions[2:])  # 21 ships: never a digit
    assert "many" in {_captions(boxes, seed=s)[1].split(" ships")[0].lower() for s in range(20)}
    strict = dataclasses.replace(FIXED, many_threshold=25)
    assert _captions(boxes, strict)[2] == "There are 21 ships in the picture."


@pytest.mark.parametrize("raw, dataset, singular, plural", [
    ("bus", "", "bus", "buses"),
    ("ship", "", "ship", "ships"),
    ("harbor", "dota", "harbor", "harbors"),
    ("storage-tank", "dota", "storage tank", "storage tanks"),
    ("storagetank", "dior", "storage tank", "storage tanks"),
    ("aircraft", "", "aircraft", "aircraft"),
    ("Large_Vehicle", "isaid", "large vehicle", "large vehicles"),
    ("small-vehicle", "dota", "small vehicle", "small vehicles"),
    ("golffield", "dior", "golf field", "golf fields"),
    ("groundtrackfield", "dior", "ground track field", "ground track fields"),
    ("Expressway-Service-area", "dior", "expressway service area", "expressway service areas"),
    ("trainstation", "dior", "train station", "train stations"),
    ("overpass", "dior", "overpass", "overpasses"),
    ("windmill", "dior", "windmill", "windmills"),
    ("BaseballField", "aid", "baseball field", "baseball fields"),
    ("chimney", "dior", "chimney", "chimneys"),
    ("baseball_diamond", "nwpu", "baseball diamond", "baseball diamonds"),
    ("person", "", "person", "people"),
])
def test_class_names_normalise_and_pluralise(raw, dataset, singular, plural):
    assert classnames.normalize_class_name(raw, dataset) == singular
    assert classnames.pluralize(singular) == plural


@pytest.mark.parametrize("noun, article", [
    ("airplane", "an"), ("harbor", "a"), ("overpass", "an"), ("expressway service area", "an"),
    ("university", "a"), ("hour", "an"), ("ship", "a"), ("airport", "an"),
])
def test_indefinite_article_follows_sound(noun, article):
    assert classnames.indefinite_article(noun) == article


def test_single_object_takes_an_article_and_singular_verb():
    captions = _captions([_box("airplane", 50, 50)], WITH_EMPTY, dataset="dior")
    assert captions[0] == "An airplane in the middle of the picture."
    assert captions[1] == FIXED.empty_edge
    assert captions[2] == "There is an airplane in the picture."


def test_stuff_classes_are_places_and_background_is_ignored():
    boxes = [_box("building", 50, 50), _box("building", 52, 52), _box("car", 48, 48),
             _box("impervious_surfaces", 50, 50), _box("clutter", 5, 5), _box("water", 5, 90)]
    few = dataclasses.replace(FIXED, few_regions=("a few",))
    captions = _captions(boxes, few, dataset="potsdam")
    # Objects first, then regions; two building regions are "a few places", never "2".
    assert captions[0] == "A car and a few places with buildings in the middle of the picture."
    assert captions[1] == "A place with water at the edge of the picture."
    assert count_objects(boxes, dataset="potsdam") == {"building": 2, "car": 1, "water": 1}


def _regions(category, n, cx=50, cy=50):
    return [dataclasses.replace(_box(category, cx, cy), region=True, ann_id=f"{i}")
            for i in range(n)]


@pytest.mark.parametrize("n, allowed", [
    (1, {"a place with cars"}),
    (2, {"a few places with cars", "some places with cars"}),
    (3, {"a few places with cars", "some places with cars"}),
    (7, {"several places with cars", "some places with cars", "a number of places with cars"}),
    (10, {"several places with cars", "some places with cars", "a number of places with cars"}),
])
def test_segmentation_regions_are_quantities_of_places_not_digits(n, allowed):
    # Mask-to-Box regions of a thing class (cars) are still regions, not counted cars.
    seen = set()
    for seed in range(30):
        caption = _captions(_regions("car", n), seed=seed, dataset="potsdam")[0]
        assert caption.endswith(" in the middle of the picture.") and not re.search(r"\d", caption)
        seen.add(caption[: -len(" in the middle of the picture.")].lower())
    assert seen == allowed


def test_many_regions_take_the_papers_vague_forms():
    seen = set()
    for seed in range(60):
        captions = _captions(_regions("building", 11) + _regions("car", 12), seed=seed,
                             dataset="potsdam")
        assert not any(re.search(r"\d", c) for c in captions), captions
        seen.update(captions)
    # The forms of the paper's segmentation examples: "Lots of buildings ..." and
    # "a large deal of places with cars".
    assert any("lots of buildings" in c.lower() for c in seen)
    assert any("a large deal of places with cars" in c.lower() for c in seen)
    assert not any("large deal of water" in c for c in seen)
    water = {b2c.region_phrase("water", 20, np.random.default_rng(s)) for s in range(20)}
    assert all(p.endswith("places with water") for p in water)


def test_regions_take_a_plural_verb_unless_one_place():
    captions = _captions(_regions("building", 3), seed=0, dataset="potsdam")
    assert captions[2].startswith("There are ") and "places with buildings" in captions[2]
    assert _captions(_regions("building", 1), dataset="potsdam")[2] == \
        "There is a place with buildings in the picture."


def test_empty_region_sentence_is_off_by_default_and_its_slot_gets_a_count_caption():
    boxes = [_box("ship", 50, 50), _box("ship", 52, 52), _box("harbor", 48, 50)]
    for seed in range(20):
        captions = box_to_captions(boxes, 100, 100, rng=np.random.default_rng(seed),
                                   dataset="dota")
        assert len(captions) == 5
        assert not any(c.startswith("There is nothing") for c in captions), captions
        assert "in the middle of the picture" in captions[0].lower()
        assert all("edge" not in c and "middle" not in c for c in captions[1:]), captions
    assert B2COptions().describe_empty_regions is False
    with_empty = box_to_captions(boxes, 100, 100, rng=np.random.default_rng(0),
                                 options=B2COptions(describe_empty_regions=True))
    assert with_empty[1] == B2COptions().empty_edge


def test_difficult_and_ignore_options():
    boxes = [_box("ship", 50, 50), _box("ship", 50, 50, difficult=True), _box("harbor", 5, 5)]
    assert count_objects(boxes) == {"harbor": 1, "ship": 2}
    no_difficult = dataclasses.replace(FIXED, include_difficult=False)
    assert count_objects(boxes, no_difficult) == {"harbor": 1, "ship": 1}
    assert _captions(boxes, no_difficult)[0] == "A ship in the middle of the picture."
    no_harbor = dataclasses.replace(WITH_EMPTY, ignore_classes=("harbor",))
    assert _captions(boxes, no_harbor)[1] == FIXED.empty_edge
    assert _captions([_box("clutter", 5, 5)], dataset="potsdam") == []


def test_same_seed_same_captions_and_seeds_vary_them():
    boxes = [_box(c, x, y) for c, x, y in [("ship", 10, 10), ("ship", 50, 50), ("plane", 90, 20),
                                           ("harbor", 40, 60), ("small-vehicle", 60, 40)] * 3]
    first = box_to_captions(boxes, 100, 100, rng=np.random.default_rng(7))
    again = box_to_captions(boxes, 100, 100, rng=np.random.default_rng(7))
    assert first == again
    variants = {tuple(box_to_captions(boxes, 100, 100, rng=np.random.default_rng(s)))
                for s in range(10)}
    assert len(variants) > 1


def test_default_templates_give_five_distinct_grammatical_captions():
    boxes = [_box("tennis-court", 50, 50)] + [_box("tennis-court", 5, 5)] * 3 + \
        [_box("ground-track-field", 90, 90)]
    for seed in range(30):
        captions = box_to_captions(boxes, 100, 100, rng=np.random.default_rng(seed),
                                   dataset="dota")
        assert len(captions) == 5 and len(set(captions)) == 5, captions
        for caption in captions:
            assert (caption[0].isupper() or caption[0].isdigit()) and caption.endswith("."), caption
            # A list of two or more items never takes "is".
            assert not re.search(r" and [^,]* is located", caption), caption
            assert "a tennis courts" not in caption and "1 " not in caption, caption


def test_both_form_names_two_categories_without_counts():
    options = dataclasses.replace(FIXED, both_probability=1.0, max_categories_per_caption=2)
    boxes = [_box("ship", 5, 5)] * 3 + [_box("harbor", 50, 50)]
    seen = set()
    for seed in range(20):
        seen.update(_captions(boxes, options, seed=seed)[2:])
    assert {"There are both ships and a harbor in the picture.",
            "There are both a harbor and ships in the picture."} & seen


def test_empty_input_and_bad_size():
    assert box_to_captions([], 10, 10, rng=np.random.default_rng(0)) == []
    with pytest.raises(ValueError, match="0x10"):
        box_to_captions([_box("ship", 1, 1)], 0, 10, rng=np.random.default_rng(0))


def test_count_phrase_boundaries():
    rng = np.random.default_rng(0)
    assert b2c.count_phrase("ship", 1, rng) == "a ship"
    assert b2c.count_phrase("ship", 2, rng) == "2 ships"
    assert b2c.count_phrase("ship", 10, rng) == "10 ships"
    assert b2c.count_phrase("ship", 11, rng).endswith(" ships")
    assert not b2c.count_phrase("ship", 11, rng)[0].isdigit()


def test_location_caption_lists_the_most_frequent_categories_first():
    names = ["ship", "plane", "harbor", "bridge", "helicopter", "roundabout", "tennis-court"]
    boxes = [_box(name, 5, 5) for i, name in enumerate(names) for _ in range(i + 1)]
    edge = _captions(boxes, WITH_EMPTY)[1]
    assert edge.startswith("7 tennis courts, 6 roundabouts, 5 helicopters, 4 bridges, 3 harbors")
    assert "2 planes at the edge" in edge and "ship" not in edge  # 6 categories at most
    everything = dataclasses.replace(WITH_EMPTY, max_location_categories=0)
    assert "2 planes and a ship at the edge" in _captions(boxes, everything)[1]
