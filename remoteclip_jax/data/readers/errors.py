"""The error readers raise for bad annotation files: it names the file, the line and the fault."""
from __future__ import annotations

from remoteclip_jax.errors import UserError
import os
from collections.abc import Callable

# Readers take `on_error: OnError | None`: None raises the first AnnotationError; a callable gets
# each one and the reader skips the faulty line or entry (the converter's --skip-bad-annotations).
OnError = Callable[["AnnotationError"], None]


class AnnotationError(UserError, ValueError):
    """A malformed annotation. `str(err)` is `path:line: reason` (`path: reason` without a line).

    Attributes:
        path: the annotation file.
        line: 1-based line number, or None where the format has no useful line (JSON entries
            are then named inside `reason`, e.g. "annotations[12]").
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"

    def __reduce__(self):
        return type(self), (self.path, self.line, self.reason)


def report(error: AnnotationError, on_error: OnError | None) -> None:
    """Raises `error`, or hands it to `on_error` so the caller can skip and count it."""
    if on_error is None:
        raise error
    on_error(error)
