"""How two variable trees differ entry by entry: the one comparison behind every "these weights do
not fit" message (init variables, model directories, WiSE-FT pairs)."""
from __future__ import annotations

from typing import Any

import jax
import numpy as np


def leaf_shapes(tree: Any) -> dict[str, tuple]:
    """{entry path (``jax.tree_util.keystr``): shape} of every leaf (arrays or abstract shapes)."""
    return {jax.tree_util.keystr(path): tuple(np.shape(leaf))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def differences(got: dict[str, tuple], want: dict[str, tuple]
                ) -> tuple[list[str], list[str], list[str]]:
    """(entries only in `want`, entries only in `got`, entries whose shapes differ), each sorted,
    from two `leaf_shapes`."""
    return (sorted(set(want) - set(got)), sorted(set(got) - set(want)),
            sorted(k for k in set(want) & set(got) if want[k] != got[k]))
