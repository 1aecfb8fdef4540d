"""The training loop: data → sharded train step → metrics, checkpoints, evaluation, export.

`train_and_evaluate(config, workdir)` is what `python -m remoteclip_jax.main` runs. It checks the
config before anything expensive happens, resumes from the newest checkpoint in `workdir` (train
state and data iterator state together, so the continuation is exact), logs metrics every
`train.log_every` steps, checkpoints every `train.checkpoint_every` steps and at the end, evaluates
every `train.eval_every` steps and at the end, and finally exports the weights in OpenCLIP format.
"""
from __future__ import annotations

from remoteclip_jax.errors import UserError
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags, logging

from remoteclip_jax import checkpoint as ckpt_lib
from remoteclip_jax.train import metrics as metrics_lib
from remoteclip_jax.train import sharding as sharding_lib


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message names the key and what to set it to."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the run stopped and kept its last good checkpoint."""


def _user_errors() -> tuple:
    from remoteclip_jax.data import sources as grain_sources, records
    from remoteclip_jax.evaluate.features import EvalDataError
    from remoteclip_jax.train import optim, state, step

    return (ConfigError, ckpt_lib.CheckpointMismatchError, sharding_lib.ShardingError,
            optim.OptimConfigError, state.InitVariablesError, step.BatchShapeError,
            grain_sources.SourceSpecError, records.EmptyDatasetError, EvalDataError)


# Errors caused by the user's input, reported by main.py as one line.
USER_ERRORS = _user_errors()


# --- config checks --------------------------------------------------------------------------------

_CHOICES = {
    "dtype": ("float32", "bfloat16"),
    "loss.type": ("softmax", "sigmoid"),
    "optim.schedule": ("cosine", "const"),
}


def _get(config, dotted):
    for part in dotted.split("."):
        config = config[part]
    return config


def validate_config(config: ml_collections.ConfigDict, device_count: int | None = None,
                    process_count: int | None = None) -> None:
    """Refuses a config that cannot train, before any model or data is built.

    Raises:
        ConfigError: with the offending key and what to change.
    """
    for key, choices in _CHOICES.items():
        if _get(config, key) not in choices:
            raise ConfigError(f"config.{key}={_get(config, key)!r}: must be one of {choices}")
    if config.data.batch_size_per_device < 1:
        raise ConfigError("config.data.batch_size_per_device must be >= 1")
    if config.accum_steps < 1:
        raise ConfigError("config.accum_steps must be >= 1")
    if config.train.steps <= 0 and config.train.epochs <= 0:
        raise ConfigError("set config.train.steps > 0 or config.train.epochs > 0")
    if config.train.log_every < 1 or config.train.checkpoint_every < 1:
        raise ConfigError("config.train.log_every and config.train.checkpoint_every must be >= 1")
    if config.train.keep_checkpoints < 1:
        raise ConfigError("config.train.keep_checkpoints must be >= 1")
    if not train_sources(config) and not config.data.demo:
        raise ConfigError("no training data: set config.data.sources (a list of {kind, path}) or "
                          "config.data.demo=True")
    device_count = device_count or jax.device_count()
    process_count = process_count or jax.process_count()
    global_batch = global_batch_size(config, device_count)
    if global_batch % device_count:
        raise ConfigError(
            f"global batch {global_batch} (config.data.batch_size) cannot be split over the "
            f"{device_count} devices of the mesh; set config.data.batch_size to a multiple of "
            f"{device_count}, or 0 to use config.data.batch_size_per_device")
    if global_batch % (config.accum_steps * device_count):
        raise ConfigError(
            f"global batch {global_batch} with config.accum_steps={config.accum_steps} gives "
            f"micro-batches the {device_count} devices cannot split; make the batch a multiple of "
            f"accum_steps x devices = {config.accum_steps * device_count}")
    if global_batch % process_count:
        raise ConfigError(f"global batch {global_batch} cannot be split over {process_count} "
                          f"processes; make it a multiple of {process_count}")


def _json_list(config, section: str, key: str) -> list | None:
    """`config.<section>.<key>` parsed as a JSON list of dicts, or None when unset."""
    text = config[section].get(key, "")
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config.{section}.{key}: not valid JSON ({e})") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"config.{section}.{key}: must be a JSON list of objects, e.g. "
                          '[{"kind": "jsonl", "path": "train.jsonl"}]')
    return value


def train_sources(config) -> list:
    """`config.data.sources`, or the list in `config.data.sources_json` when that is set."""
    given = _json_list(config, "data", "sources_json")
    if given is not None:
        return given
    return [s.to_dict() if hasattr(s, "to_dict") else dict(s) for s in config.data.sources]


def global_batch_size(config, device_count: int | None = None) -> int:
    """config.data.batch_size if set (> 0), else batch_size_per_device × devices."""
    explicit = int(config.data.get("batch_size", 0) or 0)
    if explicit > 0:
        return explicit
    return int(config.data.batch_size_per_device) * (device_count or jax.device_count())


# --- one call per dependency ------------------------------------------------------------------


def build_model(config):
    """The Flax CLIP model the config names (`config.model`, dtype, remat)."""
    from remoteclip_jax.models.clip import create_model

    model = config.model.to_dict() if hasattr(config.model, "to_dict") else config.model
    try:
        return create_model(model, dtype=jnp.dtype(config.dtype), remat=bool(config.remat))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"config.model={model!r}: {e}") from e


def model_signature(config) -> dict:
    """What identifies the model in checkpoint metadata: its full config and activation."""
    from remoteclip_jax.models import configs as model_configs

    model = config.model.to_dict() if hasattr(config.model, "to_dict") else config.model
    resolved = model_configs.model_config(model)
    return ckpt_lib.model_signature(resolved, resolved.get("quick_gelu"))


def load_init_variables(config):
    """Flax variables from the OpenCLIP checkpoint `config.init_from`, or None."""
    if not config.init_from:
        return None
    import remoteclip_jax as rc

    path = pathlib.Path(config.init_from)
    if not path.exists():
        raise ConfigError(f"config.init_from={config.init_from!r}: file not found")
    model = config.model.to_dict() if hasattr(config.model, "to_dict") else config.model
    return rc.load_openclip(str(path), model)


def demo_sources(config, workdir) -> list:
    """The built-in synthetic scenes as a training source (record shards rendered once under
    ``WORKDIR/demo_train`` by process 0; see `demo_data`)."""
    from remoteclip_jax.train import demo_data

    out = pathlib.Path(workdir) / "demo_train"
    args = (out, int(config.data.get("demo_images", 2048)), int(config.data.image_size),
            int(config.seed), int(config.data.get("demo_max_categories", 0)))
    if jax.process_index() == 0:
        demo_data.write_demo_train_records(*args)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("demo_train written")
    return [{"kind": "records", "path": str(out)}]


def make_data_iterator(config, model, workdir, *, seed: int, epochs: int | None = None):
    """This process's iterator over its share of each global batch."""
    from remoteclip_jax.data import pipeline

    sources = train_sources(config)
    if config.data.demo and not sources:
        sources = demo_sources(config, workdir)
    per_process = global_batch_size(config) // jax.process_count()
    return pipeline.make_train_iterator(
        sources, batch_size_per_process=per_process, image_size=model.image_size, seed=seed,
        context_length=model.context_length, num_workers=int(config.data.num_workers),
        process_index=jax.process_index(), process_count=jax.process_count(), epochs=epochs)


def dataset_size(iterator) -> int | None:
    """Number of pairs in one epoch, when the iterator can say."""
    for attr in ("examples_per_epoch", "num_examples", "dataset_size"):
        value = getattr(iterator, attr, None)
        if value is not None:
            return int(value() if callable(value) else value)
    try:
        return len(iterator)
    except TypeError:
        return None


def variables_from_state(state) -> dict:
    """The model variables ({"params"} plus {"batch_stats"} for ResNets) held by a train state."""
    from remoteclip_jax.train import state as state_lib

    return state_lib.model_variables(state)


# --- the loop -----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
    """Everything a mode needs: model, mesh, state and the checkpointer."""

    config: Any
    model: Any
    mesh: Any
    state: Any
    checkpointer: ckpt_lib.Checkpointer
    resumed_step: int | None


def _total_steps(config, iterator) -> int:
    if config.train.steps > 0:
        return int(config.train.steps)
    size = dataset_size(iterator)
    if size is None:
        raise ConfigError("the data pipeline cannot tell its size; set config.train.steps")
    steps = (size // global_batch_size(config)) * int(config.train.epochs)
    if steps < 1:
        raise ConfigError(f"{size} training pairs make no full global batch of "
                          f"{global_batch_size(config)}; lower config.data.batch_size_per_device")
    return steps


def _resolved(config, **train_updates):
    """A copy of the config with train keys filled in (e.g. the resolved step count)."""
    config = ml_collections.ConfigDict(config.to_dict())
    with config.unlocked():
        for key, value in train_updates.items():
            config.train[key] = value
    return config


def _setup(config, workdir, *, for_training: bool, need_checkpoint: str = ""
           ) -> tuple[_Run, Any]:
    """Builds model, mesh, data, state; restores the newest checkpoint when there is one.

    `need_checkpoint`, when set, is the error message for a workdir without a checkpoint (checked
    before the expensive state creation).
    """
    from remoteclip_jax.train import state as state_lib

    if not flags.FLAGS.is_parsed():
        # grain reads absl flags even outside absl.app.run (STACK.md 4.11).
        flags.FLAGS.mark_as_parsed()
    validate_config(config)
    mesh = sharding_lib.make_mesh(config.mesh)
    model = build_model(config)
    checkpointer = ckpt_lib.Checkpointer(workdir, model_signature(config),
                                         keep=int(config.train.keep_checkpoints))
    resumed = checkpointer.check_compatible()
    if resumed is None and need_checkpoint:
        checkpointer.close()
        raise ConfigError(need_checkpoint)

    iterator = None
    if for_training:
        iterator = make_data_iterator(config, model, workdir, seed=int(config.seed))
        config = _resolved(config, steps=_total_steps(config, iterator))

    rng = jax.random.PRNGKey(int(config.seed))
    init_variables = load_init_variables(config) if resumed is None else None
    state, _ = state_lib.create_train_state(model, config, mesh, jax.random.fold_in(rng, 0),
                                            init_variables=init_variables)
    if resumed is not None:
        state, data_state = checkpointer.restore(resumed, state, with_data=for_training)
        if iterator is not None:
            iterator.set_state(data_state)
        _say(f"{'resuming from' if for_training else 'restored'} {checkpointer.directory} "
             f"step {resumed}")
    return _Run(config, model, mesh, state, checkpointer, resumed), iterator


def _compile_step(train_step, state, batch, rng):
    """AOT-compiles the step once; returns (callable, FLOPs per step per device or None).

    XLA's cost analysis of an SPMD-partitioned program counts one device's share.
    """
    try:
        compiled = train_step.lower(state, batch, rng).compile()
    except AttributeError:  # not a jax.jit function: call it as is, no FLOP count
        return train_step, None
    flops = None
    try:
        analysis = compiled.cost_analysis()
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0]
        flops = float(analysis.get("flops", 0.0)) or None
    except Exception:  # cost analysis is best-effort; some backends lack it
        pass
    return compiled, flops


def _check_finite(step, window: dict, checkpointer, first_step: int):
    bad = [k for k in ("train/loss", "train/grad_norm")
           if window.get(k) is not None and not math.isfinite(window[k])]
    if bad:
        checkpointer.wait_until_finished()
        last = checkpointer.latest_step()
        kept = (f"the last good checkpoint is step {last} in {checkpointer.directory}"
                if last is not None else "no checkpoint was written")
        raise NonFiniteLossError(
            f"step {step}: {', '.join(bad)} became non-finite ({window.get('train/loss')}) "
            f"in steps {first_step}..{step}; stopped, {kept}. Lower --config.optim.lr, raise "
            f"--config.optim.warmup_steps or set --config.optim.grad_clip_norm=1.0")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (resuming from `workdir` when it holds a checkpoint), evaluates and exports.

    Args:
        config: a recipe from `configs/`.
        workdir: run directory (created): ``checkpoints/``, ``metrics.jsonl``,
            ``tensorboard/``, ``loss_curve.png``, ``export/``.

    Returns:
        The last logged train metrics merged with the final evaluation's metrics.

    Raises:
        ConfigError, CheckpointMismatchError, ShardingError: bad input, before training starts.
        NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    from remoteclip_jax.train import step as step_lib

    workdir = pathlib.Path(workdir)
    primary = jax.process_index() == 0
    run, iterator = _setup(config, workdir, for_training=True)
    config, state, checkpointer = run.config, run.state, run.checkpointer
    total = int(config.train.steps)
    start = int(run.resumed_step or 0)
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    logger = metrics_lib.MetricsLogger(workdir, enabled=primary)
    train_step = step_lib.make_train_step(run.model, config, run.mesh)
    rng = jax.random.fold_in(jax.random.PRNGKey(int(config.seed)), 1)
    global_batch = global_batch_size(config)
    peak = metrics_lib.peak_flops_per_device(
        override_tflops=float(config.train.get("peak_tflops_per_device", 0.0)))

    compiled, flops_per_step = None, None
    window, window_start, window_t0 = None, start + 1, None
    last_log: dict = {}
    eval_metrics: dict = {}
    progress = _progress(total, start, primary)
    step = start
    try:
        for step in range(start + 1, total + 1):
            try:
                local = next(iterator)
            except StopIteration:
                logging.warning("data ran out at step %d of %d", step, total)
                break
            batch = sharding_lib.shard_batch(local, run.mesh)
            step_rng = jax.random.fold_in(rng, step)
            if compiled is None:
                compiled, flops_per_step = _compile_step(train_step, state, batch, step_rng)
                if flops_per_step:
                    per_pair = flops_per_step * jax.device_count() / global_batch
                    _say(f"train step: {per_pair / 1e9:.3g} GFLOP per pair (XLA count)")
                window_t0 = time.perf_counter()
            state, raw = compiled(state, batch, step_rng)
            update = metrics_lib.step_metrics(raw)
            window = update if window is None else window.merge(update)
            progress.update(1)

            if step % config.train.log_every == 0 or step == total:
                values = {f"train/{k}": float(v) for k, v in window.compute().items()}
                elapsed = time.perf_counter() - window_t0
                n_steps = step - window_start + 1
                values["train/pairs_per_s"] = global_batch * n_steps / elapsed
                values["train/mfu"] = (flops_per_step * n_steps / elapsed / peak
                                       if flops_per_step and peak else None)
                _check_finite(step, values, checkpointer, window_start)
                logger.write(step, values)
                progress.set_postfix(loss=f"{values['train/loss']:.4f}")
                last_log = values
                window, window_start, window_t0 = None, step + 1, time.perf_counter()

            if step % config.train.checkpoint_every == 0 or step == total:
                if window is not None:  # steps since the last log must be finite too
                    pending = {f"train/{k}": float(v) for k, v in window.compute().items()}
                    _check_finite(step, pending, checkpointer, window_start)
                checkpointer.save(step, state, iterator.get_state())

            if config.train.eval_every and step % config.train.eval_every == 0 and step != total:
                checkpointer.wait_until_finished()
                # A bad eval dataset must not stop training: it is reported and skipped.
                logger.write(step, _evaluate(run.model, state, config, workdir, step,
                                             raise_on_error=False))
            if step == _PAUSE_AFTER_STEP:
                _pause(step)
        progress.close()
        checkpointer.wait_until_finished()
        if has_eval(config):
            eval_metrics = _evaluate(run.model, state, config, workdir, step)
            logger.write(step, eval_metrics)
            _print_eval(eval_metrics, primary)
        if primary:
            curve = metrics_lib.plot_loss_curve(metrics_lib.read_metrics(logger.path),
                                                workdir / "loss_curve.png")
            if curve:
                _say(f"loss curve: {curve}")
        if config.train.get("export", True):
            export_openclip(variables_from_state(state), config, workdir / "export")
    finally:
        progress.close()
        logger.close()
        checkpointer.close()
        close = getattr(iterator, "close", None)
        if close:
            close()
    return {**last_log, **eval_metrics}


# Test hook: stop (forever) after this step, so a test can SIGKILL the run at a known point.
_PAUSE_AFTER_STEP = int(os.environ.get("REMOTECLIP_DEBUG_PAUSE_AFTER_STEP", "0") or 0)


def _pause(step):
    print(f"REMOTECLIP_PAUSED step={step}", file=sys.stderr, flush=True)
    while True:
        time.sleep(60)


def _progress(total, start, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", disable=not enabled,
                dynamic_ncols=True)


def eval_datasets(config, workdir) -> list:
    """`config.eval.datasets` plus, when `config.eval.demo_images` > 0, the held-out synthetic
    retrieval and counting sets (written under ``WORKDIR/demo_eval`` by process 0)."""
    datasets = _json_list(config, "eval", "datasets_json")
    if datasets is None:
        datasets = [d.to_dict() if hasattr(d, "to_dict") else dict(d) for d in config.eval.datasets]
    num = int(config.eval.get("demo_images", 0) or 0)
    if num > 0:
        from remoteclip_jax.train import demo_data

        size = int(config.eval.get("demo_image_size", 0) or config.data.image_size)
        out = pathlib.Path(workdir) / "demo_eval"
        max_categories = int(config.data.get("demo_max_categories", 0))
        if jax.process_index() == 0:
            entries = demo_data.write_demo_eval_set(out, num, size, max_categories=max_categories)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("demo_eval written")
        entries = demo_data.write_demo_eval_set(out, num, size,  # reads the marker only
                                                max_categories=max_categories)
        datasets += [entries["retrieval"], entries["count"]]
    return datasets


def _evaluate(model, state, config, workdir, step=None, raise_on_error=True) -> dict:
    """Runs the config's evaluators; returns metrics named ``eval/...``."""
    datasets = eval_datasets(config, workdir)
    if not datasets:
        return {}
    from remoteclip_jax.evaluate import runner

    eval_config = ml_collections.ConfigDict(config.eval.to_dict())
    with eval_config.unlocked():
        eval_config.datasets = datasets
    # Host copies: the evaluator shards over this process's devices itself, and a multi-process
    # array could not be read there.
    variables = jax.tree.map(lambda x: np.asarray(jax.device_get(_gather(x))),
                             variables_from_state(state))
    results = runner.run_evaluation(model, variables, eval_config, str(workdir), step=step,
                                    raise_on_error=raise_on_error)
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float, np.floating, np.integer)) or (
                hasattr(value, "shape") and np.ndim(value) == 0):
            flat[prefix if prefix.startswith("eval/") else f"eval/{prefix}"] = float(value)

    walk("", results)
    return flat


def has_eval(config) -> bool:
    """Whether the config asks for any evaluation."""
    return (bool(config.eval.datasets) or bool(config.eval.get("datasets_json", ""))
            or int(config.eval.get("demo_images", 0) or 0) > 0)


def _print_eval(metrics: dict, enabled: bool):
    if enabled and metrics:
        width = max(len(k) for k in metrics)
        print("\n".join(f"{k:<{width}}  {v:8.4f}" for k, v in sorted(metrics.items())), flush=True)


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluates the newest checkpoint in `workdir` (or `config.init_from` when there is none).

    Returns:
        Metrics named ``eval/<dataset>/<metric>``; also printed and appended to metrics.jsonl.
    """
    workdir = pathlib.Path(workdir)
    if not has_eval(config):
        raise ConfigError("config.eval.datasets is empty: nothing to evaluate")
    need = ("" if config.init_from else
            f"{workdir}: no checkpoint to evaluate and config.init_from is empty")
    run, _ = _setup(config, workdir, for_training=False, need_checkpoint=need)
    try:
        metrics = _evaluate(run.model, run.state, run.config, workdir, run.resumed_step)
    finally:
        run.checkpointer.close()
    if jax.process_index() == 0:
        logger = metrics_lib.MetricsLogger(workdir)
        logger.write(run.resumed_step or 0, metrics)
        logger.close()
    _print_eval(metrics, jax.process_index() == 0)
    return metrics


def export(config: ml_collections.ConfigDict, workdir: str, export_dir: str | None = None) -> dict:
    """Writes the newest checkpoint of `workdir` in OpenCLIP format.

    Returns:
        ``{"safetensors": path, "pt": path or None, "config": path}``.
    """
    workdir = pathlib.Path(workdir)
    run, _ = _setup(config, workdir, for_training=False,
                    need_checkpoint=f"{workdir}: holds no checkpoint to export; train first")
    run.checkpointer.close()
    return export_openclip(variables_from_state(run.state), run.config,
                           pathlib.Path(export_dir) if export_dir else workdir / "export")


def export_openclip(variables, config, out_dir: pathlib.Path) -> dict:
    """Saves `variables` as an OpenCLIP state dict: ``.safetensors``, ``.pt`` (when torch is
    installed) and ``open_clip_config.json`` (model config including the activation).

    Only process 0 writes; the arrays are gathered to host first (they may be sharded).
    """
    import remoteclip_jax as rc

    model = config.model.to_dict() if hasattr(config.model, "to_dict") else config.model
    host = jax.tree.map(lambda x: np.asarray(jax.device_get(_gather(x))), variables)
    if jax.process_index() != 0:
        return {}
    state_dict = rc.to_openclip(host, model)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    signature = model_signature(config)
    from safetensors.numpy import save_file

    paths = {"safetensors": out_dir / "open_clip_model.safetensors",
             "config": out_dir / "open_clip_config.json", "pt": None}
    # np.array keeps 0-d arrays 0-d (logit_scale is a scalar; ascontiguousarray would make it 1-d).
    arrays = {k: np.array(v, order="C") for k, v in state_dict.items()}
    save_file(arrays, str(paths["safetensors"]),
              metadata={"model_cfg": json.dumps(signature["model"]),
                        "quick_gelu": str(signature["quick_gelu"])})
    paths["config"].write_text(json.dumps({"model_cfg": signature["model"]}, indent=2))
    try:
        import torch  # optional: the .pt most OpenCLIP users load
    except ImportError:
        logging.warning("torch not installed: wrote only %s", paths["safetensors"])
    else:
        paths["pt"] = out_dir / "open_clip_model.pt"
        torch.save({k: torch.from_numpy(v.copy()) for k, v in arrays.items()}, paths["pt"])
    _say(f"exported OpenCLIP weights to {out_dir}")
    return {k: (str(v) if v else None) for k, v in paths.items()}


def _say(message: str):
    """A user-facing line on stdout (process 0 only)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def _gather(x):
    """A fully replicated copy of a (possibly sharded, multi-process) array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.sharding.is_fully_replicated:
            return x.addressable_data(0)
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(x, tiled=True)
    return x
