"""Synthetic demo scenes: deterministic, boxes and counts match what is drawn, captions from B2C."""
import collections
import io
import pickle

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.data import b2c, records, synthetic
from remoteclip_jax.data.types import Box

# A colour test per category, independent of the drawing code: a pixel "looks like" the object.
_SIGNATURE = {
    "plane": lambda p: (p.min(-1) > 200),                                        # white
    "storage tank": lambda p: (p.min(-1) > 190),                                 # pale grey
    "ship": lambda p: (p[..., 0] > 180) & (p[..., 1] < 140) & (p[..., 2] < 100),  # orange
    "car": lambda p: (p[..., 0] > 180) & (p[..., 1] > 150) & (p[..., 2] < 90),    # yellow
    "house": lambda p: (p[..., 0] > 120) & (p[..., 1] < 90) & (p[..., 2] < 80),   # red roof
    "tennis court": lambda p: (p[..., 2] > 140) & (p[..., 0] < 110),              # blue
}


@pytest.fixture(scope="module")
def scenes():
    source = synthetic.SyntheticSource(60, (64, 96), seed=3)
    return source, [source[i] for i in range(len(source))]


def test_same_seed_and_index_give_the_same_scene(scenes):
    source, items = scenes
    again = synthetic.SyntheticSource(60, (64, 96), seed=3)
    for i in (0, 17, 59):
        a, b = items[i], again[i]
        np.testing.assert_array_equal(a["image"], b["image"])
        assert a["captions"] == b["captions"] and a["boxes"] == b["boxes"]
    other = synthetic.SyntheticSource(60, (64, 96), seed=4)[0]
    assert other["image"].shape != items[0]["image"].shape or not np.array_equal(
        other["image"], items[0]["image"])


def test_source_survives_pickling(scenes):
    source, items = scenes
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[5]["image"], items[5]["image"])


def test_counts_and_boxes_are_consistent_and_inside_the_image(scenes):
    _, items = scenes
    for item in items:
        h, w, c = item["image"].shape
        assert item["image"].dtype == np.uint8 and c == 3 and (w, h) in [(64, 64), (96, 96)]
        assert (item["width"], item["height"]) == (w, h)
        boxes = records.boxes_from_record(item["boxes"])
        assert boxes, "every scene has at least one object"
        assert collections.Counter(b.category for b in boxes) == item["counts"]
        assert all(1 <= n <= 10 for n in item["counts"].values())
        assert set(item["counts"]) <= set(synthetic.CATEGORIES)
        for b in boxes:
            assert 0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h


def test_boxes_do_not_overlap(scenes):
    _, items = scenes
    for item in items:
        boxes = records.boxes_from_record(item["boxes"])
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0


def test_every_box_holds_its_category_colour(scenes):
    _, items = scenes
    seen = set()
    for item in items:
        image = item["image"].astype(int)
        for b in records.boxes_from_record(item["boxes"]):
            patch = image[int(b.y0):int(np.ceil(b.y1)), int(b.x0):int(np.ceil(b.x1))]
            assert _SIGNATURE[b.category](patch).any(), (item["image_id"], b)
            seen.add(b.category)
    assert seen == set(synthetic.CATEGORIES)


def test_ships_only_on_water_and_backgrounds_vary(scenes):
    _, items = scenes
    assert {it["label"] for it in items} == set(synthetic.BACKGROUNDS)
    for it in items:
        assert ("ship" in it["counts"]) == (it["label"] == "water")


def test_captions_come_from_b2c_on_the_ground_truth(scenes):
    source, items = scenes
    for i in (0, 1, 2, 30):
        item = items[i]
        expected = b2c.box_to_captions(records.boxes_from_record(item["boxes"]), item["width"],
                                       item["height"], rng=np.random.default_rng([3, i, 1]),
                                       dataset="synthetic")
        assert item["captions"] == expected and len(expected) == 5


def test_single_category_counts_appear_in_captions(scenes):
    _, items = scenes
    checked = 0
    for item in items:
        if len(item["counts"]) == 1:
            (category, n), = item["counts"].items()
            word = str(n) if n > 1 else ("an" if category[0] in "aeiou" else "a")
            text = " ".join(item["captions"][2:]).lower()
            assert f"{word} {category}" in text, (item["counts"], item["captions"])
            checked += 1
    assert checked > 10


def test_render_scene_is_a_pure_function_of_the_rng():
    a = synthetic.render_scene(np.random.default_rng(7), 80)
    b = synthetic.render_scene(np.random.default_rng(7), 80)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.boxes == b.boxes and a.image.shape == (80, 80, 3)
    assert all(isinstance(x, Box) for x in a.boxes)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="num_images"):
        synthetic.SyntheticSource(0)
    with pytest.raises(ValueError, match="image sizes"):
        synthetic.SyntheticSource(3, 16)
    with pytest.raises(IndexError):
        synthetic.SyntheticSource(3)[3]


def test_write_synthetic_records_round_trip(tmp_path):
    manifest = synthetic.write_synthetic_records(tmp_path / "demo", 7, 64, seed=1, shard_size=3,
                                                 progress=False)
    assert manifest["count"] == 7 and manifest["sources"] == {"synthetic": 7}
    assert "not real imagery" in manifest["synthetic"]["note"]
    src = records.RecordSource(tmp_path / "demo")
    ref = synthetic.SyntheticSource(7, 64, seed=1)
    for i in range(7):
        rec, truth = src[i], ref[i]
        assert rec["captions"] == truth["captions"] and rec["counts"] == truth["counts"]
        decoded = np.asarray(Image.open(io.BytesIO(rec["image"])))
        assert decoded.shape == truth["image"].shape
        assert np.abs(decoded.astype(int) - truth["image"]).mean() < 4  # JPEG q95


def test_export_scenes_writes_files_and_a_counting_manifest(tmp_path):
    import json

    summary = synthetic.export_scenes(tmp_path, 12, 64, seed=2, progress=False)
    scenes = [json.loads(x) for x in (tmp_path / "scenes.jsonl").read_text().splitlines()]
    manifest = [json.loads(x) for x in (tmp_path / "count_manifest.jsonl").read_text().splitlines()]
    ref = synthetic.SyntheticSource(12, 64, seed=2)
    assert len(scenes) == summary["scenes"] == 12 and len(manifest) == summary["count_items"] > 0
    for row in manifest:
        i = int(row["image"].split("/")[1].split(".")[0])
        assert ref[i]["counts"] == {row["category"]: row["count"]}
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / row["image"])),
                                      ref[i]["image"])
    assert scenes[3]["captions"] == ref[3]["captions"]


def test_cli_writes_records(tmp_path, capsys):
    synthetic.main(["--out", str(tmp_path / "r"), "--num-images", "5", "--image-size", "64", "80"])
    assert "wrote 5 synthetic scenes" in capsys.readouterr().out
    assert len(records.RecordSource(tmp_path / "r")) == 5
