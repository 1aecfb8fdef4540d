"""Two processes on localhost (jax.distributed, CPU collectives) train like one process."""
import json
import socket
import subprocess
import time

import numpy as np

from remoteclip_jax.train import loop
from tests.helpers.cli import ROOT, cli_env, main_command
from tests.test_config import load

STEPS, GLOBAL_BATCH = 4, 8


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(workdir):
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def _losses(workdir):
    return {r["step"]: r["train/loss"] for r in _lines(workdir) if "train/loss" in r}


def _evals(workdir):
    return {k: v for r in _lines(workdir) for k, v in r.items() if k.startswith("eval/")}


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """Training, and the final evaluation (each process reads its share of every dataset)."""
    # Two processes with one device each (CPU collectives over gloo cost ~0.1 s per op here, so
    # fewer devices keep this quick): each feeds its 4 rows of the same global batch of 8.
    workdir, port = tmp_path / "multi", _free_port()
    procs, logs = [], []
    for pid in range(2):
        logs.append(open(tmp_path / f"process_{pid}.txt", "w"))
        procs.append(subprocess.Popen(
            main_command("--config=configs/demo.py:smoke", f"--workdir={workdir}",
                         f"--config.train.steps={STEPS}",
                         f"--config.data.batch_size={GLOBAL_BATCH}",
                         "--config.train.export=False", f"--coordinator_address=127.0.0.1:{port}",
                         "--num_processes=2", f"--process_id={pid}"),
            cwd=ROOT, env=cli_env(1), stdout=logs[-1],
            stderr=subprocess.STDOUT))
    try:
        # Meanwhile, one process with 8 simulated devices (this pytest process), global batch 8.
        config = load("demo", "smoke")
        config.train.steps, config.data.batch_size = STEPS, GLOBAL_BATCH
        config.train.export = False
        loop.train_and_evaluate(config, tmp_path / "single")
    except BaseException:
        for p in procs:
            p.kill()
        raise
    expected = _losses(tmp_path / "single")
    deadline = time.time() + 400
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.5)
    for p, log in zip(procs, logs):
        if p.poll() is None:
            p.kill()
        log.close()
    outputs = [(tmp_path / f"process_{i}.txt").read_text()[-3000:] for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], outputs

    got = _losses(workdir)
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    # Same pairs in each global batch; only the order of float reductions differs (2 vs 8
    # devices, rows grouped by process).
    for step in expected:
        np.testing.assert_allclose(got[step], expected[step], rtol=2e-6)
    # The evaluation gathered both processes' shares: the same metrics, up to a query whose
    # nearly tied similarities the two programs (2 vs 8 devices) may order differently.
    got, expected = _evals(workdir), _evals(tmp_path / "single")
    assert got.keys() == expected.keys() and "eval/synthetic_count/top1" in got
    for key in expected:
        assert abs(got[key] - expected[key]) <= 100 / 16 + 1e-6, key
    # Both processes wrote their own data-iterator state into the shared checkpoint.
    data_dir = workdir / "checkpoints" / str(STEPS) / "data"
    assert sorted(p.name for p in data_dir.glob("*.json")) == ["process_0-of-2.json",
                                                               "process_1-of-2.json"]
