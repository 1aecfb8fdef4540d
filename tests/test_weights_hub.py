"""open_clip hub directories: our export loads with `local-dir:` (strictly) and reproduces the
embeddings; directories written by open_clip's own code import."""
import json

import jax
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.models import TINY_RESNET, TINY_VIT
from tests.helpers.openclip import build_openclip, max_relative_error, reference_inputs, open_clip, torch
from remoteclip_jax.errors import WeightsError

CONFIGS = {"vit-quickgelu": TINY_VIT, "resnet-gelu": TINY_RESNET,
           "vit-gelu": {**TINY_VIT, "quick_gelu": False}}


def _tree_equal(a, b) -> bool:
    return (jax.tree.structure(a) == jax.tree.structure(b)
            and all(np.array_equal(x, np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


@pytest.mark.parametrize("name", CONFIGS)
def test_local_dir_export_loads_strictly_in_open_clip_and_reproduces_embeddings(tmp_path, name):
    config = CONFIGS[name]
    reference = build_openclip(config)
    variables = rc.load_openclip(reference.state_dict(), config)
    rc.save_pretrained(variables, config, str(tmp_path), format="open_clip")
    # open_clip's factory loads the directory's weights with strict=True.
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path}")
    model.eval()
    activation = model.transformer.resblocks[0].mlp.gelu  # the config's quick_gelu reached open_clip
    assert isinstance(activation, open_clip.transformer.QuickGELU) == config["quick_gelu"]
    size = config["vision_cfg"]["image_size"]
    images, texts, _, _ = reference_inputs(size)
    with torch.no_grad():
        assert max_relative_error(model.encode_image(images).numpy(), reference.encode_image(images).numpy()) < 1e-5
        assert max_relative_error(model.encode_text(texts).numpy(), reference.encode_text(texts).numpy()) < 1e-5
    normalize = preprocess.transforms[-1]
    assert list(normalize.mean) == pytest.approx(rc.transforms.OPENAI_MEAN)
    assert open_clip.get_tokenizer(f"local-dir:{tmp_path}")("an airport").tolist() == \
        rc.tokenize("an airport").tolist()


@pytest.mark.parametrize("name", CONFIGS)
def test_hub_directory_reads_back_bit_exactly(tmp_path, name):
    config = CONFIGS[name]
    variables = rc.load_openclip(build_openclip(config).state_dict(), config)
    rc.save_pretrained(variables, config, str(tmp_path), format="open_clip")
    model, again = rc.load_pretrained(str(tmp_path))
    assert _tree_equal(again, variables)
    assert dict(model.config)["quick_gelu"] == config["quick_gelu"]


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_directory_written_by_open_clip_code_imports(tmp_path, quick_gelu):
    # open_clip's own writer (push_to_hf_hub.save_config_for_hf) and its safetensors file.
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file
    config = {**TINY_VIT, "quick_gelu": quick_gelu}
    reference = build_openclip(config)
    # open_clip's factory sets these before its writer reads them.
    reference.visual.image_mean, reference.visual.image_std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    model_cfg = {k: v for k, v in config.items() if k != "quick_gelu"}
    if quick_gelu:
        model_cfg["quick_gelu"] = True  # open_clip configs omit the key for GELU models
    save_config_for_hf(reference, tmp_path / "open_clip_config.json", model_config=model_cfg)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
              str(tmp_path / "open_clip_model.safetensors"))
    model, variables = rc.load_pretrained(str(tmp_path))
    assert dict(model.config)["quick_gelu"] == quick_gelu
    images, texts, images_nhwc, ids = reference_inputs(32)
    with torch.no_grad():
        want_image, want_text = reference.encode_image(images).numpy(), reference.encode_text(texts).numpy()
    assert max_relative_error(model.apply(variables, images_nhwc, method="encode_image"), want_image) < 1e-5
    assert max_relative_error(model.apply(variables, ids, method="encode_text"), want_text) < 1e-5


def test_open_clip_config_without_model_cfg_or_weights_is_one_line(tmp_path):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"embed_dim": 32}))
    with pytest.raises(WeightsError, match='no "model_cfg" object') as info:
        rc.load_pretrained(str(tmp_path))
    assert "\n" not in str(info.value)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_VIT}))
    with pytest.raises(WeightsError, match="but no weights"):
        rc.load_pretrained(str(tmp_path))
    (tmp_path / "open_clip_config.json").write_text("{oops")
    with pytest.raises(WeightsError, match="line 1: not valid JSON"):
        rc.load_pretrained(str(tmp_path))
