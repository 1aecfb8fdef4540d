"""The training recipes against what their references ran: schedule length at the documented
dataset sizes, ITRA's epoch, GeoRSCLIP's fine-tuning settings, and the sizes themselves."""
import importlib.util
import json
import pathlib
import types

import pytest

from remoteclip_jax import config as schema
from remoteclip_jax.data import pipeline
from remoteclip_jax.train import setup

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py"))
REMOTECLIP = ["rn50", "vitb32", "vitl14"]
# Warmup bound per recipe: a tenth of the run, except where a reference published its warmup:
# GeoRSCLIP's 100 steps are 13% of 7 epochs of RET-2 at 600 pairs per step, kept as published.
WARMUP_BOUND = {"finetune_rsitmd": 0.15}
# Device counts an epoch-based recipe with a per-device batch may run on (64 per device x 8 GPUs
# is RemoteCLIP's batch of 512): more devices, fewer steps, a larger warmup share.
DEVICE_COUNTS = (1, 8, 64)


def load_module(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_lengths(name, config=None):
    """Steps of the recipe's run for each batch it may run with, at its documented data size."""
    module = load_module(name)
    c = config or module.get_config()
    if c.train.steps > 0:
        return [int(c.train.steps)]
    # An epoch-based recipe must document the size of its data (the number of pairs of one
    # epoch, as its sources count them) for its schedule to be checked.
    assert hasattr(module, "TRAIN_PAIRS"), f"configs/{name}.py: no TRAIN_PAIRS constant"
    data = types.SimpleNamespace(examples_per_epoch=module.TRAIN_PAIRS)
    batches = ([c.data.batch_size] if c.data.batch_size > 0
               else [c.data.batch_size_per_device * n for n in DEVICE_COUNTS])
    lengths = []
    for batch in batches:
        sized = schema.get_base_config()
        sized.update_from_flattened_dict({"train.epochs": c.train.epochs, "train.steps": 0,
                                          "data.batch_size": batch})
        lengths.append(setup.total_steps(sized, data))
    return lengths


@pytest.mark.parametrize("name", CONFIGS)
def test_warmup_is_a_small_fraction_of_every_recipe_run(name):
    c = load_module(name).get_config()
    if not len(c.data.sources):
        pytest.skip(f"configs/{name}.py evaluates only")
    bound = WARMUP_BOUND.get(name, 0.10)
    for steps in run_lengths(name, c):
        assert c.optim.warmup_steps < bound * steps, (
            f"configs/{name}.py: {c.optim.warmup_steps} warmup steps of a {steps}-step run")


def test_the_check_catches_open_clips_warmup_on_remoteclips_data():
    c = load_module("vitb32").get_config()
    c.optim.warmup_steps = 10_000  # open_clip's --warmup default, which the recipes once had
    # 828,725 pairs // 512 x 32 epochs = 51,776 steps; counting images instead, 10,336.
    assert run_lengths("vitb32", c)[1] == 51_776
    assert any(c.optim.warmup_steps >= 0.10 * s for s in run_lengths("vitb32", c))


def test_remoteclip_recipes_count_an_epoch_as_every_caption():
    for name in [*REMOTECLIP, "finetune_rsitmd", "rsicd_aid"]:
        c = load_module(name).get_config()
        assert all(s.pairs == "caption" for s in c.data.sources.values()), name
    # RemoteCLIP's 165,745 images with 5 captions each, one CSV row per caption.
    assert load_module("vitb32").TRAIN_PAIRS == 828_725


@pytest.mark.parametrize("name", REMOTECLIP)
def test_remoteclip_recipes_run_itras_effective_adamw(name):
    o = load_module(name).get_config().optim
    # create_optimizer passes --opt_eps 1e-8 and no betas (torch's 0.9/0.999), for every model.
    assert (o.b1, o.b2, o.eps) == (0.9, 0.999, 1e-8)
    assert o.wd_exclude == "open_clip" and o.warmup_steps == 0 and o.grad_clip_norm == 0
    assert not o.clamp_logit_scale                     # ITRA's train loop never clamps


def test_finetune_recipe_has_georsclips_published_settings():
    module = load_module("finetune_rsitmd")
    c = module.get_config()
    o = c.optim
    assert (o.lr, o.weight_decay, o.warmup_steps, o.grad_clip_norm) == (5e-6, 0.5, 100, 50.0)
    assert c.data.batch_size == 600 and c.train.epochs == 7
    assert not o.clamp_logit_scale                     # tuned with ITRA, which never clamps
    assert {e.task for e in c.evals.values()} == {"retrieval"}
    assert {e.split for e in c.evals.values()} == {"test"}
    assert {s.split for s in c.data.sources.values()} == {"train"}
    # De-duplicated against both test splits by default (GeoRSCLIP de-duplicated RET-2).
    assert {s.exclude for s in c.data.sources.values()} == {module.EXCLUSIONS}
    assert {s.exclude for s in module.get_config("raw").data.sources.values()} == {""}
    assert run_lengths("finetune_rsitmd") == [65_125 // 600 * 7]


def test_finetune_smoke_variant_is_tiny_and_valid():
    c = load_module("finetune_rsitmd").get_config("smoke")
    assert c.train.steps <= 10 and not c.init_from and c.optim.lr == 5e-6
    schema.validate(c)


def _karpathy_train(path):
    images = [im for im in json.loads(path.read_text())["images"] if im["split"] == "train"]
    return len(images), sum(len(im["sentences"]) for im in images)


def test_documented_sizes_match_the_real_data(shared_data):
    aid = load_module("rsicd_aid")
    lines = (shared_data / "rsicd_aid" / "train.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    assert len(rows) == aid.TRAIN_IMAGES
    assert sum(len(r["captions"]) for r in rows) == aid.TRAIN_PAIRS
    spec = {"kind": "jsonl", "path": str(shared_data / "rsicd_aid" / "train.jsonl"),
            "split": "train", "pairs": "caption"}
    assert pipeline.examples_per_epoch([spec]) == aid.TRAIN_PAIRS
    rsitmd = shared_data / "captions" / "rsitmd" / "dataset_rsitmd_text_only.json"
    ft = load_module("finetune_rsitmd")
    assert _karpathy_train(rsitmd) == (ft.RSITMD_TRAIN_IMAGES, 5 * ft.RSITMD_TRAIN_IMAGES)



def test_paper_suite_finds_datasets_where_the_reference_reads_them(tmp_path, monkeypatch):
    (tmp_path / "EuroSAT" / "2750" / "Forest").mkdir(parents=True)     # as the EuroSAT zip unpacks
    (tmp_path / "AID" / "Airport").mkdir(parents=True)                 # the short layout
    (tmp_path / "RSITMD").mkdir()
    (tmp_path / "RSITMD" / "dataset_rsitmd.json").write_text("{}")     # the other spelling
    monkeypatch.setenv("REMOTECLIP_DATA", str(tmp_path))
    evals = load_module("paper_suite").get_config().evals
    assert evals.eurosat.path == str(tmp_path / "EuroSAT" / "2750")
    assert evals.aid.path == str(tmp_path / "AID")
    assert evals.rsitmd.path == str(tmp_path / "RSITMD" / "dataset_rsitmd.json")
    assert evals.patternnet.path == str(tmp_path / "PatternNet")        # missing: the documented path
    ft = load_module("finetune_rsitmd").get_config()
    assert ft.data.sources.rsitmd.path == evals.rsitmd.path
