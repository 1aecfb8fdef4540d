"""The config schema and the recipes: defaults, smoke variants, named entries, validation."""
import importlib.util
import pathlib
import re

import jax
import ml_collections
import numpy as np
import pytest

from remoteclip_jax import checkpoint as ckpt
from remoteclip_jax import config as schema
from remoteclip_jax.train import loop, setup
from tests.helpers.cli import run_main
from remoteclip_jax.errors import ConfigError, WeightsError

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
    assert c.optim.schedule == "cosine" and c.optim.warmup_steps == 0  # ITRA: no --warmup
    assert c.data.batch_size_per_device == 64 and c.train.epochs == 32
    # Continual pretraining from OpenAI CLIP, whose towers run QuickGELU.
    assert c.model.endswith("-quickgelu") and c.init_from.endswith(".pt")
    assert not c.lock_image


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_default_names_its_source(name):
    shared = (ROOT / "remoteclip_jax" / "recipes.py").read_text()
    lines = [*(ROOT / "configs" / f"{name}.py").read_text().splitlines(),
             *shared[shared.index("def remoteclip("):].splitlines()]
    settings = [ln for ln in lines if re.match(r"\s+c\.(optim|data|train)\.\w+ = ", ln)]
    assert settings
    for line in settings:
        assert "#" in line, f"configs/{name}.py: default without a source comment: {line.strip()}"


def test_recipe_files_import_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(ROOT))])
    assert load("vitb32").model == "ViT-B-32-quickgelu"


@pytest.mark.parametrize("name", ALL)
def test_smoke_variants_are_tiny_and_pass_validation(name):
    c = load(name, "smoke")
    model = setup.build_model(c)
    assert model.image_size <= 64 and c.train.steps <= 10 and not c.init_from
    schema.validate(c, 8)
    with pytest.raises(schema.ConfigError, match="unknown variant"):
        load(name, "huge")


def test_batch_the_mesh_cannot_divide_is_refused_with_the_fix():
    c = load("vitb32", "smoke")
    c.data.batch_size = 10
    with pytest.raises(schema.ConfigError, match=r"multiple of 8"):
        schema.validate(c, device_count=8)
    c.data.batch_size = 16
    c.accum_steps = 4
    with pytest.raises(schema.ConfigError, match=r"accum_steps x devices = 32"):
        schema.validate(c, device_count=8)


def test_bad_choices_and_missing_data_are_refused():
    c = load("vitb32", "smoke")
    c.loss.type = "triplet"
    with pytest.raises(schema.ConfigError, match="config.loss.type"):
        schema.validate(c)
    c = load("vitb32")
    with pytest.raises(ConfigError, match=r"config.data.sources.train: kind 'records' needs a "
                                              r"path; set config.data.sources.train.path"):
        schema.validate(c, 8)
    del c.data.sources.train
    with pytest.raises(schema.ConfigError, match="no training data"):
        schema.validate(c, 8)


def test_unknown_keys_anywhere_are_refused_with_the_nearest_valid_key():
    c = load("demo", "smoke")
    with c.unlocked():
        c.optim.warmup = 3
    with pytest.raises(schema.ConfigError, match=r"config.optim.warmup: unknown key; did you mean "
                                                 r"'warmup_steps'\?"):
        schema.validate(c)
    c = load("demo", "smoke")
    c.evals.synthetic_count = {**c.evals.synthetic_count.to_dict(), "templat": "x"}
    with pytest.raises(schema.ConfigError, match=r"config.evals.synthetic_count: unknown key "
                                                 r"'templat'; did you mean 'template'\?"):
        schema.validate(c)
    c = load("demo", "smoke")
    c.evals.synthetic_count.task = "counting"
    with pytest.raises(schema.ConfigError, match=r"task='counting': unknown task; did you mean "
                                                 r"'count'\?"):
        schema.validate(c)
    c = load("demo", "smoke")
    c.data.sources.scenes.kind = "synthetc"
    with pytest.raises(ConfigError, match=r"did you mean 'synthetic'"):
        schema.validate(c, 8)


def test_a_key_the_entry_does_not_read_is_refused():
    c = load("demo", "smoke")
    c.evals.synthetic_count.k = 5            # a k-NN key on a counting entry
    with pytest.raises(schema.ConfigError, match=r"synthetic_count.k=5: task 'count' does not "
                                                 r"read 'k'"):
        schema.validate(c)
    c = load("demo", "smoke")
    c.data.sources.scenes.split = "train"     # synthetic scenes have no splits
    with pytest.raises(ConfigError, match=r"kind 'synthetic' does not read 'split'"):
        schema.validate(c, 8)


def test_named_entries_are_reachable_from_the_command_line(tmp_path):
    """`--config.evals.NAME.KEY=` and `--config.data.sources.NAME.KEY=` override entry fields
    (the refusal names the overridden path); a misspelled field is refused in one line."""
    out = run_main("--config=configs/rsicd_aid.py", f"--workdir={tmp_path}",
                   f"--config.data.sources.rsicd_aid.path={tmp_path / 'nope' / 'train.jsonl'}",
                   "--config.evals.rsicd_aid_val.ties=optimistic")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'nope' / 'train.jsonl'}: not found "
                           "(config.data.sources.rsicd_aid)")
    out = run_main("--config=configs/rsicd_aid.py", "--config.evals.rsicd_aid_val.pth=x",
                   f"--workdir={tmp_path}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown config key") and "--config.evals" in last


def test_missing_init_checkpoint_is_refused(tmp_path):
    c = load("vitb32", "smoke")
    c.init_from = str(tmp_path / "ViT-B-32.pt")
    with pytest.raises(schema.ConfigError, match="config.init_from=.*no such file"):
        setup.load_init_variables(c)


def test_workdir_of_another_model_is_refused_before_training(tmp_path):
    vit = load("vitb32", "smoke")
    with ckpt.Checkpointer(tmp_path, setup.model_signature(vit)) as c:
        c.save(1, {"x": jax.numpy.zeros(2)}, {})
    resnet = load("rn50", "smoke")
    with pytest.raises(WeightsError, match="this run trains"):
        loop.train_and_evaluate(resnet, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_cli_refuses_unknown_config_key_in_one_line(tmp_path):
    out = run_main("--config=configs/vitb32.py:smoke", "--config.optim.lrr=1e-5",
                   f"--workdir={tmp_path}")
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown config key") and 'Did you mean "lr"' in last
    assert "Traceback" not in out.stderr


def test_schema_holds_every_key_the_library_reads():
    """Entries built by the helpers hold every key, so a recipe never depends on read-time
    defaults and the command line can reach each one."""
    entry = schema.evaluation("retrieval", kind="jsonl", path="x.jsonl")
    assert set(entry) == set(schema.EVAL_DEFAULTS) | set(schema.source(kind="jsonl"))
    c = ml_collections.ConfigDict({"evals": {"x": entry}})
    assert c.evals.x.ties == "expected"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rn50", "vitl14", "rsicd_aid"])
def test_smoke_variant_trains_end_to_end(name, tmp_path):
    c = load(name, "smoke")
    c.train.export = False
    out = loop.train_and_evaluate(c, tmp_path)
    assert np.isfinite(out["train/loss"])


@pytest.mark.slow
def test_rsicd_aid_tiny_trains_on_real_pairs_and_evaluates(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("REMOTECLIP_DATA", str(shared_data))
    c = load("rsicd_aid", "tiny")
    c.train.export = False
    out = loop.train_and_evaluate(c, tmp_path)
    assert np.isfinite(out["train/loss"])
    assert 0 <= out["eval/rsicd_aid_val/mean_recall"] <= 100


def test_paper_suite_evaluates_the_papers_datasets_as_the_reference_code_does():
    c = load("paper_suite")
    schema.validate(c, 8, for_training=False)
    entries = schema.eval_entries(c)
    zeroshot = {n for n, e in entries.items() if e["task"] == "zeroshot"}
    assert len(zeroshot) == 12 and {"aid", "eurosat", "whurs19", "rsicb256"} <= zeroshot
    assert {n for n, e in entries.items() if e["task"] == "retrieval"} == {"rsitmd", "rsicd", "ucm"}
    for name in zeroshot:
        assert entries[name]["templates"] == "remoteclip"
        assert entries[name]["class_embedding"] == "average"
    assert len(load("paper_suite", "probes").evals) == 12 * 4 + 3
    # The probes run ITRA's protocol (the paper's tables) with ITRA's shot counts; the clean
    # protocol is one variant away.
    for variant, protocol, shots in (("probes", "itra", (1, 2, 4, 8, 16)),
                                     ("probes_clean", "clean", (1, 2, 4, 8, 16, 32))):
        entries = schema.eval_entries(load("paper_suite", variant))
        assert {e["protocol"] for n, e in entries.items()
                if e["task"] in ("linear_probe", "fewshot")} == {protocol}
        assert {tuple(e["shots"]) for e in entries.values() if e["task"] == "fewshot"} == {shots}


def test_index_ties_are_retrieval_only():
    entry = schema.evaluation("retrieval", kind="jsonl", path="x.jsonl", ties="index")
    c = ml_collections.ConfigDict({"evals": {"r": entry}})
    assert schema.eval_entries(c)["r"]["ties"] == "index"
    c.evals.z = schema.evaluation("zeroshot", kind="image_folder", path="x", ties="index")
    with pytest.raises(schema.ConfigError, match=r"config.evals.z.ties='index' is not one of"):
        schema.eval_entries(c)


def test_unlocked_groups_need_a_locked_tower():
    c = load("demo", "smoke")
    c.lock_text_unlocked_layers = 2
    with pytest.raises(schema.ConfigError, match=r"config.lock_text_unlocked_layers=2 .*config.lock_text=true"):
        schema.validate(c, 8)
    c.lock_text = True
    schema.validate(c, 8)
    c.lock_image_unlocked_groups = -1
    with pytest.raises(schema.ConfigError, match=r"lock_image_unlocked_groups=-1 must be >= 0"):
        schema.validate(c, 8)
