"""Finding images that belong to annotation files."""
from __future__ import annotations

import pathlib
from collections.abc import Iterable

from remoteclip_jax.data.images import IMAGE_EXTENSIONS
from remoteclip_jax.files import as_path


def find_image(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    """The image named `stem` with any known extension (either case) in `directory`, if any."""
    for ext in IMAGE_EXTENSIONS:
        for candidate in (directory / (stem + ext), directory / (stem + ext.upper())):
            if candidate.is_file():
                return candidate
    return None


def first_dir(candidates: Iterable[pathlib.Path]) -> pathlib.Path | None:
    """The first candidate that is an existing directory."""
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def image_size(path: pathlib.Path) -> tuple[int, int]:
    """(width, height) from the image header; (0, 0) when unreadable (the converter reports it)."""
    from PIL import Image

    try:
        with as_path(path).open("rb") as f, Image.open(f) as im:  # local or in a bucket
            return im.size
    except Exception:  # PIL raises many types; an unreadable image is counted later, not here.
        return 0, 0
