"""The evaluator: built once from the config, run on the training mesh, on any source kind."""
import json
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import remoteclip_jax as rc
from remoteclip_jax import config as schema
from remoteclip_jax.data import records
from remoteclip_jax.data.images import open_rgb
from remoteclip_jax.evaluate import Evaluator, retrieval_metrics
from remoteclip_jax.data.readers.count_manifest import dota_images, manifest_rows, write_manifest
from remoteclip_jax.evaluate.report import markdown_tables
from remoteclip_jax.train import sharding, state as state_lib
from remoteclip_jax.transforms import image_transform
from remoteclip_jax.errors import DataError

AID_CLASSES = "Airport,Beach,Forest,Port,River"


@pytest.fixture(scope="module")
def tiny():
    model = rc.create_model(rc.models.TINY_VIT)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                                    jnp.zeros((1, 77), jnp.int32))
    return model, variables


def _config(evals, batch_size=32, **mesh):
    c = schema.get_base_config()
    c.eval.batch_size = batch_size
    c.eval.cache_features = False
    for key, value in mesh.items():
        c.mesh[key] = value
    for name, entry in evals.items():
        c.evals[name] = entry
    return c


def _evaluator(model, evals, workdir, **kwargs):
    c = _config(evals, **kwargs)
    return Evaluator(model, c, sharding.make_mesh(c.mesh), workdir)


def _reference_features(model, variables, paths, captions):
    pre = image_transform(model.image_size, train=False)
    img = model.apply(variables, np.stack([pre(open_rgb(p)) for p in paths]), method="encode_image")
    txt = model.apply(variables, rc.tokenize(captions), method="encode_text")
    return np.asarray(img), np.asarray(txt)


def test_end_to_end_on_shared_samples(tiny, shared_data, tmp_path):
    model, variables = tiny
    write_manifest(manifest_rows(dota_images(str(shared_data / "detection" / "dota"))),
                   str(tmp_path / "count.jsonl"))
    aid = dict(kind="image_folder", path=str(shared_data / "aid_150px"), classes=AID_CLASSES,
               max_per_class=10)
    val = shared_data / "rsicd_aid" / "val_tiny.jsonl"
    evals = {
        "rsicd_aid": schema.evaluation("retrieval", kind="jsonl", path=str(val), split="val"),
        "ucm": schema.evaluation("retrieval", kind="caption_json", split="train", skip_missing=True,
                                 path=str(shared_data / "captions" / "ucm" / "dataset_ucm.json"),
                                 image_root=str(shared_data / "captions" / "ucm" / "images")),
        "aid": schema.evaluation("zeroshot", **aid, templates="remoteclip", class_embedding="average"),
        "aid_probe": schema.evaluation("linear_probe", **aid, Cs=(1.0, 100.0)),
        "aid_knn": schema.evaluation("knn", **aid),
        "aid_fewshot": schema.evaluation("fewshot", **aid, shots=(1, 2, 4), episodes=2),
        "dota_count": schema.evaluation("count", kind="count_manifest", path=str(tmp_path / "count.jsonl")),
    }
    ev = _evaluator(model, evals, tmp_path / "w")
    out = ev(variables, step=7)
    for key in ("eval/rsicd_aid/i2t_R@1", "eval/rsicd_aid/mean_recall", "eval/ucm/t2i_R@10",
                "eval/aid/top1", "eval/aid/top5", "eval/aid_probe/linear_probe_top1",
                "eval/aid_knn/knn_top1", "eval/aid_fewshot/fewshot_4shot_mean",
                "eval/dota_count/top1"):
        assert key in out and np.isfinite(out[key]), key
    folder = tmp_path / "w" / "eval"
    assert json.loads((folder / "results.json").read_text()) == pytest.approx(out)
    details = json.loads((folder / "details.json").read_text())
    assert details["datasets"]["ucm"]["num_images"] == 9
    assert details["datasets"]["aid"]["num_images"] == 10          # 2 test images x 5 classes
    assert len(details["datasets"]["aid"]["templates"]) == 5
    md = (folder / "results.md").read_text()
    assert "| rsicd_aid | model |" in md and "Zero-shot" in md and "4-shot" in md
    assert (folder / "plots" / "aid_zeroshot_confusion.png").stat().st_size > 0
    assert (folder / "plots" / "fewshot.png").stat().st_size > 0
    assert json.loads((folder / "history.jsonl").read_text().splitlines()[-1])["step"] == 7

    # The evaluator's features equal a plain `apply` on the same images and captions (to float
    # tolerance: another program), and its metrics are retrieval_metrics of its own features.
    items = [json.loads(x) for x in val.read_text().splitlines()]
    paths = [str(shared_data / it["image"]) for it in items]
    captions = [c for it in items for c in it["captions"]]
    t2i = [i for i, it in enumerate(items) for _ in it["captions"]]
    ref_img, ref_txt = _reference_features(model, variables, paths, captions)
    dataset = ev._dataset(ev.entries["rsicd_aid"])
    img = ev.image_features(variables, dataset)
    txt = ev.text_features(variables, ev._prepared["rsicd_aid"]["tokens"])
    np.testing.assert_allclose(img, ref_img, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(txt, ref_txt, rtol=1e-4, atol=1e-5)
    keys = [row.tobytes() for row in rc.tokenize(captions)]
    for k, v in retrieval_metrics(img, txt, t2i, ties="expected", caption_keys=keys).items():
        assert out[f"eval/rsicd_aid/{k}"] == pytest.approx(v, abs=1e-9)


def test_two_evaluations_compile_each_encoder_once(tiny, tmp_path):
    model, variables = tiny
    scenes = dict(kind="synthetic", num_images=12, image_size=32, seed=3)
    ev = _evaluator(model, {"r": schema.evaluation("retrieval", **scenes),
                            "c": schema.evaluation("count", **scenes)}, tmp_path, batch_size=8)
    first = ev(variables, step=1)
    shifted = jax.tree.map(lambda x: x * 1.01, variables)
    second = ev(shifted, step=2)
    assert first != second  # the second call really used the new weights
    # One executable per encoder, although the datasets hold a partial last batch and the two
    # evaluations saw different weights.
    assert ev.encode_image._cache_size() == 1
    assert ev.encode_text._cache_size() == 1


def test_fsdp_sharded_parameters_stay_sharded_and_give_the_same_metrics(tiny, tmp_path):
    model, variables = tiny
    scenes = dict(kind="synthetic", num_images=16, image_size=32, seed=5)
    evals = {"r": schema.evaluation("retrieval", **scenes)}
    results = {}
    for fsdp in (1, 2):
        c = _config(evals, batch_size=8, fsdp=fsdp)
        c.train.steps = 1
        mesh = sharding.make_mesh(c.mesh)
        state, _ = state_lib.create_train_state(model, c, mesh, jax.random.PRNGKey(0),
                                                init_variables=jax.device_get(variables))
        on_mesh = state_lib.model_variables(state)
        ev = Evaluator(model, c, mesh, tmp_path / f"fsdp{fsdp}")
        results[fsdp] = ev(on_mesh)
        if fsdp == 2:
            # The encoder runs on the parameters as the train state shards them: some are split
            # over the fsdp axis, so no device (and no host) holds the whole model.
            split = [x for x in jax.tree.leaves(on_mesh)
                     if not x.sharding.is_fully_replicated]
            assert split and all("fsdp" in str(x.sharding.spec) for x in split)
            # (In the tiny model only the token embedding is large enough to be split.)
            tokens = np.zeros((8, model.context_length), np.int32)
            compiled = ev.encode_text.lower(on_mesh, sharding.shard_batch(tokens, mesh)).compile()
            shardings = jax.tree.leaves(compiled.input_shardings[0][0])
            assert any("fsdp" in str(s.spec) for s in shardings)
    assert results[1].keys() == results[2].keys()
    for key in results[1]:
        assert results[2][key] == pytest.approx(results[1][key], abs=1e-6), key


def _write_records_and_webdataset(items, root, out):
    """The same images (original bytes), captions and counts as record shards and a tar shard."""
    with records.RecordWriter(out / "records") as writer:
        for i, it in enumerate(items):
            writer.write({"image": (root / it["image"]).read_bytes(), "captions": it["captions"],
                          "source": "test", "image_id": f"im{i}", "ann_ids": [],
                          "counts": it.get("counts", {})})
    with tarfile.open(out / "shard-0000.tar", "w") as tar:
        for i, it in enumerate(items):
            tar.add(root / it["image"], arcname=f"im{i:04d}.jpg")
            meta = out / f"im{i:04d}.json"
            meta.write_text(json.dumps({"captions": it["captions"], "counts": it.get("counts", {})}))
            tar.add(meta, arcname=f"im{i:04d}.json")


def test_retrieval_and_counting_read_records_and_webdataset_like_the_caption_file(
        tiny, shared_data, tmp_path):
    model, variables = tiny
    root = shared_data / "rsicd_aid"
    items = [json.loads(x) for x in (root / "val_tiny.jsonl").read_text().splitlines()][:24]
    for i, it in enumerate(items):  # made-up counts, the same in every format
        it["counts"] = {"plane": 1 + i % 10, "ship": 1 + (3 * i) % 10}
    (tmp_path / "val.jsonl").write_text("".join(
        json.dumps({**it, "image": str(shared_data / it["image"])}) + "\n" for it in items))
    manifest = tmp_path / "count.jsonl"
    manifest.write_text("".join(json.dumps({"image": str(shared_data / it["image"]), "category": c,
                                            "count": n}) + "\n"
                                for it in items for c, n in it["counts"].items()))
    _write_records_and_webdataset(items, shared_data, tmp_path)
    formats = {"json": dict(kind="jsonl", path=str(tmp_path / "val.jsonl")),
               "records": dict(kind="records", path=str(tmp_path / "records")),
               "wds": dict(kind="webdataset", path=str(tmp_path / "shard-0000.tar"))}
    evals = {f"{name}_ret": schema.evaluation("retrieval", **spec) for name, spec in formats.items()}
    evals.update({f"{name}_count": schema.evaluation("count", **spec)
                  for name, spec in formats.items() if name != "json"})
    evals["manifest_count"] = schema.evaluation("count", kind="count_manifest", path=str(manifest))
    out = _evaluator(model, evals, tmp_path / "w", batch_size=8)(variables)
    metrics = ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@10", "mean_recall")
    for name in ("records", "wds"):
        for m in metrics:
            assert out[f"eval/{name}_ret/{m}"] == pytest.approx(out[f"eval/json_ret/{m}"], abs=1e-9)
        for m in ("top1", "mae"):
            assert out[f"eval/{name}_count/{m}"] == pytest.approx(out[f"eval/manifest_count/{m}"],
                                                                  abs=1e-9)


def test_bad_input_is_named_and_finished_results_are_kept(tiny, shared_data, tmp_path):
    model, variables = tiny
    folder = tmp_path / "scenes"
    for c in ("farm", "port"):
        (folder / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / c / f"{c}_{i}.png")
    broken = tmp_path / "broken"
    for c in ("a", "b"):
        (broken / c).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / c / "x_0.png")
        (broken / c / "x_1.jpg").write_bytes(b"not an image")           # unreadable (test split)
    ucm = shared_data / "captions" / "ucm"
    evals = {
        "ucm": schema.evaluation("retrieval", kind="caption_json", path=str(ucm / "dataset_ucm.json"),
                                 image_root=str(ucm / "images"), split="train", skip_missing=True),
        "missing": schema.evaluation("zeroshot", kind="image_folder", path=str(tmp_path / "nope")),
        "notest": schema.evaluation("retrieval", kind="caption_json", split="test",
                                    path=str(shared_data / "rsicd_aid" / "dataset_rsicd_aid_trainval.json")),
        "broken": schema.evaluation("zeroshot", kind="image_folder", path=str(broken)),
        "fine": schema.evaluation("zeroshot", kind="image_folder", path=str(folder)),
    }
    ev = _evaluator(model, evals, tmp_path / "w", batch_size=8)
    with pytest.raises(DataError) as e:
        ev(variables)
    msg = str(e.value)
    assert f"{tmp_path / 'nope'}: not found" in msg
    assert "dataset_rsicd_aid_trainval.json" in msg and "test" in msg
    assert "x_1.jpg: unreadable image" in msg
    saved = json.loads((tmp_path / "w" / "eval" / "results.json").read_text())
    assert "eval/ucm/mean_recall" in saved and "eval/fine/top1" in saved
    assert "Skipped (bad input)" in (tmp_path / "w" / "eval" / "results.md").read_text()
    # A trainer asks for the metrics without the exception.
    ev.raise_on_error = False
    assert {k.split("/")[1] for k in ev(variables)} == {"ucm", "fine"}


def test_index_ties_rank_in_retrieval_pys_order_and_captions_share_by_tokens(tiny, tmp_path):
    """ties="index": images sorted by file name, captions in file order, captions that differ
    only in case one embedding; against a stable top-k on the evaluator's own features."""
    from tests.test_eval_retrieval import KEYS, _stable_recalls

    model, variables = tiny
    rng = np.random.default_rng(0)
    # Every caption is one text in three spellings, so all captions tie exactly: an image is
    # found at k only when fewer than k captions of other images come before its own.
    names = ["9.png", "10.png", "1.png"]
    sentences = [["A plane."], ["a plane.", "A PLANE.", "a plane."], ["a Plane.", "A plane."]]
    for n in names:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(tmp_path / n)
    doc = {"images": [{"filename": n, "split": "test", "sentences": [{"raw": c} for c in caps]}
                      for n, caps in zip(names, sentences)]}
    (tmp_path / "captions.json").write_text(json.dumps(doc))
    entry = schema.evaluation("retrieval", kind="caption_json", split="test", ties="index",
                              path=str(tmp_path / "captions.json"), image_root=str(tmp_path))
    ev = _evaluator(model, {"r": entry}, tmp_path / "w", batch_size=8)
    ev._encoders(variables)
    img = ev.image_features(variables, ev._dataset(ev.entries["r"]))
    clean = ev.text_features(variables, ev._prepared["r"]["tokens"])
    # Last-bit noise, different for each caption row, as batched encoders give.
    noisy = clean * (1 + 1e-6 * rng.standard_normal(clean.shape)).astype(np.float32)
    ev.text_features = lambda v, tokens: noisy
    out = ev(variables)

    # The reference, re-derived: images sorted by name, each one's captions in file order, one
    # embedding per lower-cased text (the first one's).
    order = sorted(range(len(names)), key=lambda i: names[i])
    start = np.cumsum([0] + [len(c) for c in sentences])
    rows = [j for i in order for j in range(start[i], start[i + 1])]
    flat = [c for caps in sentences for c in caps]
    first = {}
    for j, c in enumerate(flat):
        first.setdefault(c.lower(), j)
    t2i = np.repeat(np.arange(len(order)), [len(sentences[i]) for i in order])
    want = _stable_recalls(img[order], noisy[[first[flat[j].lower()] for j in rows]], t2i)
    for key in KEYS:
        assert out[f"eval/r/{key}"] == pytest.approx(want[key], abs=1e-9), key
    # Each row with its own noise (no sharing), or the file's order, give other numbers.
    unshared = _stable_recalls(img[order], noisy[rows], t2i)
    file_order = _stable_recalls(img, noisy[[first[c.lower()] for c in flat]],
                                 np.repeat(np.arange(len(names)), [len(c) for c in sentences]))
    for other in (unshared, file_order):
        assert any(abs(other[k] - want[k]) > 1e-9 for k in KEYS)
    # Sorted: 1.png (2 captions), 10.png (3), 9.png (1): 9.png has 5 captions before its own.
    assert out["eval/r/i2t_R@5"] == pytest.approx(200 / 3) and out["eval/r/i2t_R@1"] == pytest.approx(100 / 3)


def test_renamed_zeroshot_entry_warns_or_takes_its_table_by_the_dataset_key(tiny, tmp_path, caplog):
    model, _ = tiny
    for c in ("BareLand", "Airport"):
        (tmp_path / "AID" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(tmp_path / "AID" / c / f"{i}.png")
    folder = dict(kind="image_folder", path=str(tmp_path / "AID"))
    evals = {"aid": schema.evaluation("zeroshot", **folder),
             "aid_v2": schema.evaluation("zeroshot", **folder),
             "aid_v3": schema.evaluation("zeroshot", **folder, dataset="AID")}
    with caplog.at_level("WARNING"):
        ev = _evaluator(model, evals, tmp_path / "w")
    # ITRA's AID table spells "bareLand"; the generic rules say "bare land".
    assert ev._prepared["aid"]["readable"] == ["airport", "bareLand"]
    assert ev._prepared["aid_v2"]["readable"] == ["airport", "bare land"]
    assert ev._prepared["aid_v3"]["readable"] == ["airport", "bareLand"]
    assert ev._prepared["aid_v3"]["templates"] == ev._prepared["aid"]["templates"]
    warned = [r.getMessage() for r in caplog.records if "rule-made names" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("eval aid_v2: dataset 'aid_v2' has no")
    assert "config.evals.aid_v2.dataset" in warned[0]


def test_markdown_table_layout():
    details = {"step": None, "errors": {}, "datasets": {
        "rsicd": {"name": "rsicd", "task": "retrieval", "metrics": {
            "i2t_R@1": 1.0, "i2t_R@5": 2.0, "i2t_R@10": 3.0, "t2i_R@1": 4.0, "t2i_R@5": 5.0,
            "t2i_R@10": 6.0, "mean_recall": 3.5}},
        "aid": {"name": "aid", "task": "zeroshot", "metrics": {"top1": 50.0}},
        "eurosat": {"name": "eurosat", "task": "zeroshot", "metrics": {"top1": 30.0}}}}
    md = markdown_tables(details, "RemoteCLIP-B32")
    assert "| rsicd | RemoteCLIP-B32 | 1.00 | 2.00 | 3.00 | 4.00 | 5.00 | 6.00 | 3.50 |" in md
    assert "| Method | aid | eurosat | Average |" in md
    assert "| RemoteCLIP-B32 zero-shot | 50.00 | 30.00 | 40.00 |" in md


def test_results_md_shows_the_interval_where_tie_rules_disagree():
    details = {"step": None, "errors": {}, "datasets": {"ucm": {
        "name": "ucm", "task": "retrieval", "tie_sensitive": ["i2t_R@1"],
        "bounds": {"i2t_R@1": [17.14, 94.29]},
        "metrics": {"i2t_R@1": 37.38, "i2t_R@5": 2.0, "i2t_R@10": 3.0, "t2i_R@1": 4.0,
                    "t2i_R@5": 5.0, "t2i_R@10": 6.0, "mean_recall": 3.5}}}}
    md = markdown_tables(details)
    assert "| ucm | model | 37.38 [17.14, 94.29] | 2.00 |" in md
