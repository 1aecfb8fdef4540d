"""Plain images: class folders (UCM, AID, RESISC45, ...), any folder, a list file, one image."""
from __future__ import annotations

import os

from remoteclip_jax.files import as_path, is_remote, relative_files
from remoteclip_jax.data.images import IMAGE_EXTENSIONS
from remoteclip_jax.errors import AnnotationError, DataError
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
    root = as_path(root)
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


LIST_SUFFIXES = (".txt", ".lst")


def read_list_file(path: str | os.PathLike) -> list[str]:
    """The non-blank lines of a text file that are not `#` comments, stripped."""
    try:
        lines = as_path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start}); "
                        "a list file holds one path or name per line") from None
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


def read_images(path: str | os.PathLike) -> list[AnnotatedImage]:
    """The images a folder, a list file or an image file names, in a stable order.

    Args:
        path: a folder (every image below it, sorted by path; hidden files and folders
            skipped), a `.txt`/`.lst` file with one image path per line (relative paths are
            relative to the list file's folder; blank lines and `#` comments skipped), or one
            image file. Paths a list names are returned even when absent or unreadable: readers
            report those as skipped.

    Raises:
        DataError: the path does not exist, or names no image at all.
    """
    path = os.fspath(path)
    if as_path(path).is_dir():
        paths = _image_files(path)
        if not paths:
            raise DataError(f"{path}: no images found in this folder or below it (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)}); point the command at a folder of "
                            "images, an image file or a .txt list of image paths")
    elif not as_path(path).exists():
        raise DataError(f"{path}: no such file or folder (expected a folder of images, an image "
                        "file or a .txt list of image paths)")
    elif os.path.splitext(path)[1].lower() in LIST_SUFFIXES:
        lines = read_list_file(path)
        if is_remote(path):  # a list in a bucket: its relative names are beside it there
            base = path.rsplit("/", 1)[0]
            paths = [line if is_remote(line) else f"{base}/{line}" for line in lines]
        else:
            base = os.path.dirname(os.path.abspath(path))
            paths = [os.path.normpath(os.path.join(base, line)) for line in lines]
        if not paths:
            raise DataError(f"{path}: the list file names no image (expected one path per line)")
    else:
        paths = [path]
    return [AnnotatedImage(path=p, image_id=os.path.basename(p)) for p in paths]


def _image_files(folder: str) -> list[str]:
    """Every image file below `folder`, sorted by path; hidden files and folders skipped."""
    def wanted(name: str) -> bool:
        parts = name.split("/")
        return not any(p.startswith(".") for p in parts) \
            and os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS

    if is_remote(folder):  # a bucket: one listing per folder
        return [f"{folder.rstrip('/')}/{name}" for name in relative_files(folder) if wanted(name)]
    found = []
    for parent, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found += [os.path.join(parent, f) for f in files if wanted(f)]
    return sorted(found)
