"""Embedding store: clip-retrieval's file layout (read back with pyarrow itself), each image once
with its captions mapped to it, atomic shards, refusal to mix runs, JSON Lines fallback, stores of
earlier versions read or refused in one line."""
import json
import os

import numpy as np
import pytest

from remoteclip_jax.data.store import EmbeddingStore, StoreWriter, shard_tag
from remoteclip_jax.errors import DataError

IDENTITY = {"rows_sha1": "abc", "num_rows": 4, "shard_size": 3}


def _write(root, metadata_format="parquet", identity=IDENTITY):
    """Images a..d (shards of 3 and 1), captions 2, 1, 0 and 2 of them."""
    writer = StoreWriter(str(root), identity, {"model": "m"}, 2, ("image", "text"), metadata_format)
    rng = np.random.default_rng(0)
    image, text = rng.standard_normal((4, 4)), rng.standard_normal((5, 4))
    writer.write_shard(0, {"image": image[:3], "text": text[:3]},
                       {"image": {"image_path": ["/d/a.jpg", "/d/b.jpg", "/d/c.jpg"]},
                        "text": {"caption": ["x", "y", "z"], "image_path": ["/d/a.jpg", "/d/a.jpg", "/d/b.jpg"],
                                 "image": [0, 0, 1]}})
    writer.write_shard(1, {"image": image[3:], "text": text[3:]},
                       {"image": {"image_path": ["/d/d.jpg"]},
                        "text": {"caption": ["u", "v"], "image_path": ["/d/d.jpg"] * 2, "image": [0, 0]}},
                       skipped=[("/d/f.jpg", "/d/f.jpg: unreadable")])
    return writer, image.astype(np.float32), text.astype(np.float32)


def test_layout_is_clip_retrievals_with_each_image_once(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    writer, image, text = _write(tmp_path)
    assert writer.finish() == [("/d/f.jpg", "/d/f.jpg: unreadable")]
    for name in ("img_emb/img_emb_0000.npy", "img_emb/img_emb_0001.npy", "text_emb/text_emb_0001.npy",
                 "metadata/metadata_0000.parquet", "metadata/captions_0001.parquet", "store.json",
                 "skipped.csv"):
        assert (tmp_path / name).is_file(), name
    np.testing.assert_array_equal(np.load(tmp_path / "img_emb/img_emb_0001.npy"), image[3:])
    table = pq.read_table(tmp_path / "metadata/captions_0000.parquet")
    assert table.column_names == ["caption", "image_path", "image"]
    assert str(table.schema.field("image").type) == "int64"   # typed columns, not strings
    assert json.loads((tmp_path / "store.json").read_text())["complete"] is True
    store = EmbeddingStore(str(tmp_path))
    np.testing.assert_array_equal(store.features("image"), image)
    np.testing.assert_array_equal(store.features("text"), text)
    assert store.metadata()["image_path"] == ["/d/a.jpg", "/d/b.jpg", "/d/c.jpg", "/d/d.jpg"]
    captions = store.metadata("text")
    assert captions["caption"] == ["x", "y", "z", "u", "v"] and captions["image"] == [0, 0, 1, 3, 3]
    assert len(store) == 4 and store.embed_dim == 4


def test_jsonl_metadata_fallback_reads_back_the_same(tmp_path):
    writer, image, _ = _write(tmp_path, "jsonl")
    writer.finish()
    first = (tmp_path / "metadata/metadata_0000.jsonl").read_text().splitlines()[0]
    assert json.loads(first) == {"image_path": "/d/a.jpg"}
    store = EmbeddingStore(str(tmp_path))
    assert store.metadata("text")["image"] == [0, 0, 1, 3, 3]
    np.testing.assert_array_equal(store.features("image"), image)


def test_a_store_of_other_inputs_is_refused_unless_overwrite(tmp_path):
    _write(tmp_path, "jsonl")[0].finish()
    other = {**IDENTITY, "rows_sha1": "def"}
    with pytest.raises(DataError, match="differs in rows_sha1"):
        StoreWriter(str(tmp_path), other, {}, 2, ("image", "text"), "jsonl")
    writer = StoreWriter(str(tmp_path), other, {}, 2, ("image", "text"), "jsonl", overwrite=True)
    assert not writer.is_done(0) and not (tmp_path / "img_emb/img_emb_0000.npy").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="afile: is a file"):
        StoreWriter(str(tmp_path / "afile"), other, {}, 2, ("image",), "jsonl")


def test_shard_counts_as_done_only_with_its_marker_and_files(tmp_path):
    writer, _, _ = _write(tmp_path, "jsonl")
    assert writer.is_done(0) and writer.is_done(1)
    os.remove(tmp_path / "text_emb/text_emb_0001.npy")
    assert not writer.is_done(1)
    # A reader refuses a store whose run has not finished.
    with pytest.raises(DataError, match="has not finished"):
        EmbeddingStore(str(tmp_path))


def test_stale_temporary_files_of_a_killed_run_are_removed(tmp_path):
    _write(tmp_path, "jsonl")
    stale = tmp_path / "img_emb" / ".img_emb_0002.x1y2.tmp.npy"
    stale.write_bytes(b"half")
    StoreWriter(str(tmp_path), IDENTITY, {}, 2, ("image", "text"), "jsonl")
    assert not stale.exists()


def test_shard_numbers_have_one_sortable_width():
    assert shard_tag(7, 10) == "0007"
    assert shard_tag(7, 123456) == "000007"
    assert shard_tag(0, 1) == "0000"


def test_folder_without_embeddings_is_not_a_store(tmp_path):
    with pytest.raises(DataError, match="not an embedding store"):
        EmbeddingStore(str(tmp_path))


def test_stores_of_earlier_versions_are_read_or_refused_in_one_line(tmp_path):
    # Version 1: one metadata row per (image, caption) pair, row-aligned with both folders.
    v1 = tmp_path / "v1"
    for folder in ("img_emb", "text_emb", "metadata"):
        (v1 / folder).mkdir(parents=True)
    np.save(v1 / "img_emb" / "img_emb_0000.npy", np.eye(2, 4, dtype=np.float32)[[0, 0, 1]])
    np.save(v1 / "text_emb" / "text_emb_0000.npy", np.eye(3, 4, dtype=np.float32))
    (v1 / "metadata" / "metadata_0000.jsonl").write_text("".join(
        json.dumps({"image_path": p, "caption": c}) + "\n" for p, c in
        (("a.jpg", "x"), ("a.jpg", "y"), ("b.jpg", "z"))))
    (v1 / "store.json").write_text(json.dumps({"identity": {"version": 1}, "info": {}, "complete": True}))
    store = EmbeddingStore(str(v1))
    assert store.metadata()["image_path"] == ["a.jpg", "a.jpg", "b.jpg"]
    assert store.metadata("text")["caption"] == ["x", "y", "z"]
    # The scene tile stores of the same era kept embeddings/img_emb/ and another store.json.
    tiles = tmp_path / "tiles"
    (tiles / "embeddings" / "img_emb").mkdir(parents=True)
    (tiles / "store.json").write_text(json.dumps({"settings": {}, "ranges": []}))
    with pytest.raises(DataError, match="scene tile store of an earlier remoteclip_jax") as e:
        EmbeddingStore(str(tiles))
    assert "\n" not in str(e.value) and "embed the scene again" in str(e.value)
