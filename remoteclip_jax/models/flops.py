"""Model FLOPs of CLIP towers, counted from their shapes: the same figure on every backend.

Counts multiply-adds of every matrix product and convolution as 2 FLOPs (elementwise work,
normalisation and softmax are left out, as MFU conventions do). A train step costs 3x the forward
pass (the backward pass computes a gradient for both operands of each product); recomputation
under remat or accumulation is not counted (model FLOPs, not hardware FLOPs). XLA's own count of a
compiled program differs by backend: on GPUs its cost analysis misses cuBLAS and cuDNN calls.
"""
from __future__ import annotations

from collections.abc import Mapping

import flax

from remoteclip_jax.models import configs


def _transformer(tokens: int, width: int, layers: int, mlp_ratio: float) -> float:
    hidden = int(width * mlp_ratio)
    per_block = (2 * tokens * width * 3 * width  # in_proj
                 + 2 * 2 * tokens * tokens * width  # q k^T and (weights) v, all heads
                 + 2 * tokens * width * width  # out_proj
                 + 2 * 2 * tokens * width * hidden)  # c_fc, c_proj
    return layers * per_block


def _vit(v: dict, embed_dim: int) -> float:
    grid = v["image_size"] // v["patch_size"]
    patches = grid * grid
    stem = 2 * patches * (v["patch_size"] ** 2 * 3) * v["width"]
    return (stem + _transformer(patches + 1, v["width"], v["layers"], v["mlp_ratio"])
            + 2 * v["width"] * embed_dim)


def _conv(side: int, kernel: int, c_in: int, c_out: int) -> float:
    return 2 * side * side * kernel * kernel * c_in * c_out


def _resnet(v: dict, embed_dim: int) -> float:
    """open_clip's ModifiedResNet: 3-conv stem, Bottlenecks (avg-pool before strided convs)."""
    w, side = v["width"], v["image_size"] // 2
    total = (_conv(side, 3, 3, w // 2) + _conv(side, 3, w // 2, w // 2) + _conv(side, 3, w // 2, w))
    side //= 2  # stem average pool
    inplanes = w
    for stage, blocks in enumerate(v["layers"], start=1):
        planes = w * 2 ** (stage - 1)
        for j in range(blocks):
            stride = 2 if (stage > 1 and j == 0) else 1
            out_side = side // stride
            total += _conv(side, 1, inplanes, planes) + _conv(side, 3, planes, planes)
            total += _conv(out_side, 1, planes, planes * 4)
            if stride > 1 or inplanes != planes * 4:
                total += _conv(out_side, 1, inplanes, planes * 4)
            inplanes, side = planes * 4, out_side
    # Attention pooling: the mean token queries all side^2 + 1 tokens.
    tokens, c = side * side + 1, inplanes
    total += 2 * c * c + 2 * 2 * tokens * c * c + 2 * 2 * tokens * c + 2 * c * embed_dim
    return total


def forward_flops(name_or_config: str | Mapping, tower: str = "both") -> float:
    """FLOPs of one image-text pair through the towers ("image", "text" or "both").

    Args:
        name_or_config: a model name, an open_clip-style config, or a model's `.config`.
        tower: "image", "text" or "both".
    """
    if not isinstance(name_or_config, str):
        name_or_config = flax.core.unfreeze(name_or_config)  # a model's frozen config
    cfg = configs.model_config(name_or_config)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    image = (_resnet if configs.is_resnet(cfg) else _vit)(v, cfg["embed_dim"])
    text = (_transformer(t["context_length"], t["width"], t["layers"], t["mlp_ratio"])
            + 2 * t["width"] * cfg["embed_dim"])
    return {"image": image, "text": text, "both": image + text}[tower]


def train_flops_per_pair(name_or_config: str | Mapping) -> float:
    """Model FLOPs of one pair in a train step: 3x the forward pass (forward + backward)."""
    return 3 * forward_flops(name_or_config)
