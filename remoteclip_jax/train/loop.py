"""The training loop: data → sharded train step → metrics, checkpoints, evaluations, export.

`train_and_evaluate(config, workdir)` is what ``remoteclip-jax train`` runs. It resumes from the
newest checkpoint in `workdir` (train state and data iterator state together, so the
continuation is exact), logs metrics every ``train.log_every`` steps, checkpoints every
``train.checkpoint_every`` steps and at the end, evaluates every ``train.eval_every`` steps and
at the end (evaluators built once, run on the training mesh), and exports the weights. With
``ema.decay > 0`` it also keeps an EMA of the weights (`remoteclip_jax.train.ema`), checkpointed
with the state, evaluated (``ema.evaluate``) and exported (``ema.export``) on request. With
``train.profile_steps`` it writes a `jax.profiler` trace of those steps (`remoteclip_jax.train.profile`).
"""
from __future__ import annotations

import math
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from remoteclip_jax import config as schema
from remoteclip_jax.files import as_path, atomic_write
from remoteclip_jax.models import flops as flops_lib
from remoteclip_jax.train import ema as ema_lib
from remoteclip_jax.train import metrics as metrics_lib
from remoteclip_jax.train import profile as profile_lib
from remoteclip_jax.train import setup as setup_lib
from remoteclip_jax.train import sharding as sharding_lib


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the run stopped and kept its last good checkpoint."""


def _compile_step(train_step, state, batch, rng):
    """AOT-compiles the step once, saying so: on an accelerator it takes tens of seconds."""
    setup_lib.say("compiling the train step ...")
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch, rng).compile()
    setup_lib.say(f"compiled in {time.perf_counter() - t0:.0f} s")
    return compiled


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


def _progress(total, start, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", disable=not enabled,
                dynamic_ncols=True)


def print_metrics(metrics: dict):
    """The metrics as an aligned table on stdout (process 0 only)."""
    if jax.process_index() == 0 and metrics:
        width = max(len(k) for k in metrics)
        print("\n".join(f"{k:<{width}}  {v:8.4f}" for k, v in sorted(metrics.items())), flush=True)


def _report_skipped(iterator, logger, step, reported: int) -> int:
    """Logs the inputs the pipeline skipped since `reported` were logged, with their paths;
    returns the new total."""
    stats = getattr(iterator, "stats", None)
    if stats is None or stats.num_skipped == reported:
        return reported
    logger.write(step, {"train/skipped_images": float(stats.num_skipped)})
    for key, reason in stats.skipped[reported:]:
        logging.warning("skipped unreadable training input %s: %s", key, reason)
    return stats.num_skipped


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (resuming from `workdir` when it holds a checkpoint), evaluates and exports.

    Args:
        config: a recipe from ``configs/``.
        workdir: the run directory (see the README for what it holds).

    Returns:
        The last logged train metrics merged with the final evaluation's metrics.

    Raises:
        UserError: bad input, before training starts.
        NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    from remoteclip_jax.evaluate.evaluator import Evaluator
    from remoteclip_jax.train import export as export_lib
    from remoteclip_jax.train import state as state_lib
    from remoteclip_jax.train import step as step_lib

    workdir = as_path(workdir)  # a local folder or a bucket (gs://...)
    primary = jax.process_index() == 0
    profile_lib.parse_steps(config.train.profile_steps)  # a bad value is refused before setup
    run, iterator = setup_lib.setup(config, workdir, for_training=True)
    config, state, checkpointer = run.config, run.state, run.checkpointer
    total = int(config.train.steps)
    start = int(run.resumed_step or 0)
    logger = progress = profiler = None
    try:
        # Built before the first step: a broken eval entry is refused before any training.
        evaluator = (Evaluator(run.model, config, run.mesh, workdir, raise_on_error=False,
                               cache_features=False)
                     if len(config.evals) else None)
        if primary:
            workdir.mkdir(parents=True, exist_ok=True)
            with atomic_write(workdir / "config.json") as f:
                f.write(config.to_json_best_effort(indent=2))
        logger = metrics_lib.MetricsLogger(workdir, enabled=primary,
                                           wandb_project=config.train.wandb_project,
                                           config=config.to_dict())
        train_step = step_lib.make_train_step(run.model, config, run.mesh,
                                              optimizer=run.optimizer)
        ema = ema_update = None
        if ema_lib.enabled(config):
            ema = ema_lib.restore_or_init(checkpointer, run.resumed_step,
                                          state_lib.model_variables(state))
            ema_update = ema_lib.make_update(config)
        rng = jax.random.fold_in(jax.random.PRNGKey(int(config.seed)), 1)
        global_batch = schema.global_batch_size(config, jax.device_count())
        peak = metrics_lib.peak_flops_per_device(override_tflops=config.train.peak_tflops_per_device)

        # Model FLOPs from the towers' shapes: XLA's cost analysis misses cuBLAS/cuDNN calls.
        flops_per_step = (flops_lib.train_flops_per_pair(run.model.config) * global_batch
                          / jax.device_count())
        compiled = None
        window, window_start, window_t0 = None, start + 1, None
        skipped = 0
        last_log: dict = {}
        eval_metrics: dict = {}
        progress = _progress(total, start, primary)
        profiler = profile_lib.StepProfiler(config.train.profile_steps, workdir, start + 1, total)
        step = start
        for step in range(start + 1, total + 1):
            try:
                local = next(iterator)
            except StopIteration:
                logging.warning("data ran out at step %d of %d", step, total)
                break
            batch = sharding_lib.shard_batch(local, run.mesh)
            step_rng = jax.random.fold_in(rng, step)
            if compiled is None:
                compiled = _compile_step(train_step, state, batch, step_rng)
                window_t0 = time.perf_counter()
            profiler.before(step)  # after compiling: the trace holds steps, not compilation
            with profiler.annotate(step):
                state, raw = compiled(state, batch, step_rng)
                if ema is not None:  # update `step - 1`, 0-based
                    ema = ema_update(ema, state_lib.model_variables(state), np.int32(step - 1))
            profiler.after(step, (state, raw, ema))
            update = metrics_lib.step_metrics(raw)
            window = update if window is None else window.merge(update)
            progress.update(1)

            if step % config.train.log_every == 0 or step == total:
                values = {f"train/{k}": float(v) for k, v in window.compute().items()}
                elapsed = time.perf_counter() - window_t0
                n_steps = step - window_start + 1
                values["train/pairs_per_s"] = global_batch * n_steps / elapsed
                values["train/mfu"] = flops_per_step * n_steps / elapsed / peak if peak else None
                _check_finite(step, values, checkpointer, window_start)
                logger.write(step, values)
                skipped = _report_skipped(iterator, logger, step, skipped)
                progress.set_postfix(loss=f"{values['train/loss']:.4f}")
                last_log = values
                window, window_start, window_t0 = None, step + 1, time.perf_counter()

            if step % config.train.checkpoint_every == 0 or step == total:
                if window is not None:  # steps since the last log must be finite too
                    pending = {f"train/{k}": float(v) for k, v in window.compute().items()}
                    _check_finite(step, pending, checkpointer, window_start)
                checkpointer.save(step, state, iterator.get_state(), ema=ema)
                logger.flush()  # a bucket's logs are sent at least this often

            if evaluator and config.train.eval_every and step % config.train.eval_every == 0 \
                    and step != total:
                # A bad eval dataset must not stop training: it is reported and skipped.
                logger.write(step, evaluator(state_lib.model_variables(state), step))
                if ema is not None and config.ema.evaluate:
                    logger.write(step, ema_lib.evaluate(evaluator, ema, step))
        progress.close()
        checkpointer.wait_until_finished()
        if evaluator:
            eval_metrics = evaluator(state_lib.model_variables(state), step)
            if ema is not None and config.ema.evaluate:
                eval_metrics.update(ema_lib.evaluate(evaluator, ema, step))
            logger.write(step, eval_metrics)
            print_metrics(eval_metrics)
        if primary:
            logger.flush()
            curve = metrics_lib.plot_loss_curve(metrics_lib.read_metrics(logger.path),
                                                workdir / "loss_curve.png")
            if curve:
                setup_lib.say(f"loss curve: {curve}")
        if config.train.export:
            export_lib.export_openclip(state_lib.model_variables(state), config, workdir / "export",
                                       steps=step, workdir=workdir)
            if ema is not None and config.ema.export:
                export_lib.export_openclip(ema, config, workdir / "export_ema", steps=step,
                                           workdir=workdir, ema=True)
    finally:
        if profiler is not None:
            profiler.close()
        if progress is not None:
            progress.close()
        if logger is not None:
            logger.close()
        checkpointer.close()
        close = getattr(iterator, "close", None)
        if close:
            close()
    return {**last_log, **eval_metrics}
