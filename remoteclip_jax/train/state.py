"""The train state, created directly on the mesh with its final shardings.

Parameters are never materialised on one device first: `jax.eval_shape` gives the shapes, the
sharding rule (`sharding.tree_shardings`) gives a `NamedSharding` per leaf, and the initialiser runs
under `jax.jit(..., out_shardings=...)` so each device only ever holds its own shard (big_vision's
pattern). Checkpoint weights (from `rc.load_openclip`) are placed shard by shard the same way.
"""
from __future__ import annotations

import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from remoteclip_jax.errors import ConfigError, WeightsError
from remoteclip_jax.models import clip as clip_lib
from remoteclip_jax.train import optim as optim_lib
from remoteclip_jax.train import sharding as sharding_lib
from remoteclip_jax.weights.trees import differences, leaf_shapes

# SigLIP's init, as open_clip's `--siglip` sets it: `init_logit_scale=ln 10`, `init_logit_bias=-10`.
SIGLIP_INIT_LOGIT_SCALE = math.log(10.0)
SIGLIP_INIT_LOGIT_BIAS = -10.0


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; a pure pytree (checkpointable as is).

    Attributes:
        step: number of optimizer updates applied so far (int32 scalar).
        params: model parameters; a SigLIP model's include the scalar `logit_bias`.
        batch_stats: BatchNorm running statistics (ResNet towers); `{}` for ViTs.
        opt_state: the optax state of `optim.make_optimizer(config, ...)`.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def training_model_config(config: Any) -> str | dict:
    """The model spec a run builds: `config.model`, plus SigLIP's scalars for the sigmoid loss.

    With ``config.loss.type == "sigmoid"`` the model must hold `logit_bias` so that it trains,
    checkpoints and exports as an ordinary parameter; as open_clip's trainer does for `--siglip`,
    `init_logit_bias=-10` and `init_logit_scale=ln 10` are added unless `config.model` sets them.
    Other losses get `config.model` unchanged (so their configs, and checkpoint signatures, stay
    as they were).

    Args:
        config: the training config (reads `model` and `loss.type`).

    Returns:
        An open_clip name or config dict for `rc.create_model`, `rc.load_openclip` and export.
    """
    from remoteclip_jax.models import configs as model_configs

    spec = config.model.to_dict() if hasattr(config.model, "to_dict") else config.model
    if _loss_type(config) != "sigmoid":
        return spec
    resolved = model_configs.model_config(spec)
    resolved.setdefault("init_logit_scale", SIGLIP_INIT_LOGIT_SCALE)
    resolved.setdefault("init_logit_bias", SIGLIP_INIT_LOGIT_BIAS)
    return resolved


def _loss_type(config: Any) -> str:
    return str(config.loss.type)


def _holds_logit_bias(model: Any) -> bool:
    return bool(getattr(model, "has_logit_bias", False))


def check_loss_fits(model: Any, config: Any) -> None:
    """Raises `ConfigError` when the sigmoid loss is asked of a model without `logit_bias`."""
    if _loss_type(config) == "sigmoid" and not _holds_logit_bias(model):
        raise ConfigError("config.loss.type='sigmoid' trains SigLIP's logit_bias, which this model "
                          "does not hold: build it from state.training_model_config(config) (adds "
                          "init_logit_bias=-10, init_logit_scale=ln 10, as open_clip's --siglip "
                          "does) or set init_logit_bias in config.model")


def model_variables(state: TrainState) -> dict:
    """`{"params"[, "batch_stats"]}` for `model.apply`, evaluation or `rc.to_openclip`."""
    variables = {"params": dict(state.params)}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def _dummy_inputs(model: Any) -> tuple[jax.Array, jax.Array]:
    size, length = int(model.image_size), int(model.context_length)
    return jnp.zeros((1, size, size, 3), jnp.float32), jnp.zeros((1, length), jnp.int32)


def _check_tree(given: Any, expected: Any, what: str) -> None:
    got, want = leaf_shapes(given), leaf_shapes(expected)
    missing, extra, wrong = differences(got, want)
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if extra:
            parts.append(f"unexpected {extra[:3]}")
        if wrong:
            parts.append("shape " + ", ".join(f"{k} {got[k]} != {want[k]}"
                                              for k in wrong[:3]))
        raise WeightsError(f"init variables ({what}) do not fit config.model: "
                                 + "; ".join(parts))


def create_train_state(model: Any, config: Any, mesh: Mesh, rng: jax.Array,
                       init_variables: dict | None = None,
                       optimizer: optax.GradientTransformation | None = None
                       ) -> tuple[TrainState, TrainState]:
    """Creates the train state already sharded over `mesh`.

    Args:
        model: a `rc.create_model(...)` module.
        config: the training config (reads `loss.type`, `optim.*`, `lock_image`).
        mesh: from `sharding.make_mesh(config.mesh)`.
        rng: PRNG key for a from-scratch init (ignored when `init_variables` is given).
        init_variables: optional Flax variables (`{"params"[, "batch_stats"]}`, e.g. from
            `rc.load_openclip`) to start from instead of a random init; numpy or jax arrays.
        optimizer: the run's optax transformation (`optim.make_optimizer`), whose state the
            train state holds; built from `config` when None (its state's structure does not
            depend on the schedule's length).

    Returns:
        (state, state_shardings): the state with step 0 and a tree of `NamedSharding`s of the same
        structure (what `jax.jit`/orbax restore needs as targets).

    Raises:
        WeightsError: when `init_variables` does not match the model's parameter tree.
    """
    check_loss_fits(model, config)
    in_model = _holds_logit_bias(model)
    model_cfg = getattr(model, "config", {}) or {}
    bias_init = float(model_cfg.get("init_logit_bias", SIGLIP_INIT_LOGIT_BIAS))
    tx = optimizer or optim_lib.make_optimizer(config, total_steps=1)[0]

    def build(variables):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), dict(variables["params"]))
        batch_stats = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32),
                                   dict(variables.get("batch_stats", {})))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                          opt_state=tx.init(params))

    images, texts = _dummy_inputs(model)

    def init_fn(key):
        return build(clip_lib.init_variables(model, key))

    abstract = jax.eval_shape(init_fn, rng)
    shardings = sharding_lib.tree_shardings(abstract, mesh)
    if init_variables is None:
        state = jax.jit(init_fn, out_shardings=shardings)(rng)
        return state, shardings

    abstract_vars = jax.eval_shape(model.init, rng, images, texts)
    init_params = dict(init_variables["params"])
    if in_model and "logit_bias" not in init_params:
        # A CLIP checkpoint for a model that holds the bias: start it where a fresh init would.
        init_params["logit_bias"] = np.float32(bias_init)
    if not in_model:
        init_params.pop("logit_bias", None)  # a SigLIP checkpoint for CLIP training
    given = {"params": init_params}
    _check_tree(given["params"], abstract_vars["params"], "params")
    if "batch_stats" in abstract_vars:
        given["batch_stats"] = init_variables.get("batch_stats")
        if given["batch_stats"] is None:
            raise WeightsError(
                "init variables lack 'batch_stats' but the model has BatchNorm")
        _check_tree(given["batch_stats"], abstract_vars["batch_stats"], "batch_stats")
    var_shardings = {"params": {k: v for k, v in shardings.params.items()
                                if k in given["params"]}}
    if "batch_stats" in given:
        var_shardings["batch_stats"] = shardings.batch_stats
    placed = jax.tree.map(_place, given, var_shardings)
    state = jax.jit(build, out_shardings=shardings)(placed)
    return state, shardings


def _place(x: Any, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """A global array from a host value present on every process (each device takes its shard)."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    host = np.asarray(x, dtype=np.float32)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
