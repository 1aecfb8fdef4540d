"""Training metrics: aggregation, `metrics.jsonl`, TensorBoard event files, the loss-curve plot.

Only `clu.metrics` is used from clu: the rest of it imports TensorFlow, and
its PyPI release predates jax's removal of `clip(a_min=)`. The
TensorBoard writer here writes the tfevents record format itself (length + CRC32C-framed `Event`
protocol buffers holding scalar summaries), so TensorBoard can read the run without TensorFlow or
tensorboardX being installed.
"""
# No `from __future__ import annotations`: clu.metrics reads the Collection annotations as objects.

import json
import math
import pathlib
import socket
import struct
import time
from typing import Iterable, Mapping

import flax
import jax
import jax.numpy as jnp
from clu import metrics as clu_metrics

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


# --- TensorBoard event files without TensorFlow ---------------------------------------------


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord framing uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str | None = None,
           scalars: Mapping[str, float] | None = None) -> bytes:
    """Serialises a `tensorflow.Event` (fields: 1 wall_time, 2 step, 3 file_version, 5 summary)."""
    out = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step)
    if file_version is not None:
        out += _length_delimited(3, file_version.encode())
    if scalars:
        summary = b""
        for tag, value in scalars.items():
            # Summary.Value: 1 tag, 2 simple_value (float).
            val = _length_delimited(1, tag.encode()) + _field(2, 5) + struct.pack("<f", value)
            summary += _length_delimited(1, val)
        out += _length_delimited(5, summary)
    return out


class TensorBoardWriter:
    """Appends scalar summaries to ``LOGDIR/events.out.tfevents.<time>.<host>``."""

    def __init__(self, logdir: str | pathlib.Path):
        logdir = pathlib.Path(logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = logdir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
        self._file = open(self.path, "ab")
        self._write_record(_event(now, 0, file_version="brain.Event:2"))

    def _write_record(self, data: bytes):
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", _masked_crc(header)) + data
                         + struct.pack("<I", _masked_crc(data)))

    def scalars(self, step: int, values: Mapping[str, float]):
        """Writes finite scalar values for `step` (None/NaN values are skipped)."""
        finite = {k: float(v) for k, v in values.items()
                  if v is not None and math.isfinite(float(v))}
        if finite:
            self._write_record(_event(time.time(), int(step), scalars=finite))
            self._file.flush()

    def close(self):
        self._file.close()


# --- the run's metric log -----------------------------------------------------------------------


class MetricsLogger:
    """Writes ``WORKDIR/metrics.jsonl`` (one JSON object per logged step) and TensorBoard events.

    Only the primary process writes (every process computes the same global metrics). Appends, so
    a resumed run continues the same files; `read_metrics` keeps the last record of each step.
    """

    def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.enabled = enabled
        self.path = self.workdir / "metrics.jsonl"
        self._tb = None
        if enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._tb = TensorBoardWriter(self.workdir / "tensorboard")

    def write(self, step: int, values: Mapping[str, float | None]):
        """Logs `values` (metric paths such as ``train/loss``) for `step`."""
        if not self.enabled:
            return
        record = {"step": int(step)}
        for key, value in values.items():
            value = None if value is None else float(value)
            record[key] = value if value is None or math.isfinite(value) else None
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._tb.scalars(step, values)

    def close(self):
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    """Reads a metrics.jsonl, keeping the last record written for each step, sorted by step."""
    by_step = {}
    with open(path) as f:
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
    path = pathlib.Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
