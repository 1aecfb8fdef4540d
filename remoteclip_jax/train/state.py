"""The train state, created directly on the mesh with its final shardings.

Parameters are never materialised on one device first: `jax.eval_shape` gives the shapes, the
sharding rule (`sharding.tree_shardings`) gives a `NamedSharding` per leaf, and the initialiser runs
under `jax.jit(..., out_shardings=...)` so each device only ever holds its own shard (big_vision's
pattern). Checkpoint weights (from `rc.load_openclip`) are placed shard by shard the same way.
"""
from __future__ import annotations

from remoteclip_jax.errors import UserError
import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from remoteclip_jax.train import optim as optim_lib
from remoteclip_jax.train import sharding as sharding_lib

# SigLIP's init (open_clip `init_logit_scale=ln 10`, `init_logit_bias=-10`; NUMERICS.md §3).
SIGLIP_INIT_LOGIT_SCALE = math.log(10.0)
SIGLIP_INIT_LOGIT_BIAS = -10.0


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; a pure pytree (checkpointable as is).

    Attributes:
        step: number of optimizer updates applied so far (int32 scalar).
        params: model parameters, plus a scalar `logit_bias` when the loss is sigmoid.
        batch_stats: BatchNorm running statistics (ResNet towers); `{}` for ViTs.
        opt_state: the optax state of `optim.make_optimizer(config, ...)`.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


class InitVariablesError(UserError, ValueError):
    """Checkpoint variables whose tree does not match the model's; names the offending paths."""


def _loss_type(config: Any) -> str:
    return str(config.loss.get("type", "softmax")) if "loss" in config else "softmax"


def model_params(params: Any) -> Any:
    """The parameters the Flax model knows (drops the loss-only `logit_bias`)."""
    return {k: v for k, v in params.items() if k != "logit_bias"}


def model_variables(state: TrainState) -> dict:
    """`{"params"[, "batch_stats"]}` for `model.apply`, evaluation or `rc.to_openclip`."""
    variables = {"params": model_params(state.params)}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def _dummy_inputs(model: Any) -> tuple[jax.Array, jax.Array]:
    size, length = int(model.image_size), int(model.context_length)
    return jnp.zeros((1, size, size, 3), jnp.float32), jnp.zeros((1, length), jnp.int32)


def _check_tree(given: Any, expected: Any, what: str) -> None:
    got = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(given)}
    want = {jax.tree_util.keystr(p): x.shape
            for p, x in jax.tree_util.tree_leaves_with_path(expected)}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(want) & set(got) if tuple(want[k]) != tuple(got[k]))
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if extra:
            parts.append(f"unexpected {extra[:3]}")
        if wrong:
            parts.append("shape " + ", ".join(f"{k} {tuple(got[k])} != {tuple(want[k])}"
                                              for k in wrong[:3]))
        raise InitVariablesError(f"init variables ({what}) do not fit config.model: "
                                 + "; ".join(parts))


def create_train_state(model: Any, config: Any, mesh: Mesh, rng: jax.Array,
                       init_variables: dict | None = None) -> tuple[TrainState, TrainState]:
    """Creates the train state already sharded over `mesh`.

    Args:
        model: a `rc.create_model(...)` module.
        config: the training config (reads `loss.type`, `optim.*`, `lock_image`).
        mesh: from `sharding.make_mesh(config.mesh)`.
        rng: PRNG key for a from-scratch init (ignored when `init_variables` is given).
        init_variables: optional Flax variables (`{"params"[, "batch_stats"]}`, e.g. from
            `rc.load_openclip`) to start from instead of a random init; numpy or jax arrays.

    Returns:
        (state, state_shardings): the state with step 0 and a tree of `NamedSharding`s of the same
        structure (what `jax.jit`/orbax restore needs as targets).

    Raises:
        InitVariablesError: when `init_variables` does not match the model's parameter tree.
    """
    sigmoid = _loss_type(config) == "sigmoid"
    # The optimizer's state structure does not depend on the schedule length.
    tx, _ = optim_lib.make_optimizer(config, total_steps=1)

    def build(variables, from_scratch: bool):
        params = dict(variables["params"])
        if sigmoid:
            if from_scratch:
                params["logit_scale"] = jnp.full((), SIGLIP_INIT_LOGIT_SCALE, jnp.float32)
            if "logit_bias" not in params:
                params["logit_bias"] = jnp.full((), SIGLIP_INIT_LOGIT_BIAS, jnp.float32)
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
        batch_stats = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32),
                                   dict(variables.get("batch_stats", {})))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                          opt_state=tx.init(params))

    images, texts = _dummy_inputs(model)

    def init_fn(key):
        return build(model.init(key, images, texts), from_scratch=True)

    abstract = jax.eval_shape(init_fn, rng)
    shardings = sharding_lib.tree_shardings(abstract, mesh)
    if init_variables is None:
        state = jax.jit(init_fn, out_shardings=shardings)(rng)
        return state, shardings

    abstract_vars = jax.eval_shape(model.init, rng, images, texts)
    given = {"params": model_params(init_variables["params"])}
    _check_tree(given["params"], abstract_vars["params"], "params")
    if "batch_stats" in abstract_vars:
        given["batch_stats"] = init_variables.get("batch_stats")
        if given["batch_stats"] is None:
            raise InitVariablesError(
                "init variables lack 'batch_stats' but the model has BatchNorm")
        _check_tree(given["batch_stats"], abstract_vars["batch_stats"], "batch_stats")
    if "logit_bias" in init_variables["params"]:
        given["params"]["logit_bias"] = init_variables["params"]["logit_bias"]
    var_shardings = {"params": {k: v for k, v in shardings.params.items()
                                if k in given["params"]}}
    if "batch_stats" in given:
        var_shardings["batch_stats"] = shardings.batch_stats
    placed = jax.tree.map(_place, given, var_shardings)
    state = jax.jit(lambda v: build(v, from_scratch=False), out_shardings=shardings)(placed)
    return state, shardings


def _place(x: Any, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """A global array from a host value present on every process (each device takes its shard)."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    host = np.asarray(x, dtype=np.float32)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def param_count(params: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))

