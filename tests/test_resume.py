"""Exact resume: a run SIGKILLed mid-training and restarted continues with the same losses."""
import importlib.util
import json
import subprocess

import numpy as np

from remoteclip_jax.train import loop
from tests.helpers.cli import ROOT, cli_env, main_command, run_main, run_then_kill

# Many steps, so that the kill (as soon as step KILL_AFTER is logged) lands mid-run.
STEPS, CHECKPOINT_EVERY, KILL_AFTER = 40, 4, 6
OVERRIDES = {"train.steps": STEPS, "train.checkpoint_every": CHECKPOINT_EVERY,
             "train.export": False}
# The subprocesses use the same 8 simulated devices as this pytest process (conftest.py), so the
# in-process reference runs the very same sharded program.
DEVICES = 8


def smoke_config():
    """configs/vitb32.py:smoke with this test's overrides."""
    spec = importlib.util.spec_from_file_location("cfg_vitb32", ROOT / "configs" / "vitb32.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    for key, value in OVERRIDES.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def _command(workdir):
    return main_command("--config=configs/vitb32.py:smoke", f"--workdir={workdir}",
                        *[f"--config.{k}={v}" for k, v in OVERRIDES.items()])


def _lines(workdir):
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def _losses(lines):
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


def _logged_steps(workdir):
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x)["step"] for x in path.read_text().splitlines() if x.endswith("}")]


def test_sigkilled_run_resumes_with_identical_losses_and_data_order(tmp_path):
    # A run SIGKILLed from outside at an arbitrary moment after step KILL_AFTER was logged.
    workdir, log = tmp_path / "killed", tmp_path / "stderr.txt"
    # After step KILL_AFTER is logged and the first checkpoint is committed (orbax renames a
    # finished step directory into place).
    run_then_kill(_command(workdir), cli_env(DEVICES), log, lambda: (
        max(_logged_steps(workdir), default=0) >= KILL_AFTER
        and (workdir / "checkpoints" / str(CHECKPOINT_EVERY)).is_dir()))
    first = _lines(workdir)
    killed_at = max(r["step"] for r in first)
    assert KILL_AFTER <= killed_at < STEPS, "the run ended before the kill"
    # The uninterrupted reference, in this process (the same 8 simulated devices).
    reference = tmp_path / "reference"
    loop.train_and_evaluate(smoke_config(), reference)
    expected = _losses(_lines(reference))
    assert sorted(expected) == list(range(1, STEPS + 1))

    # Restarted from its workdir: resumes from the newest finished checkpoint and re-does the rest.
    out = subprocess.run(_command(workdir), cwd=ROOT, env=cli_env(DEVICES), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed_from = int(out.stdout.split("resuming from")[1].split("step")[1].split()[0])
    assert resumed_from % CHECKPOINT_EVERY == 0 and resumed_from <= killed_at
    resumed = _losses(_lines(workdir)[len(first):])
    assert sorted(resumed) == list(range(resumed_from + 1, STEPS + 1))

    for step, loss in [*_losses(first).items(), *resumed.items()]:
        np.testing.assert_allclose(loss, expected[step], rtol=1e-6, atol=0, err_msg=f"step {step}")
    # Losses move step to step, so matching them pins the data order, not just the weights.
    assert len({round(v, 6) for v in expected.values()}) == STEPS


def test_run_whose_newest_checkpoint_is_truncated_resumes_from_the_one_before(tmp_path):
    workdir = tmp_path / "run"
    overrides = [f"--workdir={workdir}", "--config.train.steps=4",
                 "--config.train.checkpoint_every=2", "--config.train.export=False"]
    first = run_main("--config=configs/demo.py:smoke", *overrides)
    assert first.returncode == 0, first.stderr[-3000:]
    newest = workdir / "checkpoints" / "4"
    chunk = max((p for p in (newest / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
                key=lambda p: p.stat().st_size)
    with open(chunk, "r+b") as f:
        f.truncate(chunk.stat().st_size // 2)

    again = run_main("--config=configs/demo.py:smoke", *overrides)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "WARNING: checkpoint step 4" in again.stderr and "resuming from step 2" in again.stderr
    assert "step 2" in again.stdout  # "resuming from ... step 2"
    assert (workdir / "checkpoints_damaged" / "4").is_dir()
    # The rerun trained steps 3 and 4 again and saved a new, intact step 4.
    assert [r["step"] for r in _lines(workdir) if "train/loss" in r][-2:] == [3, 4]
    assert (newest / "remoteclip_manifest.json").is_file()
