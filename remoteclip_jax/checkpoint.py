"""Orbax checkpoints holding the train state and the data iterator state together.

One `CheckpointManager` step directory holds two items: ``state`` (the train state pytree, saved
asynchronously with `StandardSave`) and ``data`` (each process's grain iterator state, one JSON
file per process). Saving both in one step is what makes resume exact: the restored model sees
exactly the batches it would have seen had the run never stopped.

Each step also carries custom metadata naming the model (its open_clip name or config dict and its
activation), so a run refuses to resume from a workdir that holds another model's checkpoint
(the activation cannot be inferred from the parameters: GELU and QuickGELU shapes are identical),
and a manifest of its files, so a resume skips a step damaged on disk (see `Checkpointer`).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from remoteclip_jax import checkpoint_manifest as manifest_lib
from remoteclip_jax import files
from remoteclip_jax.errors import UserError, WeightsError, one_line

STATE_ITEM = "state"
DATA_ITEM = "data"
EMA_ITEM = "ema"    # optional: the EMA of the weights (train/ema.py), when the run keeps one


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
            raise WeightsError(
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

# orbax writes step N into "N" + this suffix and renames it to "N" to commit it.
_ORBAX_TMP_SUFFIX = ".orbax-checkpoint-tmp"
DAMAGED_DIRNAME = "checkpoints_damaged"


class Checkpointer:
    """Saves and restores (train state, data iterator state) under ``WORKDIR/checkpoints``.

    Every step is saved with a manifest (`remoteclip_jax.checkpoint_manifest`): the size and
    checksum of each of its files, written in orbax's finalisation, after all data is on disk and
    just before orbax commits the step (so a committed step has its manifest; if the background
    hook could not run, the manifest is written right after the commit, when the save is waited
    for). `check_compatible` checks the steps against their manifests, newest first, and resumes
    from the newest intact one: each damaged newer step is moved to ``WORKDIR/checkpoints_damaged/``
    (kept, not deleted, and out of the way of orbax's keep-N clean-up and of a new save of the same
    step number) with a warning. With no intact step it refuses with `WeightsError`,
    touching nothing.

    A step without a manifest (saved by an older version) is "unverified": used when orbax's
    markers are present; should orbax then fail to read it, `restore` says so in one line.

    Args:
        workdir: the run directory.
        signature: `model_signature(...)` of the model being trained; stored with every step and
            compared on resume.
        keep: how many of the most recent checkpoints to keep.
        async_save: write the train state in a background thread. `save` still returns only after
            the device-to-host copy, so the caller may donate the saved buffers afterwards
            (an async save racing a donated buffer fails with "Array has been deleted").
    """

    def __init__(self, workdir: str | pathlib.Path, signature: dict, *, keep: int = 3,
                 async_save: bool = True):
        workdir = files.as_path(workdir)  # a local folder or a bucket (gs://...)
        if not files.is_remote(workdir):
            workdir = workdir.absolute()
        self.directory = workdir / "checkpoints"
        self.damaged_directory = self.directory.parent / DAMAGED_DIRNAME
        self.signature = signature
        self._async = async_save
        self._pending_step: int | None = None
        self._integrity: dict[int, manifest_lib.StepIntegrity] = {}
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True,
            async_options=(ocp.AsyncOptions(post_finalization_callback=self._manifest_before_commit)
                           if async_save else None))
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(STATE_ITEM, DATA_ITEM, EMA_ITEM),
            item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                           DATA_ITEM: IteratorStateHandler(),
                           EMA_ITEM: ocp.StandardCheckpointHandler()})

    def _step_dir(self, step: int) -> pathlib.Path:
        return self.directory / str(step)

    def latest_step(self) -> int | None:
        """The newest committed checkpoint's step (unfinished writes are ignored), or None.

        Steps found damaged by `check_compatible` have been moved away by then, so after it this
        is the newest usable step.
        """
        return self._manager.latest_step()

    def stored_signature(self, step: int) -> dict | None:
        """The model signature stored with `step`, or None for a checkpoint without one."""
        # orbax's step record, read directly: `CheckpointManager.metadata` would also open every
        # array's metadata, which is slow and fails on a step whose data is damaged.
        path = self._step_dir(step) / manifest_lib.STEP_METADATA
        try:
            custom = json.loads(path.read_text()).get("custom_metadata") or {}
        except (OSError, ValueError):
            return None
        return custom.get("model_signature")

    def inspect(self, step: int) -> manifest_lib.StepIntegrity:
        """Checks committed step `step` against its manifest (the verdict is cached)."""
        if step not in self._integrity:
            self._integrity[step] = manifest_lib.inspect_step(
                self._step_dir(step), items=(STATE_ITEM, DATA_ITEM))
        return self._integrity[step]

    def check_compatible(self) -> int | None:
        """Picks the step to resume from: the newest intact one, of this run's model.

        Damaged newer steps are moved to `damaged_directory` with a warning (logged, and printed to
        stderr by process 0) naming each one.

        Returns:
            The step to resume from, or None for a fresh workdir.

        Raises:
            WeightsError: the stored model or activation differs from this run's.
            WeightsError: every checkpoint in the workdir is damaged (none is moved).
        """
        damaged: list[tuple[int, str]] = []
        chosen = None
        for step in sorted(self._manager.all_steps(), reverse=True):
            verdict = self.inspect(step)
            if not verdict.usable:
                damaged.append((step, verdict.reason))
                continue
            stored = self.stored_signature(step)
            if stored != self.signature:
                found = _describe(stored) if stored else "an unknown model (no model metadata)"
                raise WeightsError(
                    f"{self.directory}: holds a checkpoint (step {step}) of {found}, but this run "
                    f"trains {_describe(self.signature)}. Use a fresh --workdir, or set "
                    f"--config.model to the checkpoint's model to resume it.")
            if verdict.status == manifest_lib.UNVERIFIED:
                logging.info("checkpoint step %d has no manifest (saved by an older version, or "
                             "its manifest could not be written); restoring it unverified", step)
            chosen = step
            break
        if damaged and chosen is None:
            listing = "; ".join(f"step {s} ({why})" for s, why in damaged)
            raise WeightsError(
                f"{self.directory}: every checkpoint is damaged: {listing}. Move the damaged "
                f"step directories out of {self.directory} (e.g. into {self.damaged_directory}) "
                f"to start this workdir from scratch, or use a fresh --workdir.")
        for step, why in damaged:
            where = self._set_aside(step)
            _warn(f"checkpoint step {step} in {self.directory} is damaged ({why}); moved it to "
                  f"{where} (kept, not deleted) and resuming from step {chosen}, the newest "
                  f"intact one")
        if damaged:
            self._manager.reload()
        return chosen

    def _set_aside(self, step: int) -> pathlib.Path:
        """Moves damaged step `step` into `damaged_directory`; returns where it went."""
        target = self.damaged_directory / str(step)
        n = 2
        while target.exists():
            target, n = self.damaged_directory / f"{step}-{n}", n + 1
        if jax.process_index() == 0:
            self.damaged_directory.mkdir(parents=True, exist_ok=True)
            if files.is_remote(target):  # gcsfs moves a prefix object by object
                self._step_dir(step).rename(target)
            else:
                shutil.move(str(self._step_dir(step)), str(target))
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes(f"remoteclip_set_aside_step_{step}")
        self._integrity.pop(step, None)
        return target

    def save(self, step: int, state: Any, data_state: Any, *, force: bool = False,
             ema: Any = None) -> bool:
        """Starts saving `state` and `data_state` as checkpoint `step` (all processes call this);
        `ema`, when given, is saved with them (the EMA of the weights).

        Returns:
            Whether a save was started (orbax skips a step it already holds).
        """
        if step in self._manager.all_steps():
            return False
        # orbax waits for the previous save anyway; finishing it here first lets its manifest
        # hook know which step it is finishing.
        self.wait_until_finished()
        self._pending_step = step
        self._integrity.pop(step, None)
        items = {STATE_ITEM: ocp.args.StandardSave(state), DATA_ITEM: IteratorStateSave(data_state)}
        if ema is not None:
            items[EMA_ITEM] = ocp.args.StandardSave(ema)
        started = self._manager.save(
            step,
            args=ocp.args.Composite(**items),
            custom_metadata={"model_signature": self.signature},
            force=force)
        if not started:
            self._pending_step = None
        elif not self._async:
            self._manifest_after_commit()
        return started

    def _manifest_before_commit(self):
        """orbax's post-finalisation hook (process 0, background thread): every process's files
        are written, the step is not yet renamed into place. Writing the manifest now means a
        committed step always has one."""
        step = self._pending_step
        if step is None:
            return
        tmp = self.directory / f"{step}{_ORBAX_TMP_SUFFIX}"
        target = tmp if tmp.is_dir() else self._step_dir(step)
        try:
            if target.is_dir():
                manifest_lib.write_manifest(target)
        except Exception:  # noqa: BLE001 - an error here would make orbax drop the whole step
            # The save itself succeeded; _manifest_after_commit tries again once it is committed.
            logging.exception("could not write the manifest of checkpoint step %d", step)

    def _manifest_after_commit(self):
        """Writes the finished step's manifest if the pre-commit hook could not (process 0)."""
        step, self._pending_step = self._pending_step, None
        if step is None or jax.process_index() != 0:
            return
        final = self._step_dir(step)
        if final.is_dir() and not manifest_lib.has_manifest(final):
            manifest_lib.write_manifest(final)

    def restore(self, step: int, abstract_state: Any, *, with_data: bool = True
                ) -> tuple[Any, Any]:
        """Restores checkpoint `step`.

        Args:
            step: which checkpoint (normally the one `check_compatible` returned).
            abstract_state: a pytree of `jax.ShapeDtypeStruct` with shardings (or concrete arrays,
                whose shapes and shardings are used): the restored arrays are laid out on the
                current mesh, whatever mesh wrote them.
            with_data: also read this process's iterator state (not needed to evaluate/export).

        Returns:
            ``(state, data_state)``: the train state and this process's iterator state (None
            without `with_data`).

        Raises:
            WeightsError: the step does not match its manifest, or a step without one
                cannot be read.
        """
        verdict = self.inspect(step)
        if not verdict.usable:
            raise WeightsError(
                f"{self._step_dir(step)}: checkpoint step {step} is damaged ({verdict.reason}); "
                f"move it out of {self.directory} to resume from an older step.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        items = {STATE_ITEM: ocp.args.StandardRestore(abstract)}
        if with_data:
            items[DATA_ITEM] = IteratorStateRestore()
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except UserError:
            raise
        except Exception as e:
            if verdict.status != manifest_lib.UNVERIFIED:
                raise  # a step that matches its manifest: not damage, a real bug
            older = [s for s in self._manager.all_steps() if s < step]
            then = (f"rerun to resume from step {max(older)}" if older
                    else "rerun to start from scratch")
            raise WeightsError(
                f"{self._step_dir(step)}: checkpoint step {step} (saved without a manifest) "
                f"cannot be read ({type(e).__name__}: {one_line(e)[:200]}); move it into "
                f"{self.damaged_directory} and {then}.") from e
        return restored[STATE_ITEM], (restored[DATA_ITEM] if with_data else None)

    def restore_ema(self, step: int, like: Any) -> Any:
        """The EMA saved with checkpoint `step`, in float32 with the shapes and shardings of the
        variables `like` (arrays or their abstract shapes; nothing is copied), or None when the
        step has none (saved with EMA off)."""
        if not (self._step_dir(step) / EMA_ITEM).is_dir():
            return None
        abstract = jax.tree.map(
            lambda x: ocp.utils.to_shape_dtype_struct(x, dtype=jnp.float32), like)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(**{EMA_ITEM: ocp.args.StandardRestore(abstract)}))
        return restored[EMA_ITEM]

    def wait_until_finished(self):
        """Blocks until the in-flight save is on disk (and raises its error, if it failed)."""
        self._manager.wait_until_finished()
        self._manifest_after_commit()

    def close(self):
        """Waits for pending saves, then releases the manager's threads."""
        self.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _warn(message: str):
    """A warning for the log and, from process 0, for the person watching stderr."""
    logging.warning("%s", message)
    if jax.process_index() == 0:
        print(f"WARNING: {message}", file=sys.stderr, flush=True)
