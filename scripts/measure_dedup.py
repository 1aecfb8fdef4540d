"""Measures pHash de-duplication on real AID images: recall on edited copies, false matches.

    python scripts/measure_dedup.py [--shared ../shared/data] [--n 400]

Takes `--n` distinct AID scenes (seeded), makes edited copies of each (JPEG re-encode at another
quality, resize, small crop, brightness change), and prints for thresholds 0..10 the share of
copies found (distance to their original <= t) and the number of distinct-scene pairs within t.
"""
from __future__ import annotations

import argparse
import io
import itertools
import os
import pathlib
import random

import numpy as np
from PIL import Image, ImageEnhance

from remoteclip_jax.data import dedup


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


EDITS = {
    "jpeg q=40": lambda im: _jpeg(im, 40),
    "resize 0.8x": lambda im: im.resize((int(im.width * 0.8), int(im.height * 0.8)),
                                        Image.Resampling.BILINEAR),
    "resize 2x": lambda im: im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC),
    "crop 1px": lambda im: im.crop((1, 1, im.width - 1, im.height - 1)),
    "crop 3% border": lambda im: im.crop((round(im.width * .03), round(im.height * .03),
                                          round(im.width * .97), round(im.height * .97))),
    "brightness +15%": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "crop 3% + jpeg q=60 + 0.9x": lambda im: _jpeg(EDITS["crop 3% border"](im).resize(
        (int(im.width * .9), int(im.height * .9)), Image.Resampling.BILINEAR), 60),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    beside = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--shared", default=os.environ.get("REMOTECLIP_SHARED_DATA", str(beside)))
    parser.add_argument("--n", type=int, default=400)
    args = parser.parse_args()
    paths = sorted(pathlib.Path(args.shared, "aid_150px").rglob("*.jpg"))
    paths = random.Random(0).sample(paths, args.n)
    originals = np.array([dedup.phash(p) for p in paths], dtype=np.uint64)
    edited = {name: np.array([dedup.phash(edit(Image.open(p).convert("RGB"))) for p in paths],
                             dtype=np.uint64) for name, edit in EDITS.items()}
    pair_d = np.array([int(np.bitwise_count(a ^ b)) for a, b in
                       itertools.combinations(originals, 2)])
    print(f"{args.n} distinct AID scenes, {len(pair_d)} pairs; closest distinct pair: "
          f"{pair_d.min()} bits")
    print("t  " + "  ".join(f"{name:>14.14}" for name in EDITS) + "  false pairs")
    for t in range(11):
        found = [float(np.mean(np.bitwise_count(originals ^ e) <= t)) for e in edited.values()]
        print(f"{t:<2} " + "  ".join(f"{f:>14.3f}" for f in found) +
              f"  {int((pair_d <= t).sum()):>11}")


if __name__ == "__main__":
    main()
