"""Writing a run's weights for other tools: the ``export`` mode and the end of training."""
from __future__ import annotations

import contextlib
import pathlib

import jax
import numpy as np

from remoteclip_jax import files
from remoteclip_jax.train import setup as setup_lib


def host_copy(tree):
    """A host (numpy) copy of a tree of possibly sharded, multi-process arrays."""
    def gather(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))
    return jax.tree.map(gather, tree)


def export_openclip(variables, config, out_dir, *, steps: int | None = None,
                    workdir=None, ema: bool = False) -> str | None:
    """Saves `variables` as an open_clip hub directory in `out_dir` (process 0 writes):
    ``open_clip_model.safetensors``, ``open_clip_config.json``, a model card ``README.md`` (model,
    activation, training data and steps, the run's evaluation results), and
    ``open_clip_model.pt`` when torch is installed (the file most OpenCLIP users load).
    ``ema=True`` labels the weights as the EMA (card and results from WORKDIR/eval_ema).

    Returns:
        The directory (None on other processes).
    """
    from remoteclip_jax import config as schema
    from remoteclip_jax.weights import model_dir, openclip

    host = host_copy(variables)
    if jax.process_index() != 0:
        return None
    spec = setup_lib.model_spec(config)
    results = (files.as_path(workdir) / ("eval_ema" if ema else "eval") / "results.json"
               if workdir else None)
    training = {"data": ", ".join(f"{name} ({s['kind']}: {s['path'] or s['seed']})"
                                  for name, s in schema.source_entries(config).items()),
                "steps": steps if steps is not None else int(config.train.steps)}
    if ema:
        training["weights"] = (f"exponential moving average, decay {config.ema.decay}"
                               + (f", warmup power {config.ema.warmup_power}"
                                  if config.ema.warmup_power else ""))
    # The writers below know local files only: for a bucket they write a local folder that is
    # uploaded when it is complete.
    with contextlib.ExitStack() as stack:
        local = stack.enter_context(files.local_folder(out_dir))
        card_results = (stack.enter_context(files.local_copy(results))
                        if results and results.exists() else None)
        model_dir.save_pretrained(host, spec, local, format="open_clip", training=training,
                                  eval_results=card_results)
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
        else:
            openclip.save_state_dict(openclip.to_openclip(host, spec),
                                     str(pathlib.Path(local) / "open_clip_model.pt"))
    setup_lib.say(f"exported OpenCLIP weights to {out_dir}")
    return str(out_dir)


def export(config, workdir, export_dir: str | None = None) -> str | None:
    """Writes the newest checkpoint of `workdir` in OpenCLIP format (default WORKDIR/export) and,
    with ``ema.export``, its EMA of the weights beside it (``..._ema``)."""
    from remoteclip_jax.train import state as state_lib

    from remoteclip_jax.train import ema as ema_lib

    workdir = files.as_path(workdir)
    run, _ = setup_lib.setup(config, workdir, for_training=False,
                             need_checkpoint=f"{workdir}: holds no checkpoint to export; train first")
    try:
        variables = state_lib.model_variables(run.state)
        ema = (ema_lib.saved(run.checkpointer, run.resumed_step, variables)
               if config.ema.export else None)
    finally:
        run.checkpointer.close()
    out = files.as_path(export_dir) if export_dir else workdir / "export"
    written = export_openclip(variables, run.config, out, steps=run.resumed_step, workdir=workdir)
    if ema is not None:  # beside it: WORKDIR/export_ema, or <export_dir>_ema
        export_openclip(ema, run.config, out.with_name(out.name + "_ema"), steps=run.resumed_step,
                        workdir=workdir, ema=True)
    return written
