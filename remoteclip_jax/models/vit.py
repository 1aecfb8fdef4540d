"""open_clip's VisionTransformer (CLIP ViT image tower), NHWC input."""
from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from remoteclip_jax.models import ops
from remoteclip_jax.models.layers import (Dtype, Initializer, LayerNorm, Transformer, normal_init,
                                          uniform_init)


class PatchEmbed(nn.Module):
    """torch Conv2d(3, width, kernel=stride=patch, bias=False) as patchify + one matmul.

    Same parameter as `nn.Conv` (`kernel`, (p, p, 3, width)), so checkpoints are unchanged.
    XLA:CPU runs a bf16 convolution as an upcast float32 one; the bf16 dot goes to YNNPACK.
    """

    features: int
    patch_size: int
    dtype: Dtype
    kernel_init: Initializer

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        p = self.patch_size
        n, h, w, c = images.shape
        gh, gw = h // p, w // p  # 'VALID': pixels that do not fill a patch are dropped
        kernel = self.param("kernel", self.kernel_init, (p, p, c, self.features), jnp.float32)
        x = images[:, :gh * p, :gw * p].astype(self.dtype).reshape(n, gh, p, gw, p, c)
        x = x.transpose(0, 1, 3, 2, 4, 5).reshape(n, gh, gw, p * p * c)  # (kh, kw, c) = HWIO order
        flat = kernel.reshape(p * p * c, self.features).astype(self.dtype)
        return ops.dot_general(x, flat, (((3,), (0,)), ((), ())))


class VisionTransformer(nn.Module):
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    output_dim: int
    activation: Callable[[jax.Array], jax.Array]
    mlp_ratio: float = 4.0
    dtype: Dtype = jnp.float32
    remat: bool = False
    attention: str = "auto"
    scan: bool = False  # one scanned block stack (see layers.Transformer)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        del train  # no batch statistics in a ViT
        p, w = self.patch_size, self.width
        scale = w ** -0.5
        x = PatchEmbed(w, p, self.dtype, uniform_init(1 / math.sqrt(3 * p * p)), name="conv1")(images)
        n, gh, gw, _ = x.shape
        x = x.reshape(n, gh * gw, w)  # row-major patch order, as torch's flatten of NCHW
        cls = self.param("class_embedding", normal_init(scale), (w,), jnp.float32)
        pos = self.param("positional_embedding", normal_init(scale), (gh * gw + 1, w), jnp.float32)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (n, 1, w)), x], axis=1)
        x = x + pos.astype(x.dtype)
        x = LayerNorm(name="ln_pre")(x)
        x = Transformer(self.layers, self.heads, self.mlp_ratio, self.activation, self.dtype,
                        self.remat, attention=self.attention, scan=self.scan,
                        name="transformer")(x)
        x = LayerNorm(name="ln_post")(x)
        pooled = x[:, 0]
        proj = self.param("proj", normal_init(scale), (w, self.output_dim), jnp.float32)
        return ops.dot_general(pooled, proj.astype(pooled.dtype), (((1,), (0,)), ((), ())),
                               preferred_element_type=jnp.float32)
