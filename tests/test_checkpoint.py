"""Checkpointer: train state + iterator state in one orbax step, resharding, keep-N, refusal."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from remoteclip_jax import checkpoint as ckpt
from remoteclip_jax import checkpoint_manifest as manifest_lib
from remoteclip_jax.errors import UserError, WeightsError
from remoteclip_jax.train import state as state_lib


def _mesh(n):
    return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:n])


def _state(mesh, spec, scale=1.0):
    params = {"w": jnp.arange(32.0).reshape(8, 4) * scale, "logit_scale": jnp.float32(2.5)}
    tx = optax.adamw(1e-3)
    state = state_lib.TrainState(step=jnp.int32(3), params=params, batch_stats={},
                                 opt_state=tx.init(params))
    shard = NamedSharding(mesh, spec)
    return jax.tree.map(lambda x: jax.device_put(x, shard if x.ndim == 2 else
                                                 NamedSharding(mesh, P())), state)


def test_restore_returns_saved_values_on_the_target_mesh(tmp_path):
    saved = _state(_mesh(8), P("data"))
    sig = ckpt.model_signature("ViT-B-32-quickgelu")
    with ckpt.Checkpointer(tmp_path, sig) as c:
        c.save(5, saved, {"next_index": 7})
    # Restore onto a 2-device mesh, replicated: the target's layout wins, the values survive.
    target = _state(_mesh(2), P(), scale=0.0)
    with ckpt.Checkpointer(tmp_path, sig) as c:
        assert c.check_compatible() == 5
        restored, data_state = c.restore(5, target)
    assert data_state == {"next_index": 7}
    assert isinstance(restored, state_lib.TrainState)
    np.testing.assert_array_equal(restored.params["w"], np.arange(32.0).reshape(8, 4))
    assert restored.params["w"].sharding == target.params["w"].sharding
    assert int(restored.step) == 3
    for a, b in zip(jax.tree.leaves(restored.opt_state), jax.tree.leaves(saved.opt_state)):
        np.testing.assert_array_equal(a, b)


def test_iterator_state_is_per_process_json_and_bytes_survive(tmp_path):
    state = _state(_mesh(1), P())
    sig = ckpt.model_signature("RN50")
    with ckpt.Checkpointer(tmp_path, sig) as c:
        c.save(1, state, b"\x00grain\xff")
    files = list((tmp_path / "checkpoints" / "1" / "data").glob("process_*.json"))
    assert [f.name for f in files] == ["process_0-of-1.json"]
    with ckpt.Checkpointer(tmp_path, sig) as c:
        _, data_state = c.restore(1, state)
    assert data_state == b"\x00grain\xff"


def test_keeps_only_the_last_n_and_ignores_a_step_it_holds(tmp_path):
    state = _state(_mesh(1), P())
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50"), keep=2) as c:
        for step in (2, 4, 6):
            assert c.save(step, state, {"s": step})
        assert not c.save(6, state, {"s": 6})
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [4, 6]


@pytest.mark.parametrize("other", ["ViT-B-32", "ViT-L-14-quickgelu"])
def test_workdir_of_another_model_is_refused_naming_both(tmp_path, other):
    state = _state(_mesh(1), P())
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("ViT-B-32-quickgelu")) as c:
        c.save(1, state, {})
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature(other)) as c:
        with pytest.raises(WeightsError) as err:
            c.check_compatible()
    message = str(err.value)
    assert "ViT-B-32-quickgelu (QuickGELU)" in message and other in message
    assert "--workdir" in message


def test_signature_records_the_activation_that_shapes_cannot_tell():
    gelu = ckpt.model_signature({"embed_dim": 8, "quick_gelu": False})
    quick = ckpt.model_signature({"embed_dim": 8, "quick_gelu": True})
    assert gelu != quick
    assert ckpt.model_signature("RN50-quickgelu")["quick_gelu"] is True
    assert json.loads(json.dumps(gelu)) == gelu


def test_fresh_workdir_has_nothing_to_resume(tmp_path):
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50")) as c:
        assert c.check_compatible() is None


# --- damaged checkpoints ----------------------------------------------------------------------


def _two_steps(tmp_path, keep=3):
    """Steps 2 and 4 with different weights; returns the (step -> state) saved."""
    saved = {2: _state(_mesh(1), P(), scale=1.0), 4: _state(_mesh(1), P(), scale=2.0)}
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50"), keep=keep) as c:
        for step, state in saved.items():
            c.save(step, state, {"at": step})
    return saved


def _largest_data_file(step_dir):
    """The biggest array chunk file orbax wrote for the train state (under a ``d/`` folder)."""
    return max((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _assert_state_equal(restored, expected):
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _resume(tmp_path, target, keep=3):
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50"), keep=keep) as c:
        step = c.check_compatible()
        restored, data_state = c.restore(step, target)
    return step, restored, data_state


def test_truncated_newest_step_falls_back_to_the_older_one_with_a_warning(tmp_path, capfd):
    saved = _two_steps(tmp_path)
    checkpoints = tmp_path / "checkpoints"
    truncated = _largest_data_file(checkpoints / "4")
    _truncate(truncated)

    step, restored, data_state = _resume(tmp_path, _state(_mesh(1), P(), scale=0.0))
    assert (step, data_state) == (2, {"at": 2})
    _assert_state_equal(restored, saved[2])
    np.testing.assert_array_equal(restored.params["w"], np.arange(32.0).reshape(8, 4))
    err = capfd.readouterr().err
    warning = next(line for line in err.splitlines() if line.startswith("WARNING: checkpoint"))
    assert "step 4" in warning and truncated.name in warning and "resuming from step 2" in warning
    # Kept for inspection, out of the checkpoints folder; the truncated file is as it was left.
    kept = tmp_path / ckpt.DAMAGED_DIRNAME / "4"
    assert not (checkpoints / "4").exists()
    size = (kept / truncated.relative_to(checkpoints / "4")).stat().st_size
    assert 0 < size < manifest_lib.json.loads((kept / manifest_lib.MANIFEST_NAME).read_text())[
        "files"][truncated.relative_to(checkpoints / "4").as_posix()]["size"]


def test_after_a_fallback_saving_the_damaged_step_number_and_keep_n_work(tmp_path):
    _two_steps(tmp_path, keep=2)
    _truncate(_largest_data_file(tmp_path / "checkpoints" / "4"))
    state = _state(_mesh(1), P(), scale=3.0)
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50"), keep=2) as c:
        assert c.check_compatible() == 2
        for step in (3, 4, 5, 6):  # re-saves step 4; keep-2 then removes 3 and 4 again
            assert c.save(step, state, {"at": step})
        assert c.latest_step() == 6
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [5, 6]
    assert (tmp_path / ckpt.DAMAGED_DIRNAME / "4").is_dir()
    step, restored, _ = _resume(tmp_path, _state(_mesh(1), P(), scale=0.0), keep=2)
    assert step == 6
    _assert_state_equal(restored, state)


def test_step_missing_a_file_or_its_data_item_is_damaged(tmp_path):
    saved = _two_steps(tmp_path)
    (tmp_path / "checkpoints" / "4" / "data" / "process_0-of-1.json").unlink()
    step, restored, _ = _resume(tmp_path, _state(_mesh(1), P(), scale=0.0))
    assert step == 2
    _assert_state_equal(restored, saved[2])


def test_changed_bytes_of_the_same_size_are_caught_by_the_checksum(tmp_path):
    _two_steps(tmp_path)
    victim = _largest_data_file(tmp_path / "checkpoints" / "4")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50")) as c:
        verdict = c.inspect(4)
        assert verdict.status == "damaged" and "CRC-32" in verdict.reason
        assert c.check_compatible() == 2


def test_unfinished_orbax_write_is_ignored_and_its_step_can_be_saved_again(tmp_path):
    saved = _two_steps(tmp_path)
    # What a run killed mid-save leaves: orbax's temporary folder, half its files.
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(checkpoints / "4" / "state", checkpoints / "6.orbax-checkpoint-tmp" / "state")
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50")) as c:
        assert c.check_compatible() == 4
        assert c.save(6, saved[2], {"at": 6})
    step, restored, data_state = _resume(tmp_path, _state(_mesh(1), P(), scale=0.0))
    assert (step, data_state) == (6, {"at": 6})
    _assert_state_equal(restored, saved[2])


def test_no_intact_checkpoint_is_refused_in_one_line_and_nothing_is_moved(tmp_path):
    state = _state(_mesh(1), P())
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50")) as c:
        c.save(3, state, {})
    _truncate(_largest_data_file(tmp_path / "checkpoints" / "3"))
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50")) as c:
        with pytest.raises(WeightsError) as err:
            c.check_compatible()
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, UserError)
    assert "step 3" in message and "--workdir" in message and ckpt.DAMAGED_DIRNAME in message
    assert (tmp_path / "checkpoints" / "3").is_dir()
    assert not (tmp_path / ckpt.DAMAGED_DIRNAME).exists()


def test_step_without_manifest_is_restored_unverified(tmp_path):
    saved = _two_steps(tmp_path)
    (tmp_path / "checkpoints" / "4" / manifest_lib.MANIFEST_NAME).unlink()
    step, restored, _ = _resume(tmp_path, _state(_mesh(1), P(), scale=0.0))
    assert step == 4
    _assert_state_equal(restored, saved[4])


def test_unreadable_step_without_manifest_fails_in_one_line_naming_the_older_step(tmp_path):
    _two_steps(tmp_path)
    step_dir = tmp_path / "checkpoints" / "4"
    (step_dir / manifest_lib.MANIFEST_NAME).unlink()
    for chunk in (p for p in (step_dir / "state").rglob("*") if p.is_file() and
                  p.parent.name == "d"):
        chunk.write_bytes(b"")
    with ckpt.Checkpointer(tmp_path, ckpt.model_signature("RN50")) as c:
        assert c.check_compatible() == 4  # no manifest to tell it is damaged
        with pytest.raises(WeightsError) as err:
            c.restore(4, _state(_mesh(1), P(), scale=0.0))
    message = str(err.value)
    assert "\n" not in message and "step 4" in message and "resume from step 2" in message
