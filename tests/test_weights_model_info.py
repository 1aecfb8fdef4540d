"""model.json: one schema for what the weights cannot say, read back by every layout's reader."""
import json

import pytest

import remoteclip_jax as rc
from remoteclip_jax.models import TINY_VIT
from remoteclip_jax.weights.model_info import ModelInfo, known_model_name
from remoteclip_jax.errors import WeightsError


def test_json_round_trip_keeps_every_field(tmp_path):
    info = ModelInfo.from_model("RemoteCLIP-ViT-B-32", source="RemoteCLIP-ViT-B-32.pt")
    info.save(str(tmp_path))
    data = json.loads((tmp_path / "model.json").read_text())
    assert data["format_version"] == 1 and data["activation"] == "quick_gelu"
    assert data["logit_bias"] is False and data["model"] == "RemoteCLIP-ViT-B-32"
    assert ModelInfo.load(str(tmp_path)) == info


def test_files_from_before_versions_still_read(tmp_path):
    # What save_orbax wrote before the schema had a version: model, config, activation.
    config = rc.model_config("ViT-B-32-quickgelu")
    (tmp_path / "model.json").write_text(json.dumps(
        {"model": "ViT-B-32-quickgelu", "config": config, "activation": "quick_gelu"}))
    info = ModelInfo.load(str(tmp_path))
    assert info.name == "ViT-B-32-quickgelu" and info.quick_gelu and info.source is None


def test_contradicting_or_newer_files_are_refused_in_one_line(tmp_path):
    config = rc.model_config(TINY_VIT)
    with pytest.raises(WeightsError, match="activation 'gelu' contradicts the config's quick_gelu=True"):
        ModelInfo.from_json({"config": config, "activation": "gelu"})
    with pytest.raises(WeightsError, match="format_version 7 is newer"):
        ModelInfo.from_json({"config": config, "format_version": 7})
    (tmp_path / "model.json").write_text("{")
    with pytest.raises(WeightsError, match=r"model.json: line 1: not valid JSON"):
        ModelInfo.load(str(tmp_path))
    with pytest.raises(WeightsError, match="not a directory written by `remoteclip-jax import-weights`"):
        ModelInfo.load(str(tmp_path / "absent"))


def test_built_in_sizes_are_recognised_by_name():
    assert known_model_name(rc.model_config("ViT-L-14")) == "ViT-L-14"
    assert known_model_name({**rc.model_config("ViT-L-14"), "quick_gelu": True}) == "ViT-L-14-quickgelu"
    assert known_model_name(TINY_VIT) is None


def test_logit_bias_is_recorded_from_the_variables():
    assert ModelInfo.from_model(TINY_VIT, variables={"params": {"logit_bias": 0.0}}).logit_bias
    assert not ModelInfo.from_model(TINY_VIT, variables={"params": {}}).logit_bias
