"""CARPK (and PUCPR+) car-counting annotations: one `Annotations/<image>.txt` per `Images/` file.

Format (the CARPK release, Hsieh, Lin and Hsu, "Drone-based Object Counting by Spatially
Regularized Regional Proposal Network", ICCV 2017; its README describes one car per line)::

    x1 y1 x2 y2 class

with corner coordinates in pixels and class 1 = car (the only class).
"""
from __future__ import annotations

import os

from remoteclip_jax.data.readers._text import check_box, parse_numbers, read_per_image_txt
from remoteclip_jax.data.readers.errors import AnnotationError, OnError
from remoteclip_jax.data.types import AnnotatedImage, Box

CATEGORIES = {1: "car"}


def parse_carpk_line(text: str, path: str | os.PathLike, number: int, ann_prefix: str = ""
                     ) -> Box | None:
    """One CARPK line: a Box, or None for a blank line.

    Raises:
        AnnotationError: `path:number: reason` for a malformed line or an unknown class.
    """
    fields = text.split()
    if not fields:
        return None
    if len(fields) != 5:
        raise AnnotationError(path, number, f"expected 'x1 y1 x2 y2 class', got {len(fields)} "
                                            "fields")
    x0, y0, x1, y1, category = parse_numbers(fields, path, number, "field")
    if int(category) not in CATEGORIES or category != int(category):
        raise AnnotationError(path, number, f"unknown class {fields[4]!r} (CARPK has 1 = car)")
    check_box(x0, y0, x1, y1, path, number)
    return Box(CATEGORIES[int(category)], x0, y0, x1, y1, ann_id=f"{ann_prefix}{number}")


def read_carpk(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike | None = None,
               *, source: str = "carpk", on_error: OnError | None = None
               ) -> list[AnnotatedImage]:
    """Reads CARPK's `Annotations/` directory (images default to `Images/` next to it).

    Returns:
        One AnnotatedImage per annotation file, sorted by name, with "car" boxes.
    """
    return read_per_image_txt(annotation_dir, image_dir, parse_carpk_line, kind="CARPK",
                              source=source, on_error=on_error,
                              image_dir_names=("Images", "images"), default_suffix=".png")
