"""Pieces the inference commands share: model/encoder flags, the skipped-image report."""
from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Sequence

from remoteclip_jax.files import atomic_write


def write_skipped(skipped: Sequence[tuple[str, str]], out_dir: str) -> str | None:
    """OUT/skipped.csv (path,reason) when images were skipped; removes a stale one otherwise."""
    path = os.path.join(out_dir, "skipped.csv")
    if not skipped:
        if os.path.exists(path):
            os.remove(path)
        return None
    with atomic_write(path, newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows(skipped)
    return path


def report_skipped(skipped: Sequence[tuple[str, str]], limit: int = 10) -> None:
    """Prints the first `limit` skipped images to stderr (all of them are in skipped.csv)."""
    for _, reason in skipped[:limit]:
        print(f"skipped: {reason}", file=sys.stderr)
    if len(skipped) > limit:
        print(f"skipped: ... and {len(skipped) - limit} more", file=sys.stderr)


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --batch-size, --dtype, --workers: shared by classify, embed and search."""
    parser.add_argument("--model", required=True,
                        help="model directory (written by `remoteclip-jax import-weights`)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: fastest setting for this backend)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="compute dtype; bfloat16 is faster on CPUs with AMX/avx512_bf16 and "
                             "on accelerators; cosine similarities move by up to ~2e-3 (ViT-B-32)")
    parser.add_argument("--workers", type=int, default=None, help="image-decoding threads")


def encoder_options(args) -> dict:
    """`Encoder` keyword arguments from `add_encoder_arguments`' flags."""
    return {"batch_size": args.batch_size, "dtype": args.dtype, "num_workers": args.workers}
