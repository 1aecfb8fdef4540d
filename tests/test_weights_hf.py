"""transformers CLIPModel directories: ours -> HF loads with no missing/unexpected keys and
reproduces open_clip's embeddings; transformers' own checkpoints import and reproduce
transformers' embeddings; the activation travels in config.json."""
import json
import time

import jax
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.models import TINY_RESNET, TINY_VIT
from remoteclip_jax.weights import hf
from tests.helpers.openclip import build_openclip, max_relative_error, reference_inputs, torch
from remoteclip_jax.errors import WeightsError

transformers = pytest.importorskip("transformers")

# Several heads per vision layer and an MLP ratio other than 4, so that a wrong
# num_attention_heads or intermediate_size in config.json changes the output or the shapes.
ODD_VIT = {"embed_dim": 24, "quick_gelu": False,
           "vision_cfg": {"image_size": 40, "layers": 3, "width": 64, "head_width": 16,
                          "mlp_ratio": 2.5, "patch_size": 10},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 3,
                        "layers": 2, "mlp_ratio": 3.0}}
CONFIGS = {"quickgelu": TINY_VIT, "gelu": {**TINY_VIT, "quick_gelu": False}, "odd-heads-gelu": ODD_VIT}


def _hf_features(model, images_nchw, texts):
    with torch.no_grad():
        image = model.get_image_features(pixel_values=images_nchw)
        text = model.get_text_features(input_ids=torch.as_tensor(np.asarray(texts), dtype=torch.long))
    # Some transformers versions return a model output instead of the tensor.
    image, text = (getattr(x, "pooler_output", x) for x in (image, text))
    return image.numpy(), text.numpy()


def _tree_equal(a, b) -> bool:
    return (jax.tree.structure(a) == jax.tree.structure(b)
            and all(np.array_equal(x, np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


def _export(config, out, seed=0):
    reference = build_openclip(config, seed=seed)
    variables = rc.load_openclip(reference.state_dict(), config)
    rc.save_pretrained(variables, config, str(out), format="hf")
    return reference, variables


@pytest.mark.parametrize("name", CONFIGS)
def test_export_loads_in_transformers_strictly_and_matches_open_clip(tmp_path, name):
    config = CONFIGS[name]
    reference, _ = _export(config, tmp_path)
    model, info = transformers.CLIPModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    model.eval()
    assert model.config.vision_config.hidden_act == ("quick_gelu" if config["quick_gelu"] else "gelu")
    images, texts, _, ids = reference_inputs(config["vision_cfg"]["image_size"], batch=3)
    hf_image, hf_text = _hf_features(model, images, ids)
    with torch.no_grad():
        want_image, want_text = reference.encode_image(images).numpy(), reference.encode_text(texts).numpy()
    assert max_relative_error(hf_image, want_image) < 1e-5
    assert max_relative_error(hf_text, want_text) < 1e-5
    assert model.logit_scale.item() == pytest.approx(reference.logit_scale.item(), rel=1e-7)


@pytest.mark.parametrize("name", CONFIGS)
def test_hf_directory_reads_back_bit_exactly(tmp_path, name):
    config = CONFIGS[name]
    _, variables = _export(config, tmp_path)
    model, again = rc.load_pretrained(str(tmp_path))
    assert _tree_equal(again, variables)
    assert dict(model.config)["quick_gelu"] == config["quick_gelu"]


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_transformers_own_checkpoint_imports_and_matches_transformers(tmp_path, act, safe):
    # An independent writer: transformers' own random CLIPModel and save_pretrained (its own
    # config.json, which may omit defaults, and its own key names).
    torch.manual_seed(0)
    # 240 / 176 is a ratio whose plain float quotient sizes the MLP one unit short.
    text = {"hidden_size": 176, "intermediate_size": 240, "num_hidden_layers": 2,
            "num_attention_heads": 4, "hidden_act": act}
    vision = {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "hidden_act": act}
    model = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision,
                                                           projection_dim=40)).eval()
    model.save_pretrained(str(tmp_path))
    if not safe:  # what transformers wrote before safetensors became its only format
        (tmp_path / "model.safetensors").unlink()
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    ours, variables = rc.load_pretrained(str(tmp_path))
    assert dict(ours.config)["quick_gelu"] == (act == "quick_gelu")
    images, _, images_nhwc, _ = reference_inputs(32, batch=3)
    ids = rc.tokenize(["a dense residential area", "two planes on a runway", ""])
    hf_image, hf_text = _hf_features(model, images, ids)
    assert max_relative_error(ours.apply(variables, images_nhwc, method="encode_image"), hf_image) < 1e-5
    assert max_relative_error(ours.apply(variables, ids, method="encode_text"), hf_text) < 1e-5


def test_activation_is_read_from_config_json_not_weights(tmp_path):
    _export(TINY_VIT, tmp_path)
    path = tmp_path / "config.json"
    data = json.loads(path.read_text())
    for tower in ("text_config", "vision_config"):
        data[tower]["hidden_act"] = "gelu"
    path.write_text(json.dumps(data))
    model, _ = rc.load_pretrained(str(tmp_path))
    assert dict(model.config)["quick_gelu"] is False
    data["text_config"]["hidden_act"] = "quick_gelu"
    path.write_text(json.dumps(data))
    with pytest.raises(WeightsError, match="hidden_act text='quick_gelu' vision='gelu'") as info:
        rc.load_pretrained(str(tmp_path))
    assert "\n" not in str(info.value)
    for tower in ("text_config", "vision_config"):
        data[tower]["hidden_act"] = "gelu_new"
    path.write_text(json.dumps(data))
    with pytest.raises(WeightsError, match="one of quick_gelu, gelu"):
        rc.load_pretrained(str(tmp_path))


def test_resnet_to_hf_is_refused_in_one_line(tmp_path):
    out = tmp_path / "rn50"
    with pytest.raises(WeightsError) as info:
        rc.save_pretrained({"params": {}}, "RN50", str(out), format="hf")
    assert "ModifiedResNet" in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()  # refused before anything is written
    variables = rc.load_openclip(build_openclip(TINY_RESNET).state_dict(), TINY_RESNET)
    with pytest.raises(WeightsError, match="no transformers CLIPModel counterpart"):
        rc.save_pretrained(variables, TINY_RESNET, str(out), format="hf")


def test_weights_that_do_not_fit_name_hf_keys_in_one_line(tmp_path):
    _export(TINY_VIT, tmp_path)
    from safetensors.numpy import load_file, save_file
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["vision_model.encoder.layers.1.self_attn.k_proj.bias"]
    state["text_model.extra.weight"] = np.zeros(3, np.float32)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError) as info:
        rc.load_pretrained(str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "model.safetensors"))
    assert "missing (1): vision_model.encoder.layers.1.self_attn.k_proj.bias" in message
    assert "unexpected (1): text_model.extra.weight" in message


def test_a_foreign_tokenizer_vocabulary_is_refused(tmp_path):
    _export(TINY_VIT, tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    vocab["a</w>"], vocab["b</w>"] = vocab["b</w>"], vocab["a</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(WeightsError, match="2 of 49408 tokens differ"):
        rc.load_pretrained(str(tmp_path))


def test_key_table_is_one_to_one_with_open_clip_keys():
    # Every OpenCLIP key of a ViT appears exactly once, and every HF key of transformers'
    # CLIPModel of the same size exactly once.
    config = rc.model_config(ODD_VIT)
    pairs = hf.key_pairs(config["text_cfg"]["layers"], config["vision_cfg"]["layers"])
    oc_keys = [oc for _, oc, _ in pairs]
    reference = build_openclip(ODD_VIT)
    assert sorted(oc_keys) == sorted(reference.state_dict())
    model = transformers.CLIPModel(transformers.CLIPConfig(**hf.hf_config(config)))
    hf_keys = [k for keys, _, _ in pairs for k in keys]
    assert sorted(hf_keys) == sorted(model.state_dict())


@pytest.mark.slow  # ~60 s on 2 shared cores (151M parameters written and read twice)
def test_real_vit_b32_size_round_trip(tmp_path):
    """One full-size check: ViT-B-32 (QuickGELU) open_clip -> ours -> HF -> transformers."""
    start = time.perf_counter()
    name = "ViT-B-32-quickgelu"
    reference = build_openclip(name)
    variables = rc.load_openclip(reference.state_dict(), name)
    rc.save_pretrained(variables, name, str(tmp_path), format="hf")
    model, info = transformers.CLIPModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    images, texts, _, ids = reference_inputs(224)
    hf_image, hf_text = _hf_features(model.eval(), images, ids)
    with torch.no_grad():
        assert max_relative_error(hf_image, reference.encode_image(images).numpy()) < 1e-5
        assert max_relative_error(hf_text, reference.encode_text(texts).numpy()) < 1e-5
    ours, again = rc.load_pretrained(str(tmp_path))
    assert _tree_equal(again, variables)
    from remoteclip_jax.weights.model_dir import read_model_dir
    assert read_model_dir(str(tmp_path))[1].name == name  # a built-in size is recognised by name
    print(f"ViT-B-32 HF round trip: {time.perf_counter() - start:.1f} s")
