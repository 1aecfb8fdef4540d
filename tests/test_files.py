"""atomic_write: all or nothing, the usual umask mode, nothing left behind on failure."""
import os
import stat

import pytest

from remoteclip_jax.files import atomic_write, write_json


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"old": 1})
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["out.json"] and target.read_text() == '{"old": 1}'


def test_files_get_the_umask_mode_not_owner_only(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "sub" / "w.bin", None) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "sub" / "w.bin").stat().st_mode) == 0o644


def test_remote_problem_names_the_unknown_scheme_or_the_missing_package(tmp_path, monkeypatch):
    import importlib.util

    from remoteclip_jax import files
    from remoteclip_jax.data import images, sources
    from remoteclip_jax.errors import ConfigError
    from remoteclip_jax.files import as_path, is_remote, remote_problem
    from remoteclip_jax.weights import model_dir

    assert remote_problem(tmp_path) is None and not is_remote(tmp_path)
    assert type(as_path(str(tmp_path))) is type(tmp_path)  # local paths stay pathlib
    assert "memory:// is not a supported location" in remote_problem("memory://run")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("gcsfs", "tensorflow")
                        else real(name, *a))
    files._scheme_problem.cache_clear()  # answers are kept per scheme
    try:
        assert remote_problem("gs://bucket/run") == (
            "gs:// paths need gcsfs: pip install gcsfs ('remoteclip_jax[gcs]')")
        # Every path that may be a bucket goes through as_path, so each command says it in one
        # line: a data source, an init_from, a model.
        with pytest.raises(ConfigError, match=r"^gs://b/x.jsonl: gs:// paths need gcsfs"):
            sources.parse_spec("gs://b/x.jsonl")
        with pytest.raises(ConfigError, match=r"^gs://b/m: gs:// paths need gcsfs"):
            model_dir.read_model_dir("gs://b/m")
        with pytest.raises(ConfigError, match=r"^memory://x: memory:// is not a supported"):
            images.open_rgb("memory://x")
    finally:
        files._scheme_problem.cache_clear()


def test_a_cloud_storage_failure_ends_in_one_line_and_other_errors_keep_their_traceback(capsys):
    from remoteclip_jax.cli import guarded

    class ClientConnectorDNSError(OSError):  # what aiohttp raises under gcsfs without a network
        pass
    ClientConnectorDNSError.__module__ = "aiohttp.client_exceptions"

    def unreachable():
        raise ClientConnectorDNSError("Cannot connect to host storage.googleapis.com:443")

    assert guarded(unreachable) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: cloud storage could not be used (ClientConnectorDNSError: Cannot connect to host")
    assert "credentials" in err

    def bug():
        raise ValueError("a bug")
    with pytest.raises(ValueError, match="a bug"):
        guarded(bug)
