"""Chunked device top-k equals a float64 numpy argsort over the whole store, whatever the chunk
and shard boundaries; faiss agrees; hits are made distinct by image."""
import numpy as np
import pytest

from remoteclip_jax.inference.topk import (build_faiss_index, distinct_hits, duplicates_factor,
                                           faiss_top_k, top_k)


def _store(rows=103, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((5, dim))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


def _numpy_top(x, q, k):
    scores = q.astype(np.float64) @ x.astype(np.float64).T
    order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("chunk_rows, shard_sizes", [(16, (50, 3, 50)), (1000, (103,)), (7, (1,) * 103)])
def test_exact_top_k_equals_numpy_over_any_chunking(chunk_rows, shard_sizes):
    x, q = _store()
    shards = np.split(x, np.cumsum(shard_sizes)[:-1])
    scores, index = top_k(q, shards, 9, num_rows=len(x), chunk_rows=chunk_rows)
    ref_scores, ref_index = _numpy_top(x, q, 9)
    np.testing.assert_array_equal(index, ref_index)  # random unit vectors: no near-ties
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)


def test_k_larger_than_the_store_returns_every_row_and_approx_agrees():
    x, q = _store(rows=6)
    scores, index = top_k(q, [x], 10)
    assert index.shape == (5, 6)
    np.testing.assert_array_equal(index, _numpy_top(x, q, 6)[1])
    approx = top_k(q, [x], 4, method="approx")[1]
    np.testing.assert_array_equal(approx, _numpy_top(x, q, 4)[1])  # exact on CPU


def test_faiss_flat_index_agrees_with_exact_search(tmp_path):
    pytest.importorskip("faiss")
    x, q = _store()
    path = build_faiss_index(np.split(x, [40]), str(tmp_path / "knn.index"))
    scores, index = faiss_top_k(q, path, 9)
    ref_scores, ref_index = _numpy_top(x, q, 9)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_distinct_hits_keep_the_best_row_of_each_image():
    keys = ["a", "a", "b", "c", "b"]
    assert duplicates_factor(keys) == 2
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    index = np.array([[1, 0, 4, 2, 3]])
    assert distinct_hits(scores, index, keys, 3) == [[(1, 0.9), (4, 0.7), (3, 0.5)]]
