"""Building blocks shared by the towers, numerically matched to open_clip (LayerNorm eps 1e-5
with a two-pass variance, exact-erf GELU or QuickGELU, fused in_proj attention).

Module and parameter names mirror open_clip's torch modules one to one (`ln_1`, `attn.in_proj`,
`mlp.c_fc`, ...), so the converter is a table, not a program. Products and attention take the
form each backend runs fastest (`ops`).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from remoteclip_jax.models import ops

Dtype = Any
Initializer = Callable[..., jax.Array]


def uniform_init(bound: float) -> Initializer:
    """U(-bound, bound), torch's default for Linear/Conv weights is bound = 1/sqrt(fan_in)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def normal_init(std: float) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return init


def quick_gelu(x: jax.Array) -> jax.Array:
    """OpenAI's GELU approximation, x * sigmoid(1.702 x): RemoteCLIP and OpenAI CLIP weights use it."""
    return x * jax.nn.sigmoid(1.702 * x)


def exact_gelu(x: jax.Array) -> jax.Array:
    """torch.nn.GELU(): x (1 + erf(x / sqrt 2)) / 2, torch's own formula.

    Not flax's default gelu (the tanh approximation, 5e-4 off), nor `jax.nn.gelu(x,
    approximate=False)`, which evaluates erfc and runs ~1.5x slower on XLA:CPU.
    """
    return x * (0.5 + 0.5 * jax.lax.erf(x * math.sqrt(0.5)))


class LayerNorm(nn.Module):
    """torch LayerNorm: eps 1e-5, two-pass variance, statistics in float32 (open_clip LayerNormFp32).

    Output is cast back to the input dtype, as open_clip does.
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        xf = x.astype(jnp.float32)
        mean = xf.mean(-1, keepdims=True)
        centred = xf - mean
        var = jnp.mean(jnp.square(centred), -1, keepdims=True)
        y = centred * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(x.dtype)


class MultiheadAttention(nn.Module):
    """torch.nn.MultiheadAttention (self-attention) with its fused `in_proj` (q|k|v, head-major).

    Parameters: `in_proj/kernel` (D, 3D) = torch `in_proj_weight.T`, `in_proj/bias` (3D,),
    `out_proj/kernel` (D, D), `out_proj/bias`. One fused matmul is also the fastest layout.
    """

    num_heads: int
    dtype: Dtype = jnp.float32
    causal: bool = False
    attention: str = "auto"  # ops.ATTENTION_IMPLEMENTATIONS
    in_kernel_init: Initializer | None = None
    out_kernel_init: Initializer | None = None
    out_bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, value_path: bool = False) -> jax.Array:
        """Self-attention of x (N, L, D); `value_path`: each token's own value instead."""
        n, length, width = x.shape
        head_dim = width // self.num_heads
        # torch defaults: xavier_uniform over the (3D, D) in_proj weight, zero in/out biases.
        in_init = self.in_kernel_init or uniform_init(math.sqrt(6.0 / (width + 3 * width)))
        out_init = self.out_kernel_init or uniform_init(1.0 / math.sqrt(width))
        qkv = nn.Dense(3 * width, dtype=self.dtype, kernel_init=in_init,
                       bias_init=nn.initializers.zeros, dot_general=ops.dot_general,
                       name="in_proj")(x)
        qkv = qkv.reshape(n, length, 3, self.num_heads, head_dim)
        if value_path:
            out = qkv[:, :, 2]
        else:
            out = ops.attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal=self.causal,
                                implementation=self.attention)
        return nn.Dense(width, dtype=self.dtype, kernel_init=out_init, bias_init=self.out_bias_init,
                        dot_general=ops.dot_general, name="out_proj")(out.reshape(n, length, width))


class MLP(nn.Module):
    """c_fc (D -> 4D), activation, c_proj (4D -> D), both with bias."""

    hidden: int
    activation: Callable[[jax.Array], jax.Array]
    dtype: Dtype = jnp.float32
    fc_init: Initializer | None = None
    proj_init: Initializer | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.hidden, dtype=self.dtype, name="c_fc", dot_general=ops.dot_general,
                     kernel_init=self.fc_init or uniform_init(1 / math.sqrt(width)),
                     bias_init=uniform_init(1 / math.sqrt(width)))(x)
        x = self.activation(x)
        return nn.Dense(width, dtype=self.dtype, name="c_proj", dot_general=ops.dot_general,
                        kernel_init=self.proj_init or uniform_init(1 / math.sqrt(self.hidden)),
                        bias_init=uniform_init(1 / math.sqrt(self.hidden)))(x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    num_heads: int
    mlp_ratio: float
    activation: Callable[[jax.Array], jax.Array]
    dtype: Dtype = jnp.float32
    # None -> torch defaults (vision tower); a dict of stds -> open_clip's text-tower init.
    init_stds: dict | None = None
    causal: bool = False
    attention: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, value_path: bool = False) -> jax.Array:
        width = x.shape[-1]
        stds = self.init_stds
        attn = MultiheadAttention(
            self.num_heads, dtype=self.dtype, causal=self.causal, attention=self.attention,
            name="attn", in_kernel_init=normal_init(stds["attn"]) if stds else None,
            out_kernel_init=normal_init(stds["proj"]) if stds else None)
        mlp = MLP(int(width * self.mlp_ratio), self.activation, dtype=self.dtype, name="mlp",
                  fc_init=normal_init(stds["fc"]) if stds else None,
                  proj_init=normal_init(stds["proj"]) if stds else None)
        x = x + attn(LayerNorm(name="ln_1")(x), value_path)
        x = x + mlp(LayerNorm(name="ln_2")(x))
        return x


class _ScannedBlock(ResidualAttentionBlock):
    """A residual block with `nn.scan`'s (carry, x) -> (carry, y) signature."""

    @nn.compact
    def __call__(self, x: jax.Array, _) -> tuple[jax.Array, None]:
        return super().__call__(x), None


class Transformer(nn.Module):
    """A stack of residual blocks named `resblocks_{i}` (torch `resblocks.{i}`).

    `scan=True` builds the same blocks as one `nn.scan` named `resblocks`, parameters stacked on
    a leading axis: a program that stays small however deep the tower is. `unstack_blocks` turns
    its variables into the `resblocks_{i}` layout (see `clip.init_variables`).
    """

    layers: int
    num_heads: int
    mlp_ratio: float
    activation: Callable[[jax.Array], jax.Array]
    dtype: Dtype = jnp.float32
    remat: bool = False
    openclip_text_init: bool = False
    causal: bool = False
    attention: str = "auto"
    scan: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, value_path_last: bool = False) -> jax.Array:
        """`value_path_last`: the last block attends each token to itself (dense features)."""
        width = x.shape[-1]
        stds = None
        if self.openclip_text_init:
            stds = {"attn": width ** -0.5, "proj": width ** -0.5 * (2 * self.layers) ** -0.5,
                    "fc": (2 * width) ** -0.5}
        args = (self.num_heads, self.mlp_ratio, self.activation, self.dtype, stds, self.causal,
                self.attention)
        if self.scan:
            blocks = nn.scan(_ScannedBlock, variable_axes={"params": 0},
                             split_rngs={"params": True}, length=self.layers)
            return blocks(*args, name="resblocks")(x, None)[0]
        block = (nn.remat(ResidualAttentionBlock, static_argnums=(2,)) if self.remat
                 else ResidualAttentionBlock)
        for i in range(self.layers):
            x = block(*args, name=f"resblocks_{i}")(x, value_path_last and i == self.layers - 1)
        return x


def unstack_blocks(tree: dict) -> dict:
    """Variables of `Transformer(scan=True)` in the unrolled layout: `resblocks` -> `resblocks_{i}`."""
    out = {}
    for key, value in tree.items():
        if key == "resblocks":
            depth = jax.tree.leaves(value)[0].shape[0]
            out.update({f"resblocks_{i}": jax.tree.map(lambda x, i=i: x[i], value)
                        for i in range(depth)})
        elif isinstance(value, dict) or hasattr(value, "items"):
            out[key] = unstack_blocks(value)
        else:
            out[key] = value
    return out
