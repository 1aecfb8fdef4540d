"""The errors bad input can cause: one base class and the few kinds callers tell apart.

Every error caused by the user's input derives from `UserError`, and its message is one line:
which file or key, what is wrong and, where it helps, what to do. The command line catches this
one type (`remoteclip_jax.cli`) and prints the message with exit code 2; anything else is a bug
and keeps its traceback. The subclasses say what the input was:

* `ConfigError`: a config key or value, a command-line option, a model name, a mesh;
* `DataError`: data that is missing, malformed or empty (folders, annotation files, records,
  embedding stores, scenes); `ImageReadError` and `AnnotationError` are the two kinds that
  readers skip and count instead of stopping;
* `WeightsError`: weights, a model directory or a checkpoint that cannot be read or does not fit.
"""
from __future__ import annotations

import os
from typing import Sequence


class UserError(Exception):
    """Bad input: a config value, a file, a dataset or weights the run cannot use."""


class ConfigError(UserError, ValueError):
    """A config key or value, command-line option or model name that cannot work."""


class DataError(UserError, ValueError):
    """Input data that is missing, malformed or empty; the message names the file."""


class ImageReadError(DataError):
    """An image that cannot be read or decoded; the message names the file (or the record)."""


class AnnotationError(DataError):
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


class WeightsError(UserError, ValueError):
    """Weights, a model directory or a checkpoint that cannot be read or does not fit the model."""


CheckpointError = WeightsError  # the name `remoteclip_jax.CheckpointError` had before


def check_choice(option: str, value, allowed: Sequence) -> None:
    """Raises `ConfigError` naming `option` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ConfigError(f"{option}={value!r} is not one of {', '.join(map(repr, allowed))}: "
                          "use one of them")


def one_line(error: BaseException) -> str:
    """The error's message folded onto one line (the form the command line prints)."""
    text = str(error) or type(error).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
