"""RemoteCount-style counting: captions, manifest format and building, predictions and metrics."""
import json

import numpy as np
import pytest

from remoteclip_jax.data.types import AnnotatedImage, Box
from remoteclip_jax.evaluate.counting import (CountItem, EvalDataError, count_caption,
                                              count_captions, count_metrics, count_predictions,
                                              dota_images, manifest_rows, read_count_manifest,
                                              write_manifest)


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
    with pytest.raises(EvalDataError, match=r"bad.jsonl:2: expected JSON"):
        read_count_manifest(str(p))
    p.write_text('{"image": "a.png", "category": "ship", "count": 11}\n')
    with pytest.raises(EvalDataError, match=r"bad.jsonl:1: count 11 outside 1..10"):
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
