"""AU-AIR annotations: one `annotations.json` for all frames (Bozcan and Kayacan, ICRA 2020).

Layout of the released file (as public AU-AIR converters read it, e.g. monurcan/datasetprocessors
non_generic/auair_to_yolo.py)::

    {"info": {...}, "categories": ["Human", "Car", "Truck", "Van", "Motorbike", "Bicycle", "Bus",
     "Trailer"],
     "annotations": [{"image_name": "frame_20190829091111_x_0001973.jpg", "image_width:": 1920,
                      "image_height": 1080, "bbox": [{"top": 10, "left": 20, "height": 30,
                      "width": 40, "class": 1}, ...], ...}, ...]}

The released file spells the width key `"image_width:"` (with the colon); both spellings are
accepted. `class` indexes `categories`.
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

# AU-AIR's eight classes, in `class` index order (used when the file has no "categories").
CATEGORIES = ("Human", "Car", "Truck", "Van", "Motorbike", "Bicycle", "Bus", "Trailer")


def _entry_boxes(entry: dict[str, Any], where: str, categories: list[str],
                 path: pathlib.Path) -> list[Box]:
    boxes = []
    raw = entry.get("bbox", [])
    if not isinstance(raw, list):
        raise AnnotationError(path, None, f"{where}: 'bbox' must be a list")
    for k, item in enumerate(raw):
        try:
            left, top, width, height = (float(item[key]) for key in
                                        ("left", "top", "width", "height"))
            index = item["class"]
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(path, None, f"{where}.bbox[{k}]: needs numeric 'left', "
                                              "'top', 'width', 'height' and a 'class'") from None
        if not all(math.isfinite(v) for v in (left, top, width, height)):
            raise AnnotationError(path, None, f"{where}.bbox[{k}]: non-finite coordinate")
        if not isinstance(index, int) or not 0 <= index < len(categories):
            raise AnnotationError(path, None, f"{where}.bbox[{k}]: class {index!r} is not an "
                                              f"index into {len(categories)} categories")
        if width <= 0 or height <= 0:
            raise AnnotationError(path, None, f"{where}.bbox[{k}]: degenerate box "
                                              f"({width} x {height})")
        boxes.append(Box(categories[index], left, top, left + width, top + height,
                         ann_id=f"{entry['image_name']}:{k}"))
    return boxes


def read_auair(path: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
               source: str = "auair", on_error: OnError | None = None) -> list[AnnotatedImage]:
    """Reads AU-AIR's `annotations.json`.

    Args:
        path: the JSON file.
        image_dir: the frames (default: `images/` next to the JSON, else its directory).
        source: dataset name for provenance.
        on_error: None raises on the first malformed entry; a callable receives each error and
            the entry is skipped.

    Returns:
        One AnnotatedImage per entry, in file order.

    Raises:
        AnnotationError: invalid JSON, no `annotations` list, or (unless skipped) a malformed
            entry, named as `annotations[i]`.
    """
    path = as_path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise AnnotationError(path, None, "expected an object with an 'annotations' list "
                                          "(AU-AIR annotations.json)")
    categories = data.get("categories") or list(CATEGORIES)
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise AnnotationError(path, None, "'categories' must be a list of class names")
    if image_dir is None:
        image_dir = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    image_dir = as_path(image_dir)
    images = []
    for i, entry in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        try:
            if not isinstance(entry, dict) or not isinstance(entry.get("image_name"), str):
                raise AnnotationError(path, None, f"{where}: missing 'image_name'")
            width = entry.get("image_width", entry.get("image_width:", 0))
            height = entry.get("image_height", 0)
            boxes = _entry_boxes(entry, where, categories, path)
        except AnnotationError as e:
            report(e, on_error)
            continue
        name = entry["image_name"]
        images.append(AnnotatedImage(path=str(image_dir / name), width=int(width or 0),
                                     height=int(height or 0), boxes=boxes, source=source,
                                     image_id=pathlib.Path(name).stem))
    return images
