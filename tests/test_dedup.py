"""pHash de-duplication: agreement with imagehash, edited copies found, distinct scenes not."""
import io
import json
import pathlib
import random

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from remoteclip_jax.data import dedup
from remoteclip_jax.data.types import AnnotatedImage
from remoteclip_jax.errors import ConfigError, DataError

imagehash = pytest.importorskip("imagehash")


def _imagehash_int(image) -> int:
    return int(str(imagehash.phash(image)), 16)


def _noise_image(seed, size=(96, 80)):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)


def _jpeg(image, quality):
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_phash_matches_imagehash_bit_for_bit_on_generated_images():
    for seed in range(20):
        image = _noise_image(seed)
        ours = dedup.phash(image)
        # Same hex string as imagehash: same bits in the same order.
        assert f"{ours:016x}" == str(imagehash.phash(image)), seed


def test_phash_matches_imagehash_on_real_aid_images(shared_data):
    paths = sorted((shared_data / "aid_150px").rglob("*.jpg"))
    paths = random.Random(1).sample(paths, 200)
    distances = [dedup.hamming(dedup.phash(p), _imagehash_int(Image.open(p))) for p in paths]
    # Both use PIL's greyscale and Lanczos resize; only float rounding at the median could differ.
    assert sum(d == 0 for d in distances) >= 0.98 * len(paths)
    assert max(distances) <= 2


def test_match_hashes_equals_a_brute_force_search():
    rng = np.random.default_rng(0)
    evaluation = rng.integers(0, 2**63, 50, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False)))
             for k in rng.integers(0, 8, 30)]
    train = np.concatenate([evaluation[:30] ^ np.array(flips, dtype=np.uint64),
                            rng.integers(0, 2**63, 40, dtype=np.uint64)])
    for threshold in (0, 2, 4, 7):
        expected = []
        for i, t in enumerate(train):
            distances = [bin(int(t) ^ int(e)).count("1") for e in evaluation]
            best = min(distances)
            if best <= threshold:
                expected.append((i, distances.index(best), best))
        got = list(zip(*(a.tolist() for a in dedup.match_hashes(train, evaluation, threshold))))
        assert got == expected, threshold


def test_edited_copies_are_found_and_distinct_scenes_are_not(shared_data):
    paths = random.Random(2).sample(sorted((shared_data / "aid_150px").rglob("*.jpg")), 150)
    originals = [Image.open(p).convert("RGB") for p in paths]
    # name -> (edit, share of copies that must be found). pHash is least robust to crops: a
    # shifted frame moves every DCT coefficient, so a 1-pixel crop of 150 px is the limit here.
    edits = {
        "jpeg q=50": (lambda im: _jpeg(im, 50), 0.97),
        "resize 0.8x": (lambda im: im.resize((120, 120), Image.Resampling.BILINEAR), 0.97),
        "brightness": (lambda im: ImageEnhance.Brightness(im).enhance(1.1), 0.97),
        "crop 1px": (lambda im: im.crop((1, 1, im.width - 1, im.height - 1)), 0.9),
    }
    eval_set = dedup.hash_images([AnnotatedImage(path=str(p)) for p in paths], progress=False)
    for name, (edit, share) in edits.items():
        copies = dedup.HashedImages([f"copy{i}" for i in range(len(paths))],
                                    np.array([dedup.phash(edit(im)) for im in originals],
                                             dtype=np.uint64))
        overlaps = dedup.find_overlaps(copies, eval_set, threshold=dedup.DEFAULT_THRESHOLD)
        correct = sum(o.eval == str(paths[int(o.train[4:])]) for o in overlaps)
        assert correct >= share * len(paths), name
    # Distinct scenes: no pair of the 150 originals lies within the default threshold.
    distances = np.bitwise_count(eval_set.hashes[:, None] ^ eval_set.hashes[None, :])
    np.fill_diagonal(distances, 64)
    assert distances.min() > dedup.DEFAULT_THRESHOLD


def test_exclusions_round_trip_and_filter(tmp_path):
    overlaps = [dedup.Overlap("train/a.jpg", "test/x.jpg", 2)]
    out = dedup.write_exclusions(tmp_path / "ex.json", overlaps, threshold=4)
    document = json.loads(out.read_text())
    assert document["excluded"][0]["distance"] == 2 and document["threshold"] == 4
    exclusions = dedup.load_exclusions(out)
    assert exclusions == {str(pathlib.Path("train/a.jpg").resolve())}
    items = [AnnotatedImage(path="train/a.jpg"), AnnotatedImage(path="train/./b.jpg")]
    assert [i.path for i in dedup.filter_excluded(items, exclusions)] == ["train/./b.jpg"]
    listing = tmp_path / "ex.txt"
    listing.write_text("# removed by hand\nimgs/a.jpg\n\n")
    assert dedup.load_exclusions(listing) == {str(tmp_path / "imgs" / "a.jpg")}
    (tmp_path / "bad.json").write_text('{"excluded": [{"path": 1}]}')
    with pytest.raises(DataError, match=r"bad.json: expected an object"):
        dedup.load_exclusions(tmp_path / "bad.json")


def _write_images(directory, seeds, edit=lambda im: im):
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        edit(_noise_image(seed, (64, 64))).save(directory / f"img{seed}.png")


def test_cli_writes_exclusions_for_folder_and_csv_specs(tmp_path, capsys):
    _write_images(tmp_path / "eval", range(3))
    _write_images(tmp_path / "train", range(2, 8), edit=lambda im: _jpeg(im, 60))
    (tmp_path / "train" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "more.csv").write_text("filepath\ttitle\neval/img1.png\tcaption\n")
    out = tmp_path / "ex.json"
    code = dedup.main(["--train", str(tmp_path / "train"), str(tmp_path / "more.csv"),
                       "--eval", str(tmp_path / "eval"), "--out", str(out), "--no-progress",
                       "--cache", str(tmp_path / "cache.jsonl")])
    assert code == 0
    document = json.loads(out.read_text())
    pairs = sorted((pathlib.Path(e["train"]).name, pathlib.Path(e["eval"]).name)
                   for e in document["excluded"])
    assert pairs == [("img1.png", "img1.png"), ("img2.png", "img2.png")]
    assert document["unreadable"][0]["path"].endswith("broken.png")
    assert "2 of 7 training images" in capsys.readouterr().out


def test_cache_resumes_without_rehashing(tmp_path, monkeypatch):
    _write_images(tmp_path / "imgs", range(3))
    paths = [str(p) for p in sorted((tmp_path / "imgs").iterdir())]
    cache = tmp_path / "cache.jsonl"
    first = dedup.hash_images(paths, progress=False, cache=cache)
    with cache.open("a") as f:
        f.write('{"path": "cut sho')  # an interrupted write
    monkeypatch.setattr(dedup, "phash", lambda image: pytest.fail("hashed again"))
    again = dedup.hash_images(paths, progress=False, cache=cache)
    assert again.paths == first.paths and (again.hashes == first.hashes).all()


def test_overlap_warning_names_pairs_or_is_none(tmp_path):
    _write_images(tmp_path / "a", range(2))
    _write_images(tmp_path / "b", [1, 5])
    a = sorted(str(p) for p in (tmp_path / "a").iterdir())
    b = sorted(str(p) for p in (tmp_path / "b").iterdir())
    overlaps, message = dedup.overlap_warning(a, b)
    assert [o.distance for o in overlaps] == [0]
    assert message.startswith("1 training images are near-duplicates") and "img1.png" in message
    assert dedup.overlap_warning(a[:1], b)[1] is None


def test_bad_spec_is_a_user_error(tmp_path):
    with pytest.raises(DataError, match="nope: no such file or folder"):
        dedup.main(["--train", str(tmp_path / "nope"), "--eval", str(tmp_path), "--out",
                    str(tmp_path / "x.json")])


def test_caption_file_specs_select_a_split_and_an_image_root(tmp_path):
    """The fine-tuning recipe's exclusion list: train split of a caption file against its own test
    split, images found under image_root, paths as the training source resolves them."""
    from remoteclip_jax.data import sources

    _write_images(tmp_path / "imgs", range(4))
    (tmp_path / "imgs" / "copy.png").write_bytes((tmp_path / "imgs" / "img3.png").read_bytes())
    doc = {"images": [{"filename": f"img{i}.png", "split": "train" if i < 3 else "test",
                       "sentences": [{"raw": "x"}]} for i in range(4)]}
    doc["images"].append({"filename": "copy.png", "split": "train", "sentences": [{"raw": "y"}]})
    captions = tmp_path / "meta" / "dataset.json"            # images are not beside the file
    captions.parent.mkdir()
    captions.write_text(json.dumps(doc))
    root = tmp_path / "imgs"
    out = tmp_path / "ex.json"
    dedup.main(["--train", f"{captions}?split=train&image_root={root}",
                "--eval", f"{captions}?split=test&image_root={root}", "--out", str(out),
                "--no-progress"])
    document = json.loads(out.read_text())
    assert [pathlib.Path(e["train"]).name for e in document["excluded"]] == ["copy.png"]
    assert document["num_train_images"] == 4 and document["num_eval_images"] == 1
    spec = sources.normalize_spec({"kind": "caption_json", "path": str(captions), "split": "train",
                                   "image_root": str(root), "exclude": str(out)})
    kept = sources.build_source(spec)
    assert len(kept) == 3
    with pytest.raises(ConfigError, match=r"does not read 'splt'; did you mean 'split'"):
        sources.parse_spec(f"{captions}?splt=test")
    with pytest.raises(DataError, match=r"no such exclusion list; write one"):
        dedup.load_exclusions(tmp_path / "missing.json")
