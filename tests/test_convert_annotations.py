"""The conversion CLI: records with provenance, summary of kept/skipped, errors and their codes."""
import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from remoteclip_jax import cli
from PIL import Image

from remoteclip_jax.data import convert_annotations as convert, records
from remoteclip_jax.data.b2c import box_to_captions
from remoteclip_jax.data.records import RecordSource
from remoteclip_jax.data.types import Box
from remoteclip_jax.errors import DataError


def _dota_tree(root, *, bad_line=False):
    (root / "labelTxt").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "labelTxt" / "A.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.3\n"
        "90 90 110 90 110 110 90 110 ship 0\n"
        "0 0 10 0 10 10 0 10 ship 0\n"
        "180 0 199 0 199 10 180 10 harbor 1\n"
        + ("1 2 3 oops\n" if bad_line else ""))
    (root / "labelTxt" / "B.txt").write_text("10 10 20 10 20 20 10 20 plane 0\n")  # corrupt image
    (root / "labelTxt" / "C.txt").write_text("10 10 20 10 20 20 10 20 plane 0\n")  # no image
    (root / "labelTxt" / "D.txt").write_text("gsd:1\n")                            # no objects
    (root / "labelTxt" / "E.txt").write_text("5 5 60 5 60 40 5 40 plane 0\n")
    Image.new("RGB", (200, 200), (90, 80, 70)).save(root / "images" / "A.png")
    Image.new("RGB", (64, 48), (10, 20, 30)).save(root / "images" / "E.jpg")
    Image.new("RGB", (64, 48)).save(root / "images" / "D.png")
    (root / "images" / "B.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")


def test_dota_conversion_records_summary_and_provenance(tmp_path):
    _dota_tree(tmp_path / "dota")
    out = tmp_path / "out"
    summary = convert.convert_dataset("dota", str(tmp_path / "dota/labelTxt"), str(out),
                                      image_size=100, seed=3, progress=False)
    assert (summary.read, summary.kept) == (5, 2)
    assert summary.skipped_counts == {"missing_image": 1, "corrupt_image": 1, "no_objects": 1,
                                      "no_captions": 0, "bad_annotation": 0}
    assert summary.missing_images == [str(tmp_path / "dota/images/C.png")]
    assert summary.corrupt_images[0]["path"] == str(tmp_path / "dota/images/B.png")
    assert summary.no_objects == ["D"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["kept"] == 2 and saved["skipped_counts"]["corrupt_image"] == 1
    assert records.read_manifest(out)["conversion"]["kept"] == 2

    source = RecordSource(out)
    by_id = {source[i]["image_id"]: source[i] for i in range(len(source))}
    a = by_id["A"]
    assert (a["source"], a["width"], a["height"]) == ("dota", 100, 100)
    with Image.open(io.BytesIO(a["image"])) as im:
        assert im.format == "JPEG" and im.size == (100, 100)
    assert a["ann_ids"] == ["A:3", "A:4", "A:5"]
    assert a["counts"] == {"harbor": 1, "ship": 2}
    assert a["boxes"][0] == {"category": "ship", "x0": 45.0, "y0": 45.0, "x1": 55.0, "y1": 55.0,
                             "difficult": False, "ann_id": "A:3", "region": False}
    # Captions are B2C's on the original frame, seeded per image id.
    boxes = [Box("ship", 90, 90, 110, 110, ann_id="A:3"), Box("ship", 0, 0, 10, 10, ann_id="A:4"),
             Box("harbor", 180, 0, 199, 10, True, "A:5")]
    expected = box_to_captions(boxes, 200, 200, rng=convert._caption_rng(3, "A"), dataset="dota")
    assert a["captions"] == expected and len(expected) == 5
    assert "in the middle of the picture" in a["captions"][0] and "a ship" in \
        a["captions"][0].lower()
    assert by_id["E"]["width"] == 64  # never enlarged


def test_conversion_is_deterministic_for_a_seed(tmp_path):
    _dota_tree(tmp_path / "dota")
    captions = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        convert.convert_dataset("dota", str(tmp_path / "dota/labelTxt"), str(tmp_path / name),
                                seed=seed, progress=False)
        source = RecordSource(tmp_path / name)
        captions.append([source[i]["captions"] for i in range(len(source))])
    assert captions[0] == captions[1]
    assert captions[0] != captions[2]
    args = ["dota", "--input", str(tmp_path / "dota/labelTxt"), "--out", str(tmp_path / "a"),
            "--no-progress", "--seed", "2"]
    assert cli.main(["convert-data", *args]) == 2  # the directory already holds a dataset
    assert cli.main(["convert-data", *args, "--overwrite"]) == 0
    source = RecordSource(tmp_path / "a")
    assert [source[i]["captions"] for i in range(len(source))] == captions[2]


def test_bad_annotation_stops_or_is_skipped_and_listed(tmp_path, capsys):
    _dota_tree(tmp_path / "dota", bad_line=True)
    label = tmp_path / "dota/labelTxt/A.txt"
    code = cli.main(["convert-data", "dota", "--input", str(tmp_path / "dota/labelTxt"), "--out",
                         str(tmp_path / "stop"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: {label}:6: expected 8 coordinates" in err and "Traceback" not in err
    assert not (tmp_path / "stop" / "manifest.json").exists()

    code = cli.main(["convert-data", "dota", "--input", str(tmp_path / "dota/labelTxt"), "--out",
                         str(tmp_path / "skip"), "--no-progress", "--skip-bad-annotations"])
    assert code == 0
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["skipped_counts"]["bad_annotation"] == 1
    assert summary["bad_annotations"][0].startswith(f"{label}:6: ")
    printed = capsys.readouterr().out
    assert "kept 2 of 5 images" in printed and "missing:" in printed and "summary:" in printed


def test_empty_result_is_an_error_with_summary(tmp_path, capsys):
    (tmp_path / "labelTxt").mkdir()
    (tmp_path / "labelTxt" / "X.txt").write_text("0 0 4 0 4 4 0 4 ship 0\n")
    code = cli.main(["convert-data", "dota", "--input", str(tmp_path / "labelTxt"), "--out",
                     str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no image was kept" in err and "1 missing images" in err
    assert json.loads((tmp_path / "out/summary.json").read_text())["kept"] == 0
    assert not (tmp_path / "out/manifest.json").exists()
    with pytest.raises(DataError):
        convert.convert_dataset("dota", str(tmp_path / "labelTxt"), str(tmp_path / "again"),
                                progress=False)


def test_masks_captions_and_webdataset_kinds(tmp_path):
    # masks: a Potsdam-style index PNG with two cars and a building.
    mask = np.ones((64, 64), np.uint8)
    mask[5:15, 5:25] = 5
    mask[40:50, 40:60] = 5
    mask[20:40, 10:40] = 2
    (tmp_path / "seg/ann_dir").mkdir(parents=True)
    Image.fromarray(mask).save(tmp_path / "seg/ann_dir/t.png")
    (tmp_path / "seg/img_dir").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "seg/img_dir/t.png")
    convert.convert_dataset("masks", str(tmp_path / "seg/ann_dir"), str(tmp_path / "m"),
                            table="potsdam", min_area=50, progress=False)
    record = RecordSource(tmp_path / "m")[0]
    assert record["counts"] == {"building": 1, "car": 2} and record["source"] == "potsdam"
    assert record["ann_ids"] == ["2:0", "5:0", "5:1"]
    # Mask regions are quantities of places, never digits.
    assert any("places with cars" in c for c in record["captions"])
    assert not any(ch.isdigit() for c in record["captions"] for ch in c)
    assert any("a place with buildings" in c for c in record["captions"])

    # captions: a Karpathy JSON; the captions are kept, blank sentences dropped.
    (tmp_path / "cap/images").mkdir(parents=True)
    Image.new("RGB", (300, 200)).save(tmp_path / "cap/images/1.tif")
    (tmp_path / "cap/d.json").write_text(json.dumps({"dataset": "ucm", "images": [
        {"filename": "1.tif", "split": "train", "sentences": [{"raw": "a farm ."}, {"raw": ""}]},
        {"filename": "2.tif", "split": "test", "sentences": [{"raw": "a river ."}]}]}))
    summary = convert.convert_dataset("captions", str(tmp_path / "cap/d.json"),
                                      str(tmp_path / "c"), image_size=50, progress=False)
    assert summary.skipped_counts["missing_image"] == 1
    record = RecordSource(tmp_path / "c")[0]
    assert record["captions"] == ["a farm ."] and record["split"] == "train"
    assert (record["width"], record["height"], record["source"]) == (75, 50, "ucm")

    # webdataset: two samples, one with a corrupt image.
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, format="PNG")
    with tarfile.open(tmp_path / "shard-0.tar", "w") as tar:
        for name, data in (("k1.png", buffer.getvalue()), ("k1.txt", b"a red roof"),
                           ("k2.jpg", b"broken"), ("k2.txt", b"nothing")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    summary = convert.convert_dataset("webdataset", str(tmp_path / "shard-0.tar"),
                                      str(tmp_path / "w"), source="rs5m", progress=False)
    assert summary.kept == 1 and summary.corrupt_images[0]["path"].endswith("#k2.jpg")
    record = RecordSource(tmp_path / "w")[0]
    assert (record["captions"], record["image_id"], record["source"]) == (["a red roof"], "k1",
                                                                          "rs5m")


def test_b2c_options_from_the_command_line(tmp_path):
    _dota_tree(tmp_path / "dota")
    assert cli.main(["convert-data", "dota", "--input", str(tmp_path / "dota/labelTxt"), "--out",
                         str(tmp_path / "o"), "--no-progress", "--no-difficult",
                         "--ignore-class", "plane", "--many-threshold", "1"]) == 0
    source = RecordSource(tmp_path / "o")
    assert len(source) == 1  # E has only a plane, now ignored
    record = source[0]
    assert record["counts"] == {"ship": 2} and record["ann_ids"] == ["A:3", "A:4"]
    assert not any("harbor" in c for c in record["captions"])  # the difficult harbor is gone
    count_captions = " ".join(record["captions"][2:]).lower()
    # Two ships exceed a threshold of 1: a vague quantifier, never the digit.
    assert "2 ships" not in count_captions and "ships" in count_captions


def test_cli_runs_as_a_module(tmp_path):
    _dota_tree(tmp_path / "dota")
    result = subprocess.run(
        [sys.executable, "-m", "remoteclip_jax.data.convert_annotations", "dota", "--input",
         str(tmp_path / "dota/labelTxt"), "--out", str(tmp_path / "o"), "--image-size", "32"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "converting dota" in result.stderr  # the tqdm bar
    assert "kept 2 of 5 images" in result.stdout


def test_real_dota_conversion(shared_data, tmp_path):
    summary = convert.convert_dataset("dota", str(shared_data / "detection/dota/labelTxt"),
                                      str(tmp_path / "dota"), image_size=64, progress=False)
    assert summary.kept == 6 and summary.skipped_counts["missing_image"] == 5
    source = RecordSource(tmp_path / "dota")
    p0706 = next(source[i] for i in range(len(source)) if source[i]["image_id"] == "P0706")
    assert p0706["counts"] == {"harbor": 5, "ship": 531}
    assert len(p0706["captions"]) == 5 and len(p0706["ann_ids"]) == 536


def _scenes(root, count, seed=0):
    """DOTA-style scenes: random sizes and boxes, one missing and one corrupt image."""
    rng = np.random.default_rng(seed)
    (root / "labelTxt").mkdir(parents=True)
    (root / "images").mkdir()
    for i in range(count):
        w, h = (int(v) for v in rng.integers(40, 160, 2))
        lines = []
        for _ in range(int(rng.integers(0, 6))):  # 0 boxes: skipped as "no objects"
            x, y = rng.uniform(0, w - 12), rng.uniform(0, h - 12)
            lines.append(f"{x:.1f} {y:.1f} {x + 10:.1f} {y:.1f} {x + 10:.1f} {y + 10:.1f} "
                         f"{x:.1f} {y + 10:.1f} {['ship', 'plane', 'harbor'][i % 3]} 0")
        (root / "labelTxt" / f"S{i:03d}.txt").write_text("\n".join(lines) + "\n")
        if i == 5:
            continue  # missing image
        path = root / "images" / f"S{i:03d}.png"
        if i == 7:
            path.write_bytes(b"\x89PNG broken")
        else:
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _without_time_and_place(d):
    """A summary or manifest less what differs between any two runs: wall time, output path."""
    for holder in (d, d.get("conversion", {})):
        holder.pop("elapsed_s", None)
        holder.pop("out", None)
    return d


def _same_files(one, other) -> list[str]:
    """Asserts two conversion folders hold the same files with the same bytes (JSON files less
    time and place); returns the file names."""
    files = sorted(p.name for p in one.iterdir())
    assert files == sorted(p.name for p in other.iterdir())  # no temporary files left
    for name in files:
        a, b = (one / name).read_bytes(), (other / name).read_bytes()
        if name.endswith(".json"):
            assert _without_time_and_place(json.loads(a)) == \
                _without_time_and_place(json.loads(b)), name
        else:
            assert a == b, name
    return files


def test_workers_write_the_same_bytes_as_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(convert, "_CHUNK", 3)  # several chunks per worker, out-of-order finishes
    _scenes(tmp_path / "dota", 30)
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        convert.convert_dataset("dota", str(tmp_path / "dota/labelTxt"), str(out), image_size=48,
                                shard_size=7, progress=False, workers=workers)
        outs[workers] = out
    files = _same_files(outs[1], outs[2])
    assert sum(name.endswith(".array_record") for name in files) >= 3
    summary = json.loads((outs[2] / "summary.json").read_text())
    assert summary["skipped_counts"]["missing_image"] == 1
    assert summary["skipped_counts"]["corrupt_image"] == 1


def test_workers_stop_at_max_images_like_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(convert, "_CHUNK", 2)
    _scenes(tmp_path / "dota", 16)
    kept = []
    for workers in (1, 3):
        out = tmp_path / f"out{workers}"
        convert.main(["dota", "--input", str(tmp_path / "dota/labelTxt"), "--out", str(out),
                      "--max-images", "4", "--workers", str(workers), "--no-progress"])
        source = RecordSource(out)
        kept.append([source.read_raw(i) for i in range(len(source))])
    assert len(kept[0]) == 4 and kept[0] == kept[1]
    assert cli.main(["convert-data", "dota", "--input", "x", "--out", "y", "--workers", "0"]) == 2


def test_runner_beam_without_apache_beam_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "apache_beam", None)
    _scenes(tmp_path / "dota", 2)
    code = cli.main(["convert-data", "dota", "--input", str(tmp_path / "dota/labelTxt"),
                     "--out", str(tmp_path / "out"), "--runner", "beam"])
    assert code == 2
    assert "install Apache Beam (pip install 'remoteclip_jax[beam]')" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_beam_direct_runner_writes_the_same_bytes_as_one_process(tmp_path, monkeypatch):
    pytest.importorskip("apache_beam")
    from remoteclip_jax.data import convert_beam

    monkeypatch.setattr(convert_beam, "CHUNK", 4)
    _scenes(tmp_path / "dota", 20)
    outs = []
    for runner, workers in (("local", 1), ("beam", 2)):
        out = tmp_path / runner
        convert.convert_dataset("dota", str(tmp_path / "dota/labelTxt"), str(out), image_size=48,
                                shard_size=6, progress=False, workers=workers, runner=runner)
        outs.append(out)
    _same_files(outs[0], outs[1])


def test_real_pairs_convert_to_the_same_bytes_with_two_workers(shared_data, tmp_path):
    pairs = shared_data / "rsicd_aid" / "train_tiny.jsonl"
    shards = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        summary = convert.convert_dataset("captions", str(pairs), str(out), shard_size=128,
                                          progress=False, workers=workers)
        assert summary.kept == 300
        shards.append([p.read_bytes() for p in sorted(out.glob("*.array_record"))])
    assert len(shards[0]) == 3 and shards[0] == shards[1]


def test_beam_chunk_files_go_under_the_pipelines_temp_location(tmp_path, monkeypatch):
    pytest.importorskip("apache_beam")
    from remoteclip_jax.data import convert_beam

    seen = []
    real = convert_beam._chunk_path
    monkeypatch.setattr(convert_beam, "_chunk_path",
                        lambda temp_dir, index: seen.append(temp_dir) or real(temp_dir, index))
    _scenes(tmp_path / "dota", 4)
    temp = tmp_path / "beam-temp"  # as Dataflow's --temp_location=gs://... would be
    convert.convert_dataset("dota", str(tmp_path / "dota/labelTxt"), str(tmp_path / "out"),
                            image_size=48, progress=False, runner="beam",
                            beam_options=f"--temp_location={temp}")
    assert seen and all(d.startswith(f"{temp}/.beam-tmp-") for d in seen)
    assert list(temp.iterdir()) == []  # removed once read back
    assert len(RecordSource(tmp_path / "out")) == 4
