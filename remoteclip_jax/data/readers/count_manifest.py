"""RemoteCount-style counting manifests: reading them, and building them from detection labels.

RemoteCount's 947 DOTA images were never released, so counts come from a **manifest**, a JSONL
file with one object per line::

    {"image": "images/P0706.png", "category": "ship", "count": 3}

``image`` is absolute or relative to the manifest's folder; ``category`` is a readable class name
(singular); ``count`` is an int in 1..10. Build one from DOTA-style labels (any B2C-convertible
boxes) with::

    remoteclip-jax count-manifest --dota DOTA_ROOT --out count.jsonl

which writes one line per (image, category) whose object count lies in 1..10.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Iterable, Sequence

from remoteclip_jax.files import as_path, atomic_write, is_remote
from remoteclip_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class CountItem:
    image: str      # resolved path
    category: str   # singular readable name
    count: int      # 1..10


def read_count_manifest(path: str) -> list[CountItem]:
    """Parse a counting manifest; errors name the file and line.

    Raises:
        DataError: missing file, bad JSON, missing key, count outside 1..10, or no items.
    """
    path = str(path)
    root = as_path(path).parent
    if not as_path(path).is_file():
        raise DataError(f"{path}: counting manifest not found")
    items = []
    with as_path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                image, category, count = rec["image"], str(rec["category"]), int(rec["count"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}:{lineno}: expected JSON with image, category, count ({e})") from None
            if not 1 <= count <= 10:
                raise DataError(f"{path}:{lineno}: count {count} outside 1..10")
            items.append(CountItem(str(root / image), category, count))
    if not items:
        raise DataError(f"{path}: counting manifest has no items")
    return items



def manifest_rows(images: Iterable, min_count: int = 1, max_count: int = 10, dataset: str = "dota",
                  options=None) -> list[dict]:
    """One manifest row per (image, category) whose B2C object count is within the range.

    Args:
        images: ``AnnotatedImage`` records with boxes.
        min_count, max_count: counts kept (1..10 for RemoteCount).
        dataset: dataset name for class-name normalisation.
        options: ``B2COptions`` (difficult/ignore filters), default B2C's.
    """
    from remoteclip_jax.data.b2c import count_objects
    rows = []
    for im in images:
        for category, n in count_objects(im.boxes, options, dataset).items():
            if min_count <= n <= max_count:
                rows.append({"image": im.path, "category": category, "count": int(n)})
    return rows


def dota_images(root: str) -> list:
    """``AnnotatedImage`` per DOTA label file (``root/labelTxt``) whose image exists."""
    from remoteclip_jax.data.readers import read_dota
    images = read_dota(as_path(root) / "labelTxt")
    return [im for im in images if as_path(im.path).is_file()]


def write_manifest(rows: Sequence[dict], out: str):
    """Write rows as JSONL with image paths relative to the manifest's folder (in a bucket:
    those below it; others keep their full URL)."""
    if is_remote(out):
        base = os.fspath(out).rsplit("/", 1)[0] + "/"
        relative = lambda image: image[len(base):] if image.startswith(base) else image
    else:
        base = pathlib.Path(out).resolve().parent
        relative = lambda image: os.path.relpath(pathlib.Path(image).resolve(), base)
    with atomic_write(out, encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({**r, "image": relative(r["image"])}) + "\n")


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="remoteclip-jax count-manifest",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Build a RemoteCount-style counting manifest from DOTA labels.")
    p.add_argument("--dota", required=True, help="folder with images/ and labelTxt/")
    p.add_argument("--out", required=True, help="manifest JSONL to write")
    p.add_argument("--min_count", type=int, default=1)
    p.add_argument("--max_count", type=int, default=10)
    p.add_argument("--exclude_difficult", action="store_true", help="drop DOTA difficult objects")
    a = p.parse_args(argv)
    from remoteclip_jax.data.b2c import B2COptions
    opts = B2COptions(include_difficult=not a.exclude_difficult)
    rows = manifest_rows(dota_images(a.dota), a.min_count, a.max_count, options=opts)
    write_manifest(rows, a.out)
    print(f"wrote {len(rows)} items to {a.out}")
    return 0
