"""How readers report bad annotation lines: raise `AnnotationError`, or hand it to a callback."""
from __future__ import annotations

from collections.abc import Callable

from remoteclip_jax.errors import AnnotationError

# Readers take `on_error: OnError | None`: None raises the first AnnotationError; a callable gets
# each one and the reader skips the faulty line or entry (the converter's --skip-bad-annotations).
OnError = Callable[["AnnotationError"], None]


def report(error: AnnotationError, on_error: OnError | None) -> None:
    """Raises `error`, or hands it to `on_error` so the caller can skip and count it."""
    if on_error is None:
        raise error
    on_error(error)
