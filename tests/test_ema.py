"""The EMA of the weights: the average against timm's ModelEma / ModelEmaV3 run in float64, and in
a training run: checkpointed, resumed exactly, evaluated and exported on request."""
import json
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from remoteclip_jax import checkpoint as ckpt
from remoteclip_jax import config as schema
from remoteclip_jax.train import ema as ema_lib
from remoteclip_jax.train import export, loop, setup, state as state_lib
from tests.test_resume import smoke_config

torch = pytest.importorskip("torch")
timm_ema = pytest.importorskip("timm.utils.model_ema")


def _ema_config(decay, warmup_power=0.0):
    return ml_collections.ConfigDict({"ema": {"decay": decay, "warmup_power": warmup_power}})


@pytest.mark.parametrize("decay,power", [(0.9, 0.0), (0.9999, 0.0), (0.999, 0.75), (0.99, 2 / 3)])
def test_ema_equals_timms_model_ema_in_float64(decay, power):
    """Our float32 average of a sequence of weights against timm's, in float64: ModelEma (what
    ITRA's --model_ema runs) without warmup, ModelEmaV3(use_warmup=True) with it."""
    rng = np.random.default_rng(0)
    shapes = {"w": (5, 3), "b": (3,), "s": ()}
    start = {k: rng.normal(size=s) for k, s in shapes.items()}
    module = torch.nn.Module()
    for k, v in start.items():
        module.register_parameter(k, torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)))
    if power:
        reference = timm_ema.ModelEmaV3(module, decay=decay, use_warmup=True, warmup_power=power)
    else:
        reference = timm_ema.ModelEma(module, decay=decay)
    update = ema_lib.make_update(_ema_config(decay, power))
    ours = ema_lib.init({k: np.float32(v) for k, v in start.items()})
    for t in range(60):
        # A drifting walk, as weights under training, stored as float32 in our run.
        values = {k: np.asarray(start[k] + 0.1 * t + rng.normal(size=s), np.float32)
                  for k, s in shapes.items()}
        with torch.no_grad():
            for k, v in values.items():
                getattr(module, k).copy_(torch.tensor(v, dtype=torch.float64))
        if power:
            reference.update(module, step=t + 1)     # timm's train loop passes the update count
        else:
            reference.update(module)
        ours = update(ours, values, np.int32(t))
    theirs = {k: v.detach().numpy() for k, v in (reference.module if power else reference.ema)
              .named_parameters()}
    for k in shapes:
        np.testing.assert_allclose(np.asarray(ours[k], np.float64), theirs[k], rtol=2e-6, atol=2e-6)
    # Not vacuous: the average differs from the last weights by far more than the tolerance.
    assert np.abs(theirs["w"] - values["w"]).max() > 1e-2


def test_ema_keys_are_checked():
    c = schema.get_base_config()
    c.ema.decay = 1.0
    with pytest.raises(schema.ConfigError, match=r"config.ema.decay=1.0: must lie in \[0, 1\)"):
        schema.validate(c, for_training=False)
    c.ema.decay, c.ema.warmup_power = 0.9, -1.0
    with pytest.raises(schema.ConfigError, match=r"config.ema.warmup_power=-1.0"):
        schema.validate(c, for_training=False)


def test_checkpoints_hold_the_ema_exactly_and_steps_without_one_still_resume(tmp_path, caplog):
    signature = ckpt.model_signature("ViT-B-32")
    rng = np.random.default_rng(0)
    state = {"params": {"w": rng.normal(size=(4, 3)).astype(np.float32)}}
    ema = {"params": {"w": rng.normal(size=(4, 3)).astype(np.float32)}}
    with ckpt.Checkpointer(tmp_path, signature, async_save=False) as c:
        c.save(1, state, {"pos": 1})                  # EMA off, as every older checkpoint
        c.save(2, state, {"pos": 2}, ema=ema)
        restored, _ = c.restore(1, state)             # the old layout restores unchanged
        np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
        assert c.restore_ema(1, ema) is None
        np.testing.assert_array_equal(c.restore_ema(2, ema)["params"]["w"], ema["params"]["w"])
        # Resuming: the saved EMA bit for bit; a step without one starts it from the weights.
        resumed = ema_lib.restore_or_init(c, 2, state)
        np.testing.assert_array_equal(resumed["params"]["w"], ema["params"]["w"])
        with caplog.at_level("WARNING"):
            started = ema_lib.restore_or_init(c, 1, state)
        np.testing.assert_array_equal(started["params"]["w"], state["params"]["w"])
        assert "holds no EMA" in caplog.text
        with pytest.raises(schema.ConfigError, match="step 1 .* holds no EMA of the weights"):
            ema_lib.saved(c, 1, state)
        assert c.inspect(2).usable                     # the manifest covers the EMA item too


def test_ema_evaluation_writes_beside_the_plain_one(tmp_path):
    class Recorder:
        out_dir = tmp_path / "eval"

        def __call__(self, variables, step, out_dir=None):
            self.seen = (out_dir or self.out_dir, variables, step)
            return {"eval/r/top1": 1.0}

    ev = Recorder()
    assert ema_lib.evaluate(ev, "EMA", 7) == {"eval_ema/r/top1": 1.0}
    assert ev.seen == (tmp_path / "eval_ema", "EMA", 7) and ev.out_dir == tmp_path / "eval"


def _run_config(steps, checkpoint_every):
    config = smoke_config()
    config.train.steps, config.train.checkpoint_every = steps, checkpoint_every
    config.train.export = True
    # Warmup power 1 with a decay near 1: weight 1/(1 + t), so the EMA after n updates is the
    # plain mean of the n weights the steps produced.
    config.ema.decay, config.ema.warmup_power = 0.999, 1.0
    config.ema.export = True
    return config


def _exported(directory):
    from safetensors.numpy import load_file

    return load_file(str(directory / "open_clip_model.safetensors"))


@pytest.mark.slow  # moved out of the default suite to keep it under CI's budget
def test_ema_in_a_run_averages_the_weights_after_every_step_and_is_exported(tmp_path,
                                                                            monkeypatch):
    from remoteclip_jax.weights import openclip

    calls = []
    real = ema_lib.make_update

    def recording(config):
        update = real(config)

        def wrapped(ema, variables, t):
            seen = jax.device_get(variables)
            out = update(ema, variables, t)
            calls.append((int(t), seen, jax.device_get(out)))
            return out
        return wrapped

    monkeypatch.setattr(ema_lib, "make_update", recording)
    steps = 3
    config = _run_config(steps, checkpoint_every=steps)
    workdir = tmp_path / "run"
    loop.train_and_evaluate(config, workdir)

    assert [t for t, _, _ in calls] == list(range(steps))
    mean = jax.tree.map(lambda *xs: np.mean(np.stack(xs).astype(np.float64), axis=0),
                        *[v for _, v, _ in calls])
    ema = calls[-1][2]
    for got, want in zip(jax.tree.leaves(ema), jax.tree.leaves(mean)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The weights it averaged are those after each update: the last are the exported weights.
    spec = setup.model_spec(config)
    for name, array in openclip.to_openclip(calls[-1][1], spec).items():
        np.testing.assert_array_equal(_exported(workdir / "export")[name], array, err_msg=name)
    # What is exported beside them is that EMA, labelled as such.
    exported = _exported(workdir / "export_ema")
    for name, array in openclip.to_openclip(ema, spec).items():
        np.testing.assert_array_equal(exported[name], array, err_msg=name)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(ema),
                                                           jax.tree.leaves(calls[-1][1])))
    assert moved > 1e-4                                  # the EMA is not the last weights
    assert "exponential moving average, decay 0.999" in (workdir / "export_ema" / "README.md").read_text()


@pytest.mark.slow
def test_ema_run_resumes_exactly_and_is_evaluated_and_exported_on_request(tmp_path):
    steps = 3
    config = _run_config(steps, checkpoint_every=1)
    config.ema.evaluate = True
    config.evals.r = schema.evaluation("retrieval", kind="synthetic", num_images=8, image_size=32)
    workdir = tmp_path / "run"
    out = loop.train_and_evaluate(config, workdir)
    assert set(out) >= {"eval/r/mean_recall", "eval_ema/r/mean_recall"}
    assert json.loads((workdir / "eval_ema" / "results.json").read_text())
    first = (workdir / "export_ema" / "open_clip_model.safetensors").read_bytes()

    # Resumed from step 2, the run ends with the same EMA, bit for bit.
    shutil.rmtree(workdir / "checkpoints" / str(steps))
    loop.train_and_evaluate(config, workdir)
    assert (workdir / "export_ema" / "open_clip_model.safetensors").read_bytes() == first

    # The eval and export modes read the EMA from the checkpoint.
    from remoteclip_jax import main as main_lib

    metrics = main_lib.evaluate(config, str(workdir))
    assert metrics["eval_ema/r/mean_recall"] == pytest.approx(out["eval_ema/r/mean_recall"])
    export.export(config, workdir, str(tmp_path / "exported"))
    assert (tmp_path / "exported_ema" / "open_clip_model.safetensors").read_bytes() == first
