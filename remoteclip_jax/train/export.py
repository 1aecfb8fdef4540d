"""Writing a run's weights for other tools: the ``export`` mode and the end of training."""
from __future__ import annotations

import pathlib

import jax
import numpy as np

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


def export_openclip(variables, config, out_dir) -> dict:
    """Saves `variables` as an OpenCLIP state dict in `out_dir` (process 0 writes).

    Returns:
        The written paths (``{}`` on other processes).
    """
    from remoteclip_jax.weights import openclip

    host = host_copy(variables)
    if jax.process_index() != 0:
        return {}
    paths = openclip.write_openclip_dir(host, setup_lib.model_spec(config), pathlib.Path(out_dir))
    setup_lib.say(f"exported OpenCLIP weights to {out_dir}")
    return paths


def export(config, workdir, export_dir: str | None = None) -> dict:
    """Writes the newest checkpoint of `workdir` in OpenCLIP format (default WORKDIR/export)."""
    from remoteclip_jax.train import state as state_lib

    workdir = pathlib.Path(workdir)
    run, _ = setup_lib.setup(config, workdir, for_training=False,
                             need_checkpoint=f"{workdir}: holds no checkpoint to export; train first")
    run.checkpointer.close()
    return export_openclip(state_lib.model_variables(run.state), run.config,
                           pathlib.Path(export_dir) if export_dir else workdir / "export")
