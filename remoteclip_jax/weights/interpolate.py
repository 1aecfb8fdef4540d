"""Weight-space interpolation of two models of one architecture (WiSE-FT's ensemble).

WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022; code
mlfoundations/wise-ft) averages a zero-shot model and its fine-tuned descendant entry by entry:
``theta = (1 - alpha) * theta_zero_shot + alpha * theta_finetuned``, every parameter and
BatchNorm statistic alike. ``alpha = 0`` is the zero-shot model, ``alpha = 1`` the fine-tuned one.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from remoteclip_jax.errors import WeightsError
from remoteclip_jax.weights.trees import differences, leaf_shapes


def _flat(variables: Mapping) -> dict[str, Any]:
    return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(variables)}


def interpolate(zero_shot: Mapping, finetuned: Mapping, alpha: float) -> Any:
    """``(1 - alpha) * zero_shot + alpha * finetuned`` for every entry.

    Args:
        zero_shot, finetuned: variable trees (``{"params": ...[, "batch_stats": ...]}``) of one
            architecture; numpy or jax arrays.
        alpha: the fine-tuned model's weight (0: zero-shot, 1: fine-tuned).

    Returns:
        A numpy tree shaped like `zero_shot`, each entry computed in float64 and stored in the
        zero-shot entry's dtype.

    Raises:
        WeightsError: the trees differ in entries or shapes (naming the first few).
    """
    a, b = leaf_shapes(zero_shot), leaf_shapes(finetuned)
    missing, extra, shapes = differences(b, a)
    if missing or extra or shapes:
        parts = [f"only in the zero-shot model: {missing[:3]}" if missing else "",
                 f"only in the fine-tuned model: {extra[:3]}" if extra else "",
                 "different shapes: " + ", ".join(f"{k} {a[k]} vs {b[k]}"
                                                  for k in shapes[:3]) if shapes else ""]
        raise WeightsError("the two models' weights do not match entry by entry ("
                                 + "; ".join(p for p in parts if p) + "); WiSE-FT needs one "
                                 "architecture")

    def mix(x, y):
        x = np.asarray(x)
        mixed = (1.0 - alpha) * x.astype(np.float64) + alpha * np.asarray(y, np.float64)
        return mixed.astype(x.dtype)

    paths, treedef = jax.tree_util.tree_flatten_with_path(zero_shot)
    tuned = _flat(finetuned)
    return jax.tree_util.tree_unflatten(
        treedef, [mix(x, tuned[jax.tree_util.keystr(p)]) for p, x in paths])
