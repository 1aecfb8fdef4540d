"""`remoteclip-jax wise-ft`: the averaged model from two model directories of any layout, equal to
the weighted average of their open_clip state dicts; the sweep's table and plot."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import remoteclip_jax as rc
from remoteclip_jax import cli
from remoteclip_jax.weights import model_dir
from tests.helpers.openclip import build_openclip
from tests.test_weights_interpolate import torch_average

CFG = rc.models.TINY_VIT


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """A zero-shot model as an open_clip directory, a fine-tuned one as ours, and their torch
    originals."""
    root = tmp_path_factory.mktemp("models")
    zero_shot, finetuned = build_openclip(CFG, seed=0), build_openclip(CFG, seed=1)
    for model, name, fmt in ((zero_shot, "zs", "open_clip"), (finetuned, "ft", "orbax")):
        variables = rc.load_openclip({k: v.numpy() for k, v in model.state_dict().items()}, CFG)
        model_dir.save_pretrained(variables, CFG, str(root / name), fmt)
    return root, zero_shot, finetuned


def test_wise_ft_writes_the_weighted_average_of_the_two_state_dicts(two_models, tmp_path, capsys):
    root, zero_shot, finetuned = two_models
    out = tmp_path / "wise"
    assert cli.main(["wise-ft", str(root / "zs"), str(root / "ft"), "--alpha", "0.25",
                     "--out", str(out), "--format", "open_clip"]) == 0
    assert "alpha 0.25" in capsys.readouterr().out
    written = load_file(str(out / "open_clip_model.safetensors"))
    want = torch_average(zero_shot, finetuned, 0.25)
    assert set(written) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(written[k], v, rtol=1e-6, atol=1e-7, err_msg=k)
    # Our default layout, read back as any model directory.
    assert cli.main(["wise-ft", str(root / "zs"), str(root / "ft"), "--alpha", "1",
                     "--out", str(tmp_path / "ours")]) == 0
    variables, info = model_dir.read_model_dir(str(tmp_path / "ours"))
    assert "WiSE-FT alpha=1" in info.source
    for k, v in rc.to_openclip(variables, CFG).items():
        if k in want:
            np.testing.assert_array_equal(v, finetuned.state_dict()[k].numpy(), err_msg=k)


def test_wise_ft_refuses_two_architectures_and_bad_alphas(two_models, tmp_path, capsys):
    root, _, _ = two_models
    other = dict(CFG, quick_gelu=not CFG["quick_gelu"])
    model = build_openclip(other, seed=2)
    model_dir.save_pretrained(rc.load_openclip({k: v.numpy() for k, v in model.state_dict().items()},
                                               other), other, str(tmp_path / "gelu"), "orbax")
    assert cli.main(["wise-ft", str(root / "zs"), str(tmp_path / "gelu"), "--alpha", "0.5",
                     "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "one architecture" in err[0]
    assert cli.main(["wise-ft", str(root / "zs"), str(root / "ft"), "--alpha", "50",
                     "--out", str(tmp_path / "x")]) == 2
    assert "must lie in [0, 1]" in capsys.readouterr().err
    assert cli.main(["wise-ft", str(root / "zs"), str(root / "ft"), "--sweep", "0,1",
                     "--out", str(tmp_path / "x")]) == 2
    assert "--config=configs/<recipe>.py" in capsys.readouterr().err


RECIPE = '''
from remoteclip_jax import config as schema

def get_config(arg=None):
    c = schema.get_base_config()
    c.eval.batch_size = 16
    c.eval.cache_features = False
    c.evals.scenes = schema.evaluation("retrieval", kind="synthetic", num_images=12, image_size=32)
    c.evals.counts = schema.evaluation("count", kind="synthetic", num_images=12, image_size=32)
    return c
'''


def test_sweep_writes_one_table_and_one_plot(two_models, tmp_path):
    root, _, _ = two_models
    recipe = tmp_path / "recipe.py"
    recipe.write_text(RECIPE)
    out = tmp_path / "sweep"
    assert cli.main(["wise-ft", str(root / "zs"), str(root / "ft"), "--sweep", "0,0.5,1",
                     "--out", str(out), f"--config={recipe}",
                     "--config.evals.scenes.ties=pessimistic"]) == 0
    table = (out / "wise_ft.md").read_text().splitlines()
    assert table[2] == "| alpha | counts/top1 | scenes/mean_recall |"
    assert [row.split(" | ")[0] for row in table[4:]] == ["| 0", "| 0.5", "| 1"]
    assert (out / "wise_ft.png").stat().st_size > 0
    rows = json.loads((out / "wise_ft.json").read_text())
    for row, line in zip(rows, table[4:]):
        saved = json.loads((out / f"alpha_{row['alpha']:g}" / "results.json").read_text())
        assert saved == pytest.approx(row["metrics"])
        assert line.endswith(f"| {row['metrics']['eval/scenes/mean_recall']:.2f} |")
    details = json.loads((out / "alpha_0" / "details.json").read_text())
    assert details["datasets"]["scenes"]["ties"] == "pessimistic"    # the override reached it
    assert rows[0]["metrics"] != rows[2]["metrics"]
