"""Shared pieces of the line-based annotation readers: reading lines, parsing numbers, boxes."""
from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence

from remoteclip_jax.files import as_path
from remoteclip_jax.data.readers.errors import AnnotationError


def read_lines(path: str | os.PathLike) -> list[str]:
    """The file's lines, split on "\\n" only (as editors number them); UTF-8 or raises."""
    try:
        return as_path(path).read_bytes().decode("utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(path, None, f"cannot read ({e})") from None


def parse_numbers(fields: Sequence[str], path: str | os.PathLike, number: int,
                  what: str) -> list[float]:
    """Finite floats from `fields`, or `path:number: non-numeric <what> ...`."""
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise AnnotationError(path, number, f"non-numeric {what} in {list(fields)}") from None
    if not all(math.isfinite(v) for v in values):
        raise AnnotationError(path, number, f"non-finite {what} in {list(fields)}")
    return values


def check_box(x0: float, y0: float, x1: float, y1: float, path: str | os.PathLike,
              number: int | None) -> None:
    """Raises `path:number: degenerate box` unless x0 < x1 and y0 < y1."""
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(path, number, f"degenerate box ({x0}, {y0}, {x1}, {y1})")


def label_files(label_dir: str | os.PathLike, suffix: str, kind: str) -> list[pathlib.Path]:
    """Sorted `*<suffix>` files of a directory, or an AnnotationError naming the directory."""
    label_dir = as_path(label_dir)
    if not label_dir.is_dir():
        raise AnnotationError(label_dir, None, f"not a directory of {kind} annotation files")
    return sorted(p for p in label_dir.iterdir() if p.name.endswith(suffix) and p.is_file())


def read_per_image_txt(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike | None,
                       parse_line, *, kind: str, source: str, on_error,
                       image_dir_names: Sequence[str] = ("images",),
                       default_suffix: str = ".jpg"):
    """Reads a directory with one text annotation file per image (VisDrone, CARPK, LEVIR).

    Args:
        annotation_dir: the directory of `.txt` files.
        image_dir: where the images are (default: the first of `image_dir_names` found next to
            `annotation_dir`, then `annotation_dir` itself).
        parse_line: `(text, path, number, ann_prefix) -> Box | None`, raising AnnotationError.
        kind: format name for errors.
        source: dataset name for provenance.
        on_error: None raises on the first malformed line; a callable receives each error and
            the line is skipped.
        image_dir_names: directory names tried next to the annotations.
        default_suffix: image extension assumed when the image is not found.

    Returns:
        One AnnotatedImage per file, sorted by name; width/height from the image header when
        the image exists (0 otherwise; the converter counts missing images).
    """
    from remoteclip_jax.data.readers._paths import file_test, find_image, first_dir, image_size
    from remoteclip_jax.data.readers.errors import report
    from remoteclip_jax.data.types import AnnotatedImage

    files = label_files(annotation_dir, ".txt", kind)
    parent = as_path(annotation_dir).parent
    if image_dir is None:
        image_dir = first_dir([parent / name for name in image_dir_names]) or \
            as_path(annotation_dir)
    image_dir = as_path(image_dir)
    is_file = file_test(image_dir)  # one listing of the folder in a bucket
    images = []
    for label_file in files:
        boxes = []
        for number, text in enumerate(read_lines(label_file), start=1):
            try:
                box = parse_line(text, label_file, number, f"{label_file.stem}:")
            except AnnotationError as e:
                report(e, on_error)
                continue
            if box is not None:
                boxes.append(box)
        image_path = find_image(image_dir, label_file.stem, is_file)
        width, height = image_size(image_path) if image_path else (0, 0)
        images.append(AnnotatedImage(
            path=str(image_path or image_dir / f"{label_file.stem}{default_suffix}"),
            width=width, height=height, boxes=boxes, source=source, image_id=label_file.stem))
    return images
