"""Evaluation dataset loading on top of ``remoteclip_jax.data.readers``.

Retrieval caption files, chosen by extension (``readers.read_captions``): ``.json`` Karpathy-style
(RSICD, RSITMD, UCM, Sydney), ``.jsonl`` (the shared ``rsicd_aid`` files) and ``.csv``
(GeoRSCLIP's ``filename,title``, no split column: use ``split="all"``). Image paths resolve as
the readers do, relative to the entry's ``images`` root when given. Blank captions are dropped.

Classification: ``root/<class>/<image>`` folders (``readers.read_image_folder``), classes in
sorted folder order. Reader errors (``path:line: reason``) surface as ``EvalDataError``.
"""
from __future__ import annotations

import os
import pathlib

from remoteclip_jax.data.readers import AnnotationError, read_captions, read_image_folder
from remoteclip_jax.evaluate.features import EvalDataError


def load_retrieval(path: str, images: str = "", split: str = "test", skip_missing: bool = False):
    """Images and captions of one split.

    Args:
        path: caption file (.json Karpathy, .jsonl, .csv GeoRSCLIP).
        images: image root (default: the readers' resolution relative to the caption file).
        split: "test", "val", "train" or "all".
        skip_missing: drop images whose file is absent (partial local copies) instead of failing.

    Returns:
        (image_paths, captions, text_to_image).

    Raises:
        EvalDataError: unreadable/malformed file, no images in ``split``, a missing image, or
            no captions at all.
    """
    if not os.path.isfile(path):
        raise EvalDataError(f"{path}: caption file not found")
    kwargs = {"image_root": images} if images else {}
    try:
        records = read_captions(path, None, **kwargs)
    except AnnotationError as e:
        raise EvalDataError(str(e)) from None
    if split != "all":
        present = sorted({r.split or "(none)" for r in records})
        records = [r for r in records if r.split == split]
        if not records:
            raise EvalDataError(f"{path}: no images in split {split!r} (splits present: {', '.join(present)})")
    paths, captions, t2i = [], [], []
    for r in records:
        if not os.path.isfile(r.path):
            if skip_missing:
                continue
            raise EvalDataError(f"{r.path}: image not found (listed in {path})")
        for c in r.captions:
            captions.append(c)
            t2i.append(len(paths))
        paths.append(r.path)
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
        EvalDataError: missing root, no class folders, a class folder without images.
    """
    r = pathlib.Path(root)
    if not r.is_dir():
        raise EvalDataError(f"{root}: image folder not found")
    try:
        images = read_image_folder(r)
    except AnnotationError as e:
        raise EvalDataError(str(e)) from None
    found = sorted(d.name for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes:
        missing = sorted(set(classes) - set(found))
        if missing:
            raise EvalDataError(f"{root}: class folders not found: {', '.join(missing)}")
        found = [c for c in found if c in set(classes)]
    by_class: dict[str, list[str]] = {c: [] for c in found}
    for im in images:
        if im.label in by_class:
            by_class[im.label].append(im.path)
    paths, labels = [], []
    for i, c in enumerate(found):
        files = sorted(by_class[c], key=os.path.basename)
        if not files:
            raise EvalDataError(f"{r / c}: class folder has no images")
        if max_per_class > 0:
            files = files[:max_per_class]
        paths += files
        labels += [i] * len(files)
    return paths, labels, found
