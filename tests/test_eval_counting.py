"""RemoteCount-style counting: captions, manifest format and building, predictions and metrics."""
import json

import numpy as np
import pytest

from remoteclip_jax.data.types import AnnotatedImage, Box
from remoteclip_jax.data.readers.count_manifest import CountItem, dota_images, manifest_rows, read_count_manifest, write_manifest
from remoteclip_jax.evaluate.counting import count_caption, count_captions, count_metrics, count_predictions, count_report, count_scores, count_topk_curve
from remoteclip_jax.evaluate.plots import plot_count_topk
from remoteclip_jax.errors import DataError


def test_captions_differ_only_in_the_count():
    caps = count_captions("tennis court")
    assert caps[0] == "There is one tennis court in the picture."
    assert caps[1] == "There are two tennis courts in the picture."
    assert caps[9] == "There are ten tennis courts in the picture."
    assert len(set(caps)) == 10


def test_manifest_rows_count_boxes_per_category(tmp_path):
    boxes = [Box("small-vehicle", 0, 0, 1, 1)] * 3 + [Box("ship", 0, 0, 1, 1)] * 12
    rows = manifest_rows([AnnotatedImage(path=str(tmp_path / "a.png"), boxes=boxes)])
    assert rows == [{"image": str(tmp_path / "a.png"), "category": "small vehicle", "count": 3}]
    out = tmp_path / "m" / "count.jsonl"
    write_manifest(rows, str(out))
    items = read_count_manifest(str(out))
    assert items == [CountItem(str(out.parent / "../a.png"), "small vehicle", 3)]


def test_manifest_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"image": "a.png", "category": "ship", "count": 2}\n{"image": "b.png", "count": 2}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected JSON"):
        read_count_manifest(str(p))
    p.write_text('{"image": "a.png", "category": "ship", "count": 11}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: count 11 outside 1..10"):
        read_count_manifest(str(p))


def test_predictions_and_metrics_hand_computed():
    # Caption features for "ship": count n -> unit vector at angle n*10 degrees.
    ang = np.deg2rad(10 * np.arange(1, 11))
    caps = {"ship": np.stack([np.cos(ang), np.sin(ang)], 1)}
    img = np.stack([np.cos(np.deg2rad([31, 68, 100])), np.sin(np.deg2rad([31, 68, 100]))], 1)
    items = [CountItem("x", "ship", c) for c in (3, 6, 9)]
    preds = count_predictions(img, caps, items)
    assert preds.tolist() == [3, 7, 10]
    m = count_metrics(preds, [3, 6, 9])
    assert m["top1"] == pytest.approx(100 / 3) and m["mae"] == pytest.approx(2 / 3)
    assert m["confusion"][5, 6] == 1 and m["confusion"].sum() == 3


def test_dota_manifest_from_shared_data(shared_data, tmp_path):
    images = dota_images(str(shared_data / "detection" / "dota"))
    assert len(images) == 6 and all(im.boxes for im in images)
    rows = manifest_rows(images)
    assert rows and all(1 <= r["count"] <= 10 for r in rows)
    write_manifest(rows, str(tmp_path / "c.jsonl"))
    assert len(read_count_manifest(str(tmp_path / "c.jsonl"))) == len(rows)
    assert json.loads((tmp_path / "c.jsonl").read_text().splitlines()[0])["count"] == rows[0]["count"]


def test_digit_template_matches_box_to_caption_numbers():
    template = "There {be} {digits} {objects} in the picture."
    assert count_caption("storage tank", 1, template) == "There is 1 storage tank in the picture."
    assert count_caption("storage tank", 7, template) == "There are 7 storage tanks in the picture."


def _numpy_topk_curve(scores, counts):
    """Re-derivation: rank the ten captions by score (argsort, descending), top-k = the true
    count's caption is among the first k."""
    order = np.argsort(-scores, axis=1, kind="stable")
    position = np.argmax(order == (np.asarray(counts) - 1)[:, None], axis=1)
    return {k: 100.0 * np.mean(position < k) for k in range(1, 11)}


def test_topk_curve_matches_numpy_ranking_on_tie_free_scores():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 11, 200)
    scores = rng.normal(size=(200, 10))
    scores[np.arange(200), counts - 1] += 1.0
    want = _numpy_topk_curve(scores, counts)
    for ties in ("expected", "pessimistic", "optimistic"):
        got = count_topk_curve(scores, counts, ties=ties)
        assert got == pytest.approx(want, abs=1e-9)
    assert want[10] == 100.0 and all(want[k] <= want[k + 1] for k in range(1, 10))


def test_count_report_from_feature_scores(tmp_path):
    rng = np.random.default_rng(1)
    caps = {"ship": rng.normal(size=(10, 6)), "plane": rng.normal(size=(10, 6))}
    items = [CountItem("x", "ship" if i % 2 else "plane", int(c))
             for i, c in enumerate(rng.integers(1, 11, 40))]
    img = np.stack([caps[it.category][it.count - 1] + 0.8 * rng.normal(size=6) for it in items])
    scores = count_scores(img, caps, items)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)          # noqa: E731
    np.testing.assert_allclose(scores[3], unit(caps[items[3].category]) @ unit(img[3]))
    counts = [it.count for it in items]
    metrics, details = count_report(scores, counts)
    want = _numpy_topk_curve(scores, counts)
    assert details["topk_curve"] == pytest.approx(want)
    preds = count_predictions(img, caps, items)
    assert metrics["top1"] == pytest.approx(100 * np.mean(preds == np.array(counts)))
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(preds - np.array(counts))))
    plot_count_topk({"model": details["topk_curve"]}, tmp_path / "count_topk.png")
    assert (tmp_path / "count_topk.png").stat().st_size > 1000


def test_topk_curve_ties_hand_computed():
    scores = np.zeros((1, 10))                          # all ten captions tie
    assert count_topk_curve(scores, [4], ks=(1, 5), ties="expected") == pytest.approx({1: 10.0, 5: 50.0})
    assert count_topk_curve(scores, [4], ks=(1,), ties="pessimistic") == {1: 0.0}
