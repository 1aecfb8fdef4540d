"""Finding images that belong to annotation files."""
from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable, Iterable

from remoteclip_jax.data.images import IMAGE_EXTENSIONS
from remoteclip_jax.files import as_path, is_remote


def file_test(root) -> Callable[[pathlib.Path], bool]:
    """`path -> is it a file?` for paths below `root`; in a bucket from one listing per folder
    (cached), not one request per image and candidate name."""
    if not is_remote(root):
        return lambda path: path.is_file()

    @functools.lru_cache(maxsize=None)
    def names(folder) -> frozenset:
        return frozenset(c.name for c in folder.iterdir()) if folder.is_dir() else frozenset()
    return lambda path: path.name in names(path.parent)


def find_image(directory: pathlib.Path, stem: str,
               is_file: Callable[[pathlib.Path], bool] | None = None) -> pathlib.Path | None:
    """The image named `stem` with any known extension (either case) in `directory`, if any
    (`is_file`: a `file_test` shared by the calls of one reader)."""
    is_file = is_file or (lambda path: path.is_file())
    for ext in IMAGE_EXTENSIONS:
        for candidate in (directory / (stem + ext), directory / (stem + ext.upper())):
            if is_file(candidate):
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
