"""The one base class of errors caused by the user's input.

Every error that bad input can cause (a config key, a file, a dataset, a checkpoint that does not
fit) derives from `UserError`, and its message is one line: which file or key, what is wrong and,
where it helps, what to do. The command line catches this one type and prints the message with
exit code 2; everything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: a config value, a file, a dataset or a checkpoint the run cannot use."""


class EvalDataError(UserError, ValueError):
    """Bad evaluation input; the message names the file (and line) and what is wrong."""


def one_line(error: BaseException) -> str:
    """The error's message folded onto one line (the form the command line prints)."""
    text = str(error) or type(error).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
