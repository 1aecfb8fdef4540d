"""What the inference commands are pointed at, resolved to lists: image paths and class names.

An image source is a folder (searched recursively), a text file with one image path per line, or a
single image file. Class names come from a comma-separated string, a text file with one name per
line, or a folder whose sub-folders are the classes (a scene-classification dataset's layout).
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

from remoteclip_jax.data.readers._paths import IMAGE_EXTENSIONS
from remoteclip_jax.errors import UserError

LIST_SUFFIXES = (".txt", ".lst")


class InputError(UserError, ValueError):
    """A path or value given to an inference command that cannot be used."""


def _read_lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines that are not `#` comments."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start}); "
                         "a list file holds one path or name per line") from None
    return [(i, s.strip()) for i, s in enumerate(lines, 1)
            if s.strip() and not s.strip().startswith("#")]


def _walk_images(root: str) -> list[str]:
    found = []
    for directory, subdirs, files in os.walk(root, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found += [os.path.join(directory, f) for f in files
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def list_images(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Resolves an image source to the image paths it names, in a stable order.

    Args:
        source: a folder (every image below it, sorted by path; hidden files and folders skipped),
            a `.txt`/`.lst` file with one image path per line (relative paths are taken relative
            to the list file's folder; blank lines and `#` comments skipped), one image file, or a
            list of any of these (concatenated, in order).

    Returns:
        Paths of the images. Paths named by a list file are returned even when the file is absent
        or unreadable: the encoder reports those as skipped.

    Raises:
        InputError: the source does not exist, or names no image at all.
    """
    if not isinstance(source, (str, os.PathLike)):
        paths = [p for s in source for p in list_images(s)]
        if not paths:
            raise InputError("no images given")
        return paths
    source = os.fspath(source)
    if os.path.isdir(source):
        paths = _walk_images(source)
        if not paths:
            raise InputError(f"{source}: no images found in this folder or below it (looked for "
                             f"{', '.join(IMAGE_EXTENSIONS)}); point the command at a folder of "
                             "images, an image file or a .txt list of image paths")
        return paths
    if not os.path.exists(source):
        raise InputError(f"{source}: no such file or folder (expected a folder of images, an "
                         "image file or a .txt list of image paths)")
    if os.path.splitext(source)[1].lower() in LIST_SUFFIXES:
        base = os.path.dirname(os.path.abspath(source))
        paths = [os.path.normpath(os.path.join(base, line)) for _, line in _read_lines(source)]
        if not paths:
            raise InputError(f"{source}: the list file names no image (expected one path per line)")
        return paths
    return [source]


def parse_class_names(spec: str | os.PathLike | Iterable[str]) -> list[str]:
    """Class names from `--classes`.

    Args:
        spec: "a,b,c"; a text file with one name per line; a folder whose sub-folders are the
            classes (sorted, as scene datasets are labelled); or a list of names.

    Returns:
        The names, in order, each stripped.

    Raises:
        InputError: fewer than two names, empty or repeated names.
    """
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if os.path.isdir(text):
            names = sorted(d.name for d in os.scandir(text) if d.is_dir() and not d.name.startswith("."))
            where = f"{text} (class sub-folders)"
        elif os.path.isfile(text):
            names = [line for _, line in _read_lines(text)]
            where = text
        else:
            names = [n.strip() for n in text.split(",")]
            where = f"--classes {text!r}"
    else:
        names = [str(n).strip() for n in spec]
        where = "class names"
    if any(not n for n in names):
        raise InputError(f"{where}: an empty class name (separate names with single commas)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{where}: class names given twice: {', '.join(repeated)}")
    if len(names) < 2:
        raise InputError(f"{where}: {len(names)} class name(s); zero-shot labels need at least two "
                         "(e.g. --classes \"forest,river,airport\")")
    return names
