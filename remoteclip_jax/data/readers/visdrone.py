"""VisDrone DET annotations: one `annotations/<image>.txt` per image in `images/`.

Format (VisDrone2019-DET toolkit README, github.com/VisDrone/VisDrone2018-DET-toolkit), one
object per line, comma-separated::

    <bbox_left>,<bbox_top>,<bbox_width>,<bbox_height>,<score>,<object_category>,<truncation>,<occlusion>

In ground truth, `score` 1 means the box is used in evaluation and 0 that it is ignored. Categories:
0 ignored regions, 1 pedestrian, 2 people, 3 bicycle, 4 car, 5 van, 6 truck, 7 tricycle,
8 awning-tricycle, 9 bus, 10 motor, 11 others. Truncation 0 none, 1 partial; occlusion 0 none,
1 partial (1-50%), 2 heavy (50-100%). Ignored regions (0), "others" (11) and score-0 boxes name
no object and are skipped; heavily occluded objects are flagged difficult. Some released files end
lines with a trailing comma, which is accepted.
"""
from __future__ import annotations

import os

from remoteclip_jax.data.readers._text import check_box, parse_numbers, read_per_image_txt
from remoteclip_jax.data.readers.errors import AnnotationError, OnError
from remoteclip_jax.data.types import AnnotatedImage, Box

# VisDrone2019-DET toolkit README, "object_category" (0 and 11 are not objects: skipped).
CATEGORIES = {1: "pedestrian", 2: "people", 3: "bicycle", 4: "car", 5: "van", 6: "truck",
              7: "tricycle", 8: "awning-tricycle", 9: "bus", 10: "motor"}
SKIPPED_CATEGORIES = {0: "ignored region", 11: "others"}


def parse_visdrone_line(text: str, path: str | os.PathLike, number: int, ann_prefix: str = ""
                        ) -> Box | None:
    """One VisDrone DET line: a Box, or None for a blank line, an ignored region or a score-0 box.

    Raises:
        AnnotationError: `path:number: reason` for a malformed line.
    """
    fields = [f.strip() for f in text.strip().split(",")]
    if fields and fields[-1] == "":
        fields = fields[:-1]  # trailing comma
    if not fields:
        return None
    if len(fields) != 8:
        raise AnnotationError(path, number, f"expected 8 comma-separated fields (left, top, width, "
                                            f"height, score, category, truncation, occlusion), "
                                            f"got {len(fields)}")
    left, top, width, height, score, category, truncation, occlusion = parse_numbers(
        fields, path, number, "field")
    category = int(category)
    if category in SKIPPED_CATEGORIES or score == 0:
        return None
    if category not in CATEGORIES:
        raise AnnotationError(path, number, f"unknown category {category} (expected 0-11)")
    check_box(left, top, left + width, top + height, path, number)
    return Box(CATEGORIES[category], left, top, left + width, top + height,
               difficult=occlusion >= 2, ann_id=f"{ann_prefix}{number}")


def read_visdrone(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                  *, source: str = "visdrone", on_error: OnError | None = None
                  ) -> list[AnnotatedImage]:
    """Reads a VisDrone DET split (`VisDrone2019-DET-train/annotations`).

    Args:
        annotation_dir: the directory of `.txt` files.
        image_dir: the images (default: `images/` next to `annotation_dir`).
        source: dataset name for provenance.
        on_error: None raises on the first malformed line; a callable receives each error and
            the line is skipped.

    Returns:
        One AnnotatedImage per annotation file, sorted by name, with boxes named as in
        `CATEGORIES`; width/height from the image header when it exists.
    """
    return read_per_image_txt(annotation_dir, image_dir, parse_visdrone_line, kind="VisDrone",
                              source=source, on_error=on_error)
