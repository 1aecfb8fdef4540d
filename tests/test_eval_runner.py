"""End to end: run_evaluation on real samples from ../shared/data with a tiny random model, and
bad input that names its path without losing finished results."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import remoteclip_jax as rc
from remoteclip_jax.evaluate import EvalDataError, retrieval_metrics, run_evaluation
from remoteclip_jax.evaluate.counting import dota_images, manifest_rows, write_manifest
from remoteclip_jax.evaluate.runner import markdown_tables

AID_CLASSES = ["Airport", "Beach", "Forest", "Port", "River"]


@pytest.fixture(scope="module")
def tiny():
    model = rc.create_model(rc.models.TINY_VIT)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)), jnp.zeros((1, 77), jnp.int32))
    return model, variables


def test_end_to_end_on_shared_samples(tiny, shared_data, tmp_path):
    model, variables = tiny
    write_manifest(manifest_rows(dota_images(str(shared_data / "detection" / "dota"))),
                   str(tmp_path / "count.jsonl"))
    aid = {"path": str(shared_data / "aid_150px"), "classes": AID_CLASSES, "max_per_class": 10}
    datasets = [
        {"kind": "retrieval", "name": "rsicd_aid", "path": str(shared_data / "rsicd_aid" / "val_tiny.jsonl"),
         "split": "val"},
        {"kind": "retrieval", "name": "ucm", "path": str(shared_data / "captions" / "ucm" / "dataset_ucm.json"),
         "images": str(shared_data / "captions" / "ucm" / "images"), "split": "train", "skip_missing": True},
        {"kind": "zeroshot", "name": "aid", **aid, "templates": "remoteclip", "class_embedding": "average"},
        {"kind": "linear_probe", "name": "aid", **aid, "Cs": [1.0, 100.0]},
        {"kind": "knn", "name": "aid", **aid},
        {"kind": "fewshot", "name": "aid", **aid, "shots": [1, 2, 4], "episodes": 2},
        {"kind": "count", "name": "dota_count", "manifest": str(tmp_path / "count.jsonl")},
    ]
    out = run_evaluation(model, variables, {"datasets": datasets, "batch_size": 64}, str(tmp_path / "w"), step=7)
    for key in ("eval/rsicd_aid/i2t_R@1", "eval/rsicd_aid/mean_recall", "eval/ucm/t2i_R@10",
                "eval/aid/top1", "eval/aid/top5", "eval/aid/linear_probe_top1", "eval/aid/knn_top1",
                "eval/aid/fewshot_4shot_mean", "eval/dota_count/top1"):
        assert key in out and np.isfinite(out[key]), key
    ev = tmp_path / "w" / "eval"
    assert json.loads((ev / "results.json").read_text()) == pytest.approx(out)
    details = json.loads((ev / "details.json").read_text())
    assert details["datasets"]["ucm/retrieval"]["num_images"] == 9
    assert details["datasets"]["aid/zeroshot"]["num_images"] == 10          # 2 test images x 5 classes
    assert len(details["datasets"]["aid/zeroshot"]["templates"]) == 5
    md = (ev / "results.md").read_text()
    assert "| rsicd_aid | model |" in md and "Zero-shot" in md and "4-shot" in md
    assert (ev / "plots" / "aid_zeroshot_confusion.png").stat().st_size > 0
    assert (ev / "plots" / "fewshot.png").stat().st_size > 0
    assert json.loads((ev / "history.jsonl").read_text().splitlines()[-1])["step"] == 7

    # The retrieval number equals retrieval_metrics on features computed independently.
    from remoteclip_jax.evaluate.datasets import load_retrieval
    from remoteclip_jax.evaluate.runner import default_preprocess
    from remoteclip_jax.evaluate.features import load_image
    paths, caps, t2i = load_retrieval(datasets[0]["path"], split="val")
    pre = default_preprocess(model.image_size)
    img = model.apply(variables, np.stack([pre(load_image(p)) for p in paths]), method="encode_image")
    txt = model.apply(variables, rc.tokenize(caps), method="encode_text")
    ref = retrieval_metrics(np.asarray(img), np.asarray(txt), t2i)
    for k, v in ref.items():
        assert out[f"eval/rsicd_aid/{k}"] == pytest.approx(v, abs=1e-9)


def test_bad_input_is_named_and_finished_results_are_kept(tiny, shared_data, tmp_path):
    model, variables = tiny
    folder = tmp_path / "scenes"
    for c in ("farm", "port"):
        (folder / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / c / f"{c}_{i}.png")
    (folder / "harbour").mkdir()                                       # empty class folder
    broken = tmp_path / "broken"
    for c in ("a", "b"):
        (broken / c).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / c / "x_0.png")
        (broken / c / "x_1.jpg").write_bytes(b"not an image")           # unreadable (test split)
    datasets = [
        {"kind": "retrieval", "name": "ucm", "path": str(shared_data / "captions" / "ucm" / "dataset_ucm.json"),
         "images": str(shared_data / "captions" / "ucm" / "images"), "split": "train", "skip_missing": True},
        {"kind": "zeroshot", "name": "empty", "path": str(folder)},
        {"kind": "retrieval", "name": "notest", "path": str(shared_data / "rsicd_aid" / "dataset_rsicd_aid_trainval.json")},
        {"kind": "zeroshot", "name": "broken", "path": str(broken)},
    ]
    with pytest.raises(EvalDataError) as e:
        run_evaluation(model, variables, {"datasets": datasets, "batch_size": 8}, str(tmp_path / "w"))
    msg = str(e.value)
    assert f"{folder / 'harbour'}: class folder has no images" in msg
    assert "dataset_rsicd_aid_trainval.json: no images in split 'test' (splits present: train, val)" in msg
    assert "x_1.jpg: unreadable image" in msg
    saved = json.loads((tmp_path / "w" / "eval" / "results.json").read_text())
    assert "eval/ucm/mean_recall" in saved
    assert "Skipped (bad input)" in (tmp_path / "w" / "eval" / "results.md").read_text()
    # A trainer can ask for the metrics without the exception.
    out = run_evaluation(model, variables, {"datasets": datasets[:2], "batch_size": 8}, str(tmp_path / "w2"),
                         raise_on_error=False)
    assert set(k.split("/")[1] for k in out) == {"ucm"}


def test_markdown_table_layout():
    details = {"step": None, "errors": {}, "datasets": {
        "rsicd/retrieval": {"name": "rsicd", "kind": "retrieval", "metrics": {"i2t_R@1": 1.0, "i2t_R@5": 2.0, "i2t_R@10": 3.0, "t2i_R@1": 4.0,
                                                    "t2i_R@5": 5.0, "t2i_R@10": 6.0, "mean_recall": 3.5}},
        "aid/zeroshot": {"name": "aid", "kind": "zeroshot", "metrics": {"top1": 50.0}},
        "eurosat/zeroshot": {"name": "eurosat", "kind": "zeroshot", "metrics": {"top1": 30.0}}}}
    md = markdown_tables(details, "RemoteCLIP-B32")
    assert "| rsicd | RemoteCLIP-B32 | 1.00 | 2.00 | 3.00 | 4.00 | 5.00 | 6.00 | 3.50 |" in md
    assert "| Method | aid | eurosat | Average |" in md
    assert "| RemoteCLIP-B32 zero-shot | 50.00 | 30.00 | 40.00 |" in md
