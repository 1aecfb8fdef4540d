"""The persistent compilation cache: on by default for the commands, in the user's cache dir."""
import os
import subprocess
import sys

from remoteclip_jax import compilation_cache

PROGRAM = """
import sys
from remoteclip_jax import compilation_cache
compilation_cache.enable_by_default()
if len(sys.argv) > 1:
    compilation_cache.configure(sys.argv[1])
import jax, jax.numpy as jnp
print(float(jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((64, 64)))))
"""


def _run(env, *args):
    env = {**os.environ, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", **env}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    subprocess.run([sys.executable, "-c", PROGRAM, *args], env=env, check=True,
                   capture_output=True, text=True)


def _entries(path):
    return sorted(p.name for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_a_second_start_reuses_what_the_first_compiled(tmp_path):
    cache = tmp_path / "cache"
    _run({compilation_cache.ENV: str(cache)})
    first = _entries(cache)
    assert first, "the first start wrote nothing to the cache"
    _run({compilation_cache.ENV: str(cache)})
    assert _entries(cache) == first  # every program came from the cache


def test_the_cache_is_switched_off_by_the_environment_or_the_config(tmp_path):
    cache = tmp_path / "cache"
    _run({compilation_cache.ENV: ""})
    _run({compilation_cache.ENV: str(cache)}, "")  # config compilation_cache=""
    assert not _entries(cache)
    other = tmp_path / "other"
    _run({compilation_cache.ENV: str(cache)}, str(other))  # a config naming another directory
    assert _entries(other) and not _entries(cache)


def test_default_directory_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(compilation_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.default_dir() == str(tmp_path / "remoteclip_jax" / "jax")
