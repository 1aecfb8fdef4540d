"""What every mode (train, eval, export) builds first: model, mesh, checkpointer, train state.

`setup` checks the config before anything expensive happens, builds the model and mesh, opens
the workdir's checkpoints (refusing one of another model), creates the train state already
sharded, and restores the newest checkpoint when there is one.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import flags

from remoteclip_jax import checkpoint as ckpt_lib
from remoteclip_jax import config as schema
from remoteclip_jax import files
from remoteclip_jax.config import ConfigError
from remoteclip_jax.train import sharding as sharding_lib


@dataclasses.dataclass
class Run:
    """Everything a mode needs, resolved once: config (steps resolved), model, mesh, the
    optimizer `(tx, schedule)`, state and checkpointer."""

    config: Any
    model: Any
    mesh: Any
    optimizer: tuple
    state: Any
    checkpointer: ckpt_lib.Checkpointer
    resumed_step: int | None


def model_spec(config):
    """The open_clip model name or config dict the run builds: ``config.model``, plus SigLIP's
    ``init_logit_bias`` / ``init_logit_scale`` with the sigmoid loss, so that the bias is an
    ordinary parameter that trains, checkpoints and exports."""
    from remoteclip_jax.train.state import training_model_config

    return training_model_config(config)


def build_model(config):
    """The Flax CLIP model the config names (``config.model``, dtype, remat, attention, patch
    dropout)."""
    from remoteclip_jax.models.clip import create_model

    try:
        return create_model(model_spec(config), dtype=jnp.dtype(config.dtype),
                            remat=bool(config.remat), attention=str(config.attention),
                            patch_dropout=float(config.train.patch_dropout))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"config.model={model_spec(config)!r}: {e}") from e


def model_signature(config) -> dict:
    """What identifies the model in checkpoint metadata: its full config and activation."""
    from remoteclip_jax.models import configs as model_configs

    resolved = model_configs.model_config(model_spec(config))
    return ckpt_lib.model_signature(resolved, resolved["quick_gelu"])


def load_init_variables(config):
    """Flax variables from ``config.init_from`` (an OpenCLIP file or a model directory), or None."""
    if not config.init_from:
        return None
    from remoteclip_jax.weights import model_dir

    if not files.as_path(config.init_from).exists():  # a local path or gs://...
        raise ConfigError(f"config.init_from={config.init_from!r}: no such file or directory")
    # A file or any model directory (ours, open_clip's, Hugging Face's); a directory of another
    # architecture or activation than config.model is refused.
    return model_dir.read_model_dir(config.init_from, model_spec(config))[0]


def make_data_iterator(config, model, *, seed: int, epochs: int | None = None):
    """This process's iterator over its share of each global batch."""
    from remoteclip_jax.data import pipeline

    entries = schema.source_entries(config)
    per_process = schema.global_batch_size(config, jax.device_count()) // jax.process_count()
    return pipeline.make_train_iterator(
        list(entries.values()), where=[f"config.data.sources.{n}" for n in entries],
        batch_size_per_process=per_process, image_size=model.image_size, seed=seed,
        context_length=model.context_length, num_workers=int(config.data.num_workers),
        process_index=jax.process_index(), process_count=jax.process_count(), epochs=epochs)


def total_steps(config, iterator) -> int:
    """``config.train.steps``, or the steps in ``config.train.epochs`` epochs of the data."""
    if config.train.steps > 0:
        return int(config.train.steps)
    global_batch = schema.global_batch_size(config, jax.device_count())
    steps = (iterator.examples_per_epoch // global_batch) * int(config.train.epochs)
    if steps < 1:
        raise ConfigError(f"{iterator.examples_per_epoch} training pairs make no full global batch "
                          f"of {global_batch}; lower config.data.batch_size_per_device")
    return steps


def with_steps(config, steps: int) -> ml_collections.ConfigDict:
    """A copy of the config with the resolved step count."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.train.steps = int(steps)
    return config


def setup(config, workdir, *, for_training: bool, need_checkpoint: str = "") -> tuple[Run, Any]:
    """Builds model, mesh, data (training only) and state; restores the newest checkpoint.

    Args:
        config: a recipe's config.
        workdir: the run directory.
        for_training: also build the data iterator and resolve the step count.
        need_checkpoint: when set, the error message for a workdir without a checkpoint
            (checked before the expensive state creation).

    Returns:
        (run, iterator); the iterator is None unless `for_training`.
    """
    from remoteclip_jax.train import optim as optim_lib, state as state_lib

    if not flags.FLAGS.is_parsed():
        # grain reads absl flags even outside absl.app.run.
        flags.FLAGS.mark_as_parsed()
    schema.validate(config, jax.device_count(), jax.process_count(), for_training=for_training)
    if problem := files.remote_problem(workdir):
        raise ConfigError(f"workdir {workdir}: {problem}")
    mesh = sharding_lib.make_mesh(config.mesh)
    model = build_model(config)
    checkpointer = ckpt_lib.Checkpointer(workdir, model_signature(config),
                                         keep=int(config.train.keep_checkpoints))
    try:
        resumed = checkpointer.check_compatible()
        if resumed is None and need_checkpoint:
            raise ConfigError(need_checkpoint)
        iterator = None
        if for_training:
            iterator = make_data_iterator(config, model, seed=int(config.seed))
            config = with_steps(config, total_steps(config, iterator))
        rng = jax.random.PRNGKey(int(config.seed))
        init_variables = load_init_variables(config) if resumed is None else None
        optimizer = optim_lib.make_optimizer(config, max(1, int(config.train.steps)))
        state, _ = state_lib.create_train_state(model, config, mesh, jax.random.fold_in(rng, 0),
                                                init_variables=init_variables,
                                                optimizer=optimizer[0])
        if resumed is not None:
            state, data_state = checkpointer.restore(resumed, state, with_data=for_training)
            if iterator is not None:
                iterator.set_state(data_state)
            say(f"{'resuming from' if for_training else 'restored'} {checkpointer.directory} "
                f"step {resumed}")
    except BaseException:
        checkpointer.close()
        raise
    return Run(config, model, mesh, optimizer, state, checkpointer, resumed), iterator


def say(message: str):
    """A user-facing line on stdout (process 0 only)."""
    if jax.process_index() == 0:
        print(message, flush=True)
