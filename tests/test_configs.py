"""Recipes: RemoteCLIP defaults with sources, smoke variants, and input refused before training."""
import importlib.util
import pathlib
import re

import jax
import numpy as np
import pytest

from remoteclip_jax import checkpoint as ckpt
from remoteclip_jax.train import loop
from tests.cli_helpers import run_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPES = ["rn50", "vitb32", "vitl14"]
ALL = RECIPES + ["demo", "rsicd_aid"]


def load(name, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_carry_remoteclip_defaults(name):
    c = load(name)
    assert c.optim.lr == 5e-4 and c.optim.weight_decay == 0.05
    assert c.optim.schedule == "cosine" and c.optim.warmup_steps > 0
    assert c.data.batch_size_per_device == 64 and c.train.epochs == 32
    # Continual pretraining from OpenAI CLIP, whose towers run QuickGELU.
    assert c.model.endswith("-quickgelu") and c.init_from.endswith(".pt")
    assert not c.lock_image


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_default_names_its_source(name):
    # The RemoteCLIP recipes share their defaults through configs/recipe_extras.py.
    extras = (ROOT / "configs" / "recipe_extras.py").read_text()
    lines = [*(ROOT / "configs" / f"{name}.py").read_text().splitlines(),
             *extras[extras.index("def remoteclip_recipe"):].splitlines()]
    settings = [ln for ln in lines if re.match(r"\s+c\.(optim|data|train)\.\w+ = ", ln)
                and "smoke" not in ln]
    assert settings
    for line in settings:
        assert "#" in line, f"configs/{name}.py: default without a source comment: {line.strip()}"


@pytest.mark.parametrize("name", ALL)
def test_smoke_variants_are_tiny_and_pass_validation(name):
    c = load(name, "smoke")
    model = loop.build_model(c)
    assert model.image_size <= 64 and c.train.steps <= 10 and not c.init_from
    loop.validate_config(c)
    with pytest.raises(ValueError, match="unknown variant"):
        load(name, "huge")


def test_batch_the_mesh_cannot_divide_is_refused_with_the_fix():
    c = load("vitb32", "smoke")
    c.data.batch_size = 10
    with pytest.raises(loop.ConfigError, match=r"multiple of 8"):
        loop.validate_config(c, device_count=8)
    c.data.batch_size = 16
    c.accum_steps = 4
    with pytest.raises(loop.ConfigError, match=r"accum_steps x devices = 32"):
        loop.validate_config(c, device_count=8)


def test_bad_choices_and_missing_data_are_refused():
    c = load("vitb32", "smoke")
    c.loss.type = "triplet"
    with pytest.raises(loop.ConfigError, match="config.loss.type"):
        loop.validate_config(c)
    c = load("vitb32", "smoke")
    c.data.demo = False
    with pytest.raises(loop.ConfigError, match="config.data.sources"):
        loop.validate_config(c)


def test_missing_init_checkpoint_is_refused(tmp_path):
    c = load("vitb32", "smoke")
    c.init_from = str(tmp_path / "ViT-B-32.pt")
    with pytest.raises(loop.ConfigError, match="config.init_from=.*file not found"):
        loop.load_init_variables(c)


def test_workdir_of_another_model_is_refused_before_training(tmp_path):
    vit = load("vitb32", "smoke")
    with ckpt.Checkpointer(tmp_path, loop.model_signature(vit)) as c:
        c.save(1, {"x": jax.numpy.zeros(2)}, {})
    resnet = load("rn50", "smoke")
    with pytest.raises(ckpt.CheckpointMismatchError, match="this run trains"):
        loop.train_and_evaluate(resnet, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_cli_refuses_unknown_config_key_in_one_line(tmp_path):
    out = run_main("--config=configs/vitb32.py:smoke", "--config.optim.lrr=1e-5",
                f"--workdir={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: unknown config key")
    assert 'Did you mean "lr"' in out.stderr and "Traceback" not in out.stderr


def test_sources_and_eval_datasets_can_be_given_as_json_on_the_command_line():
    c = load("vitb32")
    c.data.sources_json = '[{"kind": "jsonl", "path": "a.jsonl"}]'
    assert loop.train_sources(c) == [{"kind": "jsonl", "path": "a.jsonl"}]
    c.data.sources_json = '{"kind": "jsonl"}'
    with pytest.raises(loop.ConfigError, match="config.data.sources_json: must be a JSON list"):
        loop.train_sources(c)
    c.data.sources_json = "[{'kind': 1}]"
    with pytest.raises(loop.ConfigError, match="not valid JSON"):
        loop.train_sources(c)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rn50", "vitl14", "rsicd_aid"])
def test_smoke_variant_trains_end_to_end(name, tmp_path):
    c = load(name, "smoke")
    c.train.export = False
    out = loop.train_and_evaluate(c, tmp_path)
    assert np.isfinite(out["train/loss"])


@pytest.mark.slow
def test_rsicd_aid_tiny_trains_on_real_pairs_and_evaluates(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("REMOTECLIP_SHARED_DATA", str(shared_data))
    c = load("rsicd_aid", "tiny")
    c.train.export = False
    out = loop.train_and_evaluate(c, tmp_path)
    assert np.isfinite(out["train/loss"])
    assert 0 <= out["eval/rsicd_aid_val_tiny/mean_recall"] <= 100
