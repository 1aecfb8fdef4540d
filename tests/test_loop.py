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


@pytest.mark.slow  # moved out of the default suite to keep it under CI's budget
def test_mfu_is_model_flops_of_the_logged_pairs_over_the_devices_peak(tmp_path):
    """MFU from the towers' FLOP formula (the same on every backend), not XLA's cost analysis."""
    import jax

    from remoteclip_jax.models import flops

    config = smoke_config()
    config.train.steps, config.train.export = 2, False
    config.train.peak_tflops_per_device = 1e-3
    loop.train_and_evaluate(config, tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    per_pair = flops.train_flops_per_pair(config.model.to_dict())
    for row in rows:
        want = row["train/pairs_per_s"] * per_pair / (1e9 * jax.device_count())
        assert row["train/mfu"] == pytest.approx(want, rel=1e-6)


def test_unreadable_training_images_are_logged_with_their_count(tmp_path):
    from PIL import Image

    lines = []
    for i in range(7):
        Image.fromarray(np.full((40, 40, 3), 30 * i, np.uint8)).save(tmp_path / f"im{i}.png")
        lines.append({"image": f"im{i}.png", "captions": [f"scene {i}"]})
    (tmp_path / "broken.png").write_bytes(b"not a png")
    lines.append({"image": "broken.png", "captions": ["broken"]})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    config = smoke_config()
    config.train.steps, config.train.export = 2, False
    config.data.sources = {"pairs": schema.source(kind="jsonl", path=str(tmp_path / "train.jsonl"))}
    loop.train_and_evaluate(config, tmp_path / "run")
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    counts = [r["train/skipped_images"] for r in logged if "train/skipped_images" in r]
    assert counts and counts[-1] >= 1


def test_periodic_evaluations_in_a_run_compile_each_encoder_once(tmp_path, monkeypatch):
    from remoteclip_jax.evaluate import evaluator as evaluator_lib

    built = []
    real_init = evaluator_lib.Evaluator.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(evaluator_lib.Evaluator, "__init__", keep)
    config = smoke_config()
    config.train.steps, config.train.eval_every, config.train.export = 4, 2, False
    scenes = dict(kind="synthetic", num_images=10, image_size=32, seed=9)
    config.evals = {"r": schema.evaluation("retrieval", **scenes),
                    "c": schema.evaluation("count", **scenes)}
    loop.train_and_evaluate(config, tmp_path)
    history = (tmp_path / "eval" / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in history] == [2, 4]   # two evaluations in the run
    (ev,) = built                                               # one evaluator, built once
    assert ev.encode_image._cache_size() == 1 and ev.encode_text._cache_size() == 1
