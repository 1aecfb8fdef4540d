"""Batched, device-sharded feature extraction with a resumable on-disk cache.

Images (or token ids) are cut into fixed-size batches (padded, so one compilation serves all),
each batch is split over a 1-D ``data`` mesh of this process's devices with ``jax.sharding``,
and the model's ``encode_image`` / ``encode_text`` runs under ``jax.jit``. Image decoding runs in
a thread pool one batch ahead of the device.

With ``cache_dir`` set, every finished batch is written as ``part_NNNNNN.npy`` (atomically) under a
directory named by a hash of (model parameters, inputs, preprocessing), and merged into
``features.npy`` at the end; a rerun after a crash reloads the finished parts and computes only
the rest. Changing the parameters, the inputs or the preprocessing changes the key.
"""
from __future__ import annotations

from remoteclip_jax.errors import UserError
import concurrent.futures
import hashlib
import json
import os
import pathlib
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm


class EvalDataError(UserError, ValueError):
    """Bad evaluation input; the message names the file (and line) and what is wrong."""


def load_image(path: str):
    """Open an image as RGB, raising ``EvalDataError`` naming the path when it cannot be read."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise EvalDataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def params_fingerprint(variables) -> str:
    """Cheap content hash of a parameter tree: per leaf its path, shape, sum, sum of squares and
    first values. Different checkpoints give different fingerprints (in practice), and hashing
    needs no full host copy of the weights."""
    leaves = jax.tree_util.tree_flatten_with_path(variables)[0]
    stats = [(jnp.sum(x.astype(jnp.float32)), jnp.sum(jnp.square(x.astype(jnp.float32))),
              x.reshape(-1)[:8].astype(jnp.float32)) for _, x in leaves]
    stats = jax.device_get(stats)
    h = hashlib.sha1()
    for (path, x), (s, ss, head) in zip(leaves, stats):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(str((tuple(x.shape), str(x.dtype))).encode())
        h.update(np.asarray([s, ss], np.float64).tobytes())
        h.update(np.asarray(head, np.float64).tobytes())
    return h.hexdigest()[:16]


def data_mesh(devices=None) -> Mesh:
    """1-D mesh named ``data`` over this process's devices (Auto axis: plain GSPMD propagation)."""
    devices = list(devices or jax.local_devices())
    return Mesh(np.array(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


class FeatureExtractor:
    """Encodes images and texts with a CLIP model, sharded over a data mesh.

    Args:
        model: a ``remoteclip_jax`` CLIP module (``encode_image`` / ``encode_text`` methods).
        variables: its variables ({"params": ...}, plus "batch_stats" for ResNets).
        batch_size: global batch; rounded up to a multiple of the device count.
        mesh: 1-D mesh with a ``data`` axis (default: all local devices).
        num_workers: threads decoding images.
    """

    def __init__(self, model, variables, batch_size: int = 256, mesh: Mesh | None = None,
                 num_workers: int = 4):
        self.model = model
        self.mesh = mesh or data_mesh()
        n = self.mesh.devices.size
        self.batch_size = max(n, -(-int(batch_size) // n) * n)
        self.num_workers = num_workers
        replicated = NamedSharding(self.mesh, P())
        self._data = NamedSharding(self.mesh, P("data"))
        self.variables = jax.device_put(variables, replicated)
        self.fingerprint = params_fingerprint(self.variables)

        def encode(method):
            return jax.jit(lambda v, x: model.apply(v, x, method=method),
                           in_shardings=(replicated, self._data), out_shardings=replicated)
        self._encode_image = encode("encode_image")
        self._encode_text = encode("encode_text")

    # -- public API -------------------------------------------------------------------------
    def images(self, paths: Sequence[str], preprocess: Callable, cache_dir: str | None = None,
               preprocess_id: str = "", desc: str = "images") -> np.ndarray:
        """(N, E) float32 unnormalised image features.

        Args:
            paths: image files.
            preprocess: ``PIL.Image -> (H, W, 3) float32`` normalised array.
            cache_dir: root of the resumable cache (None: no cache).
            preprocess_id: string identifying the preprocessing, part of the cache key.
            desc: progress bar label.
        """
        paths = [str(p) for p in paths]

        def load(i0, i1):
            def one(p):
                return np.asarray(preprocess(load_image(p)), np.float32)
            with concurrent.futures.ThreadPoolExecutor(max(1, self.num_workers)) as pool:
                return np.stack(list(pool.map(one, paths[i0:i1])))

        key = self._key("image", paths, preprocess_id)
        return self._run(len(paths), load, self._encode_image, cache_dir, key, desc)

    def texts(self, texts: Sequence[str], tokenize: Callable, cache_dir: str | None = None,
              desc: str = "texts") -> np.ndarray:
        """(N, E) float32 unnormalised text features; ``tokenize(list[str]) -> (n, L) int32``."""
        texts = list(texts)
        context = int(self.model.context_length)

        def load(i0, i1):
            return np.asarray(tokenize(texts[i0:i1], context_length=context), np.int32)

        key = self._key("text", texts, f"ctx{context}")
        return self._run(len(texts), load, self._encode_text, cache_dir, key, desc)

    def encode_texts_fn(self, tokenize: Callable) -> Callable[[list[str]], np.ndarray]:
        """A ``list[str] -> (N, E)`` function (for zero-shot class embeddings)."""
        return lambda texts: self.texts(texts, tokenize, desc="prompts")

    # -- internals ---------------------------------------------------------------------------
    def _key(self, kind, items, extra) -> str:
        h = hashlib.sha1(json.dumps([kind, self.fingerprint, extra, self.batch_size]).encode())
        for it in items:
            h.update(it.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return f"{kind}-{h.hexdigest()[:20]}"

    def _run(self, n, load, encode, cache_dir, key, desc) -> np.ndarray:
        bs = self.batch_size
        starts = list(range(0, n, bs))
        cache = pathlib.Path(cache_dir) / key if cache_dir else None
        if cache is not None:
            final = cache / "features.npy"
            if final.exists():
                return np.load(final)
            cache.mkdir(parents=True, exist_ok=True)
        parts: dict[int, np.ndarray] = {}
        todo = []
        for b, s in enumerate(starts):
            f = cache / f"part_{b:06d}.npy" if cache is not None else None
            if f is not None and f.exists():
                parts[b] = np.load(f)
            else:
                todo.append(b)
        if not n:
            return np.zeros((0, int(self.model.embed_dim)), np.float32)
        bar = tqdm(total=n, desc=desc, unit="it", initial=sum(len(p) for p in parts.values()),
                   leave=False, disable=None)
        with concurrent.futures.ThreadPoolExecutor(1) as prefetch:
            nxt = prefetch.submit(load, starts[todo[0]], min(n, starts[todo[0]] + bs)) if todo else None
            for i, b in enumerate(todo):
                x = nxt.result()
                if i + 1 < len(todo):
                    s1 = starts[todo[i + 1]]
                    nxt = prefetch.submit(load, s1, min(n, s1 + bs))
                m = len(x)
                if m < bs:     # pad to a full batch: one compiled shape for every batch
                    x = np.concatenate([x, np.zeros((bs - m,) + x.shape[1:], x.dtype)])
                feats = np.asarray(encode(self.variables, jax.device_put(x, self._data)))[:m]
                parts[b] = feats.astype(np.float32)
                if cache is not None:
                    _atomic_save(cache / f"part_{b:06d}.npy", parts[b])
                bar.update(m)
        bar.close()
        out = np.concatenate([parts[b] for b in range(len(starts))])
        if cache is not None:
            _atomic_save(cache / "features.npy", out)
            for b in range(len(starts)):
                (cache / f"part_{b:06d}.npy").unlink(missing_ok=True)
        return out


def _atomic_save(path: pathlib.Path, arr: np.ndarray):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)
