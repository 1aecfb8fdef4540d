"""Conversion throughput: the converter against bare PIL decode + resize + JPEG encode.

    python scripts/bench_convert.py [--images 64] [--size 1024] [--image-size 256]

Writes synthetic DOTA-style scenes (random boxes) to a temporary directory, then times
(a) the reference: open, decode, shrink and JPEG-encode each image with PIL, nothing else, and
(b) `remoteclip_jax.data.convert_annotations` on the same files (reading labels, B2C, records, summary).
Prints both in images/s and their ratio: the overhead of everything but the image work.
"""
from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np
from PIL import Image

from remoteclip_jax.data import convert_annotations as convert, records


def _write_scenes(root: pathlib.Path, count: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    classes = ["small-vehicle", "large-vehicle", "ship", "plane", "storage-tank", "harbor"]
    for i in range(count):
        # Smooth noise compresses like aerial imagery, unlike white noise.
        small = rng.integers(0, 255, (size // 16, size // 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR).save(
            root / "images" / f"S{i:04d}.png")
        lines = ["imagesource:synthetic", "gsd:0.5"]
        for _ in range(int(rng.integers(5, 120))):
            x, y = rng.uniform(0, size - 40, 2)
            w, h = rng.uniform(5, 40, 2)
            lines.append(f"{x:.1f} {y:.1f} {x + w:.1f} {y:.1f} {x + w:.1f} {y + h:.1f} {x:.1f} "
                         f"{y + h:.1f} {classes[int(rng.integers(len(classes)))]} 0")
        (root / "labelTxt" / f"S{i:04d}.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024, help="side of the source images")
    parser.add_argument("--image-size", type=int, default=256, help="stored shortest side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        _write_scenes(root / "dota", args.images, args.size)
        paths = sorted((root / "dota" / "images").glob("*.png"))

        start = time.perf_counter()
        for path in paths:
            with Image.open(path) as im:
                im.load()
                records.encode_jpeg(im, args.image_size)
        reference = len(paths) / (time.perf_counter() - start)

        start = time.perf_counter()
        summary = convert.convert_dataset("dota", str(root / "dota" / "labelTxt"),
                                          str(root / "out"), image_size=args.image_size,
                                          progress=False)
        converter = summary.kept / (time.perf_counter() - start)
    print(f"{args.images} images {args.size}px -> {args.image_size}px, one process")
    print(f"reference (PIL decode+resize+encode): {reference:8.1f} images/s")
    print(f"convert (labels+B2C+records+summary): {converter:8.1f} images/s")
    print(f"ratio convert/reference:              {converter / reference:8.2f}")


if __name__ == "__main__":
    main()
