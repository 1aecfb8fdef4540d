"""Helpers for tests that run `python -m remoteclip_jax.main` in subprocesses."""
import atexit
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

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
