"""Orbax checkpoints holding the train state and the data iterator state together.

One `CheckpointManager` step directory holds two items: ``state`` (the train state pytree, saved
asynchronously with `StandardSave`) and ``data`` (each process's grain iterator state, one JSON
file per process). Saving both in one step is what makes resume exact: the restored model sees
exactly the batches it would have seen had the run never stopped.

Each step also carries custom metadata naming the model (its open_clip name or config dict and its
activation), so a run refuses to resume from a workdir that holds another model's checkpoint
(STACK.md 4.15: the activation cannot be inferred from the parameters, their shapes are identical).
"""
from __future__ import annotations

from remoteclip_jax.errors import UserError
import base64
import dataclasses
import json
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

STATE_ITEM = "state"
DATA_ITEM = "data"


class CheckpointMismatchError(UserError, ValueError):
    """The workdir holds a checkpoint that this run cannot resume from."""


def model_signature(model_spec: Any, quick_gelu: bool | None = None) -> dict:
    """Describes a model for checkpoint metadata: what must match to resume.

    Args:
        model_spec: an open_clip model name or an open_clip-style config dict.
        quick_gelu: the activation; inferred from the spec when None (a `-quickgelu` name or the
            dict's `quick_gelu` key).

    Returns:
        A JSON-serialisable dict ``{"model": spec, "quick_gelu": bool}``.
    """
    if hasattr(model_spec, "to_dict"):
        model_spec = model_spec.to_dict()
    if quick_gelu is None:
        if isinstance(model_spec, str):
            quick_gelu = model_spec.lower().endswith("-quickgelu")
        else:
            quick_gelu = bool(dict(model_spec).get("quick_gelu", False))
    # A JSON round trip gives the form the metadata is read back in (tuples become lists).
    return json.loads(json.dumps({"model": model_spec, "quick_gelu": bool(quick_gelu)}))


def _describe(signature: dict) -> str:
    model = signature.get("model")
    act = "QuickGELU" if signature.get("quick_gelu") else "GELU"
    name = model if isinstance(model, str) else json.dumps(model, sort_keys=True)
    return f"{name} ({act})"


# --- data iterator state: one JSON file per process -------------------------------------------


@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
    """The iterator state captured when `save` was called (a dict or bytes from `get_state()`)."""

    state: Any


@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
    """Asks for this process's iterator state back."""


class IteratorStateHandler(ocp.CheckpointHandler):
    """Writes each process's data iterator state as ``process_{i}-of-{n}.json``.

    Unlike grain's own handler it stores a snapshot taken when `save` was called (so the async
    save of the train state cannot race the iterator moving on) and accepts any iterator with
    `get_state`/`set_state`, whether the state is a dict or bytes.
    """

    def save(self, directory: epath.Path, args: IteratorStateSave):
        state = args.state
        if isinstance(state, bytes):
            payload = {"bytes_b64": base64.b64encode(state).decode("ascii")}
        else:
            payload = {"json": state}
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        (directory / name).write_text(json.dumps(payload))

    def restore(self, directory: epath.Path, args: IteratorStateRestore | None = None):
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        path = directory / name
        if not path.exists():
            present = sorted(p.name for p in directory.iterdir())
            raise CheckpointMismatchError(
                f"{path}: no data iterator state for this process; the checkpoint was written by "
                f"{present}. Resume with the same number of processes it was saved with."
            )
        payload = json.loads(path.read_text())
        if "bytes_b64" in payload:
            return base64.b64decode(payload["bytes_b64"])
        return payload["json"]

    def metadata(self, directory: epath.Path):
        return None

    def structure(self, directory: epath.Path):
        return None

    def finalize(self, directory: epath.Path):
        pass

    def close(self):
        pass

    @classmethod
    def typestr(cls):
        return f"{cls.__module__}.{cls.__qualname__}"


ocp.args.register_with_handler(IteratorStateHandler, for_save=True)(IteratorStateSave)
ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)(IteratorStateRestore)


# --- the manager ----------------------------------------------------------------------------------


class Checkpointer:
    """Saves and restores (train state, data iterator state) under ``WORKDIR/checkpoints``.

    Args:
        workdir: the run directory.
        signature: `model_signature(...)` of the model being trained; stored with every step and
            compared on resume.
        keep: how many of the most recent checkpoints to keep.
        async_save: write the train state in a background thread. `save` still returns only after
            the device-to-host copy, so the caller may donate the saved buffers afterwards
            (STACK.md 4.13).
    """

    def __init__(self, workdir: str | pathlib.Path, signature: dict, *, keep: int = 3,
                 async_save: bool = True):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        self.signature = signature
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(STATE_ITEM, DATA_ITEM),
            item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                           DATA_ITEM: IteratorStateHandler()})

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step (unfinished writes are ignored), or None."""
        return self._manager.latest_step()

    def stored_signature(self, step: int) -> dict | None:
        """The model signature stored with `step`, or None for a checkpoint without one."""
        meta = self._manager.metadata(step)
        custom = getattr(meta, "custom_metadata", None) or {}
        return custom.get("model_signature")

    def check_compatible(self) -> int | None:
        """Refuses a workdir whose latest checkpoint belongs to another model.

        Returns:
            The step to resume from, or None for a fresh workdir.

        Raises:
            CheckpointMismatchError: the stored model or activation differs from this run's.
        """
        step = self.latest_step()
        if step is None:
            return None
        stored = self.stored_signature(step)
        if stored != self.signature:
            found = _describe(stored) if stored else "an unknown model (no model metadata)"
            raise CheckpointMismatchError(
                f"{self.directory}: holds a checkpoint (step {step}) of {found}, but this run "
                f"trains {_describe(self.signature)}. Use a fresh --workdir, or set "
                f"--config.model to the checkpoint's model to resume it.")
        return step

    def save(self, step: int, state: Any, data_state: Any, *, force: bool = False) -> bool:
        """Starts saving `state` and `data_state` as checkpoint `step` (all processes call this).

        Returns:
            Whether a save was started (orbax skips a step it already holds).
        """
        if step in self._manager.all_steps():
            return False
        return self._manager.save(
            step,
            args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state),
                                       DATA_ITEM: IteratorStateSave(data_state)}),
            custom_metadata={"model_signature": self.signature},
            force=force)

    def restore(self, step: int, abstract_state: Any, *, with_data: bool = True
                ) -> tuple[Any, Any]:
        """Restores checkpoint `step`.

        Args:
            step: which checkpoint.
            abstract_state: a pytree of `jax.ShapeDtypeStruct` with shardings (or concrete arrays,
                whose shapes and shardings are used): the restored arrays are laid out on the
                current mesh, whatever mesh wrote them.
            with_data: also read this process's iterator state (not needed to evaluate/export).

        Returns:
            ``(state, data_state)``: the train state and this process's iterator state (None
            without `with_data`).
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        items = {STATE_ITEM: ocp.args.StandardRestore(abstract)}
        if with_data:
            items[DATA_ITEM] = IteratorStateRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return restored[STATE_ITEM], (restored[DATA_ITEM] if with_data else None)

    def wait_until_finished(self):
        """Blocks until the in-flight save is on disk (and raises its error, if it failed)."""
        self._manager.wait_until_finished()

    def close(self):
        """Waits for pending saves, then releases the manager's threads."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
