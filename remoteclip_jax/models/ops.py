"""Matrix products and attention in the form each backend runs fastest: the one place that decides.

The choice is made when a program is lowered for its platform (`lax.platform_dependent`), not from
the host's default backend, so a step compiled ahead of time for a GPU on a CPU-only host is the
GPU program.

Products (`dot_general`). Float32 operands give the plain float32 product everywhere, so float32
programs stay exact to open_clip. With bfloat16 operands:
- XLA:CPU: bf16 x bf16 -> float32, then a cast. XLA:CPU hands such dots to YNNPACK's bf16 kernels
  (AMX / avx512_bf16) but rewrites a bf16 -> bf16 dot into an upcast float32 one, about 2x slower
  (scripts/xla_cpu_flags.md).
- GPU and TPU: the plain bf16 product; the GEMM accumulates in float32 inside, as torch autocast's
  does. Asking for a float32 result there costs the backward pass dearly: the transpose of the
  cast hands each gradient GEMM a float32 operand, and it runs float32 x float32 (TF32 on Hopper,
  about half the bf16 rate). A float32 result is instead a bf16 product cast afterwards.

Attention (`attention`), over (batch, length, heads, head_dim) tensors:
- "xla": softmax(q k^T / sqrt(d)) v written out, logits and softmax in float32, products as above.
- "cudnn": cuDNN's fused flash attention through `jax.nn.dot_product_attention`; it never stores
  the (batch, heads, L, L) probabilities. It needs 16-bit inputs and head_dim a multiple of 8.
- "auto" (the default): cuDNN for 16-bit compute on NVIDIA GPUs, "xla" everywhere else.
"""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
from jax import lax

ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "cudnn")


class AttentionUnavailableError(ValueError):
    """`attention="cudnn"` where cuDNN's fused attention cannot run."""


def dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None,
                preferred_element_type=None) -> jax.Array:
    """`lax.dot_general` returning `preferred_element_type` (default: the operands' dtype).

    Float32 operands: the plain product. 16-bit operands: float32 accumulation and a cast on
    XLA:CPU, the native 16-bit product (cast afterwards if another result dtype is asked) on GPU
    and TPU. Usable as `nn.Dense(dot_general=...)`.
    """
    out = jnp.dtype(preferred_element_type or lhs.dtype)
    if lhs.dtype == jnp.float32 and rhs.dtype == jnp.float32:
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=out)

    def cpu(a, b):
        return lax.dot_general(a, b, dimension_numbers, precision=precision,
                               preferred_element_type=jnp.float32).astype(out)

    def accelerator(a, b):
        return lax.dot_general(a, b, dimension_numbers, precision=precision).astype(out)

    return lax.platform_dependent(lhs, rhs, cpu=cpu, default=accelerator)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool = False,
              implementation: str = "auto") -> jax.Array:
    """Multi-head softmax attention, softmax(q k^T / sqrt(head_dim)) v, in q's dtype.

    Args:
        q: queries (batch, q_length, heads, head_dim).
        k, v: keys and values (batch, kv_length, heads, head_dim).
        causal: each query attends to keys at its own position and before (text tower).
        implementation: "auto", "xla" or "cudnn" (see the module docstring).

    Returns:
        (batch, q_length, heads, head_dim).
    """
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {implementation!r} is not one of "
                         f"{ATTENTION_IMPLEMENTATIONS}")
    if implementation == "xla" or not _cudnn_shapes_ok(q, k):
        if implementation == "cudnn":
            raise AttentionUnavailableError(
                f"attention='cudnn' needs 16-bit inputs (got {q.dtype}), equal query and key "
                f"lengths and head_dim a multiple of 8 <= 128 (got {q.shape[-1]}); use "
                f"attention='auto'")
        return _xla_attention(q, k, v, causal)
    if implementation == "cudnn":
        return _even_length_attention(q, k, v, causal)
    return lax.platform_dependent(q, k, v, cuda=lambda *a: _cudnn_or_xla(*a, causal),
                                  default=lambda *a: _xla_attention(*a, causal))


def _cudnn_shapes_ok(q: jax.Array, k: jax.Array) -> bool:
    head_dim = q.shape[-1]
    return (q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[1] == k.shape[1]
            and head_dim % 8 == 0 and head_dim <= 128)


def _xla_attention(q, k, v, causal: bool):
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    # (b, t, n, h) x (b, s, n, h) -> (b, n, t, s)
    logits = dot_general(q, k, (((3,), (3,)), ((0, 2), (0, 2))), preferred_element_type=jnp.float32)
    if causal:
        t, s = logits.shape[-2:]
        logits = jnp.where(jnp.tril(jnp.ones((t, s), bool)), logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    # (b, n, t, s) x (b, s, n, h) -> (b, n, t, h) -> (b, t, n, h)
    return dot_general(weights, v, (((3,), (1,)), ((0, 1), (0, 2)))).transpose(0, 2, 1, 3)


def _even_length_attention(q, k, v, causal: bool, implementation: str = "cudnn"):
    """`jax.nn.dot_product_attention`, odd lengths padded by one token that no query sees.

    cuDNN's training kernels refuse odd lengths (77 text tokens, 257 for ViT-L-14); the padded
    key is masked out through the sequence lengths, the padded query's output dropped.
    """
    length = q.shape[1]
    if length % 2 == 0:
        return jax.nn.dot_product_attention(q, k, v, is_causal=causal,
                                            implementation=implementation)
    q, k, v = (jnp.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0))) for x in (q, k, v))
    lengths = jnp.full((q.shape[0],), length, jnp.int32)
    out = jax.nn.dot_product_attention(q, k, v, is_causal=causal, query_seq_lengths=lengths,
                                       key_value_seq_lengths=lengths,
                                       implementation=implementation)
    return out[:, :length]


def _cudnn_or_xla(q, k, v, causal: bool):
    # Traced for every program (platform_dependent stages out all branches) but lowered only for
    # NVIDIA GPUs. Without cuDNN on this host, tracing fails: the "xla" form then stands in.
    try:
        return _even_length_attention(q, k, v, causal)
    except (RuntimeError, NotImplementedError) as e:
        if jax.default_backend() == "gpu":
            logging.warning("cuDNN attention unavailable (%s); using the XLA attention", e)
        return _xla_attention(q, k, v, causal)
