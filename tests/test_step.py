"""The sharded train step: gradients, accumulation, FSDP, clamping, locking, BatchNorm, state."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.config import get_base_config
from remoteclip_jax.train import loss as loss_lib
from remoteclip_jax.train import sharding
from remoteclip_jax.train import state as state_lib
from remoteclip_jax.train import step as step_lib
from remoteclip_jax.errors import ConfigError, WeightsError
from tests.helpers.hlo import products

# Smaller than rc.models.TINY_VIT (short context, small vocabulary) to keep compiles short.
MICRO_VIT = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 12, "vocab_size": 1024, "width": 64, "heads": 2, "layers": 1},
}
MICRO_RESNET = {
    "embed_dim": 32, "quick_gelu": False,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": {"context_length": 12, "vocab_size": 1024, "width": 64, "heads": 2, "layers": 1},
}
BATCH = 32


def _config(**overrides):
    c = get_base_config()
    c.optim.warmup_steps = 2
    c.optim.lr = 1e-3
    c.train.steps = 10
    for key, value in overrides.items():
        target = c
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return c


def _mesh(data=-1, fsdp=1):
    return sharding.make_mesh(ml_collections.ConfigDict({"data": data, "fsdp": fsdp}))


def _batch(model, seed=0, n=BATCH):
    rng = np.random.default_rng(seed)
    size, length = model.image_size, model.context_length
    texts = rng.integers(1, 1023, size=(n, length)).astype(np.int32)
    ends = rng.integers(3, length, size=n)
    for i, e in enumerate(ends):  # EOT = largest id, then padding, as the tokenizer emits
        texts[i, e] = 1023
        texts[i, e + 1:] = 0
    return {"images": rng.normal(size=(n, size, size, 3)).astype(np.float32), "texts": texts}


def _rel(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1e-30))


def _tree_rel(a, ref):
    return max(jax.tree.leaves(jax.tree.map(_rel, a, ref)))


@pytest.fixture(scope="module")
def vit():
    return rc.create_model(MICRO_VIT)


def _numpy_variables(model, seed=0):
    """Random variables drawn on the host: skips compiling a threefry init (~10 s per model)."""
    size = model.image_size
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)),
                              jnp.zeros((1, model.context_length), jnp.int32))
    rng = np.random.default_rng(seed)

    def draw(path, x):
        name = jax.tree_util.keystr(path)
        if name.endswith("['var']") or name.endswith("['scale']"):
            return np.ones(x.shape, np.float32)
        if name.endswith("['mean']"):
            return np.zeros(x.shape, np.float32)
        if name.endswith("['logit_scale']"):
            return np.full(x.shape, math.log(1 / 0.07), np.float32)
        fan_in = int(np.prod(x.shape[:-1])) if x.ndim > 1 else x.shape[0]
        return (rng.normal(size=x.shape) / math.sqrt(max(fan_in, 1))).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract)


@pytest.fixture(scope="module")
def vit_state(vit):
    """Host parameters shared by the tests that need a fresh state."""
    return _numpy_variables(vit)["params"]


@pytest.fixture(scope="module")
def grad_fn(vit):
    return step_lib.make_grad_fn(vit, _config(), _mesh())


def test_sharded_grads_match_single_device_reference(vit, vit_state, grad_fn):
    mesh = _mesh()
    batch = _batch(vit)
    value, grads, _ = grad_fn(vit_state, {}, sharding.shard_batch(batch, mesh))

    # Reference: one device, the whole batch, the plain N×N loss, no shard_map, no mesh.
    cpu = jax.devices()[0]

    def reference(params):
        img, txt, scale = vit.apply({"params": params}, batch["images"], batch["texts"])
        return loss_lib.clip_loss(img, txt, scale)

    ref_value, ref_grads = jax.jit(jax.value_and_grad(reference), device=cpu)(vit_state)
    assert abs(float(value) - float(ref_value)) / float(ref_value) < 1e-6
    assert _tree_rel(grads, ref_grads) < 1e-5


def test_accumulating_four_micro_batches_equals_one_batch(vit, vit_state, grad_fn):
    mesh = _mesh()
    batch = sharding.shard_batch(_batch(vit, seed=1), mesh)
    one = grad_fn(vit_state, {}, batch)
    four = step_lib.make_grad_fn(vit, _config(accum_steps=4), mesh)(vit_state, {}, batch)
    assert abs(float(one[0]) - float(four[0])) / float(one[0]) < 1e-6
    assert _tree_rel(four[1], one[1]) < 1e-5
    # Not a vacuous comparison: the gradient reaches both towers and the temperature.
    assert float(jnp.abs(one[1]["visual"]["conv1"]["kernel"]).max()) > 0
    assert float(jnp.abs(one[1]["logit_scale"])) > 0


def test_fsdp_step_equals_data_parallel_step_shards_params_and_clamps(vit, vit_state):
    batch = _batch(vit, seed=2)
    params = dict(vit_state)
    params["logit_scale"] = np.float32(5.0)  # above ln 100: the step must clamp it
    results = {}
    for data, fsdp in [(8, 1), (4, 2)]:
        mesh = _mesh(data, fsdp)
        config = _config(**{"mesh.data": data, "mesh.fsdp": fsdp})
        state, shardings = state_lib.create_train_state(vit, config, mesh, jax.random.PRNGKey(0),
                                                        init_variables={"params": params})
        train_step = step_lib.make_train_step(vit, config, mesh)
        state, metrics = train_step(state, sharding.shard_batch(batch, mesh),
                                    jax.random.PRNGKey(0))
        results[fsdp] = (jax.device_get(state.params), float(metrics["loss"]))
        assert set(step_lib.METRICS) <= set(metrics)
        assert float(metrics["lr"]) == pytest.approx(1e-3 / 2)  # open_clip warmup: lr·1/2
        assert float(metrics["logit_scale"]) == pytest.approx(math.exp(5.0), rel=1e-6)
        assert float(state.params["logit_scale"]) == pytest.approx(math.log(100.0), rel=1e-7)
        assert int(state.step) == 1
        if fsdp > 1:
            embedding = state.params["token_embedding"]["embedding"]
            assert embedding.sharding.spec[0] == "fsdp"
            assert embedding.addressable_shards[0].data.shape == (512, 64)
            assert shardings.params["token_embedding"]["embedding"].spec[0] == "fsdp"
            mu = state.opt_state.inner_states["train"].inner_state[0].mu
            assert mu["token_embedding"]["embedding"].sharding.spec[0] == "fsdp"
    assert abs(results[1][1] - results[2][1]) < 1e-6 * results[1][1]
    assert _tree_rel(results[2][0], results[1][0]) < 1e-5
    moved = _rel(results[1][0]["text_projection"], params["text_projection"])
    assert moved > 1e-5


def test_clamp_off_leaves_logit_scale_above_ln_100_as_itra_does(vit, vit_state):
    params = dict(vit_state)
    params["logit_scale"] = np.float32(5.0)
    mesh = _mesh()
    config = _config(**{"optim.clamp_logit_scale": False})
    state, _ = state_lib.create_train_state(vit, config, mesh, jax.random.PRNGKey(0),
                                            init_variables={"params": params})
    state, _ = step_lib.make_train_step(vit, config, mesh)(
        state, sharding.shard_batch(_batch(vit, seed=2), mesh), jax.random.PRNGKey(0))
    # One AdamW step moves a scalar by at most ~lr (5e-4 here); no clamp to ln 100 = 4.605.
    assert abs(float(state.params["logit_scale"]) - 5.0) < 1e-3


def test_locked_parameters_stay_bit_identical_and_hold_no_optimizer_state(vit, vit_state):
    """lock_text + lock_image with the last groups unlocked: two accumulated steps move exactly
    the unlocked parameters, and the optimizer keeps Adam moments for those alone."""
    from remoteclip_jax.train import optim as optim_lib

    mesh = _mesh()
    config = _config(**{"lock_image": True, "lock_image_unlocked_groups": 1, "lock_text": True,
                        "lock_text_unlocked_layers": 2, "accum_steps": 2})
    state, _ = state_lib.create_train_state(vit, config, mesh, jax.random.PRNGKey(0),
                                            init_variables={"params": vit_state})
    frozen = optim_lib.frozen_mask(vit_state, **optim_lib.lock_settings(config))
    trainable_size = sum(np.size(x) for x, f in zip(jax.tree.leaves(vit_state),
                                                  jax.tree.leaves(frozen)) if not f)
    frozen_size = sum(np.size(x) for x, f in zip(jax.tree.leaves(vit_state),
                                               jax.tree.leaves(frozen)) if f)
    state_size = sum(np.size(x) for x in jax.tree.leaves(state.opt_state))
    # mu and nu of every trainable parameter, plus Adam's step counters (scalars).
    assert 2 * trainable_size <= state_size < 2 * trainable_size + 8
    assert frozen_size > 8

    train_step = step_lib.make_train_step(vit, config, mesh)
    for seed in (6, 7):
        state, _ = train_step(state, sharding.shard_batch(_batch(vit, seed=seed), mesh),
                              jax.random.PRNGKey(0))
    after = jax.device_get(state.params)
    moved = {}
    for (path, new), old, f in zip(jax.tree_util.tree_leaves_with_path(after),
                                   jax.tree.leaves(vit_state), jax.tree.leaves(frozen)):
        name = jax.tree_util.keystr(path)
        if f:
            np.testing.assert_array_equal(new, old, err_msg=name)
        else:
            moved[name] = _rel(new, old)
    # The unlocked groups: image proj; the last text block with ln_final, and text_projection.
    assert "['visual']['proj']" in moved and "['text_projection']" in moved
    assert "['ln_final']['scale']" in moved and "['logit_scale']" in moved
    assert not any("conv1" in n or "token_embedding" in n for n in moved)
    assert min(v for n, v in moved.items() if "kernel" in n or "proj" in n) > 0


def test_batch_the_mesh_cannot_split_is_refused(vit, vit_state):
    mesh = _mesh()
    grad_fn = step_lib.make_grad_fn(vit, _config(accum_steps=4), mesh)
    with pytest.raises(ConfigError, match="multiple of 32"):
        grad_fn(vit_state, {}, sharding.shard_batch(_batch(vit, n=16), mesh))
    with pytest.raises(ConfigError, match="multiple of 8"):
        sharding.shard_batch(_batch(vit, n=12), mesh)


def test_init_variables_are_placed_and_mismatches_refused(vit, vit_state):
    mesh = _mesh(4, 2)
    config = _config(**{"mesh.data": 4, "mesh.fsdp": 2})
    state, shardings = state_lib.create_train_state(vit, config, mesh, jax.random.PRNGKey(7),
                                                    init_variables={"params": vit_state})
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(vit_state)):
        np.testing.assert_array_equal(np.asarray(got), want)
    assert jax.tree.structure(state) == jax.tree.structure(shardings)
    bad = dict(vit_state)
    bad["text_projection"] = np.zeros((64, 16), np.float32)
    with pytest.raises(WeightsError, match="text_projection"):
        state_lib.create_train_state(vit, config, mesh, jax.random.PRNGKey(0),
                                     init_variables={"params": bad})


def test_sigmoid_state_has_siglip_init_and_needs_a_model_holding_the_bias(vit):
    config = _sigmoid_config(MICRO_VIT)
    model = rc.create_model(state_lib.training_model_config(config))
    state, _ = state_lib.create_train_state(model, config, _mesh(), jax.random.PRNGKey(0))
    assert float(state.params["logit_scale"]) == pytest.approx(math.log(10.0))
    assert float(state.params["logit_bias"]) == pytest.approx(-10.0)
    assert "logit_bias" in state_lib.model_variables(state)["params"]
    with pytest.raises(ConfigError, match="does not hold: build it from"):
        state_lib.create_train_state(vit, config, _mesh(), jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="does not hold"):
        step_lib.make_grad_fn(vit, config, _mesh())


def test_resnet_batch_stats_train_and_lock_image_freezes_the_tower():
    model = rc.create_model(MICRO_RESNET)
    mesh = _mesh()
    batch = sharding.shard_batch(_batch(model, seed=4), mesh)
    config = _config(accum_steps=2)
    state, _ = state_lib.create_train_state(model, config, mesh, jax.random.PRNGKey(0),
                                            init_variables=_numpy_variables(model))
    p0, s0 = jax.device_get((state.params, state.batch_stats))

    # Locked (LiT): the gradient skips the image tower and BatchNorm keeps its statistics.
    # (That the optimizer then leaves the tower untouched is pinned in test_optim.py.)
    _, grads, stats = step_lib.make_grad_fn(model, _config(lock_image=True), mesh)(
        state.params, state.batch_stats, batch)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["visual"]))
    assert float(jnp.abs(grads["text_projection"]).max()) > 0.0
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(s0)):
        np.testing.assert_array_equal(a, b)

    # Training mode with 2 micro-batches: running statistics and the tower both move.
    state, metrics = step_lib.make_train_step(model, config, mesh)(
        state, batch, jax.random.PRNGKey(0))
    assert np.isfinite(float(metrics["loss"]))
    p1, s1 = jax.device_get((state.params, state.batch_stats))
    assert _tree_rel(s1, s0) > 1e-3
    assert _rel(p1["visual"]["conv1"]["kernel"], p0["visual"]["conv1"]["kernel"]) > 1e-5


def test_sigmoid_accumulation_equals_one_batch_including_logit_bias(vit_state):
    mesh = _mesh()
    config = _sigmoid_config(MICRO_VIT)
    model = rc.create_model(state_lib.training_model_config(config))
    params = dict(vit_state)
    params["logit_scale"] = np.float32(math.log(10.0))
    params["logit_bias"] = np.float32(-10.0)
    batch = sharding.shard_batch(_batch(model, seed=5), mesh)
    one = step_lib.make_grad_fn(model, config, mesh)(params, {}, batch)
    config.accum_steps = 2
    two = step_lib.make_grad_fn(model, config, mesh)(params, {}, batch)
    assert abs(float(one[0]) - float(two[0])) / float(one[0]) < 1e-6
    assert _tree_rel(two[1], one[1]) < 1e-5
    assert float(jnp.abs(one[1]["logit_bias"])) > 0


@pytest.mark.slow  # moved out of the default suite to keep it under CI's budget
def test_the_sigmoid_loss_takes_the_bias_the_forward_pass_returns(vit_state):
    mesh = _mesh()
    config = _sigmoid_config(MICRO_VIT)
    model = rc.create_model(state_lib.training_model_config(config))
    params = {**dict(vit_state), "logit_scale": np.float32(math.log(10.0)),
              "logit_bias": np.float32(-10.0)}
    batch = sharding.shard_batch(_batch(model, seed=5), mesh)
    grads = step_lib.make_grad_fn(model, config, mesh)(params, {}, batch)[1]
    # The gradient of the one-device sigmoid_loss in the bias the forward pass returns.
    img, txt, scale, bias = model.apply({"params": params}, batch["images"], batch["texts"])
    assert float(bias) == -10.0
    ref = jax.grad(lambda b: loss_lib.sigmoid_loss(img, txt, scale, b))(jnp.float32(-10.0))
    assert float(grads["logit_bias"]) == pytest.approx(float(ref), rel=1e-4)


def _sigmoid_config(model):
    config = _config(**{"loss.type": "sigmoid"})
    del config.model  # a name in the base config; a dict here
    config.model = model
    return config


def test_sigmoid_run_builds_its_model_with_open_clips_siglip_scalars():
    # open_clip_train/main.py, `if args.siglip:` sets init_logit_scale=np.log(10) and
    # init_logit_bias=-10 as model kwargs.
    spec = state_lib.training_model_config(_sigmoid_config(MICRO_VIT))
    assert spec["init_logit_bias"] == -10.0 and spec["init_logit_scale"] == math.log(10.0)
    assert rc.create_model(spec).has_logit_bias
    # Other losses keep config.model as written (same checkpoint signatures as before).
    assert state_lib.training_model_config(_config(model="ViT-B-32")) == "ViT-B-32"


def test_trained_siglip_bias_is_a_model_param_that_survives_export_to_open_clip():
    config = _sigmoid_config(MICRO_VIT)
    spec = state_lib.training_model_config(config)
    model, mesh = rc.create_model(spec), _mesh()
    params = dict(_numpy_variables(rc.create_model(MICRO_VIT))["params"])
    state, _ = state_lib.create_train_state(model, config, mesh, jax.random.PRNGKey(0),
                                            init_variables={"params": params})
    assert float(state.params["logit_bias"]) == -10.0  # a CLIP start: the configured init
    train_step = step_lib.make_train_step(model, config, mesh)
    for seed in (6, 7):
        state, _ = train_step(state, sharding.shard_batch(_batch(model, seed=seed), mesh),
                              jax.random.PRNGKey(0))
    trained = np.asarray(jax.device_get(state.params["logit_bias"]))
    assert trained.shape == () and trained != np.float32(-10.0)

    variables = jax.device_get(state_lib.model_variables(state))
    state_dict = rc.to_openclip(variables, spec)
    assert state_dict["logit_bias"].shape == () and state_dict["logit_bias"] == trained
    again = rc.load_openclip(state_dict, spec)
    assert np.array_equal(again["params"]["logit_bias"], trained)

    torch = pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    reference = open_clip.model.CLIP(
        spec["embed_dim"], dict(spec["vision_cfg"]), dict(spec["text_cfg"]),
        quick_gelu=spec["quick_gelu"], init_logit_bias=spec["init_logit_bias"],
        init_logit_scale=spec["init_logit_scale"])
    reference.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()},
                              strict=True)
    assert reference.logit_bias.detach().numpy() == trained


def test_bfloat16_step_on_accelerators_runs_its_gemms_in_bfloat16(vit):
    """The step as a GPU/TPU gets it: no float32 x float32 GEMMs but the loss's (< 1% of the FLOPs).

    A float32 result from a bf16 product would hand its backward GEMMs float32 cotangents: on
    Hopper they run as TF32, about half the bf16 rate."""
    model = rc.create_model(MICRO_VIT, dtype=jnp.bfloat16)
    config, mesh = _config(dtype="bfloat16"), _mesh()
    state = jax.eval_shape(lambda: state_lib.create_train_state(
        model, config, mesh, jax.random.PRNGKey(0))[0])
    batch = jax.eval_shape(lambda: sharding.shard_batch(_batch(model), mesh))
    train_step = step_lib.make_train_step(model, config, mesh)
    for platform in ("cuda", "tpu"):
        found = products(train_step, state, batch, jax.random.PRNGKey(0), platform=platform)
        total = sum(d.flops for d in found)
        f32 = sum(d.flops for d in found if "f32" in (d.lhs, d.rhs))
        assert f32 / total < 0.01, (platform, f32, total)
        assert {(d.lhs, d.rhs, d.out) for d in found if "f32" not in (d.lhs, d.rhs)} == {
            ("bf16", "bf16", "bf16")}


def test_patch_dropout_accumulation_recomputes_each_micro_batch_with_its_own_key(vit_state):
    """With accumulation, micro-batch j drops the same patches in the cached forward pass and in
    the recomputation: the gradient is that of one loss over those features."""
    model = rc.create_model(MICRO_VIT, patch_dropout=0.5)
    mesh, accum = _mesh(), 2
    batch = _batch(model, seed=4)
    rng = jax.random.PRNGKey(7)
    value, grads, _ = step_lib.make_grad_fn(model, _config(accum_steps=accum), mesh)(
        vit_state, {}, sharding.shard_batch(batch, mesh), rng)
    keys = jax.random.split(rng, accum)

    def reference(params):  # row i * accum + j belongs to micro-batch j
        feats = [model.apply({"params": params}, batch["images"][j::accum],
                             batch["texts"][j::accum], True, rngs={"dropout": keys[j]})
                 for j in range(accum)]
        img = jnp.stack([f[0] for f in feats], 1).reshape(BATCH, -1)
        txt = jnp.stack([f[1] for f in feats], 1).reshape(BATCH, -1)
        return loss_lib.clip_loss(img, txt, feats[0][2])

    ref_value, ref_grads = jax.jit(jax.value_and_grad(reference), device=jax.devices()[0])(vit_state)
    assert abs(float(value) - float(ref_value)) / float(ref_value) < 1e-6
    assert _tree_rel(grads, ref_grads) < 1e-5
    # (That training drops patches at all is test_models_vit's.)
