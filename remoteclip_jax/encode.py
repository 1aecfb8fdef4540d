"""The one way a CLIP tower runs over a batch on a mesh: jitted, sharded, one padded shape.

The inference `Encoder` (a 1-D mesh of this process's devices) and the `Evaluator` (the training
mesh, FSDP-sharded parameters kept sharded) both compile their encoders here: the batch is split
over every mesh axis, the features come back replicated in float32, and every batch is padded to
one size so one compiled program serves them all.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from remoteclip_jax.models import l2_normalize


def batch_sharding(mesh) -> NamedSharding:
    """The leading (batch) dimension split over every axis of `mesh`."""
    return NamedSharding(mesh, P(mesh.axis_names))


def encode_function(model, method: str, mesh, param_shardings=None, *, normalize: bool = False,
                    compiler_options: dict | None = None, apply_kwargs: dict | None = None):
    """jit((variables, batch) -> float32 features) of ``model.apply(..., method=method)``.

    Args:
        model: a CLIP module.
        method: "encode_image" or "encode_text".
        mesh: the devices; the batch is split over all its axes.
        param_shardings: the variables' shardings (default: replicated).
        normalize: L2-normalise the features (over the last axis).
        compiler_options: XLA options for this program.
        apply_kwargs: further keyword arguments of the method, fixed at compile time (e.g.
            ``tokens=True, dense="value"`` for per-patch features).
    """
    replicated = NamedSharding(mesh, P())
    kwargs = dict(apply_kwargs or {})

    def encode(variables, x):
        features = model.apply(variables, x, method=method, **kwargs).astype(jnp.float32)
        return l2_normalize(features) if normalize else features

    params = replicated if param_shardings is None else param_shardings
    return jax.jit(encode, in_shardings=(params, batch_sharding(mesh)), out_shardings=replicated,
                   compiler_options=compiler_options)


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """`x` with zero rows appended up to `rows` (one compiled shape for every batch)."""
    x = np.asarray(x)
    if len(x) >= rows:
        return x
    return np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)])
