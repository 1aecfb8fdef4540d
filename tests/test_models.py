"""The Flax towers reproduce open_clip's embeddings on open_clip's weights."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.models import TINY_RESNET, TINY_VIT, init_variables
from tests.helpers.hlo import products
from tests.helpers.openclip import (build_openclip, max_relative_error, open_clip,
                                      reference_inputs, torch)
from remoteclip_jax.errors import ConfigError

TINY_VIT_GELU = {**TINY_VIT, "quick_gelu": False}
TINY_RESNET_QUICKGELU = {**TINY_RESNET, "quick_gelu": True}  # text tower activation differs


def _embeddings_match(name_or_config, tolerance):
    reference = build_openclip(name_or_config)
    variables = rc.load_openclip(reference.state_dict(), name_or_config)
    model = rc.create_model(name_or_config)
    images_t, texts_t, images, texts = reference_inputs(model.image_size)
    with torch.no_grad():
        want_image = reference.encode_image(images_t).numpy()
        want_text = reference.encode_text(texts_t).numpy()
    got_image = model.apply(variables, images, method="encode_image")
    got_text = model.apply(variables, texts, method="encode_text")
    assert max_relative_error(got_image, want_image) < tolerance
    assert max_relative_error(got_text, want_text) < tolerance


@pytest.mark.parametrize("config", [TINY_VIT, TINY_VIT_GELU, TINY_RESNET, TINY_RESNET_QUICKGELU],
                         ids=["vit-quickgelu", "vit-gelu", "resnet-gelu", "resnet-quickgelu"])
def test_tiny_towers_match_open_clip(config):
    _embeddings_match(config, 1e-5)


# Tiny towers of both kinds are checked in the default suite (test_tiny_towers_match_open_clip);
# of the full-size ones it keeps ViT-B-32, the rest are slow.
@pytest.mark.parametrize("name", [pytest.param("RN50", marks=pytest.mark.slow), "ViT-B-32",
                                  pytest.param("ViT-B-32-quickgelu", marks=pytest.mark.slow),
                                  pytest.param("ViT-B-16", marks=pytest.mark.slow)])
def test_full_size_towers_match_open_clip(name):
    _embeddings_match(name, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name,tolerance", [("ViT-L-14", 5e-5), ("ViT-L-14-quickgelu", 5e-5),
                                            ("ViT-H-14", 5e-5), ("RN101", 1e-5)])
def test_large_towers_match_open_clip(name, tolerance):
    _embeddings_match(name, tolerance)


def test_wrong_activation_is_detectable():
    """GELU weights run as QuickGELU give visibly different features: the parity test can fail."""
    reference = build_openclip(TINY_VIT_GELU)
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)  # same shapes, wrong activation
    images_t, _, images, _ = reference_inputs(32)
    with torch.no_grad():
        want = reference.encode_image(images_t).numpy()
    got = rc.create_model(TINY_VIT).apply(variables, images, method="encode_image")
    assert max_relative_error(got, want) > 1e-3


def test_call_returns_normalised_features_and_exp_logit_scale():
    reference = build_openclip(TINY_VIT)
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)
    model = rc.create_model(TINY_VIT)
    images_t, texts_t, images, texts = reference_inputs(32)
    image_features, text_features, scale = model.apply(variables, images, texts)
    with torch.no_grad():
        want_image, want_text, want_scale = reference(images_t, texts_t)
    np.testing.assert_allclose(np.linalg.norm(image_features, axis=-1), 1.0, rtol=1e-6)
    assert max_relative_error(image_features, want_image.numpy()) < 1e-5
    assert max_relative_error(text_features, want_text.numpy()) < 1e-5
    np.testing.assert_allclose(scale, want_scale.item(), rtol=1e-6)


def test_resnet_train_mode_batchnorm_matches_torch():
    """Training-mode BN: batch statistics for the output, unbiased running var, momentum 0.1."""
    reference = build_openclip(TINY_RESNET)
    variables = rc.load_openclip(reference.state_dict(), TINY_RESNET)
    model = rc.create_model(TINY_RESNET)
    images_t, _, images, _ = reference_inputs(64, batch=4)
    reference.visual.train()
    with torch.no_grad():
        want = reference.encode_image(images_t).numpy()
    got, updated = model.apply(variables, images, train=True, mutable=["batch_stats"],
                               method="encode_image")
    assert max_relative_error(got, want) < 1e-5
    state = reference.state_dict()
    stats = rc.to_openclip({"params": variables["params"], **updated})
    for key in ("visual.bn1.running_var", "visual.layer4.0.downsample.1.running_mean",
                "visual.layer2.0.bn3.running_var"):
        assert max_relative_error(stats[key], state[key].numpy()) < 1e-5, key


@pytest.mark.parametrize("config", [TINY_VIT, pytest.param(TINY_RESNET, marks=pytest.mark.slow)],
                         ids=["vit", "resnet"])
def test_fresh_init_exports_to_open_clip_strictly(config):
    """A from-scratch init (the scanned one training uses) has exactly open_clip's tree and init
    conventions, and model.init's tree."""
    model = rc.create_model(config)
    s = model.image_size
    variables = init_variables(model, jax.random.PRNGKey(0))
    unrolled = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                              jnp.zeros((1, 77), jnp.int32))
    assert jax.tree.structure(variables) == jax.tree.structure(unrolled)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, unrolled)
    state_dict = rc.to_openclip(variables, config)
    reference = build_openclip(config, randomize_batchnorm=False)
    reference.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()},
                              strict=True)
    np.testing.assert_allclose(state_dict["logit_scale"], np.log(1 / 0.07), rtol=1e-6)
    np.testing.assert_allclose(state_dict["positional_embedding"].std(), 0.01, rtol=0.2)
    if config is TINY_RESNET:
        assert not np.any(state_dict["visual.layer1.0.bn3.weight"])
    # Every block its own draw, at open_clip's text-tower std (width^-0.5 for in_proj).
    first, second = (state_dict[f"transformer.resblocks.{i}.attn.in_proj_weight"] for i in (0, 1))
    assert not np.allclose(first, second)
    np.testing.assert_allclose(np.std(np.stack([first, second])), 64 ** -0.5, rtol=0.05)


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32():
    reference = build_openclip(TINY_VIT)
    variables = rc.load_openclip(reference.state_dict(), TINY_VIT)
    _, _, images, texts = reference_inputs(32)
    full = rc.create_model(TINY_VIT)
    half = rc.create_model(TINY_VIT, dtype=jnp.bfloat16)
    fresh = half.init(jax.random.PRNGKey(0), images, texts)
    assert {leaf.dtype for leaf in jax.tree.leaves(fresh)} == {jnp.dtype(jnp.float32)}
    for method, x in (("encode_image", images), ("encode_text", texts)):
        want = full.apply(variables, x, method=method)
        got = half.apply(variables, x, method=method)
        assert got.dtype == jnp.float32
        assert max_relative_error(got, want) < 5e-2


@pytest.mark.parametrize("config", [TINY_VIT, pytest.param(TINY_RESNET, marks=pytest.mark.slow)],
                         ids=["vit", "resnet"])
def test_remat_gives_identical_loss_and_gradients(config):
    reference = build_openclip(config)
    variables = rc.load_openclip(reference.state_dict(), config)
    _, _, images, texts = reference_inputs(rc.create_model(config).image_size)

    def loss(params, model):
        image_features, text_features, scale = model.apply(
            {**variables, "params": params}, images, texts)
        return jnp.sum(scale * image_features @ text_features.T)

    plain = jax.value_and_grad(loss)(variables["params"], rc.create_model(config))
    remat = jax.value_and_grad(loss)(variables["params"], rc.create_model(config, remat=True))
    np.testing.assert_allclose(remat[0], plain[0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(remat[1]), jax.tree.leaves(plain[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_named_configs_equal_open_clip_json():
    for name in rc.list_models():
        ours = rc.model_config(name)
        theirs = open_clip.get_model_config(name)
        assert ours["embed_dim"] == theirs["embed_dim"], name
        assert ours["quick_gelu"] == theirs.get("quick_gelu", False), name
        for tower in ("vision_cfg", "text_cfg"):
            for key, value in theirs[tower].items():
                if value is not None:
                    assert ours[tower][key] == value, (name, tower, key)


def test_unknown_model_name_is_a_one_line_error():
    with pytest.raises(ConfigError, match="unknown model 'ViT-B-33'.*ViT-B-32") as info:
        rc.create_model("ViT-B-33")
    assert "\n" not in str(info.value)


def test_presets_pick_the_published_activation():
    assert rc.model_config("RemoteCLIP-ViT-B-32")["quick_gelu"] is True
    assert rc.model_config("RemoteCLIP-RN50")["quick_gelu"] is True
    assert rc.model_config("GeoRSCLIP-ViT-B-32")["quick_gelu"] is True
    assert rc.model_config("GeoRSCLIP-ViT-H-14")["quick_gelu"] is False
    assert dataclasses.asdict(rc.PRESETS["RemoteCLIP-ViT-L-14"])["model"] == "ViT-L-14-quickgelu"


@pytest.mark.parametrize("config", [TINY_VIT, TINY_RESNET], ids=["vit", "resnet"])
def test_bfloat16_products_per_backend(config):
    """XLA:CPU gets bf16 x bf16 -> f32 products (its fast bf16 kernels, scripts/xla_cpu_flags.md);
    GPUs and TPUs get plain bf16 GEMMs."""
    model = rc.create_model(config, dtype=jnp.bfloat16)
    s = model.image_size
    images, texts = jnp.zeros((2, s, s, 3)), jnp.zeros((2, 77), jnp.int32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images, texts)
    bf16 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16), variables)
    for method, x in (("encode_image", images), ("encode_text", texts)):
        fn = lambda v, x, method=method: model.apply(v, x, method=method)  # noqa: E731
        for platform, out in (("cpu", "f32"), ("cuda", "bf16"), ("tpu", "bf16")):
            found = {(d.lhs, d.rhs, d.out) for d in products(fn, bf16, x, platform=platform)
                     if d.kind == "dot"}
            assert found == {("bf16", "bf16", out)}, (method, platform, found)


def test_init_logit_bias_adds_open_clips_scalar_bias_and_nothing_else():
    siglip = {**TINY_VIT, "init_logit_bias": -10, "init_logit_scale": float(np.log(10))}
    model = rc.create_model(siglip)
    s = model.image_size
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)), jnp.zeros((1, 77), jnp.int32))
    plain = jax.eval_shape(rc.create_model(TINY_VIT).init, jax.random.PRNGKey(0),
                           jnp.zeros((1, s, s, 3)), jnp.zeros((1, 77), jnp.int32))
    assert set(variables["params"]) - set(plain["params"]) == {"logit_bias"}
    # Same names, shapes and init values as open_clip's CLIP(init_logit_bias=..., init_logit_scale=...).
    reference = build_openclip(siglip, randomize_batchnorm=False).state_dict()
    state_dict = rc.to_openclip(variables, siglip)
    for name in ("logit_bias", "logit_scale"):
        assert state_dict[name].shape == tuple(reference[name].shape) == ()
        np.testing.assert_allclose(state_dict[name], reference[name].numpy(), rtol=1e-7)
    assert "init_logit_bias" not in rc.model_config(TINY_VIT)  # absent unless set


def test_nonscalar_logit_scale_is_refused():
    with pytest.raises(ConfigError, match="nonscalar_logit_scale"):
        rc.model_config({**TINY_VIT, "nonscalar_logit_scale": True})
