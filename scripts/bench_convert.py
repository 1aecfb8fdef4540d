"""Conversion throughput: the converter against bare PIL decode + resize + JPEG encode, and the
runners (`convert-data --workers N`, `--runner beam`) against one process.

    python scripts/bench_convert.py [--images 64] [--size 1024] [--image-size 256]
    python scripts/bench_convert.py --runners --workers 2 [--beam] [--real [JSONL]]

Default: writes synthetic DOTA-style scenes (random boxes) to a temporary directory, then times
(a) the reference: open, decode, shrink and JPEG-encode each image with PIL, nothing else, and
(b) `remoteclip_jax.data.convert_annotations` on the same files (reading labels, B2C, records, summary).
Prints both in images/s and their ratio: the overhead of everything but the image work.

`--runners`: converts the same data with 1 process, `--workers` processes and (with `--beam`)
Beam's DirectRunner with `--workers` processes; prints images/s and images/s per worker
process ("per core"; the reading and writing process comes on top) and whether each output's
shards are the same bytes as one process's. `--real` uses real image-caption pairs
(default: ../shared/data/rsicd_aid/train.jsonl, AID scenes with RSICD captions) instead of the
synthetic scenes.
"""
from __future__ import annotations

import argparse
import os
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


REAL = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "rsicd_aid" / "train.jsonl"


def _shards(out: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.array_record"))}


def runners(args) -> None:
    """1 process vs --workers processes vs Beam on the same data."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        if args.real is not None:
            kind, source = "captions", pathlib.Path(args.real or REAL)
            if not source.is_file():
                raise SystemExit(f"{source}: not found (pass --real PATH to a caption file)")
        else:
            kind, source = "dota", root / "dota" / "labelTxt"
            _write_scenes(root / "dota", args.images, args.size)
        plans = [("local", 1), ("local", args.workers)] + ([("beam", args.workers)] if args.beam else [])
        print(f"{kind}: {source}; {os.cpu_count()} cores visible")
        reference = None
        for runner, workers in plans:
            out = root / f"out-{runner}-{workers}"
            start = time.perf_counter()
            try:
                summary = convert.convert_dataset(kind, str(source), str(out),
                                                  image_size=args.image_size, progress=False,
                                                  workers=workers, runner=runner)
            except Exception as e:  # beam missing: say so and go on
                print(f"{runner:5s} x{workers}: skipped ({e})")
                continue
            seconds = time.perf_counter() - start
            shards = _shards(out)
            reference = reference or shards
            same = "same bytes as 1 process" if shards == reference else "DIFFERENT from 1 process"
            rate = summary.kept / seconds
            print(f"{runner:5s} x{workers}: {summary.kept} images in {seconds:6.1f} s = "
                  f"{rate:7.1f} images/s, {rate / workers:7.1f} images/s/core; "
                  f"{len(shards)} shards, {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024, help="side of the source images")
    parser.add_argument("--image-size", type=int, default=256, help="stored shortest side")
    parser.add_argument("--runners", action="store_true",
                        help="compare 1 process, --workers processes and (--beam) Beam")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--beam", action="store_true", help="also Beam's DirectRunner")
    parser.add_argument("--real", nargs="?", const="", default=None,
                        help="real caption data (default ../shared/data/rsicd_aid/train.jsonl)")
    args = parser.parse_args()
    if args.runners:
        return runners(args)
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
