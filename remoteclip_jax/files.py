"""The one way this package writes a file: to a temporary name beside it, renamed into place.

A reader (or a rerun after a crash) sees the old file or the whole new one, never half of one,
and the result gets the mode the user's umask gives (a temporary file starts owner-only).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile


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
