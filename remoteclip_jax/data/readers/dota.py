"""DOTA label files: one `labelTxt/<image>.txt` per image.

Format (DOTA v1/v1.5/v2)::

    imagesource:GoogleEarth          optional header lines `key:value`
    gsd:0.146343590398
    x1 y1 x2 y2 x3 y3 x4 y4 class difficult
    ...

The four corners of an oriented box become the axis-aligned box that encloses them (see
`parse_dota_line` for the difficult flag 2 and zero-area boxes found on split chips). Labels may
exist for images that are not at hand (the shared samples hold 11 labels and 6 images): those
records keep the path where the image should be, and the converter counts it as missing.
"""
from __future__ import annotations

import math
import os

from remoteclip_jax.files import as_path
from remoteclip_jax.data.readers._paths import file_test, find_image, first_dir, image_size
from remoteclip_jax.data.readers.errors import AnnotationError, OnError, report
from remoteclip_jax.data.types import AnnotatedImage, Box


def parse_dota_line(text: str, path: str | os.PathLike, number: int, ann_prefix: str = ""
                    ) -> Box | None:
    """Parses one DOTA line: a Box, or None for a header line, a blank line or a zero-area box.

    The difficult flag is 0 or 1, or 2 on chips cut by DOTA's splitting tool (an object
    truncated by the chip border); 1 and 2 both give `difficult=True`. Zero-area boxes (objects
    cut down to a line by splitting) are dropped, as they show nothing.

    Args:
        text: the line.
        path: the file, for the error message.
        number: the 1-based line number, for the error message and the box's `ann_id`.
        ann_prefix: prefix of `ann_id` ("<image id>:"); the id is "<prefix><line number>".

    Raises:
        AnnotationError: `path:number: reason` for a malformed object line.
    """
    fields = text.split()
    if not fields:
        return None
    if len(fields) == 1 and ":" in fields[0]:
        return None  # "imagesource:GoogleEarth", "gsd:0.13", "gsd:null"
    if len(fields) not in (9, 10):
        raise AnnotationError(path, number, f"expected 8 coordinates, a class and a difficult "
                                            f"flag, got {len(fields)} fields")
    try:
        coords = [float(v) for v in fields[:8]]
    except ValueError:
        raise AnnotationError(path, number, f"non-numeric coordinate in {fields[:8]}") from None
    if not all(math.isfinite(v) for v in coords):
        raise AnnotationError(path, number, "non-finite coordinate")
    difficult = fields[9] if len(fields) == 10 else "0"
    if difficult not in ("0", "1", "2"):
        raise AnnotationError(path, number, f"difficult flag must be 0, 1 or 2, got {difficult!r}")
    xs, ys = coords[0::2], coords[1::2]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 <= x0 or y1 <= y0:
        return None  # an object cut down to a line by chip splitting: nothing left to describe
    # DOTA's splitting tool marks objects truncated by the chip border with 2: partial objects,
    # treated like difficult ones.
    return Box(fields[8], x0, y0, x1, y1, difficult=difficult != "0",
               ann_id=f"{ann_prefix}{number}")


def read_dota_file(path: str | os.PathLike, *, on_error: OnError | None = None) -> list[Box]:
    """Boxes of one DOTA label file (header lines skipped; see `parse_dota_line`)."""
    path = as_path(path)
    try:
        # Split on "\n" only, as editors number lines (a stray "\r" is no line break).
        lines = path.read_bytes().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(path, None, f"cannot read ({e})") from None
    boxes = []
    for number, text in enumerate(lines, start=1):
        try:
            box = parse_dota_line(text, path, number, ann_prefix=f"{path.stem}:")
        except AnnotationError as e:
            report(e, on_error)
            continue
        if box is not None:
            boxes.append(box)
    return boxes


def read_dota(label_dir: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
              source: str = "dota", on_error: OnError | None = None) -> list[AnnotatedImage]:
    """Reads every `*.txt` in a DOTA `labelTxt` directory.

    Args:
        label_dir: the directory of label files.
        image_dir: where the images are (default: `images/` next to `label_dir`).
        source: dataset name for provenance.
        on_error: None raises on the first malformed line; a callable receives each error and
            the line is skipped.

    Returns:
        One AnnotatedImage per label file, sorted by name, with `boxes`; `width`/`height` are
        read from the image header when the image exists (0 otherwise).

    Raises:
        AnnotationError: `file:line: reason` for a malformed line, or a missing directory.
    """
    label_dir = as_path(label_dir)
    if not label_dir.is_dir():
        raise AnnotationError(label_dir, None, "not a directory of DOTA label files")
    if image_dir is None:
        image_dir = first_dir([label_dir.parent / "images", label_dir.parent / "image"]) \
            or label_dir.parent / "images"
    image_dir = as_path(image_dir)
    is_file = file_test(image_dir)  # one listing of the folder in a bucket
    images = []
    for label_file in sorted(label_dir.glob("*.txt")):
        stem = label_file.stem
        image_path = find_image(image_dir, stem, is_file)
        width, height = image_size(image_path) if image_path else (0, 0)
        images.append(AnnotatedImage(
            path=str(image_path or image_dir / f"{stem}.png"), width=width, height=height,
            boxes=read_dota_file(label_file, on_error=on_error), source=source, image_id=stem))
    return images
