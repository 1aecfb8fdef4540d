"""Profiles: config.train.profile_steps writes a jax.profiler trace, `train --profile` says where."""
import pytest

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.train import loop
from remoteclip_jax.train.profile import parse_steps
from tests.helpers.cli import run_main
from tests.test_resume import smoke_config


def test_profile_steps_values():
    assert parse_steps("") is None
    assert parse_steps("10,5") == (10, 14)
    assert parse_steps((3, 1)) == (3, 3)
    assert parse_steps("auto", first_step=101) == (102, 106)
    for bad in ("10", "a,b", "0,5", "3,0", "1,2,3"):
        with pytest.raises(ConfigError, match="profile_steps"):
            parse_steps(bad)


def _traces(workdir):
    return list((workdir / "profile" / "plugins" / "profile").glob("*/*.xplane.pb"))


@pytest.mark.slow  # the CLI test below covers the default suite
def test_a_smoke_run_writes_the_trace_of_its_window(tmp_path, capsys):
    config = smoke_config()
    config.train.steps, config.train.export = 3, False
    config.train.profile_steps = "2,2"
    loop.train_and_evaluate(config, tmp_path)
    (trace,) = _traces(tmp_path)
    assert trace.stat().st_size > 0
    assert f"profile of steps 2..3: {trace.parent}" in capsys.readouterr().out


def test_a_bad_window_is_refused_before_training(tmp_path):
    config = smoke_config()
    config.train.profile_steps = "5"
    with pytest.raises(ConfigError, match="profile_steps"):
        loop.train_and_evaluate(config, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow  # moved out of the default suite to keep it under CI's budget
def test_train_profile_flag_says_where_the_trace_went(tmp_path):
    out = run_main("--config=configs/vitb32.py:smoke", f"--workdir={tmp_path}", "--profile",
                   "--config.train.export=false")
    assert out.returncode == 0, out.stderr[-3000:]
    (trace,) = _traces(tmp_path)
    assert f"profile of steps 2..4: {trace.parent}" in out.stdout   # 4 smoke steps: 2..min(6, 4)
