"""Embedding store: clip-retrieval's file layout (read back with pyarrow itself), atomic shards,
refusal to mix runs, JSON Lines fallback."""
import json
import os

import numpy as np
import pytest

from remoteclip_jax.inference.store import EmbeddingStore, StoreWriter, shard_tag
from remoteclip_jax.errors import DataError

IDENTITY = {"rows_sha1": "abc", "num_rows": 5, "shard_size": 3}


def _write(root, metadata_format="parquet", identity=IDENTITY):
    writer = StoreWriter(str(root), identity, {"model": "m"}, 2, ("image", "text"), metadata_format)
    rng = np.random.default_rng(0)
    image, text = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    writer.write_shard(0, {"image": image[:3], "text": text[:3]},
                       {"image_path": ["a.jpg", "b.jpg", "c.jpg"], "caption": ["x", "y", "z"]})
    writer.write_shard(1, {"image": image[3:], "text": text[3:]},
                       {"image_path": ["d.jpg", "e.jpg"], "caption": ["u", "v"]},
                       skipped=[("f.jpg", "f.jpg: unreadable")])
    return writer, image.astype(np.float32), text.astype(np.float32)


def test_layout_is_clip_retrievals_and_parquet_reads_with_pyarrow(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    writer, image, text = _write(tmp_path)
    assert writer.finish() == [("f.jpg", "f.jpg: unreadable")]
    for name in ("img_emb/img_emb_0000.npy", "img_emb/img_emb_0001.npy", "text_emb/text_emb_0001.npy",
                 "metadata/metadata_0000.parquet", "metadata/metadata_0001.parquet", "store.json",
                 "skipped.csv"):
        assert (tmp_path / name).is_file(), name
    np.testing.assert_array_equal(np.load(tmp_path / "img_emb/img_emb_0001.npy"), image[3:])
    table = pq.read_table(tmp_path / "metadata/metadata_0000.parquet")
    assert table.column_names == ["image_path", "caption"]
    assert table.column("image_path").to_pylist() == ["a.jpg", "b.jpg", "c.jpg"]
    assert json.loads((tmp_path / "store.json").read_text())["complete"] is True
    store = EmbeddingStore(str(tmp_path))
    np.testing.assert_array_equal(store.features("image"), image)
    np.testing.assert_array_equal(store.features("text"), text)
    assert store.metadata()["caption"] == ["x", "y", "z", "u", "v"] and len(store) == 5


def test_jsonl_metadata_fallback_reads_back_the_same(tmp_path):
    writer, image, _ = _write(tmp_path, "jsonl")
    writer.finish()
    first = (tmp_path / "metadata/metadata_0000.jsonl").read_text().splitlines()[0]
    assert json.loads(first) == {"image_path": "a.jpg", "caption": "x"}
    store = EmbeddingStore(str(tmp_path))
    assert store.metadata()["image_path"] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    np.testing.assert_array_equal(store.features("image"), image)


def test_a_store_of_other_inputs_is_refused_unless_overwrite(tmp_path):
    _write(tmp_path, "jsonl")[0].finish()
    other = {**IDENTITY, "rows_sha1": "def"}
    with pytest.raises(DataError, match="differs in rows_sha1"):
        StoreWriter(str(tmp_path), other, {}, 2, ("image", "text"), "jsonl")
    writer = StoreWriter(str(tmp_path), other, {}, 2, ("image", "text"), "jsonl", overwrite=True)
    assert not writer.is_done(0) and not (tmp_path / "img_emb/img_emb_0000.npy").exists()


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
    stale = tmp_path / "img_emb" / ".img_emb_0002.npy.tmp999"
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
