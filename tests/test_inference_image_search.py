"""search: text -> image and image -> image hits over a store of real AID images equal a direct
float64 computation; the console command prints them and writes results.csv and sheets."""
import csv
import subprocess

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.inference.embedding import embed
from remoteclip_jax.inference.encoder import Encoder
from remoteclip_jax.inference.image_search import search
from tests.helpers.cli import ROOT, cli_env
from tests.helpers.inference import (aid_subset, cli_command, reference_image_features,
                                     reference_text_features, save_model_dir, tiny_model)
from remoteclip_jax.errors import ConfigError, DataError

QUERIES = ["many airplanes parked next to the terminal", "waves on a sandy beach"]


@pytest.fixture(scope="module")
def aid_store(shared_data, tmp_path_factory):
    pytest.importorskip("pyarrow")  # the stores below use the default Parquet metadata
    root = tmp_path_factory.mktemp("search")
    paths = aid_subset(shared_data, root / "aid", per_class=4)
    encoder = Encoder(*tiny_model(), batch_size=8)
    embed(root / "aid", str(root / "store"), encoder=encoder, shard_size=5)
    return root, paths, encoder


def _reference_hits(paths, queries, k):
    """Per query: the top-k (path, score) and every image's score, in float64."""
    model, variables = tiny_model()
    scores = queries @ reference_image_features(model, variables, paths).T
    order = np.argsort(-scores, axis=1)[:, :k]
    return [([(paths[i], scores[q, i]) for i in row], dict(zip(paths, scores[q])))
            for q, row in enumerate(order)]


def _assert_hits_equal(found, expected, atol=1e-5):
    """Same top-k scores, and each hit really has the score it is listed with (so two images
    whose scores are within `atol` may swap ranks without failing the test)."""
    for hits, (ref, all_scores) in zip(found, expected):
        assert len(hits) == len(ref) == len({p for p, _ in hits})
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in ref], atol=atol)
        np.testing.assert_allclose([s for _, s in hits], [all_scores[p] for p, _ in hits], atol=atol)


def test_text_and_image_queries_equal_direct_computation(aid_store, tmp_path):
    root, paths, encoder = aid_store
    model, variables = tiny_model()
    results = search(str(root / "store"), texts=QUERIES, images=[paths[5]], encoder=encoder, k=4,
                     chunk_rows=3, out_dir=str(tmp_path), sheet="png")
    queries = np.concatenate([reference_text_features(model, variables, QUERIES),
                              reference_image_features(model, variables, [paths[5]])])
    _assert_hits_equal([r.hits for r in results], _reference_hits(paths, queries, 4))
    assert results[2].is_image and results[2].hits[0][0] == paths[5]  # an image finds itself
    assert (tmp_path / "contact_sheet.png").is_file() and not (tmp_path / "contact_sheet.html").exists()
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["query", "rank", "score", "image_path"] and len(rows) == 1 + 3 * 4


def test_pairs_store_gives_distinct_images(aid_store, tmp_path):
    root, paths, encoder = aid_store
    captions = tmp_path / "captions.csv"
    with open(captions, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "title"])
        for p in paths[:6]:
            writer.writerows([(p, "a first caption"), (p, "another caption of it")])
    embed(str(captions), str(tmp_path / "pairs"), encoder=encoder, shard_size=4)
    found = search(str(tmp_path / "pairs"), texts=QUERIES[:1], encoder=encoder, k=5)[0].hits
    model, variables = tiny_model()
    _assert_hits_equal([found], _reference_hits(paths[:6], reference_text_features(
        model, variables, QUERIES[:1]), 5))


def test_faiss_index_gives_the_exact_hits(aid_store):
    pytest.importorskip("faiss")
    from remoteclip_jax.data.store import EmbeddingStore
    from remoteclip_jax.inference.topk import build_faiss_index

    root, paths, encoder = aid_store
    index = build_faiss_index(EmbeddingStore(str(root / "store")), str(root / "knn.index"))
    exact = search(str(root / "store"), texts=QUERIES, encoder=encoder, k=5)
    via_faiss = search(str(root / "store"), texts=QUERIES, encoder=encoder, k=5, faiss_index=index)
    model, variables = tiny_model()
    expected = _reference_hits(paths, reference_text_features(model, variables, QUERIES), 5)
    _assert_hits_equal([r.hits for r in exact], expected)
    _assert_hits_equal([r.hits for r in via_faiss], expected)


def test_console_command_prints_hits_and_writes_sheets(aid_store, tmp_path):
    root, paths, encoder = aid_store
    model_dir = save_model_dir(tiny_model()[1], tmp_path / "model")
    done = subprocess.run(cli_command("search", root / "store", "--model", model_dir,
                                      "--text", QUERIES[0], "--k", "3", "--out", tmp_path / "hits"),
                          cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = [line.split() for line in done.stdout.splitlines() if line.startswith("  ")]
    model, variables = tiny_model()
    expected = _reference_hits(paths, reference_text_features(model, variables, QUERIES[:1]), 3)
    _assert_hits_equal([[(p[2], float(p[1])) for p in printed]], expected, atol=1e-4)  # 4 decimals
    sheet = Image.open(tmp_path / "hits" / "contact_sheet.png")
    assert sheet.width > 3 * 160 and (tmp_path / "hits" / "contact_sheet.html").is_file()


def test_bad_queries_and_stores_are_user_errors(aid_store, tmp_path):
    root, paths, encoder = aid_store
    with pytest.raises(ConfigError, match="no query"):
        search(str(root / "store"), encoder=encoder)
    with pytest.raises(DataError, match="not an embedding store"):
        search(str(tmp_path), texts=["x"], encoder=encoder)
    with pytest.raises(DataError, match="query image"):
        search(str(root / "store"), images=[str(tmp_path / "absent.jpg")], encoder=encoder)


def test_a_folder_store_is_searched_from_another_directory_with_real_thumbnails(
        shared_data, tmp_path, monkeypatch, capsys):
    """embed a folder named relative to one working directory, search from another: the hits'
    thumbnails are the images' own; images moved away afterwards are warned about."""
    from remoteclip_jax.inference.contact_sheet import THUMB, _data_uri

    aid_subset(shared_data, tmp_path / "here" / "aid", per_class=2)
    encoder = Encoder(*tiny_model(), batch_size=8)
    monkeypatch.chdir(tmp_path / "here")
    embed("aid", "store", encoder=encoder, metadata_format="jsonl")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    results = search("../here/store", texts=QUERIES[:1], encoder=encoder, k=3, out_dir="hits",
                     sheet="html")
    page = (tmp_path / "elsewhere" / "hits" / "contact_sheet.html").read_text()
    grey = _data_uri(str(tmp_path / "absent.jpg"), THUMB)
    for hit, _ in results[0].hits:
        assert hit.startswith(str(tmp_path / "here" / "aid"))
        assert _data_uri(hit, THUMB) in page and _data_uri(hit, THUMB) != grey
    assert grey not in page and "warning" not in capsys.readouterr().err
    (tmp_path / "here" / "aid").rename(tmp_path / "here" / "moved")
    search("../here/store", texts=QUERIES[:1], encoder=encoder, k=3, out_dir="hits", sheet="html")
    assert "warning: 3 hit images are not at their stored path" in capsys.readouterr().err
