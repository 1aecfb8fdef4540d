"""An exponential moving average (EMA) of the model's variables, kept beside the train state.

After optimizer update ``t`` (0-based), with the model's new variables ``v_t`` (parameters and,
for ResNet towers, BatchNorm statistics):

    ema_t = ema_{t-1} + (1 - d_t) * (v_t - ema_{t-1}),    ema_{-1} = the initial variables

``d_t = ema.decay``, or with ``ema.warmup_power = p > 0`` timm's warmup (``ModelEmaV3``
``use_warmup``, ``warmup_gamma=1``): ``d_t = min(decay, 1 - (1 + t) ** -p)``, which starts at 0
(the first average is the first update's variables) and approaches ``decay`` (p = 2/3 reaches
0.999 after 31.6k updates, p = 3/4 after 10k). ITRA, which RemoteCLIP trained with, offers the
same average without warmup (``--model_ema``, timm's ``ModelEma`` over parameters and buffers),
taken before each update rather than after it: the same sequence, one update later.

The EMA lives in its own checkpoint item (``Checkpointer.save(..., ema=...)``), saved with the
train state of the same step, so a resumed run continues it exactly and a workdir without it
(trained with EMA off) still resumes. ``ema.evaluate`` also evaluates it, ``ema.export`` also
exports it (see `remoteclip_jax.train.loop` and `remoteclip_jax.train.export`).
"""
from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp

from remoteclip_jax.config import ConfigError


def enabled(config: Any) -> bool:
    """Whether the run keeps an EMA (``ema.decay > 0``; `config.validate` checks the keys)."""
    return float(config.ema.decay) > 0.0


def weight_at(config: Any, t: jax.Array) -> jax.Array:
    """``1 - d_t``, the new variables' weight in update ``t`` (0-based), float32. Computed as
    ``1 - d`` in float64 first: float32(0.9999) is 0.99989998, so 1 - float32(d) would be off by
    1.7e-4 relative."""
    decay, power = float(config.ema.decay), float(config.ema.warmup_power)
    floor = jnp.float32(1.0 - decay)
    if power == 0.0:
        return floor
    t = jnp.asarray(t, jnp.float32)
    return jnp.maximum(floor, (1.0 + t) ** jnp.float32(-power))


def init(variables: Any) -> Any:
    """The EMA's start: a float32 copy of the variables, with their shardings."""
    return jax.tree.map(lambda x: jnp.array(x, jnp.float32, copy=True), variables)


def make_update(config: Any):
    """Jitted ``update(ema, variables, t) -> ema`` for update ``t``; donates ``ema``."""
    def update(ema, variables, t):
        w = weight_at(config, t)
        return jax.tree.map(lambda e, v: e + w * (v.astype(jnp.float32) - e), ema, variables)

    return jax.jit(update, donate_argnums=(0,))


def restore_or_init(checkpointer, step: int | None, variables: Any) -> Any:
    """The EMA saved with checkpoint `step`, or, when there is none (a fresh run, or EMA turned
    on for a workdir that trained without it), `init(variables)`."""
    restored = None if step is None else checkpointer.restore_ema(step, variables)
    if restored is None and step is not None:
        logging.warning("checkpoint step %d holds no EMA of the weights; the EMA starts from "
                        "that step's weights", step)
    return init(variables) if restored is None else restored


def evaluate(evaluator, variables: Any, step: int | None) -> dict:
    """Runs `evaluator` on the EMA `variables`: results in WORKDIR/eval_ema, metrics named
    ``eval_ema/<dataset>/<metric>`` (the same datasets, encoders and compiled programs)."""
    metrics = evaluator(variables, step, out_dir=evaluator.out_dir.parent / "eval_ema")
    return {k.replace("eval/", "eval_ema/", 1): v for k, v in metrics.items()}


def saved(checkpointer, step: int | None, variables: Any) -> Any:
    """The EMA saved with checkpoint `step` (laid out like `variables`), for evaluation and
    export; refuses one that has none."""
    restored = None if step is None else checkpointer.restore_ema(step, variables)
    if restored is None:
        where = (f"checkpoint step {step} in {checkpointer.directory}" if step is not None
                 else "config.init_from (no checkpoint)")
        raise ConfigError(f"{where} holds no EMA of the weights; train with config.ema.decay > 0, "
                          "or set config.ema.evaluate / config.ema.export to false")
    return restored
