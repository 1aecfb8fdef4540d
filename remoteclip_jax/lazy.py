"""Imports made on first use: a package's public names, and optional dependencies.

`lazy_attributes` gives a package a module-level ``__getattr__`` that imports the module holding
a name when the name is first read, so ``import remoteclip_jax.geo`` does not import rasterio and
``import remoteclip_jax`` does not import the training stack. `optional_module` imports an
optional dependency or ends in one line saying how to install it.
"""
from __future__ import annotations

import importlib
from typing import Callable, Iterable, Mapping

from remoteclip_jax.errors import UserError


def lazy_attributes(package: str, exports: Mapping[str, str], submodules: Iterable[str] = ()
                    ) -> Callable[[str], object]:
    """The ``__getattr__`` of `package`: `exports` maps a name to the module that defines it;
    `submodules` are sub-packages reachable as attributes."""
    submodules = frozenset(submodules)

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def optional_module(name: str, why: str, error: type[UserError] = UserError):
    """Module `name`, or `error(why)` (one line: what needs it and how to install it)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise error(why) from None
