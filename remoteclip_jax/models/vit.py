"""open_clip's VisionTransformer (CLIP ViT image tower), NHWC input."""
from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


DENSE_RECIPES = ("plain", "value")


class VisionTransformer(nn.Module):
    """open_clip's VisionTransformer, with FLIP's patch dropout and dense patch features.

    `patch_dropout` (open_clip's `patch_dropout`, Li et al., FLIP, CVPR 2023): in training, each
    image keeps a random `int(patches x (1 - patch_dropout))` of its patch tokens (at least one)
    after the position embedding, the class token always; evaluation sees every patch. It draws
    from the "dropout" RNG stream.
    """

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
    patch_dropout: float = 0.0

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False, dense: str | None = None
                 ) -> jax.Array:
        """Pooled features (N, output_dim); with `dense`, projected patch tokens (N, gh, gw, output_dim).

        Dense recipes: "plain" projects the last block's patch tokens (ln_post, proj);
        "value" replaces the last block's attention by its value path (each token's own value,
        through out_proj, with the residual and the MLP kept), as MaskCLIP does (Zhou et al.,
        ECCV 2022; its ViT backbone's `return_qkv` branch).
        """
        p, w = self.patch_size, self.width
        scale = w ** -0.5
        x = PatchEmbed(w, p, self.dtype, uniform_init(1 / math.sqrt(3 * p * p)), name="conv1")(images)
        n, gh, gw, _ = x.shape
        x = x.reshape(n, gh * gw, w)  # row-major patch order, as torch's flatten of NCHW
        cls = self.param("class_embedding", normal_init(scale), (w,), jnp.float32)
        pos = self.param("positional_embedding", normal_init(scale), (gh * gw + 1, w), jnp.float32)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (n, 1, w)), x], axis=1)
        x = x + pos.astype(x.dtype)
        if train and self.patch_dropout > 0:
            x = drop_patches(x, self.patch_dropout, self.make_rng("dropout"))
        x = LayerNorm(name="ln_pre")(x)
        if dense not in (None, *DENSE_RECIPES):
            raise ValueError(f"dense={dense!r} is not one of {DENSE_RECIPES}")
        x = Transformer(self.layers, self.heads, self.mlp_ratio, self.activation, self.dtype,
                        self.remat, attention=self.attention, scan=self.scan,
                        name="transformer")(x, value_path_last=dense == "value")
        x = LayerNorm(name="ln_post")(x)
        proj = self.param("proj", normal_init(scale), (w, self.output_dim), jnp.float32)
        if dense:
            x = x[:, 1:]
            return ops.dot_general(x, proj.astype(x.dtype), (((2,), (0,)), ((), ())),
                                   preferred_element_type=jnp.float32).reshape(n, gh, gw, -1)
        pooled = x[:, 0]
        return ops.dot_general(pooled, proj.astype(pooled.dtype), (((1,), (0,)), ((), ())),
                               preferred_element_type=jnp.float32)


def drop_patches(x: jax.Array, rate: float, rng: jax.Array) -> jax.Array:
    """Keeps the class token and a random `max(1, int(patches x (1 - rate)))` patch tokens per row."""
    patches = x.shape[1] - 1
    keep = max(1, int(patches * (1.0 - rate)))
    # A random subset per image: the top `keep` of i.i.d. normal scores (open_clip draws it so).
    _, index = jax.lax.top_k(jax.random.normal(rng, (x.shape[0], patches)), keep)
    kept = jnp.take_along_axis(x[:, 1:], index[..., None], axis=1)
    return jnp.concatenate([x[:, :1], kept], axis=1)


def resize_pos_embed(pos: np.ndarray, grid: int) -> np.ndarray:
    """A ViT position embedding (1 + g*g, width) resampled to a `grid` x `grid` patch grid.

    As open_clip's `resize_pos_embed`: the class token's row unchanged, the patch rows resampled
    as an image, bicubic with antialiasing (torch's antialiased bicubic is the Keys kernel with
    a = -0.5, which is `jax.image.resize`'s).
    """
    old = int(round(math.sqrt(pos.shape[0] - 1)))
    if old * old != pos.shape[0] - 1:
        raise ValueError(f"position embedding of {pos.shape[0]} rows is not 1 + a square grid")
    if old == grid:
        return pos
    width = pos.shape[1]
    patches = jax.image.resize(jnp.asarray(pos[1:], jnp.float32).reshape(old, old, width),
                               (grid, grid, width), method="bicubic", antialias=True)
    return np.concatenate([pos[:1], np.asarray(patches).reshape(grid * grid, width)])
