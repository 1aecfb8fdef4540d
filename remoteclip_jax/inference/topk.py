"""Top-k inner-product search of query vectors over an embedding store.

Exact search streams the store through the device in fixed-size chunks (the last one padded and
masked), so memory stays at one chunk plus the running top-k whatever the store's size, and one
compiled program serves every chunk. `method="approx"` uses `jax.lax.approx_max_k` per chunk
(TPU's partial-reduce top-k; other backends compute it exactly). For very large stores a faiss
index (`pip install faiss-cpu`) can be built from the store once and searched instead.
"""
from __future__ import annotations

import functools
import json
import math
import os
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.lazy import optional_module
from remoteclip_jax.files import atomic_write, write_json

METHODS = ("exact", "approx")
DEFAULT_CHUNK_ROWS = 65_536


@functools.partial(jax.jit, static_argnames=("k", "approx", "recall_target"))
def _chunk_step(queries, chunk, valid, offset, best_scores, best_index, *, k, approx,
                recall_target):
    """Merges the top-k of one chunk into the running top-k; rows >= `valid` are padding."""
    scores = jnp.dot(queries, chunk.T, precision=jax.lax.Precision.HIGHEST)
    scores = jnp.where(jnp.arange(chunk.shape[0])[None, :] < valid, scores, -jnp.inf)
    kc = min(k, chunk.shape[0])
    if approx:
        top_s, top_i = jax.lax.approx_max_k(scores, kc, recall_target=recall_target)
    else:
        top_s, top_i = jax.lax.top_k(scores, kc)
    merged_s = jnp.concatenate([best_scores, top_s], axis=1)
    merged_i = jnp.concatenate([best_index, top_i.astype(jnp.int32) + offset], axis=1)
    keep_s, at = jax.lax.top_k(merged_s, k)
    return keep_s, jnp.take_along_axis(merged_i, at, axis=1)


def _chunks(shards: Iterable[np.ndarray], rows: int) -> Iterable[tuple[np.ndarray, int]]:
    """Re-cuts shard arrays into (rows, E) float32 chunks; yields (chunk, valid rows)."""
    buffer, filled = None, 0
    for shard in shards:
        start = 0
        while start < len(shard):
            if buffer is None:
                buffer, filled = np.zeros((rows, shard.shape[1]), np.float32), 0
            take = min(rows - filled, len(shard) - start)
            buffer[filled:filled + take] = shard[start:start + take]
            filled, start = filled + take, start + take
            if filled == rows:
                yield buffer, rows
                buffer = None
    if buffer is not None and filled:
        buffer[filled:] = 0
        yield buffer, filled


def top_k(queries, shards: Iterable[np.ndarray], k: int, *, num_rows: int | None = None,
          method: str = "exact", chunk_rows: int = DEFAULT_CHUNK_ROWS,
          recall_target: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The k store rows of largest inner product with each query.

    Args:
        queries: (Q, E) query vectors (unit rows for cosine similarity).
        shards: the store's (n, E) arrays in row order (e.g. `EmbeddingStore.shards()`).
        k: hits per query (fewer when the store is smaller).
        num_rows: store size, to size chunks of small stores (default: `chunk_rows`).
        method: "exact" (`jax.lax.top_k`) or "approx" (`jax.lax.approx_max_k`).
        chunk_rows: rows per device step; bounds device memory.
        recall_target: for "approx".

    Returns:
        (scores (Q, k') float32, row indices (Q, k') int64), best first, k' = min(k, rows).
    """
    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    queries = jnp.asarray(np.asarray(queries, np.float32))
    rows = max(1, min(int(chunk_rows), int(num_rows or chunk_rows)))
    best_s = jnp.full((queries.shape[0], k), -jnp.inf, jnp.float32)
    best_i = jnp.full((queries.shape[0], k), -1, jnp.int32)
    seen = 0
    for chunk, valid in _chunks(shards, rows):
        best_s, best_i = _chunk_step(queries, jnp.asarray(chunk), valid, seen, best_s, best_i,
                                     k=k, approx=method == "approx", recall_target=recall_target)
        seen += valid
    kept = min(k, seen)
    return np.asarray(best_s)[:, :kept], np.asarray(best_i)[:, :kept].astype(np.int64)


def _faiss():
    return optional_module("faiss", "faiss search needs faiss: install faiss-cpu (pip install "
                           "faiss-cpu), or search without --faiss-index (exact search on the device)")


def build_faiss_index(store, path: str, index_key: str = "Flat", train_rows: int = 100_000) -> str:
    """Writes a faiss inner-product index of a store's image rows to `path`, and beside it
    ``path.json`` naming the store (its fingerprint and rows), so search refuses the index
    with any other store.

    Args:
        store: an `EmbeddingStore` (or its image shards, in row order: nothing is recorded).
        path: the index file.
        index_key: a `faiss.index_factory` key: "Flat" (exact), "IVF1024,Flat", "HNSW32", ...
        train_rows: rows used to train indexes that need training (the first ones).
    """
    faiss = _faiss()
    shards = list(store.shards("image") if hasattr(store, "shards") else store)
    index = faiss.index_factory(shards[0].shape[1], index_key, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(np.concatenate([np.asarray(s, np.float32) for s in shards])[:train_rows])
    for shard in shards:
        index.add(np.ascontiguousarray(shard, np.float32))
    with atomic_write(path, None) as tmp:
        faiss.write_index(index, tmp)
    if hasattr(store, "fingerprint"):
        write_json(f"{path}.json", {"store": store.fingerprint, "rows": int(index.ntotal)})
    return path


def faiss_top_k(queries, index_path: str, k: int, nprobe: int | None = None, store=None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Searches a faiss index file (ours, or one autofaiss built from the store's img_emb/).

    Args:
        store: the `EmbeddingStore` the rows belong to: an index of another store (by its
            record beside the index, or its row count or width) is refused.

    Returns:
        (scores (Q, k'), row indices (Q, k')) as `top_k`; rows faiss could not fill are dropped.

    Raises:
        DataError: a file that is not a faiss index, or an index of another store.
    """
    faiss = _faiss()
    if not os.path.isfile(index_path):
        raise DataError(f"{index_path}: faiss index not found")
    try:
        index = faiss.read_index(index_path)
    except RuntimeError as e:
        raise DataError(f"{index_path}: not a faiss index ({str(e).splitlines()[0][:80]}); "
                        "build one from the store (inference.topk.build_faiss_index)") from None
    if store is not None:
        record = {}
        if os.path.isfile(f"{index_path}.json"):
            with open(f"{index_path}.json", encoding="utf-8") as f:
                record = json.load(f)
        if record.get("store", store.fingerprint) != store.fingerprint or \
                index.ntotal != len(store) or index.d != store.embed_dim:
            raise DataError(f"{index_path}: built from another store than {store.root} "
                            f"({index.ntotal} rows of width {index.d}, the store has {len(store)} "
                            f"of width {store.embed_dim}); build the index from this store")
    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = nprobe
    scores, ids = index.search(np.ascontiguousarray(queries, np.float32), k)
    filled = int((ids >= 0).all(axis=0).sum()) if len(ids) else 0
    return scores[:, :filled].astype(np.float32), ids[:, :filled].astype(np.int64)


def duplicates_factor(keys) -> int:
    """Largest number of rows that share one key (e.g. an image with five caption rows)."""
    counts: dict = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=1)


def distinct_hits(scores: np.ndarray, index: np.ndarray, keys, k: int) -> list[list[tuple[int, float]]]:
    """Per query, the first k hits with distinct keys, as (row, score), best first."""
    out = []
    for s_row, i_row in zip(scores, index):
        seen, hits = set(), []
        for s, i in zip(s_row, i_row):
            if i < 0 or keys[i] in seen or not math.isfinite(s):
                continue
            seen.add(keys[i])
            hits.append((int(i), float(s)))
            if len(hits) == k:
                break
        out.append(hits)
    return out
