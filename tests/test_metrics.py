"""Metrics: clu aggregation, metrics.jsonl, TensorBoard events (read by TensorBoard's own
reader), Weights & Biases (a stand-in module), plot."""
import json
import sys

import numpy as np
import pytest

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.train import metrics


def _scalars(logdir):
    """{tag: [(step, value)]} as TensorBoard's own reader reads the directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_reads_back_the_finite_scalars(tmp_path):
    writer = metrics.TensorBoardWriter(tmp_path)
    writer.scalars(7, {"train/loss": 1.25, "train/mfu": None, "train/lr": float("nan")})
    writer.scalars(300, {"eval/rsicd/mean_recall": 0.5, "train/loss": 0.75})
    writer.close()
    assert writer.path.parent == tmp_path and "tfevents" in writer.path.name
    assert _scalars(tmp_path) == {"train/loss": [(7, 1.25), (300, 0.75)],
                                  "eval/rsicd/mean_recall": [(300, 0.5)]}


def test_metrics_logger_writes_tensorboard_beside_the_jsonl(tmp_path):
    logger = metrics.MetricsLogger(tmp_path)
    logger.write(3, {"train/loss": 2.5})
    logger.close()
    assert _scalars(tmp_path / "tensorboard") == {"train/loss": [(3, 2.5)]}


class _FakeWandb:
    """The slice of the wandb module the logger uses: init() -> run with log() and finish()."""

    def __init__(self):
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self

    def log(self, values, step):
        self.logged.append((step, values))

    def finish(self):
        self.finished += 1


def test_wandb_gets_the_finite_scalars_and_a_resume_continues_its_run(tmp_path, monkeypatch):
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    for step in (1, 2):  # a run and its resume
        logger = metrics.MetricsLogger(tmp_path, wandb_project="rs", config={"seed": 0})
        logger.write(step, {"train/loss": 1.0 / step, "train/mfu": None})
        logger.close()
    assert fake.logged == [(1, {"train/loss": 1.0}), (2, {"train/loss": 0.5})]
    assert fake.finished == 2
    first, second = fake.inits
    assert first["project"] == "rs" and first["config"] == {"seed": 0}
    assert first["id"] == second["id"] and second["resume"] == "allow"


def test_wandb_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match=r"install wandb \(pip install 'remoteclip_jax\[wandb\]'\)"):
        metrics.MetricsLogger(tmp_path, wandb_project="rs")
    assert metrics.MetricsLogger(tmp_path, enabled=False, wandb_project="rs").enabled is False


def test_metrics_jsonl_one_object_per_logged_step_and_last_write_wins(tmp_path):
    logger = metrics.MetricsLogger(tmp_path)
    logger.write(1, {"train/loss": 2.0, "train/mfu": None})
    logger.write(2, {"train/loss": float("inf")})
    logger.write(2, {"train/loss": 1.5})  # a resumed run re-logs step 2
    logger.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"step": 1, "train/loss": 2.0, "train/mfu": None}
    assert lines[1]["train/loss"] is None  # JSON has no inf
    assert metrics.read_metrics(tmp_path / "metrics.jsonl")[1] == {"step": 2, "train/loss": 1.5}


def test_aggregation_averages_loss_and_keeps_last_lr():
    rng = np.random.default_rng(0)
    raw = [{"loss": rng.random(), "grad_norm": rng.random(), "lr": 0.1 * i,
            "logit_scale": 10.0 + i, "param_norm": 3.0 + i} for i in range(5)]
    merged = metrics.step_metrics(raw[0])
    for r in raw[1:]:
        merged = merged.merge(metrics.step_metrics(r))
    out = merged.compute()
    assert out["loss"] == pytest.approx(np.mean([r["loss"] for r in raw]), rel=1e-6)
    assert out["grad_norm"] == pytest.approx(np.mean([r["grad_norm"] for r in raw]), rel=1e-6)
    assert out["lr"] == pytest.approx(0.4) and out["logit_scale"] == pytest.approx(14.0)


def test_loss_curve_png_is_written(tmp_path):
    path = metrics.plot_loss_curve([{"step": s, "train/loss": 1 / s} for s in range(1, 20)],
                                   tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics.plot_loss_curve([{"step": 1}], tmp_path / "none.png") is None


def test_peak_flops_table_and_override():
    assert metrics.peak_flops_per_device(override_tflops=2.0) == 2e12
    # CPUs are not in the table: MFU is reported as null rather than guessed.
    assert metrics.peak_flops_per_device() is None
