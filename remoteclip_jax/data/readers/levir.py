"""LEVIR object detection annotations (airplanes, ships, oil tanks): one `.txt` per image.

LEVIR (Zou and Shi, "Random Access Memories: A New Paradigm for Target Detection in High
Resolution Aerial Remote Sensing Images", IEEE TIP 2018) ships 800x600 Google Earth images, each
with a same-named text file holding one object per line::

    class x1 y1 x2 y2

where class is 1 airplane, 2 ship, 3 oil tank (the three classes of the paper) and the box is
given by its corners. Files also come with commas between fields; both are accepted. Class names
are accepted in place of the ids.
"""
from __future__ import annotations

import os

from remoteclip_jax.data.readers._text import check_box, parse_numbers, read_per_image_txt
from remoteclip_jax.data.readers.errors import AnnotationError, OnError
from remoteclip_jax.data.types import AnnotatedImage, Box

# The ids carry no spelling of their own, so the names are plain English ("oil tank").
CATEGORIES = {1: "airplane", 2: "ship", 3: "oil tank"}
_NAMES = {name: name for name in CATEGORIES.values()} | {"plane": "airplane",
                                                         "oiltank": "oil tank"}


def parse_levir_line(text: str, path: str | os.PathLike, number: int, ann_prefix: str = ""
                     ) -> Box | None:
    """One LEVIR line: a Box, or None for a blank line.

    Raises:
        AnnotationError: `path:number: reason` for a malformed line or an unknown class.
    """
    fields = text.replace(",", " ").split()
    if not fields:
        return None
    if len(fields) != 5:
        raise AnnotationError(path, number, f"expected 'class x1 y1 x2 y2', got {len(fields)} "
                                            "fields")
    raw = fields[0]
    if raw.lower() in _NAMES:
        category = _NAMES[raw.lower()]
    elif raw.isdigit() and int(raw) in CATEGORIES:
        category = CATEGORIES[int(raw)]
    else:
        raise AnnotationError(path, number, f"unknown class {raw!r} (LEVIR has 1 airplane, "
                                            "2 ship, 3 oil tank)")
    x0, y0, x1, y1 = parse_numbers(fields[1:], path, number, "coordinate")
    check_box(x0, y0, x1, y1, path, number)
    return Box(category, x0, y0, x1, y1, ann_id=f"{ann_prefix}{number}")


def read_levir(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike | None = None,
               *, source: str = "levir", on_error: OnError | None = None
               ) -> list[AnnotatedImage]:
    """Reads a LEVIR directory of `.txt` files (images: `images/` next to it, else the same
    directory, as the release keeps images and labels side by side).

    Returns:
        One AnnotatedImage per annotation file, sorted by name.
    """
    return read_per_image_txt(annotation_dir, image_dir, parse_levir_line, kind="LEVIR",
                              source=source, on_error=on_error,
                              image_dir_names=("images", "imageWithLabel"))
