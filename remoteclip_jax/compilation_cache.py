"""jax's persistent compilation cache, on by default for every command, so a restart, a resume, an
evaluation or an export of the same model reuses the programs the last run compiled (on GPUs also
XLA's autotuning results and kernels) instead of compiling them again.

Where: `$REMOTECLIP_JAX_CACHE_DIR`, else `$XDG_CACHE_HOME/remoteclip_jax/jax`, else
`~/.cache/remoteclip_jax/jax`; `$REMOTECLIP_JAX_CACHE_DIR=""` switches it off, and so does a
training config's `compilation_cache=""` (which may also name another directory). jax's own
`JAX_COMPILATION_CACHE_DIR`, when set, wins. Errors reading or writing the cache are warnings.
"""
from __future__ import annotations

import os

ENV = "REMOTECLIP_JAX_CACHE_DIR"


def default_dir() -> str:
    """The user's cache directory for compiled programs ("" when switched off)."""
    if ENV in os.environ:
        return os.environ[ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "remoteclip_jax", "jax")


def enable_by_default() -> None:
    """Points jax at the default cache through its environment variables.

    Call before jax is imported (the command-line entry points do); it imports nothing.
    """
    path = default_dir()
    if path:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", path)
        os.environ.setdefault("JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES", "all")


def configure(directory: str) -> None:
    """Applies a config's `compilation_cache`: "auto" (the default), a directory, or "" (off).

    Call before the first compilation.
    """
    import jax

    if directory == "auto":
        return
    if not directory:
        jax.config.update("jax_enable_compilation_cache", False)
        return
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_enable_xla_caches", "all")
