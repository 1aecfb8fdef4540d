"""The one way this package writes a file: to a temporary name beside it, renamed into place.

A reader (or a rerun after a crash) sees the old file or the whole new one, never half of one,
and the result gets the mode the user's umask gives (a temporary file starts owner-only).

A path may also be a bucket (``gs://...``, or any scheme `etils.epath` knows): `as_path` gives an
`epath.Path` for it and a plain `pathlib.Path` for a local path, so local behaviour is unchanged.
An object store has no rename, but an object's upload is all or nothing, so there the file is
written locally first and sent in one put.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import pathlib
import tempfile

from remoteclip_jax.errors import ConfigError


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` names an object store or other URL (``scheme://...``), not a local file."""
    return "://" in os.fspath(path)


def as_path(path: str | os.PathLike):
    """`path` as a path object: `epath.Path` for a URL such as ``gs://bucket/run``, else
    `pathlib.Path` (both have the same `/`, `exists`, `read_text`, `mkdir`, `glob`, ...).

    Raises:
        ConfigError: a URL of a scheme we do not serve, or whose package is not installed.
    """
    if is_remote(path):
        if problem := _scheme_problem(os.fspath(path).split("://", 1)[0]):
            raise ConfigError(f"{os.fspath(path)}: {problem}")
        from etils import epath  # orbax's dependency; imported only for a URL
        return epath.Path(os.fspath(path))
    return pathlib.Path(path)


# The URL schemes `etils.epath` serves (through fsspec), with the package each one needs.
_SCHEMES = {"gs": "gcsfs", "s3": "s3fs", "az": "adlfs", "hf": "huggingface_hub"}


def remote_problem(path: str | os.PathLike) -> str | None:
    """Why URL `path` cannot be used here (unknown scheme, missing package), or None."""
    if not is_remote(path):
        return None
    return _scheme_problem(os.fspath(path).split("://", 1)[0])


@functools.lru_cache(maxsize=None)
def _scheme_problem(scheme: str) -> str | None:
    if scheme not in _SCHEMES:
        return (f"{scheme}:// is not a supported location (local paths and "
                f"{', '.join(s + '://' for s in _SCHEMES)} are)")
    import importlib.util
    if scheme == "gs" and importlib.util.find_spec("tensorflow"):
        return None  # epath then goes through tf.io.gfile
    if importlib.util.find_spec(_SCHEMES[scheme]) is None:
        extra = " ('remoteclip_jax[gcs]')" if scheme == "gs" else ""
        return f"{scheme}:// paths need {_SCHEMES[scheme]}: pip install {_SCHEMES[scheme]}{extra}"
    return None


# Packages whose exceptions mean the storage service could not be reached or refused access.
_STORAGE_STACK = ("aiohttp", "google.auth", "google.api_core", "google.cloud", "gcsfs", "fsspec",
                  "s3fs", "botocore", "adlfs", "azure", "huggingface_hub")


def storage_failure(error: BaseException) -> str | None:
    """One line for an error of the cloud storage stack (no network, no credentials, access
    denied) met while reading or writing a bucket path; None for any other error."""
    def from_stack(module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in _STORAGE_STACK)

    raised_in = []
    tb = error.__traceback__
    while tb is not None:
        raised_in.append(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    if not (from_stack(type(error).__module__) or any(map(from_stack, raised_in[-3:]))):
        return None
    text = " ".join(str(error).split()) or type(error).__name__
    return (f"cloud storage could not be used ({type(error).__name__}: {text[:300]}); check the "
            "network, the bucket's name and this machine's credentials (on a TPU/GCE VM its "
            "service account; elsewhere `gcloud auth application-default login`)")


@contextlib.contextmanager
def _remote_write(path: str | os.PathLike, mode: str | None, **open_kwargs):
    """`atomic_write` for a URL: a local temporary file, uploaded in one put once the block ends."""
    target = as_path(path)
    with tempfile.TemporaryDirectory(prefix="remoteclip-upload-") as folder:
        tmp = os.path.join(folder, target.name)
        if mode is None:
            yield tmp
        else:
            with open(tmp, mode, **open_kwargs) as f:
                yield f
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "rb") as f:
            target.write_bytes(f.read())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str | None = "w", **open_kwargs):
    """Writes `path` atomically.

    Args:
        path: the destination (its folder is created).
        mode: "w" / "wb" (yields an open file), or None (yields the temporary path, for writers
            that open files themselves: rasterio, pyarrow, faiss, safetensors).
        **open_kwargs: passed to `open` (encoding, newline).

    Yields:
        The open temporary file, or its path. Nothing is left behind if the block raises.
    """
    if is_remote(path):
        with _remote_write(path, mode, **open_kwargs) as handle:
            yield handle
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        if mode is None:
            yield tmp
        else:
            with open(tmp, mode, **open_kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())  # durable before the rename makes it visible
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | os.PathLike, obj, **dump_kwargs) -> None:
    """`obj` as JSON in `path`, atomically (`dump_kwargs` go to `json.dump`, e.g. indent)."""
    with atomic_write(path, encoding="utf-8") as f:
        json.dump(obj, f, **dump_kwargs)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Appends `text` to `path` (created with its folder when missing).

    An object cannot be appended to, so for a URL the object is read and rewritten whole (in one
    put): fine for the small logs this serves (metrics.jsonl, eval history).
    """
    if not is_remote(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
        return
    target = as_path(path)
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    with atomic_write(target, encoding="utf-8") as f:
        f.write(old + text)


def size(path: str | os.PathLike) -> int:
    """The size of file `path` in bytes (an epath `stat` calls it `length`)."""
    if not is_remote(path):
        return os.stat(path).st_size
    return int(as_path(path).stat().length)


@contextlib.contextmanager
def local_folder(path: str | os.PathLike):
    """A local folder to write a directory tree into (for writers that only know local files:
    safetensors, torch, matplotlib): `path` itself when local; for a URL a temporary folder whose
    files are uploaded under `path` (each in one put) when the block ends without error."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="remoteclip-upload-") as folder:
        yield folder
        upload_tree(folder, path)


def upload_tree(local: str | os.PathLike, remote: str | os.PathLike, last: str = "") -> None:
    """Copies every file under local folder `local` to the same relative path under `remote`
    (the file named `last`, relative to `local`, after all others: a marker of completeness)."""
    root = as_path(remote)
    for source in sorted(pathlib.Path(local).rglob("*"),
                         key=lambda p: (p.relative_to(local).as_posix() == last, p)):
        if source.is_file():
            target = root / source.relative_to(local).as_posix()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())


@contextlib.contextmanager
def local_copy(path: str | os.PathLike):
    """A local path holding what `path` holds, for readers that only open local files (PIL's
    formats, torch, safetensors, orbax restores of model folders): `path` itself when local,
    else a temporary download (of the file, or of every file under the folder) removed when the
    block ends.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    if not is_remote(path):
        yield os.fspath(path)
        return
    source = as_path(path)
    with tempfile.TemporaryDirectory(prefix="remoteclip-download-") as folder:
        tmp = os.path.join(folder, source.name)
        if source.is_dir():
            for name in relative_files(source):
                target = os.path.join(tmp, *name.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write((source / name).read_bytes())
        elif source.exists():
            with open(tmp, "wb") as f:
                f.write(source.read_bytes())
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
        yield tmp


def relative_files(root) -> list[str]:
    """The relative POSIX paths of every file under folder `root`, sorted (epath's bucket paths
    refuse `rglob`, so a bucket is walked one listing per folder)."""
    root = as_path(root)
    if not is_remote(root):
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    names, folders = [], [root]
    while folders:
        for child in folders.pop().iterdir():
            if child.is_dir():
                folders.append(child)
            else:
                names.append(child.relative_to(root).as_posix())
    return sorted(names)
