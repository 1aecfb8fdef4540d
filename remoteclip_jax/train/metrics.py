"""Training metrics: aggregation, `metrics.jsonl`, TensorBoard event files, optional Weights &
Biases, the loss-curve plot.

Only `clu.metrics` is used from clu: the rest of it imports TensorFlow (clu's metric writers
too), and its PyPI release predates jax's removal of `clip(a_min=)`.
"""
# No `from __future__ import annotations`: clu.metrics reads the Collection annotations as objects.

import json
import math
import pathlib
import shutil
import tempfile
import time
import uuid
from typing import Iterable, Mapping

import flax
import jax
import jax.numpy as jnp
from clu import metrics as clu_metrics

from remoteclip_jax import files
from remoteclip_jax.errors import ConfigError
from remoteclip_jax.lazy import optional_module

# --- aggregation ------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
    """Aggregates per-step train metrics between two log points.

    Loss and gradient norm are averaged over the window; the learning rate, logit scale and
    parameter norm describe the state at the window's last step.
    """

    loss: clu_metrics.Average.from_output("loss")
    grad_norm: clu_metrics.Average.from_output("grad_norm")
    lr: clu_metrics.LastValue.from_output("lr")
    logit_scale: clu_metrics.LastValue.from_output("logit_scale")
    param_norm: clu_metrics.LastValue.from_output("param_norm")


def step_metrics(raw: Mapping[str, jax.Array]) -> TrainMetrics:
    """Wraps one train step's metrics (names as `make_train_step` returns them) for merging.

    Keys may be bare (``loss``) or paths (``train/loss``); missing ones count as NaN. Values stay
    on device, so merging does not block the next step's dispatch.
    """
    def get(name):
        for key in (name, f"train/{name}"):
            if key in raw:
                return jnp.asarray(_local(raw[key]), jnp.float32)
        return jnp.float32(jnp.nan)

    return TrainMetrics.single_from_model_output(
        loss=get("loss"), grad_norm=get("grad_norm"), lr=get("lr"),
        logit_scale=get("logit_scale"), param_norm=get("param_norm"))


def _local(x):
    """This process's copy of a replicated metric (a multi-process array cannot be read whole)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return x.addressable_data(0)
    return x


# --- model-FLOP utilisation -------------------------------------------------------------------

# Dense peak FLOP/s per device for the dtype each chip trains in (vendor data sheets; bf16 unless
# noted). Unknown devices (CPUs) get no MFU unless `train.peak_tflops_per_device` is set.
_PEAK_TFLOPS = {
    "tpu v4": 275.0, "tpu v5 lite": 197.0, "tpu v5e": 197.0, "tpu v5p": 459.0, "tpu v5": 459.0,
    "tpu v6 lite": 918.0, "tpu v6e": 918.0, "tpu7x": 2307.0,
    "h100": 989.0, "h200": 989.0, "a100": 312.0, "l4": 121.0, "a10": 125.0, "v100": 125.0,
}


def peak_flops_per_device(device: jax.Device | None = None, override_tflops: float = 0.0):
    """Peak FLOP/s of one device, or None when unknown.

    Args:
        device: defaults to `jax.devices()[0]`.
        override_tflops: if > 0, used instead of the table (e.g. a CPU's or float32 peak).
    """
    if override_tflops and override_tflops > 0:
        return override_tflops * 1e12
    kind = (device or jax.devices()[0]).device_kind.lower()
    for name in sorted(_PEAK_TFLOPS, key=len, reverse=True):
        if name in kind:
            return _PEAK_TFLOPS[name] * 1e12
    return None


# --- TensorBoard event files -----------------------------------------------------------------


# A bucket object cannot be appended to: a log in a bucket is written to a local file and sent
# whole, at most this often and at each checkpoint (`MetricsLogger.flush`), so a long run uploads
# O(length) bytes per minute rather than its whole log at every logged step. A crash loses only
# records after the last checkpoint, which the resumed run writes again.
REMOTE_UPLOAD_SECONDS = 60.0


class _BucketCopy:
    """The local file standing for bucket object `remote`; `send` uploads it in one put when
    due (`REMOTE_UPLOAD_SECONDS` after the last send; the first send is due at once) or forced."""

    def __init__(self, local: pathlib.Path, remote):
        self.local, self.remote, self._sent = local, remote, -math.inf

    def send(self, force: bool = False):
        if force or time.monotonic() - self._sent >= REMOTE_UPLOAD_SECONDS:
            if self.local.exists():
                with files.atomic_write(self.remote, "wb") as f:
                    f.write(self.local.read_bytes())
            self._sent = time.monotonic()


class TensorBoardWriter:
    """Appends scalar summaries to ``LOGDIR/events.out.tfevents.<time>.<host>.<pid>.<n>``.

    Through the `tensorboard` package's own event-file writer (the one torch's SummaryWriter uses),
    which needs no TensorFlow; tensorboardX would do the same but imports torch when present.
    """

    def __init__(self, logdir: str | pathlib.Path):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        logdir = files.as_path(logdir)
        # tensorboard's writer appends to its file: for a bucket it writes a local one.
        remote, self._local_dir = None, None
        if files.is_remote(logdir):
            remote, self._local_dir = logdir, tempfile.mkdtemp(prefix="remoteclip-tensorboard-")
            logdir = pathlib.Path(self._local_dir)
        before = set(logdir.glob("events.out.tfevents.*"))
        self._writer = EventFileWriter(str(logdir))
        new = sorted(set(logdir.glob("events.out.tfevents.*")) - before)
        self.path = new[-1] if new else None
        self._copy = _BucketCopy(self.path, remote / self.path.name) \
            if remote is not None and self.path is not None else None
        self.flush()

    def scalars(self, step: int, values: Mapping[str, float]):
        """Writes finite scalar values for `step` (None/NaN values are skipped)."""
        from tensorboard.compat.proto import event_pb2, summary_pb2

        finite = [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                  for k, v in values.items() if v is not None and math.isfinite(float(v))]
        if finite:
            self._writer.add_event(event_pb2.Event(
                wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=finite)))
            self._writer.flush()  # a killed run keeps what it logged
            if self._copy is not None:
                self._copy.send()

    def flush(self):
        """Sends the event file to the bucket now (nothing to do for a local logdir)."""
        if self._copy is not None:
            self._copy.send(force=True)

    def close(self):
        self._writer.close()
        self.flush()
        if self._local_dir is not None:
            shutil.rmtree(self._local_dir, ignore_errors=True)


# --- Weights & Biases (optional) ----------------------------------------------------------------

WANDB_HINT = "install wandb (pip install 'remoteclip_jax[wandb]')"


class WandbWriter:
    """Logs the same scalars to a Weights & Biases run of `project` (``train.wandb_project``).

    The run id is kept in ``WORKDIR/wandb_run_id``, so a resumed training continues the same run.
    """

    def __init__(self, project: str, workdir: pathlib.Path, config: Mapping | None = None):
        wandb = optional_module("wandb", f"config.train.wandb_project={project!r} logs to Weights & "
                                f"Biases: {WANDB_HINT}, or set it to ''", ConfigError)
        id_file = workdir / "wandb_run_id"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            id_file.write_text(run_id + "\n")
        # wandb keeps its files in a local folder: a bucket workdir gets a temporary one.
        self._local_dir = tempfile.mkdtemp(prefix="remoteclip-wandb-") \
            if files.is_remote(workdir) else None
        self._run = wandb.init(project=project, id=run_id, resume="allow",
                               dir=self._local_dir or str(workdir), name=workdir.name,
                               config=dict(config or {}))

    def scalars(self, step: int, values: Mapping[str, float]):
        finite = {k: float(v) for k, v in values.items()
                  if v is not None and math.isfinite(float(v))}
        if finite:
            self._run.log(finite, step=int(step))

    def flush(self):
        pass  # wandb sends on its own

    def close(self):
        self._run.finish()
        if self._local_dir is not None:
            shutil.rmtree(self._local_dir, ignore_errors=True)


# --- the run's metric log -----------------------------------------------------------------------


class MetricsLogger:
    """Writes ``WORKDIR/metrics.jsonl`` (one JSON object per logged step), TensorBoard events in
    ``WORKDIR/tensorboard`` and, given `wandb_project`, the same scalars to Weights & Biases.

    Only the primary process writes (every process computes the same global metrics). Appends, so
    a resumed run continues the same files; `read_metrics` keeps the last record of each step.
    In a bucket the logs reach the workdir at `flush` (the loop calls it at each checkpoint) and
    every `REMOTE_UPLOAD_SECONDS`.
    """

    def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True,
                 wandb_project: str = "", config: Mapping | None = None):
        self.workdir = files.as_path(workdir)
        self.enabled = enabled
        self.path = self.workdir / "metrics.jsonl"
        self._writers, self._copy, self._local_dir = [], None, None
        if enabled and files.is_remote(self.workdir):  # appended locally, sent whole
            self._local_dir = tempfile.mkdtemp(prefix="remoteclip-metrics-")
            self._copy = _BucketCopy(pathlib.Path(self._local_dir, self.path.name), self.path)
            if self.path.exists():  # a resumed run continues the log
                self._copy.local.write_bytes(self.path.read_bytes())
        if enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            if wandb_project:
                self._writers.append(WandbWriter(wandb_project, self.workdir, config))
            self._writers.insert(0, TensorBoardWriter(self.workdir / "tensorboard"))

    def write(self, step: int, values: Mapping[str, float | None]):
        """Logs `values` (metric paths such as ``train/loss``) for `step`."""
        if not self.enabled:
            return
        record = {"step": int(step)}
        for key, value in values.items():
            value = None if value is None else float(value)
            record[key] = value if value is None or math.isfinite(value) else None
        if self._copy is None:
            files.append_text(self.path, json.dumps(record) + "\n")
        else:
            files.append_text(self._copy.local, json.dumps(record) + "\n")
            self._copy.send()
        for writer in self._writers:
            writer.scalars(step, values)

    def flush(self):
        """Brings every log in a bucket workdir up to date (local logs always are)."""
        if self._copy is not None:
            self._copy.send(force=True)
        for writer in self._writers:
            writer.flush()

    def close(self):
        self.flush()
        for writer in self._writers:
            writer.close()
        self._writers = []
        if self._local_dir is not None:
            shutil.rmtree(self._local_dir, ignore_errors=True)
            self._local_dir = None


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    """Reads a metrics.jsonl, keeping the last record written for each step, sorted by step."""
    by_step = {}
    with files.as_path(path).open() as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                by_step.setdefault(record["step"], {}).update(record)
    return [by_step[s] for s in sorted(by_step)]


def plot_loss_curve(records: Iterable[Mapping], path: str | pathlib.Path,
                    key: str = "train/loss") -> pathlib.Path | None:
    """Saves a PNG of `key` against step; returns its path, or None when nothing was logged."""
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    if not points:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, values = zip(*points)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(steps, values, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"{key} ({len(points)} logged steps)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = files.as_path(path)
    with files.atomic_write(path, None) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
