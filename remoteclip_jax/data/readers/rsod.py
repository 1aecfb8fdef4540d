"""RSOD-Dataset: four class folders, each with VOC-style XML (Long et al., IEEE TGRS 2017).

Layout of the release (github.com/RSIA-LIESMARS-WHU/RSOD-Dataset-)::

    RSOD/aircraft/JPEGImages/aircraft_1.jpg     RSOD/aircraft/Annotation/xml/aircraft_1.xml
    RSOD/oiltank/...   RSOD/overpass/...   RSOD/playground/...

Each XML is a PASCAL VOC annotation (`<object><name>aircraft</name><bndbox>...`), read with the
VOC reader. Some folders name the image directory `JPEGImages`, others `JPEGimages`; both work.
"""
from __future__ import annotations

import os

from remoteclip_jax.files import as_path
from remoteclip_jax.data.readers._paths import first_dir
from remoteclip_jax.data.readers.errors import AnnotationError, OnError
from remoteclip_jax.data.readers.voc import read_voc
from remoteclip_jax.data.types import AnnotatedImage

CLASS_FOLDERS = ("aircraft", "oiltank", "overpass", "playground")


def read_rsod(root: str | os.PathLike, *, source: str = "rsod",
              on_error: OnError | None = None) -> list[AnnotatedImage]:
    """Reads every class folder of RSOD under `root` (or one class folder itself).

    Returns:
        The images of all folders, folder by folder, each sorted by name.

    Raises:
        AnnotationError: `root` holds no folder with `Annotation/xml`.
    """
    root = as_path(root)
    folders = [root] if (root / "Annotation" / "xml").is_dir() else \
        sorted(p for p in root.iterdir() if (p / "Annotation" / "xml").is_dir()) \
        if root.is_dir() else []
    if not folders:
        raise AnnotationError(root, None, "no RSOD class folder (with Annotation/xml) found; "
                                          f"expected {', '.join(CLASS_FOLDERS)}")
    images = []
    for folder in folders:
        image_dir = first_dir([folder / "JPEGImages", folder / "JPEGimages",
                               folder / "images"]) or folder
        images.extend(read_voc(folder / "Annotation" / "xml", image_dir, source=source,
                               on_error=on_error))
    return images
