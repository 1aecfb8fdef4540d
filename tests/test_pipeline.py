"""grain pipeline: determinism, exact resume, per-process sharding, mixing, captions, bad input."""
import collections
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax import tokenizer, transforms
from remoteclip_jax.data import pipeline, readers, records, sources, synthetic
from remoteclip_jax.errors import ConfigError, DataError

SIZE = 32  # model input side in these tests: small keeps the suite fast


def _synthetic(n, seed=0, **extra):
    return {"kind": "synthetic", "num_images": n, "image_size": 64, "seed": seed, **extra}


def _take(it, n):
    out = [next(it) for _ in range(n)]
    return out


def _ids(batches):
    return [(int(s), int(i)) for b in batches for s, i in zip(b["source_id"], b["index"])]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["images"], y["images"])
        np.testing.assert_array_equal(x["texts"], y["texts"])


def test_batches_have_the_documented_shapes_and_dtypes():
    it = pipeline.make_train_iterator([_synthetic(12)], batch_size_per_process=4,
                                      image_size=SIZE, seed=0, epochs=1)
    batches = list(it)
    it.close()
    assert len(batches) == 3 and set(batches[0]) == {"images", "texts"}
    assert batches[0]["images"].shape == (4, SIZE, SIZE, 3)
    assert batches[0]["images"].dtype == np.float32
    assert batches[0]["texts"].shape == (4, 77) and batches[0]["texts"].dtype == np.int32
    assert it.examples_per_epoch == 12 and it.steps_per_epoch == 3
    assert it.stats.num_examples == 12 and it.stats.num_skipped == 0


def test_texts_are_the_tokenised_sampled_caption_and_images_the_train_transform():
    src = synthetic.SyntheticSource(8, 64, seed=0)
    it = pipeline.make_train_iterator([_synthetic(8)], batch_size_per_process=4, image_size=SIZE,
                                      seed=5, epochs=1, with_metadata=True)
    batch = next(it)
    it.close()
    tf = transforms.image_transform(SIZE, train=True)
    for k in range(4):
        item = src[int(batch["index"][k])]
        assert batch["caption"][k] in item["captions"]
        np.testing.assert_array_equal(batch["texts"][k],
                                      tokenizer.tokenize([batch["caption"][k]])[0])
        # The augmentation is random: check it is a crop of this image, not of another one.
        image = Image.fromarray(item["image"])
        others = [tf(image, np.random.default_rng(r)) for r in range(20)]
        nearest = min(np.abs(o - batch["images"][k]).mean() for o in others)
        wrong = min(np.abs(tf(Image.fromarray(src[j]["image"]), np.random.default_rng(0))
                           - batch["images"][k]).mean()
                    for j in range(8) if j != int(batch["index"][k]))
        assert nearest < wrong


def test_same_seed_same_batches_other_seed_other_order():
    kwargs = dict(batch_size_per_process=4, image_size=SIZE, epochs=1)
    a = list(pipeline.make_train_iterator([_synthetic(16)], seed=1, **kwargs))
    b = list(pipeline.make_train_iterator([_synthetic(16)], seed=1, **kwargs))
    _assert_same_batches(a, b)
    c = list(pipeline.make_train_iterator([_synthetic(16)], seed=2, with_metadata=True, **kwargs))
    d = list(pipeline.make_train_iterator([_synthetic(16)], seed=1, with_metadata=True, **kwargs))
    assert _ids(c) != _ids(d) and sorted(_ids(c)) == sorted(_ids(d))


def test_each_epoch_is_a_new_permutation_of_all_images():
    it = pipeline.make_train_iterator([_synthetic(12)], batch_size_per_process=4, image_size=SIZE,
                                      seed=0, epochs=3, with_metadata=True)
    batches = list(it)
    ids = _ids(batches)
    epochs = [ids[0:12], ids[12:24], ids[24:36]]
    for e, chunk in enumerate(epochs):
        assert sorted(chunk) == [(0, i) for i in range(12)]
        assert all(int(x) == e for b in batches[3 * e:3 * e + 3] for x in b["epoch"])
    assert epochs[0] != epochs[1] != epochs[2]


def test_restoring_state_mid_epoch_continues_exactly():
    kwargs = dict(batch_size_per_process=3, image_size=SIZE, seed=4, epochs=3,
                  with_metadata=True)
    sources = [_synthetic(10), _synthetic(7, seed=9, weight=0.5)]
    reference = list(pipeline.make_train_iterator(sources, **kwargs))
    _assert_resumes_exactly(sources, kwargs, reference, stops=(2, 5))  # mid-epoch and across


def _assert_resumes_exactly(sources, kwargs, reference, stops):
    """Stopping after each of `stops` batches and resuming from the saved state gives `reference`."""
    for stop in stops:
        it = pipeline.make_train_iterator(sources, **kwargs)
        head = _take(it, stop)
        state = json.loads(json.dumps(it.get_state()))  # as a checkpoint stores it
        it.close()
        resumed = pipeline.make_train_iterator(sources, **kwargs)
        resumed.set_state(state)
        tail = list(resumed)
        _assert_same_batches(head + tail, reference)
        assert [b["caption"] for b in head + tail] == [b["caption"] for b in reference]


def test_two_processes_see_disjoint_data_covering_everything():
    kwargs = dict(batch_size_per_process=3, image_size=SIZE, seed=3, epochs=1,
                  process_count=2, with_metadata=True)
    sources = [_synthetic(13), _synthetic(6, seed=1)]
    p0 = _ids(pipeline.make_train_iterator(sources, process_index=0, **kwargs))
    p1 = _ids(pipeline.make_train_iterator(sources, process_index=1, **kwargs))
    # 19 examples, global batch 6: 3 full steps, the same number on both processes.
    assert len(p0) == len(p1) == 9
    assert not set(p0) & set(p1)
    assert len(set(p0) | set(p1)) == 18
    full = set(_ids(pipeline.make_train_iterator(sources, **{**kwargs, "process_count": 1,
                                                             "batch_size_per_process": 19})))
    assert full == {(0, i) for i in range(13)} | {(1, i) for i in range(6)}
    assert set(p0) | set(p1) <= full


def test_two_processes_cover_everything_over_an_infinite_stream():
    kwargs = dict(batch_size_per_process=5, image_size=SIZE, seed=0, process_count=2,
                  with_metadata=True)
    p0 = _take(pipeline.make_train_iterator([_synthetic(10)], process_index=0, **kwargs), 1)
    p1 = _take(pipeline.make_train_iterator([_synthetic(10)], process_index=1, **kwargs), 1)
    assert sorted(_ids(p0) + _ids(p1)) == [(0, i) for i in range(10)]


def test_mixing_weights_are_respected():
    sources = [_synthetic(20, weight=1.0), _synthetic(20, seed=1, weight=3.0)]
    it = pipeline.make_train_iterator(sources, batch_size_per_process=8, image_size=SIZE,
                                      seed=0, epochs=1, with_metadata=True)
    batches = list(it)
    assert it.examples_per_epoch == 80
    counts = collections.Counter(_ids(batches))
    assert all(counts[(0, i)] == 1 and counts[(1, i)] == 3 for i in range(20))
    # Shuffled across sources: the first half of the epoch already has ~3:1 proportions.
    first = [s for s, _ in _ids(batches[:5])]
    share = first.count(1) / len(first)
    assert abs(share - 0.75) < 3 * np.sqrt(0.75 * 0.25 / len(first))
    assert pipeline.examples_per_epoch(sources) == 80


def test_fractional_weight_takes_a_fresh_subset_each_epoch():
    sources = [_synthetic(20, weight=0.5)]
    it = pipeline.make_train_iterator(sources, batch_size_per_process=5, image_size=SIZE,
                                      seed=0, epochs=3, with_metadata=True)
    ids = _ids(list(it))
    epochs = [set(ids[k * 10:(k + 1) * 10]) for k in range(3)]
    assert all(len(e) == 10 for e in epochs)
    assert len(epochs[0] | epochs[1] | epochs[2]) > 10


def test_one_caption_per_image_per_epoch_and_it_varies_across_epochs():
    kwargs = dict(batch_size_per_process=4, image_size=SIZE, seed=0, epochs=4,
                  with_metadata=True)
    src = synthetic.SyntheticSource(8, 64, seed=0)
    batches = list(pipeline.make_train_iterator([_synthetic(8)], **kwargs))
    seen = collections.defaultdict(list)
    for b in batches:
        for e, i, cap in zip(b["epoch"], b["index"], b["caption"]):
            seen[(int(e), int(i))].append(cap)
            assert cap in src[int(i)]["captions"]
    assert sorted(seen) == [(e, i) for e in range(4) for i in range(8)]
    assert all(len(v) == 1 for v in seen.values())
    per_image = [{seen[(e, i)][0] for e in range(4)} for i in range(8)]
    assert sum(len(s) > 1 for s in per_image) >= 4


def test_infinite_stream_runs_past_one_epoch():
    it = pipeline.make_train_iterator([_synthetic(6)], batch_size_per_process=4, image_size=SIZE,
                                      seed=0)
    assert len(_take(it, 5)) == 5 and it.num_batches is None


def _write_records_with_a_corrupt_image(path):
    good = records.encode_jpeg(Image.new("RGB", (40, 40), (200, 10, 10)))
    with records.RecordWriter(path, shard_size=3) as w:
        for i in range(6):
            image = good[:len(good) // 3] if i == 4 else good  # valid header, truncated data
            # width/height given: the writer trusts them and skips its header check.
            w.write({"image": image, "captions": [f"red square {i}"], "source": "t",
                     "image_id": str(i), "ann_ids": [], "width": 40, "height": 40})


def test_corrupt_and_missing_images_are_skipped_and_reported(tmp_path):
    _write_records_with_a_corrupt_image(tmp_path / "rec")
    Image.new("RGB", (40, 40)).save(tmp_path / "ok.png")
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"image": "ok.png", "captions": ["a"]}) + "\n"
        + json.dumps({"image": "missing.png", "captions": ["b"]}) + "\n"
        + json.dumps({"image": "ok.png", "captions": ["  "]}) + "\n")
    sources = [{"kind": "records", "path": str(tmp_path / "rec")},
               {"kind": "jsonl", "path": str(tmp_path / "list.jsonl")}]
    it = pipeline.make_train_iterator(sources, batch_size_per_process=1, image_size=SIZE, seed=0,
                                      epochs=1)
    batches = list(it)
    it.close()
    assert it.stats.num_skipped == 3
    assert len(batches) == 6  # 9 minus 3 skipped
    reasons = dict(it.stats.skipped)
    assert any(k.endswith("missing.png") for k in reasons)
    assert any("rec" in k and "[4]" in k for k in reasons), reasons
    assert "no non-blank caption" in reasons[str(tmp_path / "ok.png")]
    assert "3 inputs skipped" in it.stats.summary()


def test_empty_sources_are_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl"):
        pipeline.make_train_iterator([{"kind": "jsonl", "path": str(tmp_path / "empty.jsonl")}],
                                     batch_size_per_process=2, image_size=SIZE, seed=0)
    with pytest.raises(DataError):
        pipeline.make_train_iterator([], batch_size_per_process=2, image_size=SIZE, seed=0)
    with pytest.raises(DataError, match="less than one global batch"):
        pipeline.make_train_iterator([_synthetic(3)], batch_size_per_process=4,
                                     image_size=SIZE, seed=0, epochs=1)


def _write_webdataset(path, n):
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for i in range(n):
            buf = io.BytesIO()
            Image.new("RGB", (30 + i, 30), (i * 20, 0, 0)).save(buf, "PNG" if i % 2 else "JPEG")
            add(f"shard/{i:04d}.{'png' if i % 2 else 'jpg'}", buf.getvalue())
            if i % 3:
                add(f"shard/{i:04d}.txt", f"caption {i}".encode())
            else:
                add(f"shard/{i:04d}.json", json.dumps({"caption": f"caption {i}"}).encode())
        add("shard/orphan.txt", b"no image")


def test_webdataset_source_random_access(tmp_path):
    _write_webdataset(tmp_path / "a.tar", 5)
    _write_webdataset(tmp_path / "b.tar", 3)
    src = readers.WebDatasetSource(tmp_path)
    assert len(src) == 8 and src.incomplete == 2
    item = src[6]  # b.tar, sample 1
    assert item["captions"] == ["caption 1"]
    assert Image.open(io.BytesIO(item["image"])).size == (31, 30)
    it = pipeline.make_train_iterator([{"kind": "webdataset", "path": str(tmp_path / "*.tar")}],
                                      batch_size_per_process=4, image_size=SIZE, seed=0,
                                      epochs=1)
    assert len(list(it)) == 2 and it.stats.num_skipped == 0
    (tmp_path / "c.tar").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="c.tar"):
        readers.WebDatasetSource(tmp_path)


def test_eval_dataset_pads_and_shards_in_order():
    src = synthetic.SyntheticSource(10, 64, seed=0)
    tf = transforms.image_transform(SIZE, train=False)
    seen = []
    for p in range(2):
        data = pipeline.make_eval_dataset(_synthetic(10), image_size=SIZE, batch_size=4,
                                          process_index=p, process_count=2)
        batches = list(data)
        assert len(batches) == data.num_batches == 2
        for b in batches:
            for k in range(4):
                if b["mask"][k]:
                    i = int(b["index"][k])
                    seen.append(i)
                    np.testing.assert_allclose(b["images"][k], tf(Image.fromarray(src[i]["image"])))
                    assert b["captions"][k] == src[i]["captions"]
                else:
                    assert b["index"][k] == -1
    assert sorted(seen) == list(range(10))


def test_eval_dataset_reports_unreadable_images(tmp_path):
    _write_records_with_a_corrupt_image(tmp_path / "rec")
    data = pipeline.make_eval_dataset({"kind": "records", "path": str(tmp_path / "rec")},
                                      image_size=SIZE, batch_size=4)
    batches = list(data)
    assert [list(b["mask"]) for b in batches] == [[True] * 4, [False, True, False, False]]
    assert data.stats.num_skipped == 1 and "[4]" in data.stats.skipped[0][0]


def test_jsonl_on_real_rsicd_aid(shared_data):
    path = shared_data / "rsicd_aid" / "val_tiny.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    data = pipeline.make_eval_dataset({"kind": "jsonl", "path": str(path)}, image_size=SIZE,
                                      batch_size=8)
    batch = next(iter(data))
    tf = transforms.image_transform(SIZE, train=False)
    for k in range(8):
        ref = tf(Image.open(shared_data / lines[k]["image"]).convert("RGB"))
        np.testing.assert_allclose(batch["images"][k], ref)
        # The readers collapse runs of spaces (RSICD has "rectangles  next").
        assert batch["captions"][k] == [" ".join(c.split()) for c in lines[k]["captions"]]
    it = pipeline.make_train_iterator([{"kind": "jsonl", "path": str(path)}],
                                      batch_size_per_process=16, image_size=SIZE, seed=0,
                                      epochs=1)
    assert len(list(it)) == len(lines) // 16 and it.stats.num_skipped == 0


@pytest.mark.slow
def test_worker_processes_give_deterministic_resumable_batches():
    kwargs = dict(batch_size_per_process=4, image_size=SIZE, seed=0, epochs=2, num_workers=2)
    reference = list(pipeline.make_train_iterator([_synthetic(24)], **kwargs))
    assert len(reference) == 12
    it = pipeline.make_train_iterator([_synthetic(24)], **kwargs)
    head = _take(it, 5)
    state = it.get_state()
    it.close()
    resumed = pipeline.make_train_iterator([_synthetic(24)], **kwargs)
    resumed.set_state(state)
    tail = list(resumed)
    resumed.close()
    _assert_same_batches(head + tail, reference)


def test_caption_json_source_written_by_the_test(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.new("RGB", (40, 36), (60 * i, 0, 0)).save(tmp_path / "images" / f"{i}.tif")
    entries = [{"filename": f"{i}.tif", "split": "train" if i < 3 else "test",
                "sentences": [{"raw": f"scene {i} a"}, {"raw": f"scene {i} b"}]} for i in range(4)]
    (tmp_path / "dataset_x.json").write_text(json.dumps({"images": entries, "dataset": "x"}))
    spec = {"kind": "caption_json", "path": str(tmp_path / "dataset_x.json"), "split": "train"}
    it = pipeline.make_train_iterator([spec], batch_size_per_process=3, image_size=SIZE, seed=0,
                                      epochs=1, with_metadata=True)
    (batch,) = list(it)
    assert sorted(batch["index"]) == [0, 1, 2] and it.stats.num_skipped == 0
    for i, cap in zip(batch["index"], batch["caption"]):
        assert cap in (f"scene {i} a", f"scene {i} b")


def test_caption_json_on_real_rsicd_aid(shared_data):
    path = shared_data / "rsicd_aid" / "dataset_rsicd_aid_trainval.json"
    entries = [e for e in json.loads(path.read_text())["images"] if e["split"] == "val"]
    data = pipeline.make_eval_dataset({"kind": "caption_json", "path": str(path), "split": "val",
                                       "image_root": str(shared_data)}, image_size=SIZE,
                                      batch_size=4)
    assert data.num_images == len(entries)
    batch = next(iter(data))
    assert batch["mask"].all()
    assert batch["captions"][0] == [" ".join(s["raw"].split()) for s in entries[0]["sentences"]]


def test_iterator_state_round_trips_through_orbax_with_grains_handler(tmp_path):
    import grain
    import orbax.checkpoint as ocp

    kwargs = dict(batch_size_per_process=4, image_size=SIZE, seed=0, epochs=2)
    reference = list(pipeline.make_train_iterator([_synthetic(10)], **kwargs))
    it = pipeline.make_train_iterator([_synthetic(10)], **kwargs)
    head = _take(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
    resumed = pipeline.make_train_iterator([_synthetic(10)], **kwargs)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.restore(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    _assert_same_batches(head + list(resumed), reference)


def test_skips_at_the_end_of_the_stream_are_still_reported(tmp_path):
    Image.new("RGB", (40, 40)).save(tmp_path / "ok.png")
    (tmp_path / "list.jsonl").write_text("".join(
        json.dumps({"image": name, "captions": ["a"]}) + "\n"
        for name in ("ok.png", "gone1.png", "gone2.png")))
    spec = {"kind": "jsonl", "path": str(tmp_path / "list.jsonl")}
    for seed in range(6):  # every order of the good image among the two missing ones
        it = pipeline.make_train_iterator([spec], batch_size_per_process=1, image_size=SIZE,
                                          seed=seed, epochs=1)
        assert len(list(it)) == 1
        assert it.stats.num_skipped == 2, seed


# --- pairs="caption": an epoch is every (image, caption) pair once ------------------------------


def _write_jsonl_with_caption_counts(tmp_path, caption_lists):
    """Images 0..n-1 with the given captions each; returns the jsonl source spec."""
    lines = []
    for i, captions in enumerate(caption_lists):
        Image.new("RGB", (40, 36), (30 * i, 90, 0)).save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "captions": captions}))
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return {"kind": "jsonl", "path": str(tmp_path / "pairs.jsonl"), "pairs": "caption"}


# Images with 1, 2, 3 and 5 captions; a blank caption (RSITMD has 20) makes no pair.
_CAPTIONS = [["only one"], ["two a", "two b"], ["three a", " ", "three b", "three c"],
             [f"five {k}" for k in "abcde"]]
_PAIRS = {(i, c) for i, caps in enumerate(_CAPTIONS) for c in caps if c.strip()}


def _pairs_by_epoch(batches):
    seen = collections.defaultdict(list)
    for b in batches:
        for e, i, cap in zip(b["epoch"], b["index"], b["caption"]):
            seen[int(e)].append((int(i), cap))
    return seen


def test_pairs_caption_uses_every_pair_exactly_once_per_epoch(tmp_path):
    spec = _write_jsonl_with_caption_counts(tmp_path, _CAPTIONS)
    it = pipeline.make_train_iterator([spec], batch_size_per_process=1, image_size=SIZE, seed=0,
                                      epochs=3, with_metadata=True)
    assert it.examples_per_epoch == len(_PAIRS) == 11
    assert pipeline.examples_per_epoch([spec]) == 11
    seen = _pairs_by_epoch(list(it))
    assert sorted(seen) == [0, 1, 2]
    for pairs in seen.values():
        assert len(pairs) == len(set(pairs)) and set(pairs) == _PAIRS
    assert seen[0] != seen[1]  # a new order each epoch
    # The default keeps one caption per image per epoch.
    image_spec = {**spec, "pairs": "image"}
    assert pipeline.examples_per_epoch([image_spec]) == len(_CAPTIONS)


def test_pairs_caption_with_weight_two_uses_every_pair_twice(tmp_path):
    spec = {**_write_jsonl_with_caption_counts(tmp_path, _CAPTIONS), "weight": 2.0}
    it = pipeline.make_train_iterator([spec], batch_size_per_process=1, image_size=SIZE, seed=1,
                                      epochs=1, with_metadata=True)
    counts = collections.Counter(_pairs_by_epoch(list(it))[0])
    assert set(counts) == _PAIRS and set(counts.values()) == {2}


def test_pairs_caption_is_deterministic_and_resumes_exactly_mid_epoch(tmp_path):
    spec = _write_jsonl_with_caption_counts(tmp_path, _CAPTIONS)
    sources = [spec, _synthetic(3, seed=5)]  # mixed with a one-caption-per-image source
    kwargs = dict(batch_size_per_process=3, image_size=SIZE, seed=2, epochs=2,
                  with_metadata=True)
    reference = list(pipeline.make_train_iterator(sources, **kwargs))
    again = list(pipeline.make_train_iterator(sources, **kwargs))
    _assert_same_batches(reference, again)
    other = list(pipeline.make_train_iterator(sources, **{**kwargs, "seed": 3}))
    assert [b["caption"] for b in other] != [b["caption"] for b in reference]
    # Mid-epoch, and past the first epoch boundary (14 pairs per epoch, 3 per batch).
    _assert_resumes_exactly(sources, kwargs, reference, stops=(2, 5))


def test_caption_counts_of_record_shards_match_their_captions(tmp_path):
    synthetic.write_synthetic_records(tmp_path / "rec", 6, image_size=32, seed=0)
    src = records.RecordSource(tmp_path / "rec")
    expected = [len([c for c in src[i]["captions"] if c.strip()]) for i in range(len(src))]
    np.testing.assert_array_equal(pipeline.caption_counts(src), expected)
    spec = {"kind": "records", "path": str(tmp_path / "rec"), "pairs": "caption"}
    assert pipeline.examples_per_epoch([spec]) == sum(expected)


def test_unknown_pairs_value_is_refused():
    with pytest.raises(ConfigError, match="pairs"):
        sources.normalize_spec({"kind": "synthetic", "pairs": "captions"})
    with pytest.raises(ConfigError, match="does not read 'pairs'"):
        sources.normalize_spec({"kind": "image_folder", "path": "x", "pairs": "caption"})
