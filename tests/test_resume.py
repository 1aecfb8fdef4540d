"""Exact resume: a run SIGKILLed mid-training and restarted continues with the same losses."""
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

from remoteclip_jax.train import loop

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS, CHECKPOINT_EVERY, KILL_AFTER = 10, 4, 6
OVERRIDES = {"train.steps": STEPS, "train.checkpoint_every": CHECKPOINT_EVERY,
             "train.export": False}


def smoke_config():
    spec = importlib.util.spec_from_file_location("cfg_vitb32", ROOT / "configs" / "vitb32.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    for key, value in OVERRIDES.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def _command(workdir):
    return [sys.executable, "-m", "remoteclip_jax.main", "--config=configs/vitb32.py:smoke",
            f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in OVERRIDES.items()]


def _env(**extra):
    # The same 8 simulated devices and matmul precision as this pytest process (conftest.py).
    return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
            "JAX_PLATFORMS": "cpu", "JAX_DEFAULT_MATMUL_PRECISION": "highest", **extra}


def _losses(lines):
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


def test_sigkilled_run_resumes_with_identical_losses_and_data_order(tmp_path):
    # Uninterrupted reference, in this process.
    reference = tmp_path / "reference"
    loop.train_and_evaluate(smoke_config(), reference)
    expected = _losses(json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines())
    assert sorted(expected) == list(range(1, STEPS + 1))

    # The same run, stopped after step KILL_AFTER and killed with SIGKILL from outside.
    workdir = tmp_path / "killed"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(_command(workdir), cwd=ROOT, stderr=stderr,
                                stdout=subprocess.DEVNULL,
                                env=_env(REMOTECLIP_DEBUG_PAUSE_AFTER_STEP=str(KILL_AFTER)))
        deadline = time.time() + 300
        while f"REMOTECLIP_PAUSED step={KILL_AFTER}" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the run never reached the kill point"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    first = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in first] == list(range(1, KILL_AFTER + 1))

    # Restarted from its workdir: resumes from the last checkpoint (step 4) and re-does 5...
    out = subprocess.run(_command(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"step {CHECKPOINT_EVERY}" in out.stdout  # "resuming from ... step 4"
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    resumed = _losses(lines[KILL_AFTER:])
    assert sorted(resumed) == list(range(CHECKPOINT_EVERY + 1, STEPS + 1))

    before = _losses(first)
    for step in before:
        np.testing.assert_allclose(before[step], expected[step], rtol=1e-6, atol=0)
    for step in resumed:
        np.testing.assert_allclose(resumed[step], expected[step], rtol=1e-6, atol=0)
    # Losses move step to step, so matching them pins the data order, not just the weights.
    assert len({round(v, 6) for v in expected.values()}) == STEPS
