"""Checkpointer: train state + iterator state in one orbax step, resharding, keep-N, refusal."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from remoteclip_jax import checkpoint as ckpt
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
        with pytest.raises(ckpt.CheckpointMismatchError) as err:
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
