"""Scene-classification datasets laid out as one sub-folder per class (UCM, AID, RESISC45, ...)."""
from __future__ import annotations

import os
import pathlib

from remoteclip_jax.data.readers._paths import IMAGE_EXTENSIONS
from remoteclip_jax.data.readers.errors import AnnotationError
from remoteclip_jax.data.types import AnnotatedImage


def read_image_folder(root: str | os.PathLike, *, source: str = "",
                      extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[AnnotatedImage]:
    """Lists `root/<class>/<image>` as labelled images.

    Args:
        root: the dataset directory; each sub-directory is a class, named as the dataset names
            it (AID's "BaseballField"; normalise with `classnames.normalize_class_name`).
        source: dataset name for provenance (default: the directory's name).
        extensions: image file suffixes to take (case-insensitive); other files are ignored.

    Returns:
        AnnotatedImages with `label` (the folder name) and `image_id` (`<class>/<file>`),
        sorted by class, then file name.

    Raises:
        AnnotationError: `root` is not a directory or holds no class folder with images.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise AnnotationError(root, None, "not a directory (expected one sub-folder per class)")
    source = source or root.name
    wanted = {e.lower() for e in extensions}
    images = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(class_dir.iterdir()):
            if file.is_file() and file.suffix.lower() in wanted:
                images.append(AnnotatedImage(path=str(file), label=class_dir.name, source=source,
                                             image_id=f"{class_dir.name}/{file.name}"))
    if not images:
        raise AnnotationError(root, None, "no images found in class sub-folders "
                                          f"(extensions {sorted(wanted)})")
    return images
