"""A short content hash of a parameter tree, to key caches and stores by the weights that made them.

Per leaf: its path, shape and dtype, and the sums of its values and of their squares, computed on
the device (so it works on sharded, multi-process arrays without gathering them to the host).
Different checkpoints differ in it in practice; equal weights always agree.
"""
from __future__ import annotations

import functools
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np


def weights_fingerprint(variables) -> str:
    """16 hex digits identifying `variables` (see the module docstring)."""
    leaves = jax.tree_util.tree_flatten_with_path(variables)[0]
    stats = jax.device_get([(jnp.sum(jnp.asarray(x, jnp.float32)),
                             jnp.sum(jnp.square(jnp.asarray(x, jnp.float32)))) for _, x in leaves])
    h = hashlib.sha1()
    for (path, x), s in zip(leaves, stats):
        h.update(f"{jax.tree_util.keystr(path)}:{tuple(np.shape(x))}:{x.dtype}".encode())
        h.update(np.asarray(s, np.float64).tobytes())
    return h.hexdigest()[:16]


def file_fingerprint(path: str, chunk: int = 1 << 24) -> str:
    """16 hex digits of the SHA-256 of a file's bytes: a weights file's identity wherever it
    lies or whatever it is called (about 1 s for a 600 MB checkpoint; computed once per file
    version in a process, as loading asks for it more than once)."""
    stat = os.stat(path)
    return _sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, chunk)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int, chunk: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]
