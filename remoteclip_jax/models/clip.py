"""The two-tower CLIP model, laid out as open_clip's `CLIP` class.

The image tower is `visual`; the text tower's pieces sit at the top level (`token_embedding`,
`positional_embedding`, `transformer`, `ln_final`, `text_projection`) exactly as in open_clip, so
OpenCLIP state-dict keys map onto Flax paths one to one. Like open_clip's `CLIP`, the model holds
the 0-d `logit_scale` and, when its config sets `init_logit_bias` (SigLIP), a 0-d `logit_bias`.
"""
from __future__ import annotations

import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.models import configs, ops
from remoteclip_jax.models.layers import (Dtype, LayerNorm, Transformer, exact_gelu, normal_init,
                                          quick_gelu, unstack_blocks)
from remoteclip_jax.models.resnet import ModifiedResNet
from remoteclip_jax.models.vit import VisionTransformer


# open_clip's default `init_logit_scale`: a temperature of 0.07.
DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """torch.nn.functional.normalize: x / max(||x||, eps)."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, eps)


class CLIP(nn.Module):
    config: dict[str, Any]  # complete open_clip-style config (see configs.model_config)
    dtype: Dtype = jnp.float32
    remat: bool = False
    attention: str = "auto"  # ops.ATTENTION_IMPLEMENTATIONS
    scan_blocks: bool = False  # residual blocks as one scan each (see init_variables)
    patch_dropout: float = 0.0  # FLIP: share of image patches dropped in training (ViT)

    @property
    def image_size(self) -> int:
        return int(self.config["vision_cfg"]["image_size"])

    @property
    def context_length(self) -> int:
        return int(self.config["text_cfg"]["context_length"])

    @property
    def embed_dim(self) -> int:
        return int(self.config["embed_dim"])

    @property
    def has_logit_bias(self) -> bool:
        """Whether the parameters include the scalar `logit_bias` (config `init_logit_bias`)."""
        return self.config.get("init_logit_bias") is not None

    def setup(self):
        cfg, v, t = self.config, self.config["vision_cfg"], self.config["text_cfg"]
        act = quick_gelu if cfg["quick_gelu"] else exact_gelu
        if configs.is_resnet(cfg):
            self.visual = ModifiedResNet(
                layers=tuple(v["layers"]), output_dim=cfg["embed_dim"],
                heads=v["width"] * 32 // v["head_width"], image_size=v["image_size"],
                width=v["width"], dtype=self.dtype, remat=self.remat)
        else:
            self.visual = VisionTransformer(
                image_size=v["image_size"], patch_size=v["patch_size"], width=v["width"],
                layers=v["layers"], heads=v["width"] // v["head_width"], output_dim=cfg["embed_dim"],
                activation=act, mlp_ratio=v["mlp_ratio"], dtype=self.dtype, remat=self.remat,
                attention=self.attention, scan=self.scan_blocks,
                patch_dropout=self.patch_dropout)
        width = t["width"]
        self.token_embedding = nn.Embed(t["vocab_size"], width, embedding_init=normal_init(0.02),
                                        dtype=self.dtype)
        self.positional_embedding = self.param("positional_embedding", normal_init(0.01),
                                               (t["context_length"], width), jnp.float32)
        self.transformer = Transformer(t["layers"], t["heads"], t["mlp_ratio"], act, self.dtype,
                                       self.remat, openclip_text_init=True, causal=True,
                                       attention=self.attention, scan=self.scan_blocks)
        self.ln_final = LayerNorm()
        self.text_projection = self.param("text_projection", normal_init(width ** -0.5),
                                          (width, cfg["embed_dim"]), jnp.float32)
        # 0-d like open_clip's default (`nonscalar_logit_scale=False`), so state dicts match.
        self.logit_scale = self.param(
            "logit_scale", nn.initializers.constant(cfg.get("init_logit_scale", DEFAULT_LOGIT_SCALE)),
            (), jnp.float32)
        if self.has_logit_bias:
            # SigLIP's learnt logit offset (open_clip `init_logit_bias`); only the sigmoid loss
            # uses it, the towers do not.
            self.logit_bias = self.param("logit_bias",
                                         nn.initializers.constant(cfg["init_logit_bias"]), (),
                                         jnp.float32)

    def encode_image(self, images: jax.Array, train: bool = False, tokens: bool = False,
                     dense: str = "plain") -> jax.Array:
        """Unnormalised image features (N, embed_dim), float32, from NHWC normalised images.

        With `tokens=True` (ViT towers), the projected patch tokens instead, (N, grid_h, grid_w,
        embed_dim), for dense (per-patch) zero-shot labels: `dense` names the recipe, "plain"
        (the last block's tokens) or "value" (MaskCLIP's value path, see `vit.VisionTransformer`).
        """
        if tokens:
            if not isinstance(self.visual, VisionTransformer):
                raise ConfigError("patch tokens (dense labels) need a ViT image tower; this "
                                  "model's is a ResNet")
            return self.visual(images, train, dense=dense).astype(jnp.float32)
        return self.visual(images, train).astype(jnp.float32)

    def encode_text(self, texts: jax.Array) -> jax.Array:
        """Unnormalised text features (N, embed_dim), float32, from int token ids (N, L)."""
        length = texts.shape[1]
        x = self.token_embedding(texts) + self.positional_embedding[:length].astype(self.dtype)
        x = self.transformer(x)  # causal: open_clip's attention mask, without a mask array
        x = self.ln_final(x)
        # The end-of-text token has the largest id, so argmax finds it (open_clip pool_type='argmax').
        pooled = x[jnp.arange(x.shape[0]), jnp.argmax(texts, axis=-1)]
        return ops.dot_general(pooled, self.text_projection.astype(pooled.dtype),
                               (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)

    def __call__(self, images: jax.Array, texts: jax.Array, train: bool = False):
        """(normalised image features, normalised text features, exp(logit_scale)), and
        `logit_bias` fourth for models that hold one (SigLIP), as open_clip's forward returns."""
        image_features = l2_normalize(self.encode_image(images, train))
        text_features = l2_normalize(self.encode_text(texts))
        if self.has_logit_bias:
            return image_features, text_features, jnp.exp(self.logit_scale), self.logit_bias
        return image_features, text_features, jnp.exp(self.logit_scale)


def create_model(name_or_config: str | dict, *, dtype: Dtype = jnp.float32, remat: bool = False,
                 attention: str = "auto", patch_dropout: float = 0.0) -> CLIP:
    """Builds a CLIP model by open_clip name ("ViT-B-32-quickgelu"), preset or config dict.

    Args:
      name_or_config: an open_clip model name, a preset such as "RemoteCLIP-ViT-B-32", or an
        open_clip-style dict with `embed_dim`, `vision_cfg`, `text_cfg` (and `quick_gelu`).
      dtype: compute dtype (float32 or bfloat16); parameters and LayerNorm statistics stay float32.
      remat: rematerialise residual blocks in the backward pass to save activation memory.
      attention: "auto" (cuDNN flash attention for bfloat16 on NVIDIA GPUs, XLA's elsewhere),
        "xla" or "cudnn"; see `models.ops`.
      patch_dropout: FLIP's patch dropout for ViT towers in training (`train=True`), in [0, 1);
        open_clip's `patch_dropout`. Draws from the "dropout" RNG stream.
    """
    if isinstance(dtype, str):
        dtype = jnp.dtype(dtype)
    if attention not in ops.ATTENTION_IMPLEMENTATIONS:
        raise ConfigError(
            f"attention={attention!r} is not one of {', '.join(ops.ATTENTION_IMPLEMENTATIONS)}")
    config = configs.model_config(name_or_config)
    if not 0.0 <= patch_dropout < 1.0:
        raise ConfigError(f"patch_dropout={patch_dropout} must be in [0, 1)")
    if patch_dropout and configs.is_resnet(config):
        raise ConfigError("patch_dropout needs a ViT image tower")
    # Frozen so the module stays hashable (jit caches on it).
    return CLIP(_freeze(config), dtype=dtype, remat=remat, attention=attention,
                patch_dropout=float(patch_dropout))


def init_variables(model: CLIP, rng: jax.Array) -> dict:
    """Fresh variables for `model`, the tree `model.init` gives, from a program that stays small.

    `model.init` unrolls every residual block's random initialisers (36 for ViT-L-14), which
    XLA:GPU takes a minute and a half to compile; here each tower's blocks are initialised by one
    scanned block and unstacked into `resblocks_{i}`. Same initialisers and shapes, other random
    streams than `model.init`.
    """
    size, length = model.image_size, model.context_length
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    texts = jnp.zeros((1, length), jnp.int32)
    variables = model.clone(scan_blocks=True).init(rng, images, texts)
    return unstack_blocks(flax.core.unfreeze(variables))


def at_image_size(model: CLIP, variables: dict, image_size: int) -> tuple[CLIP, dict]:
    """The model taking `image_size`-px inputs (ViT towers), with its variables: the position
    embedding resampled to the new patch grid as open_clip's `resize_pos_embed` does (bicubic,
    antialiased). Finer grids give finer dense maps (`encode_image(tokens=True)`).

    Raises:
        ConfigError: a ResNet tower, or a size that is not a multiple of the patch size.
    """
    vision = dict(model.config["vision_cfg"])
    if int(image_size) == model.image_size:
        return model, variables
    if configs.is_resnet(model.config):
        raise ConfigError(f"image size {image_size}: only ViT towers take other input sizes")
    if image_size <= 0 or image_size % vision["patch_size"]:
        raise ConfigError(f"image size {image_size}: must be a positive multiple of the patch "
                          f"size {vision['patch_size']}")
    from remoteclip_jax.models.vit import resize_pos_embed

    config = {**flax.core.unfreeze(model.config),
              "vision_cfg": {**vision, "image_size": int(image_size)}}
    params = flax.core.unfreeze(variables["params"])
    visual = dict(params["visual"])
    visual["positional_embedding"] = jnp.asarray(resize_pos_embed(
        np.asarray(visual["positional_embedding"]), int(image_size) // vision["patch_size"]))
    params["visual"] = visual
    return model.clone(config=_freeze(config)), {**variables, "params": params}


def _freeze(x):
    if isinstance(x, dict):
        return flax.core.FrozenDict({k: _freeze(v) for k, v in x.items()})
    if isinstance(x, list):
        return tuple(_freeze(v) for v in x)
    return x
