"""Evaluation dataset loading: caption files for retrieval, image folders for classification.

Retrieval formats, chosen by file extension:

* ``.json``: Karpathy-style (RSICD, RSITMD, UCM, Sydney): ``images[]`` with ``filename``,
  optional ``filepath``, ``split``, ``sentences[].raw``.
* ``.jsonl``: one object per image with ``image`` (relative to the file's folder), ``captions``,
  ``split`` (the shared ``rsicd_aid`` files).
* ``.csv``: GeoRSCLIP's ``filename,title`` files, one row per caption (no split column).

An image is looked up as ``<dir>/<filepath>/<filename>`` for ``dir`` in (the entry's ``images``
root, the caption file's folder, that folder's parent), then as ``<dir>/<filename>`` in the same
order; the first existing file wins (the shared ``rsicd_aid`` files give paths relative to the
data root, the parent of their folder).

Classification: ``root/<class>/<image>`` folders; classes in sorted folder order.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import pathlib

from remoteclip_jax.evaluate.features import EvalDataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def _resolve(candidates: list[pathlib.Path], skip_missing: bool):
    for c in candidates:
        if c.is_file():
            return str(c)
    if skip_missing:
        return None
    also = f" (also tried {', '.join(map(str, candidates[1:]))})" if len(candidates) > 1 else ""
    raise EvalDataError(f"{candidates[0]}: image not found{also}")


def _read_records(path: str) -> list[dict]:
    """-> [{"filename", "filepath", "split", "captions"}] in file order."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise EvalDataError(f"{path}: caption file not found")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            return [{"filename": im["filename"], "filepath": im.get("filepath", ""),
                     "split": im.get("split", ""), "captions": [s["raw"] for s in im.get("sentences", [])]}
                    for im in data["images"]]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise EvalDataError(f"{path}: not a Karpathy-style caption JSON ({type(e).__name__}: {e})") from None
    if suffix == ".jsonl":
        out = []
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    out.append({"filename": r["image"], "filepath": "", "split": r.get("split", ""),
                                "captions": list(r["captions"])})
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise EvalDataError(f"{path}:{lineno}: expected JSON with image and captions ({e})") from None
        return out
    if suffix == ".csv":
        groups: dict[str, list[str]] = {}
        with open(p, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"filename", "title"} <= set(reader.fieldnames):
                raise EvalDataError(f"{path}:1: expected a header with filename,title")
            for row in reader:
                groups.setdefault(row["filename"], []).append(row["title"])
        return [{"filename": k, "filepath": "", "split": "", "captions": v} for k, v in groups.items()]
    raise EvalDataError(f"{path}: unknown caption format {suffix!r} (use .json, .jsonl or .csv)")


def load_retrieval(path: str, images: str = "", split: str = "test", skip_missing: bool = False):
    """Images and captions of one split.

    Args:
        path: caption file (.json Karpathy, .jsonl, .csv GeoRSCLIP).
        images: image root (default: the caption file's folder).
        split: "test", "val", "train" or "all" (CSV files have no split: use "all").
        skip_missing: drop images whose file is absent (for partial local copies) instead of failing.

    Returns:
        (image_paths, captions, text_to_image).

    Raises:
        EvalDataError: missing file, no images in ``split``, missing image, no captions.
    """
    records = _read_records(path)
    base = pathlib.Path(path).parent
    root = pathlib.Path(images) if images else base
    if split != "all":
        present = sorted({r["split"] or "(none)" for r in records})
        records = [r for r in records if r["split"] == split]
        if not records:
            raise EvalDataError(f"{path}: no images in split {split!r} (splits present: {', '.join(present)})")
    paths, captions, t2i = [], [], []
    blank = 0
    for r in records:
        fp, fn = r["filepath"], r["filename"]
        cands = [d / fp / fn for d in (root, base, base.parent)] + [d / fn for d in (root, base, base.parent)]
        cands = list(dict.fromkeys(cands))
        img = _resolve(cands, skip_missing)
        if img is None:
            continue
        for c in r["captions"]:
            if not str(c).strip():
                blank += 1
                continue
            captions.append(str(c))
            t2i.append(len(paths))
        paths.append(img)
    if blank:
        logging.warning("%s: skipped %d blank captions", path, blank)
    if not paths or not captions:
        raise EvalDataError(f"{path}: no images with captions in split {split!r}")
    return paths, captions, t2i


def load_image_folder(root: str, classes=None, max_per_class: int = 0):
    """Images of a ``root/<class>/<image>`` folder.

    Args:
        root: the folder.
        classes: optional subset of class folder names to use (quick runs).
        max_per_class: >0 keeps only the first N files (sorted by name) of each class (quick runs).

    Returns:
        (paths, labels as class indices, class folder names in sorted order).

    Raises:
        EvalDataError: missing root, no class folders, or a class folder without images.
    """
    r = pathlib.Path(root)
    if not r.is_dir():
        raise EvalDataError(f"{root}: image folder not found")
    found = sorted(d.name for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes:
        missing = sorted(set(classes) - set(found))
        if missing:
            raise EvalDataError(f"{root}: class folders not found: {', '.join(missing)}")
        found = [c for c in found if c in set(classes)]
    classes = found
    if not classes:
        raise EvalDataError(f"{root}: no class folders (expected root/<class>/<image>)")
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(f for f in os.listdir(r / c) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise EvalDataError(f"{r / c}: class folder has no images")
        if max_per_class > 0:
            files = files[:max_per_class]
        paths += [str(r / c / f) for f in files]
        labels += [i] * len(files)
    return paths, labels, classes
