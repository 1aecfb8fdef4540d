"""The converter: OpenCLIP files and state dicts <-> Flax variables, bit-exact both ways."""
import jax
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.weights import torch_pickle
from remoteclip_jax.weights.openclip import read_state_dict
from remoteclip_jax.models import TINY_RESNET, TINY_VIT
from tests.helpers.openclip import build_openclip, max_relative_error, reference_inputs, torch
from remoteclip_jax.errors import WeightsError


def _numpy_state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("config", [TINY_VIT, TINY_RESNET], ids=["vit", "resnet"])
def test_torch_flax_torch_is_bit_exact(config):
    reference = build_openclip(config)
    state = _numpy_state(reference)
    back = rc.to_openclip(rc.load_openclip(reference.state_dict(), config), config)
    assert set(back) == set(state)
    for key in state:
        if not key.endswith("num_batches_tracked"):
            assert back[key].dtype == state[key].dtype and np.array_equal(back[key], state[key]), key


@pytest.mark.parametrize("config", [TINY_VIT, TINY_RESNET], ids=["vit", "resnet"])
def test_flax_torch_flax_is_bit_exact_and_loads_strictly(config):
    model = rc.create_model(config)
    images_t, texts_t, images, texts = reference_inputs(model.image_size)
    variables = model.init(jax.random.PRNGKey(3), images, texts)
    state = rc.to_openclip(variables, config)
    reference = build_openclip(config, randomize_batchnorm=False)
    reference.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    again = rc.load_openclip(state, config)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(variables)):
        assert np.array_equal(a, np.asarray(b))
    with torch.no_grad():
        want = reference.encode_image(images_t).numpy()
    assert max_relative_error(model.apply(variables, images, method="encode_image"), want) < 1e-5


def test_file_formats_and_wrappers_load_identically(tmp_path):
    reference = build_openclip(TINY_VIT)
    state = reference.state_dict()
    want = rc.load_openclip(state, TINY_VIT)

    torch.save(state, tmp_path / "plain.pt")
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}},
               tmp_path / "wrapped.pt")
    torch.save({("image_backbone." + k[len("visual."):] if k.startswith("visual.")
                 else "text_backbone." + k): v for k, v in state.items()}, tmp_path / "itra.bin")
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    for name in ("plain.pt", "wrapped.pt", "itra.bin", "model.safetensors"):
        got = rc.load_openclip(str(tmp_path / name), TINY_VIT)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert np.array_equal(a, b), name


def test_torch_free_reader_equals_torch_load(tmp_path):
    state = build_openclip(TINY_RESNET).state_dict()
    state["visual.conv1.weight"] = state["visual.conv1.weight"].half()
    state["text_projection"] = state["text_projection"].t()  # non-contiguous strides
    torch.save({"state_dict": state}, tmp_path / "m.pt")
    ours = torch_pickle.load(str(tmp_path / "m.pt"))["state_dict"]
    assert set(ours) == set(state)
    for key, value in state.items():
        assert ours[key].dtype == value.numpy().dtype and np.array_equal(ours[key], value.numpy()), key


def test_openai_torchscript_archive(tmp_path):
    """OpenAI ships TorchScript archives: read with torch, refused clearly without it."""
    reference = build_openclip(TINY_VIT)
    _, texts_t, _, _ = reference_inputs(32)
    scripted = torch.jit.trace_module(reference, {"encode_text": texts_t})
    path = str(tmp_path / "openai.pt")
    scripted.save(path)
    got = rc.load_openclip(path, TINY_VIT)
    want = rc.load_openclip(reference.state_dict(), TINY_VIT)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert np.array_equal(a, b)
    with pytest.raises(WeightsError, match="TorchScript archive"):
        torch_pickle.load(path)


def test_checkpoint_of_another_architecture_lists_the_keys():
    state = build_openclip(TINY_VIT).state_dict()
    with pytest.raises(WeightsError) as info:
        rc.load_openclip(state, TINY_RESNET)
    message = str(info.value)
    assert "\n" not in message
    assert "missing (104): visual.bn1.running_mean" in message
    assert "visual.conv1.weight (64, 3, 8, 8) (model wants (8, 3, 3, 3))" in message
    assert "unexpected" in message and "visual.class_embedding" in message
    wider = {**TINY_VIT, "embed_dim": 48}
    with pytest.raises(WeightsError, match=r"mis-shaped \(2\): .*visual.proj \(64, 32\)"):
        rc.load_openclip(state, wider)


def test_truncated_and_foreign_files_give_one_line_errors(tmp_path):
    torch.save(build_openclip(TINY_VIT).state_dict(), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.pt").write_text("hello")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    for name in ("truncated.pt", "notes.pt", "empty.safetensors", "bad.safetensors", "absent.pt"):
        with pytest.raises(WeightsError) as info:
            read_state_dict(str(tmp_path / name))
        assert str(info.value).startswith(str(tmp_path / name)) and "\n" not in str(info.value), name


SIGLIP_VIT = {**TINY_VIT, "init_logit_bias": -10.0}


def test_siglip_style_logit_bias_round_trips_bit_exactly_and_loads_strictly():
    reference = build_openclip(SIGLIP_VIT)
    with torch.no_grad():
        reference.logit_bias.fill_(-6.8125)  # as if trained away from its init
    state = _numpy_state(reference)
    assert state["logit_bias"].shape == ()  # open_clip's default: 0-d, like logit_scale
    variables = rc.load_openclip(reference.state_dict(), SIGLIP_VIT)
    assert np.array_equal(variables["params"]["logit_bias"], np.float32(-6.8125))
    back = rc.to_openclip(variables, SIGLIP_VIT)
    assert set(back) == set(state)
    assert back["logit_bias"].dtype == np.float32 and back["logit_bias"].shape == ()
    assert np.array_equal(back["logit_bias"], state["logit_bias"])
    fresh = build_openclip(SIGLIP_VIT, seed=1)
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in back.items()}, strict=True)
    assert fresh.logit_bias.item() == -6.8125


def test_logit_bias_needs_a_config_that_declares_it():
    with pytest.raises(WeightsError, match="init_logit_bias.*unexpected \\(1\\): logit_bias"):
        rc.load_openclip(build_openclip(SIGLIP_VIT).state_dict(), TINY_VIT)


def test_clip_checkpoint_for_a_siglip_config_starts_at_init_logit_bias():
    variables = rc.load_openclip(build_openclip(TINY_VIT).state_dict(), SIGLIP_VIT)
    assert np.array_equal(variables["params"]["logit_bias"], np.float32(-10.0))


def test_one_element_scalars_of_nonscalar_open_clip_models_load_as_0d():
    reference = build_openclip({**SIGLIP_VIT, "nonscalar_logit_scale": True})
    state = _numpy_state(reference)
    assert state["logit_scale"].shape == (1,) and state["logit_bias"].shape == (1,)
    variables = rc.load_openclip(state, SIGLIP_VIT)
    for name in ("logit_scale", "logit_bias"):
        assert variables["params"][name].shape == ()
        assert np.array_equal(variables["params"][name], state[name][0])
