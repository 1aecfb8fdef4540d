"""embed: store contents equal direct model.apply features of real AID images and captions; a run
killed with SIGKILL resumes without recomputing finished shards and ends equal to an
uninterrupted run; unreadable images are left out and listed."""
import csv
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.inference.embedding import embed, store_rows
from remoteclip_jax.inference.encoder import Encoder
from remoteclip_jax.data.store import EmbeddingStore
from tests.helpers.cli import ROOT, cli_env
from tests.helpers.inference import (aid_subset, cli_command, corrupt_images, random_images,
                                     reference_image_features, reference_text_features,
                                     save_model_dir, tiny_model)
from remoteclip_jax.errors import ConfigError


@pytest.fixture(scope="module")
def encoder():
    return Encoder(*tiny_model(), batch_size=8)


def test_image_store_of_real_aid_images_equals_direct_apply(encoder, shared_data, tmp_path):
    pytest.importorskip("pyarrow")
    paths = aid_subset(shared_data, tmp_path / "aid", per_class=4)
    summary = embed(tmp_path / "aid", str(tmp_path / "store"), encoder=encoder, shard_size=5)
    assert (summary.rows, summary.shards, summary.computed) == (12, 3, 3)
    store = EmbeddingStore(str(tmp_path / "store"))
    assert store.metadata() == {"image_path": paths}
    np.testing.assert_allclose(store.features("image"),
                               reference_image_features(*tiny_model(), paths), atol=2e-6)
    # Rerun: nothing to compute.
    again = embed(tmp_path / "aid", str(tmp_path / "store"), encoder=encoder, shard_size=5)
    assert again.computed == 0


def test_caption_file_gives_row_aligned_image_and_caption_pairs(encoder, shared_data, tmp_path):
    source = shared_data / "rsicd_aid" / "val_tiny.jsonl"
    if not source.is_file():
        pytest.skip(f"{source} absent")
    lines = [json.loads(line) for line in source.read_text().splitlines()[:4]]
    subset = tmp_path / "pairs.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in lines))
    embed(subset, str(tmp_path / "store"), encoder=encoder, shard_size=7,
          image_root=str(shared_data), metadata_format="jsonl")
    store = EmbeddingStore(str(tmp_path / "store"))
    images, captions = store.metadata("image"), store.metadata("text")
    # Each image once; each caption names its image's row.
    assert [os.path.realpath(p) for p in images["image_path"]] == \
        [os.path.realpath(shared_data / r["image"]) for r in lines] and len(store) == 4
    assert captions["caption"] == [" ".join(c.split()) for r in lines for c in r["captions"]]
    assert captions["image"] == [i for i, r in enumerate(lines) for _ in r["captions"]]
    model, variables = tiny_model()
    np.testing.assert_allclose(store.features("text"),
                               reference_text_features(model, variables, captions["caption"]), atol=2e-6)
    np.testing.assert_allclose(store.features("image"),
                               reference_image_features(model, variables, images["image_path"]),
                               atol=2e-6)


def test_unreadable_images_are_left_out_and_listed(encoder, tmp_path):
    good = random_images(tmp_path / "imgs", 4)
    bad = corrupt_images(tmp_path / "imgs" / "zz_bad")
    summary = embed(tmp_path / "imgs", str(tmp_path / "store"), encoder=encoder, shard_size=3,
                    metadata_format="jsonl")
    assert summary.rows == 4 and sorted(p for p, _ in summary.skipped) == sorted(bad)
    store = EmbeddingStore(str(tmp_path / "store"))
    assert store.metadata()["image_path"] == good
    with open(tmp_path / "store" / "skipped.csv", newline="") as f:
        assert sorted(r[0] for r in list(csv.reader(f))[1:]) == sorted(bad)


def test_text_modality_needs_a_caption_file(tmp_path):
    random_images(tmp_path, 1)
    with pytest.raises(ConfigError, match="needs a caption file"):
        store_rows(tmp_path, "text")


def _shard_files(out, index):
    tag = f"{index:04d}"
    return [out / "img_emb" / f"img_emb_{tag}.npy", out / "metadata" / f"metadata_{tag}.jsonl",
            out / ".progress" / f"shard_{tag}.json"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe (POSIX)")
def test_sigkilled_run_resumes_without_recomputing_finished_shards(tmp_path):
    model_dir = save_model_dir(tiny_model()[1], tmp_path / "model")
    paths = random_images(tmp_path / "imgs", 40)
    # Image 27 (in shard 3 of 8-row shards) is a named pipe: decoding blocks there until the test
    # replaces it, so the run is deterministically mid-way, shards 0 and 1 written, when killed.
    blocker = paths[27]
    os.remove(blocker)
    os.mkfifo(blocker)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    out = tmp_path / "store"
    args = ("embed", listing, "--model", model_dir, "--out", out, "--shard-size", "8",
            "--batch-size", "8", "--metadata", "jsonl")
    process = subprocess.Popen(cli_command(*args), cwd=ROOT, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not all(f.exists() for i in (0, 1) for f in _shard_files(out, i)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "first shards never appeared"
            time.sleep(0.1)
        time.sleep(1.0)  # let it run on into the pipe
        assert process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not any(f.exists() for i in range(3, 5) for f in _shard_files(out, i))
    before = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for i in (0, 1) for f in _shard_files(out, i)}

    os.remove(blocker)
    Image.fromarray(np.full((40, 47, 3), 77, np.uint8)).save(blocker, format="PNG")
    done = subprocess.run(cli_command(*args), cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    kept = len([i for i in range(5) if all(f in before for f in _shard_files(out, i))])
    assert f"({kept} kept from an earlier run)" in done.stdout and kept == 2
    for f, stat in before.items():
        assert (f.stat().st_ino, f.stat().st_mtime_ns) == stat, f"{f} was rewritten"

    reference = tmp_path / "uninterrupted"
    embed(listing, str(reference), model=tiny_model(), shard_size=8, metadata_format="jsonl")
    resumed, whole = EmbeddingStore(str(out)), EmbeddingStore(str(reference))
    assert resumed.metadata() == whole.metadata()
    np.testing.assert_allclose(resumed.features("image"), whole.features("image"), atol=1e-6)
    assert not list((out / "img_emb").glob(".*tmp*"))
    shutil.rmtree(out)
