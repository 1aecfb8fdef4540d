"""Helpers for tests that run `python -m remoteclip_jax.main` in subprocesses."""
import atexit
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
# One persistent XLA compilation cache for every CLI subprocess of the session: the second run of
# the same tiny model loads its executables instead of compiling them (~2.5x faster start).
_CACHE = tempfile.mkdtemp(prefix="remoteclip_jax_cache_")
atexit.register(shutil.rmtree, _CACHE, True)


def cli_env(devices: int = 2, **extra) -> dict:
    """Environment for a CLI subprocess on `devices` simulated CPU devices."""
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "JAX_PLATFORMS": "cpu", "JAX_DEFAULT_MATMUL_PRECISION": "highest",
            "JAX_COMPILATION_CACHE_DIR": _CACHE, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0", **extra}


def main_command(*args) -> list:
    return [sys.executable, "-m", "remoteclip_jax.main", *args]


def run_main(*args, devices: int = 2, timeout: int = 400, **env):
    """Runs the CLI to completion; returns the CompletedProcess (text stdout/stderr)."""
    return subprocess.run(main_command(*args), cwd=ROOT, env=cli_env(devices, **env),
                          capture_output=True, text=True, timeout=timeout)


def run_then_kill(command, env, log: pathlib.Path, ready, timeout: float = 300,
                  poll: float = 0.02) -> None:
    """Starts `command` (stderr to `log`) and SIGKILLs it from outside once `ready()` holds,
    as a preempted machine would; fails if the process ends first or `timeout` passes."""
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, cwd=ROOT, stderr=stderr, stdout=subprocess.DEVNULL,
                                env=env)
        try:
            deadline = time.time() + timeout
            while not ready():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, "the run never reached the kill point"
                time.sleep(poll)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
