"""What the inference commands are pointed at, resolved to lists: images and class names.

Images come through the source registry (`remoteclip_jax.data.sources`): a folder (searched
recursively), a text file with one image path per line (relative paths are relative to the
list's folder), one image file, or ``KIND:PATH`` (``image_folder:AID`` gives each image its class
folder as label). Class names come from a comma-separated string, a text file with one name per
line, or a folder whose sub-folders are the classes (a scene-classification dataset's layout).
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

from remoteclip_jax.data import sources
from remoteclip_jax.data.readers.image_folder import read_list_file
from remoteclip_jax.data.types import AnnotatedImage
from remoteclip_jax.errors import ConfigError, DataError


def image_items(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[AnnotatedImage]:
    """The images a source (or a list of sources, concatenated) names, with their labels if any.

    Raises:
        DataError: a source that does not exist or names no image.
    """
    if not isinstance(source, (str, os.PathLike)):
        items = [im for s in source for im in image_items(s)]
        if not items:
            raise DataError("no images given")
        return items
    text = os.fspath(source)
    return list(sources.read_annotated(sources.parse_spec(text), text))


def list_images(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The image paths a source names, in a stable order (see `image_items`). Paths a list file
    names are returned even when absent or unreadable: the encoder reports those as skipped."""
    return [im.path for im in image_items(source)]


def parse_class_names(spec: str | os.PathLike | Iterable[str]) -> list[str]:
    """Class names from `--classes`.

    Args:
        spec: "a,b,c"; a text file with one name per line; a folder whose sub-folders are the
            classes (sorted, as scene datasets are labelled); or a list of names.

    Returns:
        The names, in order, each stripped.

    Raises:
        ConfigError: fewer than two names, empty or repeated names.
    """
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if os.path.isdir(text):
            names = sorted(d.name for d in os.scandir(text) if d.is_dir() and not d.name.startswith("."))
            where = f"{text} (class sub-folders)"
        elif os.path.isfile(text):
            names = read_list_file(text)
            where = text
        else:
            names = [n.strip() for n in text.split(",")]
            where = f"--classes {text!r}"
    else:
        names = [str(n).strip() for n in spec]
        where = "class names"
    if any(not n for n in names):
        raise ConfigError(f"{where}: an empty class name (separate names with single commas)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: class names given twice: {', '.join(repeated)}")
    if len(names) < 2:
        raise ConfigError(f"{where}: {len(names)} class name(s); zero-shot labels need at least two "
                         "(e.g. --classes \"forest,river,airport\")")
    return names
