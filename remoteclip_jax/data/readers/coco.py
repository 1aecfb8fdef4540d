"""COCO instance JSON (NWPU VHR-10, SSDD, iSAID instances, and many others).

Uses `images[]` (`id`, `file_name`, `width`, `height`), `categories[]` (`id`, `name`) and
`annotations[]` (`id`, `image_id`, `category_id`, `bbox` = [x, y, width, height], `iscrowd`).
Images without annotations are returned with no boxes; the converter skips and counts them.
Zero-area boxes are dropped; negative sizes are errors.
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Any

from remoteclip_jax.files import as_path
from remoteclip_jax.data.readers.captions import _load_json
from remoteclip_jax.data.readers.errors import AnnotationError, OnError, report
from remoteclip_jax.data.types import AnnotatedImage, Box


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_coco(json_path: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
              source: str = "", include_crowd: bool = False,
              on_error: OnError | None = None) -> list[AnnotatedImage]:
    """Reads a COCO-format instance annotation file.

    Args:
        json_path: the JSON file.
        image_dir: directory holding the `file_name`s (default: the JSON's directory).
        source: dataset name for provenance (default: the JSON's stem).
        include_crowd: keep `iscrowd=1` annotations (one box around a crowd of objects; off by
            default because B2C would count the crowd as one object).
        on_error: None raises on a malformed annotation; a callable receives each error and the
            annotation is skipped.

    Returns:
        One AnnotatedImage per entry of `images`, in file order, with `boxes` (ann_id = the
        annotation's `id`) and `width`/`height` from the JSON.

    Raises:
        AnnotationError: invalid JSON (with its line), missing top-level lists, or a malformed
            image/annotation entry (named as `images[i]` / `annotations[i]`).
    """
    json_path = as_path(json_path)
    data = _load_json(json_path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise AnnotationError(json_path, None, f"not COCO: no '{key}' list")
    image_dir = as_path(image_dir) if image_dir is not None else json_path.parent
    source = source or json_path.stem

    categories: dict[Any, str] = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) \
                or not isinstance(cat.get("name"), str):
            raise AnnotationError(json_path, None, f"categories[{i}]: needs 'id' and 'name'")
        categories[cat["id"]] = cat["name"]

    images: dict[Any, AnnotatedImage] = {}
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not _is_id(entry.get("id")) \
                or not isinstance(entry.get("file_name"), str):
            report(AnnotationError(json_path, None, f"images[{i}]: needs 'id' and 'file_name'"),
                   on_error)
            continue
        width, height = entry.get("width", 0), entry.get("height", 0)
        if not (isinstance(width, int) and isinstance(height, int)) or width < 0 or height < 0:
            report(AnnotationError(json_path, None, f"images[{i}] ({entry['file_name']}): "
                                                    f"bad size {width}x{height}"), on_error)
            continue
        images[entry["id"]] = AnnotatedImage(
            path=str(image_dir / entry["file_name"]), width=width, height=height, source=source,
            image_id=str(entry["id"]))

    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]" + (f" (id {ann['id']})" if isinstance(ann, dict)
                                       and "id" in ann else "")
        try:
            box = _annotation_box(ann, categories, images, json_path, where)
        except AnnotationError as e:
            report(e, on_error)
            continue
        if box is None or (ann.get("iscrowd", 0) and not include_crowd):
            continue
        images[ann["image_id"]].boxes.append(box)
    return list(images.values())


def _annotation_box(ann: Any, categories: dict, images: dict, path: pathlib.Path,
                    where: str) -> Box | None:
    if not isinstance(ann, dict):
        raise AnnotationError(path, None, f"{where}: not an object")
    if not _is_id(ann.get("image_id")) or ann["image_id"] not in images:
        raise AnnotationError(path, None, f"{where}: unknown image_id {ann.get('image_id')!r}")
    if not _is_id(ann.get("category_id")) or ann["category_id"] not in categories:
        raise AnnotationError(path, None,
                              f"{where}: unknown category_id {ann.get('category_id')!r}")
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
        raise AnnotationError(path, None, f"{where}: bbox must be 4 finite numbers, got {bbox!r}")
    x, y, w, h = bbox
    if w < 0 or h < 0:
        raise AnnotationError(path, None, f"{where}: bbox has negative size {w}x{h}")
    if w == 0 or h == 0:
        return None  # a zero-area box marks nothing visible; dropped like DOTA's
    return Box(categories[ann["category_id"]], float(x), float(y), float(x + w), float(y + h),
               ann_id=str(ann["id"]) if "id" in ann else where)
