"""The jitted train step: sharded contrastive loss, AdamW update, feature-cached accumulation.

One call of `train_step(state, batch, rng)` is one optimizer update on the whole batch. With
`config.accum_steps = A > 1` the batch is cut into A micro-batches and the negatives stay
full-batch, as open_clip's `--accum-freq`:

1. forward every micro-batch without gradient and cache its features (a `lax.scan`);
2. evaluate the loss once on all cached features and take its gradient with respect to the
   features, `logit_scale` and `logit_bias`;
3. for each micro-batch recompute its features with `jax.vjp` and pull the cached feature
   gradient back to the parameters; sum over micro-batches (a second `lax.scan`).

Because the loss depends on the parameters only through the features and the two scalars, the
summed gradient equals the one-batch gradient exactly (up to float rounding); only one micro-batch
of activations is alive at a time. open_clip's loop reaches the same feature gradients by
re-evaluating the loss per micro-batch, which also adds the `logit_scale` gradient once per
micro-batch (A times); here it is counted once, so accumulation equals one big batch.

BatchNorm (ResNet towers) runs in training mode with `mutable=["batch_stats"]`. Under `jit` on a
batch-sharded input its statistics are those of the *global* (micro-)batch, i.e. SyncBN, not the
per-GPU statistics of open_clip's default DDP (which does not sync BatchNorm). With accumulation, each
micro-batch is normalised with its own statistics and the running averages are updated once per
micro-batch (open_clip updates them twice, in both passes). With `lock_image` the image tower
runs in eval mode (open_clip `freeze_bn_stats`) and gets no gradient at all; every locked
parameter (`lock_image`, `lock_text`, and their unlocked groups: `optim.trainable_labels`) has its
gradient cut, so no backward pass is built for it.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.train import loss as loss_lib
from remoteclip_jax.train import optim as optim_lib
from remoteclip_jax.train import sharding as sharding_lib
from remoteclip_jax.train.state import TrainState, check_loss_fits

Batch = dict  # {"images": (B, H, W, 3) float32, "texts": (B, L) int32}
METRICS = ("loss", "lr", "logit_scale", "grad_norm", "param_norm")


def _total_steps(config: Any, total_steps: int | None) -> int:
    if total_steps is None:
        total_steps = int(config.train.steps)
    if total_steps < 1:
        raise ValueError("the schedule needs the run length: pass total_steps or set "
                         "config.train.steps > 0")
    return int(total_steps)


class _Towers:
    """Model calls shared by the train and eval steps."""

    def __init__(self, model: Any, mesh: Mesh, loss_type: str, lock_image: bool,
                 locks: dict | None = None):
        self.model = model
        self.loss_fn = loss_lib.make_loss_fn(mesh, loss_type)
        self.lock_image = lock_image
        self.locks = dict(locks or {"lock_image": lock_image})

    def freeze(self, params: dict) -> dict:
        """Cuts the gradient into locked parameters, so their backward pass is never built."""
        if not any(self.locks.values()):
            return params
        frozen = optim_lib.frozen_mask(params, **self.locks)
        return jax.tree.map(lambda f, v: jax.lax.stop_gradient(v) if f else v, frozen, params)

    def encode(self, params: dict, batch_stats: Any, images: jax.Array, texts: jax.Array,
               rng: jax.Array) -> tuple[tuple, Any]:
        """The model's forward pass in training mode: ((img, txt, logit scale, logit bias or
        None), updated BatchNorm statistics), features normalised, the scale exponentiated.

        `rng` feeds stochastic layers (patch dropout): the same key gives the same features.
        """
        variables = {"params": params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
            if not self.lock_image:
                outputs, updates = self.model.apply(variables, images, texts, train=True,
                                                    mutable=["batch_stats"])
                return _with_bias(outputs), updates["batch_stats"]
            # A locked ResNet keeps its BatchNorm statistics (eval mode).
            return _with_bias(self.model.apply(variables, images, texts)), batch_stats
        outputs = self.model.apply(variables, images, texts, train=True, rngs={"dropout": rng})
        return _with_bias(outputs), batch_stats


def _with_bias(outputs: tuple) -> tuple:
    """The forward pass's (img, txt, scale, bias): open_clip's CLIP returns the bias only when it
    has one (SigLIP models)."""
    return tuple(outputs) + (None,) * (4 - len(outputs))


def _check_batch(images: jax.Array, texts: jax.Array, shards: int, accum: int) -> None:
    b = images.shape[0]
    if texts.shape[0] != b:
        raise ConfigError(f"batch has {b} images but {texts.shape[0]} texts")
    if b % (shards * accum):
        raise ConfigError(
            f"batch of {b} pairs cannot be cut into config.accum_steps={accum} micro-batches "
            f"split over {shards} devices; make it a multiple of {shards * accum}")


def _grads_fn(model: Any, config: Any, mesh: Mesh) -> Callable:
    """`(params, batch_stats, images, texts, rng) -> (loss, grads, new_batch_stats)`, not jitted."""
    loss_type = str(config.loss.type)
    accum = int(config.accum_steps)
    if accum < 1:
        raise ValueError(f"config.accum_steps={accum} must be >= 1")
    check_loss_fits(model, config)
    towers = _Towers(model, mesh, loss_type, bool(config.lock_image),
                     optim_lib.lock_settings(config))
    shards = sharding_lib.num_batch_shards(mesh)
    micro_sharding = NamedSharding(mesh, P(None, sharding_lib.BATCH_AXES))

    def one_batch(params, batch_stats, images, texts, rng):
        def objective(p):
            outputs, new_stats = towers.encode(towers.freeze(p), batch_stats, images, texts, rng)
            return towers.loss_fn(*outputs), new_stats

        (value, new_stats), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return value, grads, new_stats

    def accumulated(params, batch_stats, images, texts, rng):
        b = images.shape[0]

        def split(x):  # row i·A + j -> micro-batch j; keeps every micro-batch on all devices
            y = x.reshape((b // accum, accum) + x.shape[1:]).swapaxes(0, 1)
            return jax.lax.with_sharding_constraint(y, micro_sharding)

        def merge(f):  # inverse of split: back to the original row order
            return f.swapaxes(0, 1).reshape((b,) + f.shape[2:])

        # Micro-batch j draws from the same key in both passes, so its features are recomputed.
        micro = (split(images), split(texts), jax.random.split(rng, accum))
        frozen = jax.lax.stop_gradient(params)

        def forward(_, xs):
            (img, txt, _, _), _ = towers.encode(frozen, batch_stats, *xs)
            return None, (img, txt)

        _, (cached_img, cached_txt) = jax.lax.scan(forward, None, micro)
        # The scalars enter the cached loss as the parameters they are (the forward pass only
        # exponentiates the scale), so their gradients come from this one loss.
        logit_bias = params.get("logit_bias", jnp.zeros((), jnp.float32))
        has_bias = "logit_bias" in params

        def cached_loss(f_img, f_txt, logit_scale, bias):
            return towers.loss_fn(merge(f_img), merge(f_txt), jnp.exp(logit_scale),
                                  bias if has_bias else None)

        value, (g_img, g_txt, g_scale, g_bias) = jax.value_and_grad(
            cached_loss, argnums=(0, 1, 2, 3))(cached_img, cached_txt, params["logit_scale"],
                                               logit_bias)

        def backward(carry, xs):
            grads, stats = carry
            images_j, texts_j, rng_j, g_img_j, g_txt_j = xs

            def features(p):
                (img, txt, _, _), new_stats = towers.encode(towers.freeze(p), stats, images_j,
                                                            texts_j, rng_j)
                return (img, txt), new_stats

            _, pullback, new_stats = jax.vjp(features, params, has_aux=True)
            (g,) = pullback((g_img_j, g_txt_j))
            return (jax.tree.map(jnp.add, grads, g), new_stats), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (grads, new_stats), _ = jax.lax.scan(backward, (zeros, batch_stats),
                                             micro + (g_img, g_txt))
        grads = dict(grads)
        grads["logit_scale"] = grads["logit_scale"] + g_scale
        if "logit_bias" in grads:
            grads["logit_bias"] = grads["logit_bias"] + g_bias
        return value, grads, new_stats

    def compute(params, batch_stats, images, texts, rng):
        _check_batch(images, texts, shards, accum)
        fn = one_batch if accum == 1 else accumulated
        return fn(params, batch_stats, images, texts, rng)

    return compute


def make_grad_fn(model: Any, config: Any, mesh: Mesh) -> Callable:
    """Jitted `grad_fn(params, batch_stats, batch, rng=None) -> (loss, grads, new_batch_stats)`.

    The exact gradient the train step feeds to the optimizer (accumulation and locking
    included); for tests and diagnostics.
    """
    compute = _grads_fn(model, config, mesh)

    def grad_fn(params, stats, batch, rng=None):
        rng = jax.random.PRNGKey(0) if rng is None else rng
        return compute(params, stats, batch["images"], batch["texts"], rng)

    return jax.jit(grad_fn)


def make_train_step(model: Any, config: Any, mesh: Mesh, total_steps: int | None = None,
                    optimizer: tuple | None = None
                    ) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
    """Builds the jitted, state-donating train step.

    Args:
        model: the Flax CLIP module (`rc.create_model`); its dtype/remat set compute precision
            and rematerialisation.
        config: reads `loss.type`, `accum_steps`, the lock keys, `optim.*` and, unless
            `total_steps` is given, `train.steps` (the cosine schedule's length).
        mesh: the training mesh.
        total_steps: number of optimizer updates in the run.
        optimizer: the run's `(tx, schedule)` from `optim.make_optimizer` (the one
            `create_train_state` was given); built from `config` and the steps when None.

    Returns:
        `train_step(state, batch, rng) -> (state, metrics)`, a `jax.jit` function (so `.lower`
        works) that donates `state`. `batch = {"images": (B, H, W, 3) float32, "texts": (B, L)
        int32}` sharded over the batch axes (`sharding.shard_batch`), B a multiple of
        devices × accum_steps. `rng` feeds patch dropout (fold the step into it). Metrics
        (float32 scalars): loss, lr (of this update), logit_scale (exp, before the update),
        grad_norm (global L2 of the raw gradient), param_norm (after the update), and
        logit_bias for the sigmoid loss.
    """
    tx, schedule = optimizer or optim_lib.make_optimizer(config, _total_steps(config, total_steps))
    compute = _grads_fn(model, config, mesh)
    clamp = bool(config.optim.clamp_logit_scale)

    def train_step(state: TrainState, batch: Batch, rng: jax.Array):
        value, grads, new_stats = compute(state.params, state.batch_stats, batch["images"],
                                          batch["texts"], rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if clamp:
            params = optim_lib.clamp_logit_scale(params)
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=new_stats,
                                  opt_state=opt_state)
        # Pin the output to the same shardings as create_train_state's, so donation reuses buffers.
        new_state = jax.lax.with_sharding_constraint(
            new_state, sharding_lib.tree_shardings(new_state, mesh))
        metrics = {
            "loss": value,
            "lr": schedule(state.step),
            "logit_scale": jnp.exp(state.params["logit_scale"]),
            "grad_norm": optax.global_norm(grads),
            "param_norm": optax.global_norm(params),
        }
        if "logit_bias" in params:
            metrics["logit_bias"] = state.params["logit_bias"]
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=(0,))
