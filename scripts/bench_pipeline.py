"""Training-pipeline throughput: images/s per core (read + decode + augment + tokenise, 224 px).

Builds a small record dataset of 224-px JPEGs (the AID images of ../shared/data/aid_150px
enlarged to 224 px, as RSICD ships its 224-px crops, with the RSICD captions when present, else
synthetic 224-px scenes), then times `make_train_iterator` with 0, 1 and 2 worker processes, each
for a few seconds after its first batch (worker start-up excluded). Every setting uses one reader
thread per process, so "per core" is per busy process: the main process for 0 workers, the
workers otherwise. The last line says how many workers an accelerator needs at `--pairs-per-s`
(e.g. 5,000 for ViT-B-32 on an H200) to keep it fed.

The reference, timed in the same run on the same records: a plain loop doing what open_clip's
training loader does per image (PIL decode, torchvision's open_clip train transform,
open_clip.tokenize), or a PIL decode + bicubic resize loop when open_clip is not installed.

    python scripts/bench_pipeline.py [--seconds 3] [--images 512] [--batch 32]

The machine is shared: keep --seconds small.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from remoteclip_jax.data import pipeline, records, synthetic  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
TARGET = 250.0  # images/s/core


def build_records(out: pathlib.Path, n: int, side: int = 224) -> str:
    """Writes n records of `side`-px JPEGs; returns what they were made from."""
    jsonl = SHARED / "rsicd_aid" / "train.jsonl"
    if jsonl.is_file():
        import json

        lines = [json.loads(x) for x in jsonl.read_text().splitlines()[:n]]
        with records.RecordWriter(out, shard_size=256) as writer:
            for i, line in enumerate(lines):
                with Image.open(SHARED / line["image"]) as im:
                    im = im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
                    writer.write({"image": records.encode_jpeg(im), "captions": line["captions"],
                                  "source": "rsicd_aid", "image_id": line["image"],
                                  "ann_ids": []})
        return f"{len(lines)} AID images ({side}-px JPEG) with RSICD captions"
    synthetic.write_synthetic_records(out, n, side, seed=0, progress=False)
    return f"{n} synthetic {side}-px scenes (../shared/data absent)"


def time_pipeline(path: pathlib.Path, workers: int, batch: int, seconds: float) -> float:
    it = pipeline.make_train_iterator([{"kind": "records", "path": str(path)}],
                                      batch_size_per_process=batch, image_size=224, seed=0,
                                      num_workers=workers, num_threads=1)
    try:
        next(it)  # start-up (worker spawn, first decode) is not throughput
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            count += len(next(it)["texts"])
        return count / (time.perf_counter() - start)
    finally:
        it.close()


def time_reference(path: pathlib.Path, seconds: float) -> tuple[float, str]:
    source = records.RecordSource(path)
    items = [source[i] for i in range(len(source))]
    try:
        import open_clip
        import torch

        torch.set_num_threads(1)
        transform = open_clip.image_transform(224, is_train=True)
        tokenize = open_clip.tokenize
        name = "PIL decode + open_clip train transform (torchvision) + open_clip.tokenize"
    except ImportError:
        def transform(im):
            return np.asarray(im.resize((224, 224), Image.Resampling.BICUBIC), np.float32)

        def tokenize(texts):
            return texts

        name = "PIL decode + bicubic resize (open_clip not installed)"
    rng = np.random.default_rng(0)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        item = items[count % len(items)]
        image = Image.open(io.BytesIO(item["image"])).convert("RGB")
        transform(image)
        tokenize([item["captions"][rng.integers(len(item["captions"]))]])
        count += 1
    return count / (time.perf_counter() - start), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per setting")
    parser.add_argument("--images", type=int, default=512, help="records to build")
    parser.add_argument("--batch", type=int, default=32, help="batch size per process")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs-per-s", type=float, default=5000.0,
                        help="an accelerator's training rate to size the worker count for")
    args = parser.parse_args()

    from absl import flags

    flags.FLAGS.mark_as_parsed()  # grain reads absl flags even outside absl.app.run
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "records"
        what = build_records(path, args.images)
        print(f"data: {what}; {os.cpu_count()} CPU cores visible (shared machine)")
        ref, ref_name = time_reference(path, args.seconds)
        print(f"reference: {ref_name}: {ref:.0f} images/s on 1 core")
        print(f"{'workers':>7} {'images/s':>9} {'cores':>5} {'images/s/core':>13} "
              f"{'vs reference':>12} {'vs target':>9}")
        per_worker = []
        for workers in args.workers:
            rate = time_pipeline(path, workers, args.batch, args.seconds)
            cores = max(1, workers)
            per_core = rate / cores
            if workers:
                per_worker.append(per_core)
            print(f"{workers:>7} {rate:>9.0f} {cores:>5} {per_core:>13.0f} {per_core / ref:>11.2f}x "
                  f"{per_core / TARGET:>8.2f}x")
        print(f"target: {TARGET:.0f} images/s/core (GeoRSCLIP's webdataset loader: ~112)")
        if per_worker:
            rate = max(per_worker)
            print(f"to feed {args.pairs_per_s:,.0f} pairs/s: about "
                  f"{math.ceil(args.pairs_per_s / rate)} workers (--config.data.num_workers) at "
                  f"{rate:.0f} images/s each on cores like these")


if __name__ == "__main__":
    main()
