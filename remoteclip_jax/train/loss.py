"""Contrastive losses: CLIP's softmax InfoNCE and SigLIP's sigmoid loss, sharded over the batch.

The sharded form is open_clip's `ClipLoss(local_loss=True, gather_with_grad=True)`: each device
scores its n local images (texts) against the N = n·devices texts (images) all-gathered *with*
gradient, so the logits are n×N per device instead of N×N, and the mean over devices is the
full-batch loss. The gathered features must keep their gradient: detaching them (open_clip's
default) scales the gradients by 1/devices (open_clip issue #616).

Losses are computed in float32 whatever the compute dtype of the towers.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from remoteclip_jax.config import LOSS_TYPES
from remoteclip_jax.errors import check_choice
from remoteclip_jax.sharding import BATCH_AXES

LossFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array | None], jax.Array]


def normalize(x: jax.Array) -> jax.Array:
    """`torch.nn.functional.normalize(x, dim=-1)`: x / max(‖x‖, 1e-12)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, 1e-12)


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of integer labels, as torch's `F.cross_entropy`."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def _softmax_terms(img: jax.Array, txt: jax.Array, all_img: jax.Array, all_txt: jax.Array,
                   scale: jax.Array, offset: jax.Array | int) -> jax.Array:
    labels = offset + jnp.arange(img.shape[0])
    logits_per_image = scale * img @ all_txt.T
    logits_per_text = scale * txt @ all_img.T
    return (_cross_entropy(logits_per_image, labels) + _cross_entropy(logits_per_text, labels)) / 2


def _sigmoid_terms(img: jax.Array, all_txt: jax.Array, scale: jax.Array, bias: jax.Array,
                   offset: jax.Array | int) -> jax.Array:
    # open_clip SigLipLoss: -sum(logsigmoid(y * logits)) / n with y = +1 on matching pairs, else -1.
    n = img.shape[0]
    logits = scale * img @ all_txt.T + bias
    positives = (offset + jnp.arange(n))[:, None] == jnp.arange(all_txt.shape[0])[None, :]
    signs = jnp.where(positives, 1.0, -1.0).astype(logits.dtype)
    return -jnp.sum(jax.nn.log_sigmoid(signs * logits)) / n


def clip_loss(img: jax.Array, txt: jax.Array, scale: jax.Array) -> jax.Array:
    """Single-device CLIP loss on the full batch (the reference).

    Args:
        img: (N, E) L2-normalised image features.
        txt: (N, E) L2-normalised text features; row i pairs with image i.
        scale: the multiplier exp(logit_scale).

    Returns:
        (CE(logits_per_image) + CE(logits_per_text)) / 2, a scalar.
    """
    img, txt = img.astype(jnp.float32), txt.astype(jnp.float32)
    return _softmax_terms(img, txt, img, txt, scale.astype(jnp.float32), 0)


def sigmoid_loss(img: jax.Array, txt: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """Single-device SigLIP loss on the full batch: −Σ log σ(y·(s·zᵢ·zₜ + b)) / N."""
    img, txt = img.astype(jnp.float32), txt.astype(jnp.float32)
    return _sigmoid_terms(img, txt, scale.astype(jnp.float32), bias.astype(jnp.float32), 0)


def make_loss_fn(mesh: Mesh, loss_type: str = "softmax") -> LossFn:
    """The sharded contrastive loss for `mesh`, to call inside `jax.jit`.

    Args:
        mesh: the training mesh; features are split over its batch axes ("data", "fsdp").
        loss_type: "softmax" (CLIP) or "sigmoid" (SigLIP).

    Returns:
        `loss(img, txt, scale, bias) -> scalar` taking (N, E) normalised, batch-sharded features,
        the multiplier exp(logit_scale) and the SigLIP bias (ignored, may be None, for softmax).
        Its value and gradients equal the single-device `clip_loss`/`sigmoid_loss` on the
        same N pairs.
    """
    check_choice("config.loss.type", loss_type, LOSS_TYPES)
    axes = BATCH_AXES
    feature_spec = P(axes)

    def local(img, txt, scale, bias):
        img, txt = img.astype(jnp.float32), txt.astype(jnp.float32)
        scale = scale.astype(jnp.float32)
        # tiled all_gather keeps the gradient: its transpose is a reduce-scatter of the cotangents.
        all_txt = jax.lax.all_gather(txt, axes, tiled=True)
        offset = jax.lax.axis_index(axes) * img.shape[0]
        if loss_type == "softmax":
            all_img = jax.lax.all_gather(img, axes, tiled=True)
            value = _softmax_terms(img, txt, all_img, all_txt, scale, offset)
        else:
            value = _sigmoid_terms(img, all_txt, scale, bias.astype(jnp.float32), offset)
        # Mean over devices: keeps the gradient scale independent of the device count.
        return jax.lax.pmean(value, axes)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(feature_spec, feature_spec, P(), P()),
                            out_specs=P())

    def loss(img, txt, scale, bias=None):
        if bias is None:
            bias = jnp.zeros((), jnp.float32)
        return sharded(img, txt, scale, bias)

    return loss
