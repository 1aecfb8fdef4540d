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
