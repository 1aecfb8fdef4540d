"""The source registry: one spec format for training and evaluation, checked before reading."""
import io
import json

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.data import readers, sources
from tests.helpers.archives import write_tar
from remoteclip_jax.errors import ConfigError, DataError


def test_bad_specs_name_the_key_and_the_nearest_valid_one(tmp_path):
    with pytest.raises(ConfigError, match=r"kind='parquet': unknown source kind"):
        sources.build_source({"kind": "parquet", "path": "x"})
    with pytest.raises(ConfigError, match=r"did you mean 'records'"):
        sources.build_source({"kind": "record", "path": "x"})
    with pytest.raises(ConfigError, match=r"kind 'records' needs a path; set "
                                                      r"config.data.sources.a.path"):
        sources.build_source({"kind": "records"}, "config.data.sources.a")
    with pytest.raises(ConfigError, match=r"unknown key 'image_rot'; did you mean "
                                                      r"'image_root'"):
        sources.build_source({"kind": "jsonl", "path": "x", "image_rot": "y"})
    with pytest.raises(ConfigError, match=r"kind 'webdataset' does not read 'split'"):
        sources.build_source({"kind": "webdataset", "path": "x", "split": "train"})
    with pytest.raises(DataError, match=r"nope.jsonl: not found \(source\); put the jsonl "
                                                r"data there"):
        sources.build_source({"kind": "jsonl", "path": str(tmp_path / "nope.jsonl")})
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "captions": ["x"]}\n{"image": 3}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: "):
        sources.build_source({"kind": "jsonl", "path": str(tmp_path / "bad.jsonl")})


def _folder(root, classes, n):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4), (i, 0, 0)).save(root / c / f"{c.lower()}_{i}.png")


def test_image_folder_items_follow_class_then_file_name_order(tmp_path):
    _folder(tmp_path, ["Port", "Airport", "Beach"], 3)
    src = sources.build_source({"kind": "image_folder", "path": str(tmp_path),
                                "classes": "Port,Airport", "max_per_class": 2})
    got = [(src[i]["label"], src[i]["image_id"]) for i in range(len(src))]
    assert got == [("Airport", "airport_0.png"), ("Airport", "airport_1.png"),
                   ("Port", "port_0.png"), ("Port", "port_1.png")]
    with pytest.raises(DataError, match="class folders not found: Harbor"):
        sources.build_source({"kind": "image_folder", "path": str(tmp_path), "classes": "Harbor"})


def test_count_manifest_groups_the_lines_of_one_image(tmp_path):
    lines = [{"image": "a.png", "category": "ship", "count": 3},
             {"image": "a.png", "category": "plane", "count": 1},
             {"image": "b.png", "category": "ship", "count": 10}]
    (tmp_path / "count.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    src = sources.build_source({"kind": "count_manifest", "path": str(tmp_path / "count.jsonl")})
    assert [src[i]["counts"] for i in range(len(src))] == [{"ship": 3, "plane": 1}, {"ship": 10}]
    assert src[0]["path"] == str(tmp_path / "a.png")


def test_skip_missing_drops_listed_images_that_are_absent(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "here.png")
    (tmp_path / "c.jsonl").write_text(
        json.dumps({"image": "here.png", "captions": ["a"]}) + "\n"
        + json.dumps({"image": "gone.png", "captions": ["b"]}) + "\n")
    spec = {"kind": "jsonl", "path": str(tmp_path / "c.jsonl")}
    assert len(sources.build_source(spec)) == 2
    assert len(sources.build_source({**spec, "skip_missing": True})) == 1


def test_synthetic_scenes_materialised_with_spelled_counts():
    src = sources.build_source({"kind": "synthetic", "num_images": 6, "image_size": 32,
                                "max_categories": 1, "spell_counts": True, "seed": 1})
    assert len(src) == 6
    for i in range(len(src)):
        item = src[i]
        assert len(item["counts"]) == 1 and item["image"].shape == (32, 32, 3)
        assert not any(ch.isdigit() for c in item["captions"] for ch in c)


def test_webdataset_source_and_reader_parse_captions_alike(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="JPEG")
    write_tar(tmp_path / "s.tar", [
        ("a.jpg", buffer.getvalue()), ("a.txt", b"a harbor  with ships\n"),
        ("b.jpg", buffer.getvalue()), ("b.json", json.dumps(
            {"title": "a farm", "captions": ["fields", "a farm", "fields"],
             "counts": {"field": 2}}).encode()),
    ])
    src = sources.build_source({"kind": "webdataset", "path": str(tmp_path / "s.tar")})
    read = list(readers.iter_webdataset(tmp_path / "s.tar"))
    assert [src[i]["captions"] for i in range(len(src))] == [r.captions for r in read]
    assert read[1].captions == ["a farm", "fields", "fields"]
    assert src[1]["counts"] == {"field": 2}
    assert np.asarray(Image.open(io.BytesIO(src[0]["image"]))).shape == (8, 8, 3)


def test_csv_source_reads_remoteclips_tab_separated_layout_and_honours_exclusions(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "Ret-3_train.csv").write_text(
        "filepath\ttitle\na.jpg\ttwo planes\nb.jpg\ta ship\na.jpg\tplanes near a terminal\n")
    spec = {"kind": "csv", "path": str(tmp_path / "Ret-3_train.csv")}
    src = sources.build_source(spec)
    assert [src[i]["captions"] for i in range(len(src))] == [
        ["two planes", "planes near a terminal"], ["a ship"]]
    (tmp_path / "exclusions.txt").write_text("a.jpg\n")   # relative to the list's folder
    kept = sources.build_source({**spec, "exclude": str(tmp_path / "exclusions.txt")})
    assert [kept[i]["path"] for i in range(len(kept))] == [str(tmp_path / "b.jpg")]
    with pytest.raises(ConfigError, match="records sources cannot drop images"):
        sources.build_source({"kind": "records", "path": str(tmp_path), "exclude": "x"})
