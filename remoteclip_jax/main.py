"""Command-line entry point: train, evaluate or export a RemoteCLIP-style model.

    python -m remoteclip_jax.main --config=configs/vitb32.py --workdir=/tmp/vitb32 \
        [--config.optim.lr=1e-5 ...] [--mode=train|eval|export]

Training resumes automatically from the newest checkpoint in `--workdir`. Several processes (a
Cloud TPU pod slice, several GPU hosts) run the same command; see `--coordinator_address`,
`--num_processes`, `--process_id` and `--multihost`.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Recipe file with a get_config(arg) function, e.g. configs/vitb32.py:smoke.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, exports.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "export"],
                          "train (resumes automatically), eval (evaluate the newest checkpoint, "
                          "or config.init_from when there is none) or export (OpenCLIP weights).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", os.environ.get("JAX_COORDINATOR_ADDRESS"),
    "host:port of process 0 for multi-process runs (default $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", int(os.environ.get("JAX_NUM_PROCESSES", 0)) or None,
    "Number of processes (default $JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", int(os.environ["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in os.environ else None,
    "This process's index (default $JAX_PROCESS_ID).")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() with no arguments, letting JAX detect "
    "the cluster (Cloud TPU pod slices, SLURM, Open MPI).")
_PROFILE = flags.DEFINE_bool(
    "profile", False, "Train mode: write a jax.profiler trace of 5 steps (from this run's second) "
    "to WORKDIR/profile and say where; sets --config.train.profile_steps=auto unless it is set.")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None,
                                  "Where --mode=export writes (default WORKDIR/export).")


def initialize_distributed():
    """Starts `jax.distributed` when the flags (or environment) describe several processes."""
    import jax

    explicit = _COORDINATOR.value or (_NUM_PROCESSES.value or 1) > 1
    if not explicit and not _MULTIHOST.value:
        return
    if explicit:
        missing = [name for name, value in [("--coordinator_address", _COORDINATOR.value),
                                            ("--num_processes", _NUM_PROCESSES.value),
                                            ("--process_id", _PROCESS_ID.value)] if value is None]
        if missing:
            raise app.UsageError(f"multi-process run: also pass {', '.join(missing)}")
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                   num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    else:
        jax.distributed.initialize()
    logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())


def parse_flags(argv):
    """absl flag parsing that turns a bad config override into one line saying what to change."""
    try:
        return flags.FLAGS(argv)
    except (KeyError, AttributeError, TypeError, ValueError, flags.Error) as e:
        bad = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
        detail = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\", "")
        detail = "; ".join(part.strip() for part in detail.splitlines() if part.strip())
        if isinstance(e, (KeyError, AttributeError)):
            message = (f"unknown config key in {' '.join(bad) or 'the overrides'}: {detail}; "
                       f"see the recipe file for the keys it has")
        else:
            message = f"bad flag value: {detail}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise app.UsageError("pass --config=configs/<recipe>.py[:arg] and --workdir=DIR")
    if not flags.FLAGS["verbosity"].present:
        # orbax logs every save at INFO; keep the console for the progress bar and results.
        logging.set_verbosity(logging.WARNING)
    initialize_distributed()

    from remoteclip_jax import compilation_cache
    from remoteclip_jax.errors import one_line
    from remoteclip_jax.train import export, loop

    config, workdir = _CONFIG.value, _WORKDIR.value
    if _PROFILE.value:
        if _MODE.value != "train":
            raise app.UsageError("--profile traces training steps; use it with train")
        if not config.train.profile_steps:
            config.train.profile_steps = "auto"
    compilation_cache.configure(config.compilation_cache)
    try:
        if _MODE.value == "train":
            loop.train_and_evaluate(config, workdir)
        elif _MODE.value == "eval":
            evaluate(config, workdir)
        else:
            export.export(config, workdir, _EXPORT_DIR.value)
    except loop.NonFiniteLossError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(3)


def evaluate(config, workdir: str) -> dict:
    """Eval mode: the newest checkpoint in `workdir` (or ``config.init_from`` when there is
    none) through ``config.evals``; metrics (``eval/<dataset>/<metric>``) are printed and
    appended to WORKDIR/metrics.jsonl."""
    import jax

    from remoteclip_jax.config import ConfigError
    from remoteclip_jax.evaluate.evaluator import Evaluator
    from remoteclip_jax.train import loop, metrics as metrics_lib, setup as setup_lib
    from remoteclip_jax.train import ema as ema_lib, state as state_lib

    if not len(config.evals):
        raise ConfigError("config.evals is empty: nothing to evaluate")
    need = "" if config.init_from else \
        f"{workdir}: no checkpoint to evaluate and config.init_from is empty"
    run, _ = setup_lib.setup(config, workdir, for_training=False, need_checkpoint=need)
    try:
        variables = state_lib.model_variables(run.state)
        ema = (ema_lib.saved(run.checkpointer, run.resumed_step, variables)
               if config.ema.evaluate else None)
        evaluator = Evaluator(run.model, run.config, run.mesh, workdir)
        metrics = evaluator(variables, run.resumed_step)
        if ema is not None:
            metrics.update(ema_lib.evaluate(evaluator, ema, run.resumed_step))
    finally:
        run.checkpointer.close()
    logger = metrics_lib.MetricsLogger(workdir, enabled=jax.process_index() == 0,
                                       wandb_project=config.train.wandb_project,
                                       config=config.to_dict())
    logger.write(run.resumed_step or 0, metrics)
    logger.close()
    loop.print_metrics(metrics)
    return metrics


def main_cli(argv: list[str]) -> int:
    """Runs the absl entry point with `argv` (``remoteclip-jax train|eval|export`` land here)."""
    app.run(main, argv=argv, flags_parser=parse_flags)
    return 0


if __name__ == "__main__":
    # The guard matters: grain's worker processes are spawned and re-import this module.
    from remoteclip_jax import compilation_cache
    from remoteclip_jax.cli import guarded

    compilation_cache.enable_by_default()
    sys.exit(guarded(lambda: app.run(main, flags_parser=parse_flags)))
