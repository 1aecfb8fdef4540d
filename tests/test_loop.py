"""Training-loop guards: a non-finite loss stops the run, keeping the last good checkpoint."""
import json

import numpy as np
import pytest

from remoteclip_jax import checkpoint as ckpt
from remoteclip_jax import config as schema
from remoteclip_jax.train import loop, setup
from tests.test_resume import smoke_config


class _PoisonAfter:
    """Wraps a data iterator; from batch `n` + 1 on, the images are NaN."""

    def __init__(self, inner, n):
        self.inner, self.n, self.seen = inner, n, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.inner)
        self.seen += 1
        if self.seen > self.n:
            batch = {**batch, "images": np.full_like(batch["images"], np.nan)}
        return batch

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = setup.make_data_iterator
    monkeypatch.setattr(setup, "make_data_iterator",
                        lambda *a, **k: _PoisonAfter(real(*a, **k), n=2))
    config = smoke_config()
    config.train.steps, config.train.checkpoint_every = 6, 2
    with pytest.raises(loop.NonFiniteLossError) as err:
        loop.train_and_evaluate(config, tmp_path)
    message = str(err.value)
    assert message.startswith("step 3: train/loss")
    assert "last good checkpoint is step 2" in message and "--config.optim.lr" in message
    with ckpt.Checkpointer(tmp_path, setup.model_signature(config)) as c:
        assert c.latest_step() == 2
    logged = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2]


def test_global_batch_defaults_to_per_device_times_devices():
    config = smoke_config()
    assert schema.global_batch_size(config, 8) == 2 * 8
    config.data.batch_size = 24
    assert schema.global_batch_size(config, 8) == 24


def test_flop_count_for_mfu_is_per_device_share_of_the_global_step():
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    step = jax.jit(lambda state, batch, rng: (state, {"loss": (batch @ state).sum()}))
    state = jax.device_put(jnp.ones((128, 256)), NamedSharding(mesh, P()))
    batch = jax.device_put(jnp.ones((64, 128)), NamedSharding(mesh, P("data")))
    _, flops = loop._compile_step(step, state, batch, jax.random.PRNGKey(0))
    matmul = 2 * 64 * 128 * 256  # global multiply-adds x 2, split over 8 devices
    assert matmul / 8 <= flops <= 1.1 * matmul / 8
