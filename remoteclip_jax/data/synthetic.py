"""Built-in demo data: procedurally generated *synthetic* aerial scenes, captioned by the real B2C.

These images are drawn by this module from random numbers: they are not remote-sensing
photographs and a model trained on them learns nothing about the real world. They exist so the
demo, the tests and the tutorials can train and evaluate end to end with no download.

Each scene is a textured background (grass, water, desert or urban blocks) with 1-10 objects of
one to three categories, drawn with distinct shapes and colours (white cross-shaped planes, orange
ships on water only, pale round storage tanks with a shadow, yellow cars, red-roofed houses, blue
tennis courts with white lines) at random positions, sizes and orientations, without overlap. The
axis-aligned boxes of the drawn objects are known exactly, and the captions are produced from them
by the same Box-to-Caption code that captions real detection datasets
(`remoteclip_jax.data.b2c.box_to_captions`), so the text carries object categories, counts and
centre/edge positions that a model can learn to match.

Everything is deterministic per (seed, index): ``SyntheticSource(n, 64, seed)[i]`` always gives
the same image, boxes and captions, in any process.

numpy/PIL only: this module runs inside grain workers and must not import jax.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from remoteclip_jax.data import b2c
from remoteclip_jax.data.types import Box

SOURCE_NAME = "synthetic"
BACKGROUNDS = ("grass", "water", "desert", "urban")
# Category names as B2C will phrase them (all countable; B2C treats "building" as a place).
CATEGORIES = ("plane", "ship", "storage tank", "car", "house", "tennis court")
# Which categories may appear on which background (ships only on water, nothing else on it).
_ALLOWED = {
    "water": ("ship",),
    "grass": ("plane", "storage tank", "car", "house", "tennis court"),
    "desert": ("plane", "storage tank", "car", "house", "tennis court"),
    "urban": ("plane", "storage tank", "car", "house", "tennis court"),
}
# Object length as a fraction of the image side, before crowding shrinks it.
_SIZE_RANGE = {
    "plane": (0.14, 0.22), "ship": (0.14, 0.24), "storage tank": (0.08, 0.13),
    "car": (0.07, 0.10), "house": (0.10, 0.15), "tennis court": (0.16, 0.22),
}
_MAX_COUNT = 10
_SUPERSAMPLE = 3  # draw at 3x and downsample with a box filter: anti-aliased small shapes...
_SUPERSAMPLE_BELOW = 128  # ...in small scenes; larger ones are drawn at their size (9x cheaper)


@dataclasses.dataclass
class Scene:
    """One generated scene and its ground truth.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        boxes: one axis-aligned `Box` per drawn object, in pixels of ``image``.
        counts: objects per category (categories absent from the scene are omitted).
        background: one of `BACKGROUNDS`.
        captions: the five B2C captions (filled in by `SyntheticSource`).
    """
    image: np.ndarray
    boxes: list[Box]
    counts: dict[str, int]
    background: str
    captions: list[str] = dataclasses.field(default_factory=list)


# --- backgrounds -------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: random values on a coarse grid, bicubically upsampled."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size),
                                                                Image.Resampling.BICUBIC))


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    # Pixel coordinates in [0, 1) as a row and a column: broadcasting makes the full grids only
    # where a pattern needs them.
    xx = (np.arange(size, dtype=np.float32) / size)[None, :]
    yy = (np.arange(size, dtype=np.float32) / size)[:, None]
    low = _smooth_noise(rng, size, 6)[..., None]
    fine = rng.normal(0, 1, (size, size, 1)).astype(np.float32)
    if kind == "grass":
        base = np.array([70, 115, 50], np.float32)
        img = base + 22 * low * np.array([0.6, 1.0, 0.5]) + 7 * fine
    elif kind == "water":
        angle = rng.uniform(0, math.pi)
        waves = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * rng.uniform(25, 45)
                       + rng.uniform(0, 2 * math.pi))[..., None]
        base = np.array([30, 70, 125], np.float32)
        img = base + 12 * low + 5 * waves + 4 * fine
    elif kind == "desert":
        angle = rng.uniform(0, math.pi)
        dunes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * rng.uniform(8, 16)
                       + 3 * low[..., 0])[..., None]
        base = np.array([205, 180, 125], np.float32)
        img = base + 14 * dunes + 10 * low + 6 * fine
    elif kind == "urban":
        base = np.array([120, 118, 112], np.float32)
        img = base + 14 * low + 8 * fine
        # A grid of darker roads.
        period = size / rng.uniform(2.5, 4.0)
        width = max(1.0, size * 0.035)
        offset = rng.uniform(0, period, 2)
        roads = (((xx * size + offset[0]) % period) < width) | (((yy * size + offset[1]) % period)
                                                                 < width)
        img = np.where(roads[..., None], np.array([65, 65, 68], np.float32) + 4 * fine, img)
    else:
        raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")
    return np.clip(img, 0, 255).astype(np.uint8)


# --- objects -------------------------------------------------------------------------------------


def _rotate(points: Sequence[tuple[float, float]], angle: float, cx: float, cy: float):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _shapes(category: str, length: float, angle: float, rng: np.random.Generator):
    """Polygons (centred at the origin, before rotation) with their fill colours."""
    L = length
    if category == "plane":
        fuselage = [(-0.5 * L, -0.06 * L), (0.45 * L, -0.06 * L), (0.5 * L, 0),
                    (0.45 * L, 0.06 * L), (-0.5 * L, 0.06 * L)]
        wings = [(0.12 * L, 0), (-0.12 * L, -0.5 * L), (-0.22 * L, -0.5 * L), (-0.08 * L, 0),
                 (-0.22 * L, 0.5 * L), (-0.12 * L, 0.5 * L)]
        tail = [(-0.38 * L, 0), (-0.5 * L, -0.2 * L), (-0.55 * L, -0.2 * L), (-0.47 * L, 0),
                (-0.55 * L, 0.2 * L), (-0.5 * L, 0.2 * L)]
        white = (238, 238, 240)
        return [(fuselage, white), (wings, white), (tail, white)], angle
    if category == "ship":
        w = 0.16 * L
        hull = [(-0.5 * L, -w), (0.3 * L, -w), (0.5 * L, 0), (0.3 * L, w), (-0.5 * L, w)]
        deck = [(-0.4 * L, -0.5 * w), (0.1 * L, -0.5 * w), (0.1 * L, 0.5 * w), (-0.4 * L, 0.5 * w)]
        return [(hull, (225, 95, 35)), (deck, (245, 235, 220))], angle
    if category == "storage tank":
        r = 0.5 * L
        n = 24
        ring = [(r * math.cos(2 * math.pi * k / n), r * math.sin(2 * math.pi * k / n))
                for k in range(n)]
        shadow = [(x + 0.18 * L, y + 0.18 * L) for x, y in ring]
        top = [(0.72 * x, 0.72 * y) for x, y in ring]
        return [(shadow, (45, 45, 45)), (ring, (200, 200, 195)), (top, (235, 235, 230))], 0.0
    if category == "car":
        w = 0.25 * L
        body = [(-0.5 * L, -w), (0.5 * L, -w), (0.5 * L, w), (-0.5 * L, w)]
        glass = [(0.05 * L, -0.75 * w), (0.3 * L, -0.75 * w), (0.3 * L, 0.75 * w),
                 (0.05 * L, 0.75 * w)]
        return [(body, (240, 205, 25)), (glass, (40, 40, 60))], angle
    if category == "house":
        w = 0.5 * L * rng.uniform(0.65, 1.0)
        roof = [(-0.5 * L, -w), (0.5 * L, -w), (0.5 * L, w), (-0.5 * L, w)]
        half = [(-0.5 * L, -w), (0.5 * L, -w), (0.5 * L, 0), (-0.5 * L, 0)]
        # Axis-aligned (up to 90 degrees), as houses line up with streets.
        return [(roof, (150, 45, 35)), (half, (185, 70, 50))], rng.integers(0, 2) * math.pi / 2
    if category == "tennis court":
        w = 0.27 * L
        court = [(-0.5 * L, -w), (0.5 * L, -w), (0.5 * L, w), (-0.5 * L, w)]
        inner = [(-0.42 * L, -0.78 * w), (0.42 * L, -0.78 * w), (0.42 * L, 0.78 * w),
                 (-0.42 * L, 0.78 * w)]
        inner2 = [(-0.38 * L, -0.62 * w), (0.38 * L, -0.62 * w), (0.38 * L, 0.62 * w),
                  (-0.38 * L, 0.62 * w)]
        net = [(-0.02 * L, -0.78 * w), (0.02 * L, -0.78 * w), (0.02 * L, 0.78 * w),
               (-0.02 * L, 0.78 * w)]
        blue = (60, 80, 175)
        return [(court, (90, 140, 90)), (inner, (250, 250, 250)), (inner2, blue),
                (net, (250, 250, 250))], rng.integers(0, 2) * math.pi / 2
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")


def _overlaps(box, placed, margin):
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin
               and b[1] < y1 + margin for b in placed)


def render_scene(rng: np.random.Generator, size: int) -> Scene:
    """Draws one random scene of ``size`` x ``size`` pixels.

    Args:
        rng: every random choice comes from it (same state, same scene).
        size: image side in pixels (64-96 keeps counts of 1-10 legible).

    Returns:
        The `Scene` (without captions).
    """
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    allowed = _ALLOWED[background]
    n_categories = min(len(allowed), 1 + int(rng.choice(3, p=[0.6, 0.3, 0.1])))
    chosen = [allowed[i] for i in rng.choice(len(allowed), n_categories, replace=False)]
    wanted = [(c, int(rng.integers(1, _MAX_COUNT + 1)) if k == 0 else int(rng.integers(1, 6)))
              for k, c in enumerate(chosen)]
    total = sum(n for _, n in wanted)
    # Crowded scenes get smaller objects so that everything still fits.
    crowding = 1.0 if total <= 4 else max(0.6, 1.0 - 0.035 * (total - 4))

    factor = _SUPERSAMPLE if size < _SUPERSAMPLE_BELOW else 1
    big = size * factor
    canvas = Image.fromarray(_background(background, big, rng))
    draw = ImageDraw.Draw(canvas)
    placed: list[tuple[float, float, float, float]] = []
    boxes: list[Box] = []
    # Large objects first: they are the hardest to fit.
    order = sorted(wanted, key=lambda cn: -_SIZE_RANGE[cn[0]][1])
    for category, n in order:
        lo, hi = _SIZE_RANGE[category]
        for _ in range(n):
            for _attempt in range(40):
                length = rng.uniform(lo, hi) * crowding * big
                polygons, angle = _shapes(category, length, rng.uniform(0, 2 * math.pi), rng)
                # Bounds of the rotated shape around the origin, then a position that keeps it
                # entirely inside the image.
                pts = [p for poly, _ in polygons for p in _rotate(poly, angle, 0, 0)]
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                cx = rng.uniform(-min(xs) + 1, big - max(xs) - 1)
                cy = rng.uniform(-min(ys) + 1, big - max(ys) - 1)
                box = (cx + min(xs), cy + min(ys), cx + max(xs), cy + max(ys))
                if not _overlaps(box, placed, margin=factor):
                    break
            else:
                continue  # no room left: the object is not drawn and not counted
            placed.append(box)
            for poly, colour in polygons:
                draw.polygon(_rotate(poly, angle, cx, cy), fill=colour)
            s = 1.0 / factor
            boxes.append(Box(category, box[0] * s, box[1] * s, box[2] * s, box[3] * s,
                             ann_id=str(len(boxes))))
    image = np.asarray(canvas.resize((size, size), Image.Resampling.BOX) if factor > 1 else canvas)
    counts = dict(collections.Counter(b.category for b in boxes))
    return Scene(image=image, boxes=boxes, counts=counts, background=background)


# --- a grain data source ---------------------------------------------------------------------------


class SyntheticSource:
    """A grain random-access data source of synthetic scenes; deterministic per (seed, index).

    ``source[i]`` is a record dict like those in the on-disk format (see
    `remoteclip_jax.data.records`), except that ``image`` is a decoded (H, W, 3) uint8 array:
    ``image``, ``captions`` (5, from B2C), ``source`` ("synthetic"), ``image_id``, ``ann_ids``,
    ``width``, ``height``, ``label`` (the background), ``boxes`` (dicts) and ``counts``
    ({category: number}).

    Args:
        num_images: number of scenes.
        image_size: scene side in pixels, or a sequence of sides to choose from per scene.
        seed: generator seed; different seeds give different scenes.
        b2c_options: optional `remoteclip_jax.data.b2c.B2COptions`.
    """

    def __init__(self, num_images: int, image_size: int | Sequence[int] = 64, seed: int = 0,
                 b2c_options: b2c.B2COptions | None = None):
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        sizes = (image_size,) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
        if not sizes or min(sizes) < 32:
            raise ValueError(f"image sizes must be >= 32 pixels, got {image_size}")
        self.num_images = int(num_images)
        self.sizes = tuple(int(s) for s in sizes)
        self.seed = int(seed)
        self.b2c_options = b2c_options

    def __len__(self) -> int:
        return self.num_images

    def scene(self, index: int) -> Scene:
        """The scene at ``index`` with its ground truth and captions."""
        index = int(index)
        if not 0 <= index < self.num_images:
            raise IndexError(f"scene index {index} out of range [0, {self.num_images})")
        rng = np.random.default_rng([self.seed, index, 0])
        size = self.sizes[rng.integers(len(self.sizes))] if len(self.sizes) > 1 else self.sizes[0]
        scene = render_scene(rng, size)
        # Captions use their own stream so B2C changes never change the images.
        caption_rng = np.random.default_rng([self.seed, index, 1])
        scene.captions = b2c.box_to_captions(scene.boxes, size, size, rng=caption_rng,
                                             options=self.b2c_options, dataset=SOURCE_NAME)
        return scene

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scene(index)
        height, width = scene.image.shape[:2]
        return {
            "image": scene.image,
            "captions": scene.captions,
            "source": SOURCE_NAME,
            "image_id": f"{SOURCE_NAME}-{self.seed}-{int(index)}",
            "ann_ids": [b.ann_id for b in scene.boxes],
            "width": width,
            "height": height,
            "label": scene.background,
            "boxes": [dataclasses.asdict(b) for b in scene.boxes],
            "counts": dict(scene.counts),
        }

    def __repr__(self) -> str:
        return f"SyntheticSource(num_images={self.num_images}, sizes={self.sizes}, seed={self.seed})"


def write_synthetic_records(out_dir: str | os.PathLike, num_images: int,
                            image_size: int | Sequence[int] = 64, seed: int = 0, *,
                            shard_size: int = 2000, quality: int = 95,
                            progress: bool = True) -> dict[str, Any]:
    """Writes ``num_images`` synthetic scenes into the on-disk record format.

    Args:
        out_dir: output directory (must not already hold a dataset).
        num_images: number of scenes.
        image_size: scene side(s), as for `SyntheticSource`.
        seed: generator seed.
        shard_size: records per ArrayRecord shard.
        quality: JPEG quality.
        progress: show a tqdm progress bar.

    Returns:
        The manifest written to ``out_dir/manifest.json`` (it says the data is synthetic).
    """
    from tqdm import tqdm

    from remoteclip_jax.data import records

    source = SyntheticSource(num_images, image_size, seed)
    metadata = {"synthetic": {"generator": "remoteclip_jax.data.synthetic", "seed": int(seed),
                              "image_sizes": list(source.sizes),
                              "note": "procedurally drawn scenes, not real imagery"}}
    with records.RecordWriter(out_dir, shard_size=shard_size, metadata=metadata) as writer:
        for i in tqdm(range(num_images), desc="synthetic scenes", disable=not progress):
            record = source[i]
            record["image"] = records.encode_jpeg(Image.fromarray(record["image"]),
                                                  quality=quality)
            writer.write(record)
    return records.read_manifest(out_dir)


def export_scenes(out_dir: str | os.PathLike, num_images: int,
                  image_size: int | Sequence[int] = 64, seed: int = 0, *,
                  progress: bool = True) -> dict[str, int]:
    """Writes scenes as PNG files with their ground truth, for evaluators that read files.

    Creates ``out_dir/images/<index>.png``, ``out_dir/scenes.jsonl`` (one line per scene:
    ``image``, ``background``, ``counts``, ``boxes``, ``captions``) and
    ``out_dir/count_manifest.jsonl`` in the counting manifest format of
    `remoteclip_jax.data.readers.count_manifest` (``{"image", "category", "count"}``, one line per scene
    that shows a single category, counts 1-10). Image paths are relative to ``out_dir``.

    Returns:
        ``{"scenes": ..., "count_items": ...}``.
    """
    import json
    import pathlib

    from tqdm import tqdm

    out = pathlib.Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    source = SyntheticSource(num_images, image_size, seed)
    count_items = 0
    with (out / "scenes.jsonl").open("w") as scenes, \
            (out / "count_manifest.jsonl").open("w") as manifest:
        for i in tqdm(range(num_images), desc="synthetic scenes", disable=not progress):
            item = source[i]
            name = f"images/{i:06d}.png"
            Image.fromarray(item["image"]).save(out / name)
            scenes.write(json.dumps({"image": name, "background": item["label"],
                                     "counts": item["counts"], "boxes": item["boxes"],
                                     "captions": item["captions"]}) + "\n")
            if len(item["counts"]) == 1:
                (category, n), = item["counts"].items()
                manifest.write(json.dumps({"image": name, "category": category,
                                           "count": n}) + "\n")
                count_items += 1
    return {"scenes": num_images, "count_items": count_items}


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m remoteclip_jax.data.synthetic --out DIR [--format records|files]``."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Write synthetic (procedurally drawn, not real) aerial scenes with B2C "
                    "captions, as ArrayRecord shards or as PNG files with ground truth.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, nargs="+", default=[64],
                        help="scene side(s) in pixels; several = chosen per scene")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("records", "files"), default="records")
    parser.add_argument("--shard-size", type=int, default=2000)
    args = parser.parse_args(argv)
    sizes = args.image_size[0] if len(args.image_size) == 1 else args.image_size
    if args.format == "records":
        manifest = write_synthetic_records(args.out, args.num_images, sizes, args.seed,
                                           shard_size=args.shard_size)
        print(f"wrote {manifest['count']} synthetic scenes in {len(manifest['shards'])} shard(s) "
              f"to {args.out}")
    else:
        summary = export_scenes(args.out, args.num_images, sizes, args.seed)
        print(f"wrote {summary['scenes']} synthetic scenes and {summary['count_items']} counting "
              f"items to {args.out}")


if __name__ == "__main__":
    main()


_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_NUMBER = re.compile(r"\b(10|[1-9])\b")


def spell_counts(caption: str) -> str:
    """Replaces the numbers 1-10 in a caption by words ("There are 3 cars" → "... three cars").

    The counting evaluator's prompts spell counts out ("There are three cars in the picture."),
    while Box-to-Caption writes digits; a model trained to count should see the prompts' words.
    """
    return _NUMBER.sub(lambda m: _WORDS[int(m.group(1)) - 1], caption)


_spelled = spell_counts  # the constructor's flag of the same name shadows it


class MaterializedScenes:
    """Synthetic scenes rendered once into memory, optionally filtered and with spelled counts.

    Drawing a scene costs far more than reading it back, and a training run sees every scene
    many times, so the scenes are drawn once at construction (2,048 scenes of 64 px hold 25 MB).
    ``max_categories`` keeps only scenes with at most that many object categories, in index
    order: one category per scene makes every count caption about the whole scene, which a tiny
    model learns in minutes. Items are those of `SyntheticSource`.

    Raises:
        ValueError: when too few scenes pass the filter.
    """

    def __init__(self, num_images: int, image_size: int = 64, seed: int = 0, *,
                 max_categories: int = 0, spell_counts: bool = False):
        from tqdm import tqdm

        source = SyntheticSource(50 * num_images, image_size, seed)
        self._items, index = [], 0
        # A line only when drawing takes long enough to wonder about (e.g. thousands of scenes).
        with tqdm(total=num_images, desc="drawing synthetic scenes", delay=2, leave=False) as bar:
            while len(self._items) < num_images and index < len(source):
                item = source[index]
                index += 1
                if max_categories <= 0 or len(item["counts"]) <= max_categories:
                    if spell_counts:
                        item["captions"] = [_spelled(c) for c in item["captions"]]
                    self._items.append(item)
                    bar.update(1)
        if len(self._items) < num_images:
            raise ValueError(f"only {len(self._items)} of {index} synthetic scenes have <= "
                             f"{max_categories} categories")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self._items[index])
