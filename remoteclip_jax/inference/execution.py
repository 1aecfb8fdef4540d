"""How the encoder runs on each backend: batch size, XLA compiler options, parameter pre-casting.

Every choice here keeps the computation exact (no fast-math, no lower precision than asked for);
they only pick the fastest of the exact options measured for each backend:

* CPU, float32: the dots run on XLA's Eigen GEMM instead of its YNNPACK one
  (`xla_cpu_experimental_ynn_fusion_type=""`), +10-15% on the image tower of ViT-B-32 on an
  AVX-512 Xeon; the sums are reordered, not rounded differently (parity with open_clip 9.8e-7).
* CPU, bfloat16: the default YNNPACK dots (they are the AMX / avx512_bf16 kernels; moving bf16
  dots off YNNPACK sends them back to an upcast float32 path), and parameters cast to bfloat16
  once instead of on every call.
* GPU / TPU: default compiler options, a larger per-device batch, bfloat16 parameters pre-cast.

`scripts/bench_embed.py --mode encoder` measures these settings against open_clip.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

# The XLA:CPU option that routes float32 dots to Eigen (see the module docstring).
CPU_FLOAT32_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
# CPU batch: on ViT-B-32 (2 cores) batches of 16 and 32 ran at the same rate within noise and 64
# slower (scripts/bench_embed.py --mode encoder); 32 amortises the per-call overhead on small models.
CPU_BATCH = 32
ACCELERATOR_BATCH_PER_DEVICE = 256


@dataclasses.dataclass(frozen=True)
class ExecutionPlan:
    """Settings the encoder compiles with.

    Attributes:
        batch_size: global batch (rounded up to a multiple of the device count by the encoder).
        compiler_options: passed to `jax.jit(..., compiler_options=...)`; None for the defaults.
        precast: cast the parameters the model would cast to the compute dtype anyway, once.
    """

    batch_size: int
    compiler_options: dict | None
    precast: bool


def execution_plan(dtype, backend: str | None = None, num_devices: int | None = None) -> ExecutionPlan:
    """The fastest exact settings for `dtype` on `backend` (default: jax's default backend).

    Args:
        dtype: compute dtype (float32 or bfloat16).
        backend: "cpu", "gpu", "tpu" (default `jax.default_backend()`).
        num_devices: devices the batch is split over (default: the local device count).
    """
    backend = backend or jax.default_backend()
    num_devices = num_devices or jax.local_device_count()
    low_precision = jnp.dtype(dtype) != jnp.float32
    if backend == "cpu":
        return ExecutionPlan(CPU_BATCH, None if low_precision else dict(CPU_FLOAT32_OPTIONS),
                             precast=low_precision)
    return ExecutionPlan(ACCELERATOR_BATCH_PER_DEVICE * num_devices, None, precast=low_precision)


# Parameters every tower casts to the compute dtype before use (projection kernels and biases,
# the token embedding, the ViT's class/positional embeddings and output projection, the text
# projection). LayerNorm and BatchNorm parameters are used in float32 and stay float32.
_CAST_BEFORE_USE = {"class_embedding", "positional_embedding", "proj", "text_projection",
                    "embedding"}


def precast_params(variables, dtype):
    """Casts, once, the float32 parameters that the model would cast to `dtype` on every call.

    The model's output is unchanged: a parameter it casts inside the computation is the same
    value whether it arrives cast or not. Only `params` of ViT-style towers are touched: kernels
    (with the bias beside them) and the names in `_CAST_BEFORE_USE`.
    """
    dtype = jnp.dtype(dtype)

    def cast(tree, parent_has_kernel=False):
        if not isinstance(tree, dict) and not hasattr(tree, "items"):
            return tree
        has_kernel = "kernel" in tree
        out = {}
        for name, value in tree.items():
            if hasattr(value, "items"):
                out[name] = cast(value)
            elif (name == "kernel" or (name == "bias" and has_kernel) or name in _CAST_BEFORE_USE) \
                    and jnp.issubdtype(value.dtype, jnp.floating):
                out[name] = jnp.asarray(value).astype(dtype)
            else:
                out[name] = value
        return out

    if "batch_stats" in variables:  # ResNet towers mix float32 uses in; keep their parameters
        return variables
    return {**variables, "params": cast(variables["params"])}
