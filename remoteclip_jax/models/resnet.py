"""open_clip's ModifiedResNet (CLIP RN50/RN101 image tower), NHWC input.

Three-conv stem with average pooling, anti-aliased strided Bottlenecks (AvgPool before the stride),
and an attention-pooling head whose query is the mean token.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from remoteclip_jax.models import ops
from remoteclip_jax.models.layers import Dtype, normal_init, uniform_init


class BatchNorm(nn.Module):
    """torch BatchNorm2d semantics: eps 1e-5, momentum 0.1, running var updated unbiased.

    Under `jit` on a batch-sharded input the statistics are those of the global batch (SyncBN);
    open_clip under DDP uses per-GPU statistics.
    """

    zero_scale: bool = False  # open_clip zero-inits every Bottleneck's bn3 (residual starts as identity)
    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.zeros if self.zero_scale else nn.initializers.ones,
                           (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        xf = x.astype(jnp.float32)
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = xf.mean(axes)
            var = jnp.square(xf - mean).mean(axes)
            if not self.is_initializing():
                count = math.prod(x.shape[:-1])
                unbiased = var * count / max(count - 1, 1)
                ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value
        y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(x.dtype)


def _conv(features: int, kernel: int, in_features: int, dtype: Dtype, name: str) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), use_bias=False,
                   dtype=dtype, kernel_init=uniform_init(1 / math.sqrt(in_features * kernel * kernel)),
                   name=name)


def _avg_pool(x: jax.Array, k: int) -> jax.Array:
    return nn.avg_pool(x, (k, k), strides=(k, k)) if k > 1 else x


class Bottleneck(nn.Module):
    inplanes: int
    planes: int
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = nn.relu(BatchNorm(name="bn1")(_conv(self.planes, 1, self.inplanes, self.dtype, "conv1")(x), train))
        out = nn.relu(BatchNorm(name="bn2")(_conv(self.planes, 3, self.planes, self.dtype, "conv2")(out), train))
        out = _avg_pool(out, self.stride)
        out = BatchNorm(zero_scale=True, name="bn3")(
            _conv(self.planes * 4, 1, self.planes, self.dtype, "conv3")(out), train)
        identity = x
        if self.stride > 1 or self.inplanes != self.planes * 4:
            identity = _conv(self.planes * 4, 1, self.inplanes, self.dtype, "downsample_0")(
                _avg_pool(x, self.stride))
            identity = BatchNorm(name="downsample_1")(identity, train)
        return nn.relu(out + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling with separate q/k/v projections; only the mean token's output is kept."""

    num_heads: int
    output_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        x = x.reshape(n, h * w, c)
        x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)
        pos = self.param("positional_embedding", normal_init(c ** -0.5), (h * w + 1, c), jnp.float32)
        x = x + pos.astype(x.dtype)

        def dense(features, name):
            return nn.Dense(features, dtype=self.dtype, name=name, kernel_init=normal_init(c ** -0.5),
                            bias_init=uniform_init(1 / math.sqrt(c)), dot_general=ops.dot_general)

        head_dim = c // self.num_heads
        q = dense(c, "q_proj")(x[:, :1]).reshape(n, 1, self.num_heads, head_dim)
        k = dense(c, "k_proj")(x).reshape(n, h * w + 1, self.num_heads, head_dim)
        v = dense(c, "v_proj")(x).reshape(n, h * w + 1, self.num_heads, head_dim)
        # One query: too small a problem for a fused kernel.
        out = ops.attention(q, k, v, implementation="xla").reshape(n, c)
        return dense(self.output_dim, "c_proj")(out)


class ModifiedResNet(nn.Module):
    layers: Sequence[int]
    output_dim: int
    heads: int
    image_size: int = 224
    width: int = 64
    dtype: Dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        w = self.width
        x = images.astype(self.dtype)
        stem = [(w // 2, 3, 2), (w // 2, w // 2, 1), (w, w // 2, 1)]
        for i, (features, in_features, stride) in enumerate(stem, start=1):
            conv = nn.Conv(features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                           use_bias=False, dtype=self.dtype, name=f"conv{i}",
                           kernel_init=uniform_init(1 / math.sqrt(in_features * 9)))
            x = nn.relu(BatchNorm(name=f"bn{i}")(conv(x), train))
        x = _avg_pool(x, 2)
        block = nn.remat(Bottleneck, static_argnums=(2,)) if self.remat else Bottleneck
        inplanes = w
        for stage, blocks in enumerate(self.layers, start=1):
            planes = w * 2 ** (stage - 1)
            for j in range(blocks):
                stride = 2 if (stage > 1 and j == 0) else 1
                x = block(inplanes, planes, stride, self.dtype, name=f"layer{stage}_{j}")(x, train)
                inplanes = planes * 4
        return AttentionPool2d(self.heads, self.output_dim, self.dtype, name="attnpool")(x)
