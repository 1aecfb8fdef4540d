"""Checking the values of evaluation options (tie rule, template set, probe protocol, ...).

A wrong value comes from the user's config, so it raises `EvalOptionError`, a `UserError` whose one
line names the option, the value given and the values allowed.
"""
from __future__ import annotations

from typing import Sequence

from remoteclip_jax.errors import UserError


class EvalOptionError(UserError, ValueError):
    """An evaluation option holds a value the evaluation cannot use."""


def check_choice(option: str, value, allowed: Sequence) -> None:
    """Raise `EvalOptionError` unless ``value`` is one of ``allowed``.

    Args:
        option: the option's name as the config spells it (e.g. "ties").
        value: the value given.
        allowed: the accepted values.
    """
    if value not in allowed:
        raise EvalOptionError(f"evaluation option {option}={value!r} is not one of "
                              f"{', '.join(map(repr, allowed))}: use one of them")
