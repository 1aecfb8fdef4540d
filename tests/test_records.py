"""The on-disk record format: round trips, manifest, sharding, and clear errors on bad files."""
import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.data import records
from remoteclip_jax.data.types import Box
from remoteclip_jax.errors import DataError


def _image(w=40, h=30, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _record(i, **extra):
    return {"image": records.encode_jpeg(_image(seed=i)), "captions": [f"caption {i}", "other"],
            "source": "a" if i % 3 else "b", "image_id": f"img{i}", "ann_ids": [i, f"x{i}"],
            **extra}


def _write(tmp_path, n, shard_size=4, **kw):
    out = tmp_path / "ds"
    with records.RecordWriter(out, shard_size=shard_size, **kw) as w:
        for i in range(n):
            w.write(_record(i))
    return out


def test_round_trip_preserves_fields_and_order(tmp_path):
    boxes = [Box("plane", 1, 2, 10, 12, difficult=True, ann_id="7")]
    out = tmp_path / "ds"
    with records.RecordWriter(out, shard_size=2) as w:
        for i in range(5):
            w.write(_record(i, label="airport", boxes=boxes, extra_key=[1, 2]))
    src = records.RecordSource(out)
    assert len(src) == 5
    for i in range(5):
        r = src[i]
        assert r["captions"] == [f"caption {i}", "other"]
        assert r["image_id"] == f"img{i}"
        assert r["ann_ids"] == [str(i), f"x{i}"]
        assert r["image"] == records.encode_jpeg(_image(seed=i))
        assert (r["width"], r["height"]) == (40, 30)
        assert r["label"] == "airport" and r["extra_key"] == [1, 2]
        assert records.boxes_from_record(r["boxes"]) == boxes


def test_manifest_names_shards_counts_sources_and_fields(tmp_path):
    out = _write(tmp_path, 10, shard_size=4, metadata={"summary": {"skipped": 2}})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 10
    assert [s["file"] for s in manifest["shards"]] == [
        "records-00000-of-00003.array_record", "records-00001-of-00003.array_record",
        "records-00002-of-00003.array_record"]
    assert [s["count"] for s in manifest["shards"]] == [4, 4, 2]
    assert manifest["sources"] == {"a": 6, "b": 4}
    assert {"image", "captions", "width", "height"} <= set(manifest["fields"])
    assert manifest["summary"] == {"skipped": 2}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [s["file"] for s in manifest["shards"]] + ["manifest.json"])


def test_source_over_single_shard_file_and_list(tmp_path):
    out = _write(tmp_path, 10, shard_size=4)
    files = sorted(out.glob("*.array_record"))
    single = records.RecordSource(files[1])
    assert len(single) == 4 and single[0]["image_id"] == "img4"
    both = records.RecordSource([files[2], files[0]])
    assert [both[i]["image_id"] for i in range(len(both))] == ["img8", "img9", "img0", "img1",
                                                                 "img2", "img3"]


def test_source_survives_pickling(tmp_path):
    src = records.RecordSource(_write(tmp_path, 6))
    src[0]  # open a reader before pickling
    clone = pickle.loads(pickle.dumps(src))
    assert [clone[i]["image_id"] for i in range(6)] == [f"img{i}" for i in range(6)]


def test_index_out_of_range(tmp_path):
    src = records.RecordSource(_write(tmp_path, 3))
    with pytest.raises(IndexError):
        src[3]


def test_missing_shard_error_names_path(tmp_path):
    out = _write(tmp_path, 10)
    (out / "records-00001-of-00003.array_record").unlink()
    with pytest.raises(DataError, match="records-00001-of-00003.*not found"):
        records.RecordSource(out)


def test_corrupt_shard_error_names_path(tmp_path):
    out = _write(tmp_path, 10)
    shard = out / "records-00002-of-00003.array_record"
    shard.write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="records-00002-of-00003.*corrupt"):
        records.RecordSource(out)


def test_missing_manifest_is_an_error(tmp_path):
    out = _write(tmp_path, 3)
    (out / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest not found"):
        records.RecordSource(out)


def test_truncated_manifest_count_mismatch(tmp_path):
    out = _write(tmp_path, 10)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][0]["count"] = 5
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="holds 4 records but"):
        records.RecordSource(out)


def test_corrupt_record_bytes_error():
    with pytest.raises(DataError, match="shard.x\\[3\\]: corrupt record"):
        records.deserialize_record(b"\xc1", where="shard.x[3]")
    with pytest.raises(DataError, match="not a map"):
        records.deserialize_record(records.msgpack.packb([1, 2]))


def test_empty_writer_is_an_error_and_writes_no_manifest(tmp_path):
    with pytest.raises(DataError):
        with records.RecordWriter(tmp_path / "empty"):
            pass
    assert not (tmp_path / "empty" / "manifest.json").exists()


def test_failed_conversion_leaves_no_partial_dataset(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(KeyError):
        with records.RecordWriter(out, shard_size=2) as w:
            for i in range(5):
                w.write(_record(i))
            raise KeyError("boom")
    assert list(out.iterdir()) == []


def test_writer_refuses_existing_dataset(tmp_path):
    out = _write(tmp_path, 3)
    with pytest.raises(DataError, match="already holds a dataset"):
        with records.RecordWriter(out):
            pass


def test_writer_rejects_malformed_records(tmp_path):
    with records.RecordWriter(tmp_path / "ds") as w:
        w.write(_record(0))
        with pytest.raises(DataError, match="missing field.*captions"):
            w.write({k: v for k, v in _record(1).items() if k != "captions"})
        with pytest.raises(DataError, match="list of strings"):
            w.write(_record(1) | {"captions": "just a string"})
        with pytest.raises(DataError, match="not a readable image"):
            w.write(_record(1) | {"image": b"not a jpeg"})


def test_encode_jpeg_shrinks_shortest_side_and_never_enlarges():
    im = Image.new("RGBA", (300, 200), (10, 200, 30, 128))
    decoded = Image.open(io.BytesIO(records.encode_jpeg(im, 100)))
    assert decoded.format == "JPEG" and decoded.mode == "RGB" and decoded.size == (150, 100)
    small = Image.open(io.BytesIO(records.encode_jpeg(Image.new("L", (50, 80)), 100)))
    assert small.size == (50, 80) and small.mode == "RGB"
    assert records.resized_size(300, 200, 100) == (150, 100)


def test_scale_boxes_follows_resize():
    boxes = records.scale_boxes([Box("ship", 10, 20, 30, 40)], 0.5, 0.25)
    assert boxes == [Box("ship", 5, 5, 15, 10)]


def test_split_index_selects_records_without_reading_them(tmp_path):
    out = tmp_path / "ds"
    splits = ["train", "test", "train", "val", "train", "test", "train"]
    with records.RecordWriter(out, shard_size=3) as w:
        for i, split in enumerate(splits):
            w.write(_record(i, split=split))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"] == {"test": {"count": 2, "file": "split-test.npy"},
                                  "train": {"count": 4, "file": "split-train.npy"},
                                  "val": {"count": 1, "file": "split-val.npy"}}
    train = records.RecordSource(out, split="train")
    assert [train[i]["image_id"] for i in range(len(train))] == ["img0", "img2", "img4", "img6"]
    assert all(train[i]["split"] == "train" for i in range(4))
    test = records.RecordSource(out, split="test")
    assert [test[i]["image_id"] for i in range(len(test))] == ["img1", "img5"]
    # Two directories: indices of the second are offset by the first's size.
    other = tmp_path / "other"
    with records.RecordWriter(other) as w:
        w.write(_record(9, split="test"))
    both = records.RecordSource([out, other], split="test")
    assert [both[i]["image_id"] for i in range(len(both))] == ["img1", "img5", "img9"]
    with pytest.raises(DataError, match="no split 'dev'; splits: test, train, val"):
        records.RecordSource(out, split="dev")
    with pytest.raises(DataError, match="needs a dataset directory"):
        records.RecordSource(out / "records-00000-of-00003.array_record", split="train")
    (out / "split-val.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match="split-val.npy"):
        records.RecordSource(out, split="val")


def test_dataset_without_splits_says_so(tmp_path):
    out = _write(tmp_path, 3)
    with pytest.raises(DataError, match="records carry no 'split'"):
        records.RecordSource(out, split="train")


def test_bad_split_name_is_rejected(tmp_path):
    with records.RecordWriter(tmp_path / "ds") as w:
        w.write(_record(0))
        with pytest.raises(DataError, match="plain name"):
            w.write(_record(1, split="../x"))


def test_overwrite_replaces_an_existing_dataset(tmp_path):
    out = _write(tmp_path, 10)
    with records.RecordWriter(out, shard_size=100, overwrite=True) as w:
        w.write(_record(42))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json",
                                                      "records-00000-of-00001.array_record"]
    assert records.RecordSource(out)[0]["image_id"] == "img42"
