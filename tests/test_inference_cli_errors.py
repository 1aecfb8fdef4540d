"""The inference and scene commands on bad input: one line naming the file and the fix, exit 2,
no traceback, and nothing half written: the corrected command run afterwards succeeds.

One table, run in-process through `remoteclip_jax.cli.main` (the same `guarded` wrapper as the
console script; one compile of the tiny model for all cases). Ctrl-C needs a real process and
has its own test."""
import json
import os
import signal
import subprocess
import time
import types
import warnings

import numpy as np
import pytest

from remoteclip_jax import cli
from tests.helpers import inference as ih
from tests.helpers.cli import ROOT, cli_env


@pytest.fixture(scope="module")
def f(tmp_path_factory):
    """The files the cases use, made once."""
    from remoteclip_jax.data.store import EmbeddingStore
    from remoteclip_jax.inference.embedding import embed
    from remoteclip_jax.weights.model_dir import save_orbax

    tmp = tmp_path_factory.mktemp("cli_errors")
    ns = types.SimpleNamespace(tmp=tmp)
    ns.model = ih.save_model_dir(ih.tiny_model()[1], tmp / "model")
    ns.model16 = ih.save_model_dir(ih.tiny_model(embed_dim=16)[1], tmp / "model16", embed_dim=16)
    # model.json names a deeper vision tower than the variables hold.
    ns.mislabelled = str(tmp / "mislabelled")
    save_orbax(ih.tiny_model()[1], ns.mislabelled,
               {**ih.rc.models.TINY_VIT, "vision_cfg": {**ih.rc.models.TINY_VIT["vision_cfg"],
                                                        "layers": 3}})
    ns.narrower = str(tmp / "narrower")  # model.json: another width than the variables
    save_orbax(ih.tiny_model()[1], ns.narrower, {**ih.rc.models.TINY_VIT, "embed_dim": 16})
    ns.images = tmp / "images"
    ih.random_images(ns.images, 5)
    ih.random_images(tmp / "three", 3, seed=1)
    ns.store, other = str(tmp / "store"), str(tmp / "store3")
    embed(str(ns.images), ns.store, model=ih.tiny_model(), progress=False)
    embed(str(tmp / "three"), other, model=ih.tiny_model(), progress=False)
    ns.index, ns.other_index, ns.junk_index = (str(tmp / n) for n in ("good.index", "other.index",
                                                                      "junk.index"))
    (tmp / "junk.index").write_bytes(b"this is not a faiss index")
    try:
        from remoteclip_jax.inference.topk import build_faiss_index

        import faiss  # noqa: F401
        build_faiss_index(EmbeddingStore(ns.store), ns.index)
        build_faiss_index(EmbeddingStore(other), ns.other_index)
        ns.faiss = True
    except ImportError:
        ns.faiss = False
    (tmp / "a_file").write_text("x")
    # The scene tile store of an earlier version: embeddings/img_emb/ and {settings, ranges}.
    old = tmp / "old_tiles"
    (old / "embeddings" / "img_emb").mkdir(parents=True)
    np.save(old / "embeddings" / "img_emb" / "img_emb_0000.npy", np.eye(2, 32, dtype=np.float32))
    (old / "store.json").write_text(json.dumps({"settings": {}, "ranges": []}))
    ns.old_store = str(old)
    try:
        from tests.helpers import geo as gs

        rng = np.random.default_rng(0)
        ns.scene = gs.write_rgb(tmp / "small.tif", rng.integers(0, 256, (60, 80, 3), np.uint8))
        ns.rasterio = True
    except ImportError:
        ns.rasterio = False
    return ns


def _search(f, *more):
    return ["search", f.store, "--model", f.model, "--text", "a river", "--top-k", "2", *more]


# name, needs, (argv, exit code, words the last stderr line holds, the corrected argv)
CASES = {
    "search with a model of another embedding size": (
        None, lambda f: (["search", f.store, "--model", f.model16, "--text", "a river"], 2,
                         "holds 32-dimensional embeddings but --model gives 16", _search(f))),
    "embed --out an existing file": (
        None, lambda f: (["embed", f.images, "--model", f.model, "--out", f.tmp / "a_file"], 2,
                         "a_file: is a file",
                         ["embed", f.images, "--model", f.model, "--out", f.tmp / "new_store"])),
    "--faiss-index that is not an index": (
        "faiss", lambda f: (_search(f, "--faiss-index", f.junk_index), 2,
                            "junk.index: not a faiss index", _search(f, "--faiss-index", f.index))),
    "--faiss-index built from another store": (
        "faiss", lambda f: (_search(f, "--faiss-index", f.other_index), 2,
                            "other.index: built from another store",
                            _search(f, "--faiss-index", f.index))),
    "model.json of another architecture than its variables": (
        None, lambda f: (["classify", f.images, "--model", f.mislabelled, "--classes", "a,b"], 2,
                         "mislabelled",
                         ["classify", f.images, "--model", f.model, "--classes", "a,b",
                          "--out", f.tmp / "classified"])),
    "model.json of another width than its variables": (
        None, lambda f: (["embed", f.images, "--model", f.narrower, "--out", f.tmp / "s16"], 2,
                         "text_projection']: stored (64, 32), expected (64, 16)",
                         ["embed", f.images, "--model", f.model, "--out", f.tmp / "s16"])),
    "--templates without {}": (
        None, lambda f: (["classify", f.images, "--model", f.model, "--classes", "a,b",
                          "--templates", "a photo", "--out", f.tmp / "t"], 2,
                         "write {} where the class name goes",
                         ["classify", f.images, "--model", f.model, "--classes", "a,b",
                          "--templates", "a photo of {}", "--out", f.tmp / "t"])),
    "--tile larger than the scene": (
        "rasterio", lambda f: (["classify", f.scene, "--model", f.model, "--classes", "a,b",
                                "--tile", "100", "--out", f.tmp / "tiles"], 2,
                               "--tile 100: larger than the scene (80 x 60 px)",
                               ["classify", f.scene, "--model", f.model, "--classes", "a,b",
                                "--tile", "40", "--out", f.tmp / "tiles"])),
    "a scene tile store of an earlier version": (
        None, lambda f: (["search", f.old_store, "--model", f.model, "--text", "x"], 2,
                         "a scene tile store of an earlier remoteclip_jax", _search(f))),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_exit_2_and_the_corrected_command_then_succeeds(f, name, capsys):
    needs, make = CASES[name]
    if needs and not getattr(f, needs):
        pytest.skip(f"needs {needs}")
    argv, code, words, fixed = make(f)
    assert cli.main([os.fspath(a) for a in argv]) == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("error: ") and words in last, err
    assert cli.main([os.fspath(a) for a in fixed]) == 0, capsys.readouterr().err


def test_a_plain_image_as_a_scene_says_so_in_one_line_and_in_the_output(f, tmp_path, capsys):
    """No rasterio warning leaks; the GeoJSON says its coordinates are pixels."""
    if not f.rasterio:
        pytest.skip("needs rasterio")
    png = ih.random_images(tmp_path / "png", 1, size=64)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["classify", png, "--model", f.model, "--classes", "a,b", "--tile", "32",
                         "--out", str(tmp_path / "out")]) == 0
    assert not [w for w in caught if "NotGeoreferenced" in type(w.message).__name__]
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "no georeferencing" in line] == \
        [f"warning: {png} has no georeferencing (no CRS): outputs are in pixel coordinates"]
    tiles = json.loads((tmp_path / "out" / "tiles.geojson").read_text())
    assert "pixel units" in tiles["properties"]["warning"]


@pytest.mark.slow  # moved out of the default suite to keep it under CI's budget
def test_ctrl_c_is_one_line_exit_130_and_the_rerun_resumes(f, tmp_path):
    """SIGINT while `embed` works: one line, exit 130, no traceback; the same command then
    finishes the store."""
    images = tmp_path / "many"
    ih.random_images(images, 40, size=48)
    argv = ih.cli_command("embed", images, "--model", f.model, "--out", tmp_path / "store",
                          "--shard-size", "4", "--batch-size", "4", "--metadata", "jsonl")
    proc = subprocess.Popen(argv, cwd=ROOT, env=cli_env(1), stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    marker = tmp_path / "store" / "store.json"
    deadline = time.time() + 240
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("embed finished before the interrupt arrived")
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == \
        "interrupted; rerun the same command to resume (finished work is kept)"
    again = subprocess.run(argv, cwd=ROOT, env=cli_env(1), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "embedded 40 rows" in again.stdout
