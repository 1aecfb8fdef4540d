"""Evaluators built once from the config and run on the training mesh, as often as asked.

    evaluator = Evaluator(model, config, mesh, workdir)          # reads every dataset once
    metrics = evaluator(variables, step)                         # {"eval/<name>/<metric>": x}

Each entry of ``config.evals`` names a task (`evaluate.task`: retrieval, zeroshot, linear_probe,
knn, fewshot, count) and a source spec (`remoteclip_jax.data.sources`), so any source training
reads can be evaluated: caption files, record shards, webdataset shards, image folders,
detection labels, synthetic scenes, GeoTIFF tiles. This module keeps what the tasks share:
datasets read once, the encoders, the feature cache and the reports.

What is done once, in the constructor: building the sources, reading their captions, labels and
counts (without decoding an image), each task's preparation (tokenising captions and prompts,
splits). What each call does: encode the images (each process its own share of every dataset,
through `pipeline.EvalData`) and the texts with the given variables, run the tasks, write
WORKDIR/eval/ (see `report`).

The encoders (`remoteclip_jax.encode`, as the inference `Encoder` uses) are jitted once and
reused by every call: batches are padded to one shape, and the variables keep the shardings the
train state gives them (FSDP parameters stay sharded; nothing gathers the model to the host).
The features come back replicated, so every process computes the same metrics.

A dataset with bad input (missing folder, no test split, an unreadable image) is reported in one
line naming the path and skipped; the others still run, and `DataError` is raised at the end
unless ``raise_on_error=False`` (what a trainer wants).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from remoteclip_jax import encode
from remoteclip_jax.data import pipeline, sources as source_registry
from remoteclip_jax.errors import DataError, UserError, one_line
from remoteclip_jax.evaluate import report
from remoteclip_jax.evaluate.task import Dataset, check_entries, registry
from remoteclip_jax.files import as_path, atomic_write
from remoteclip_jax.sharding import shard_batch
from remoteclip_jax.weights.fingerprint import weights_fingerprint


def _spec_key(spec: dict) -> str:
    return json.dumps({k: spec[k] for k in source_registry.SOURCE_DEFAULTS}, sort_keys=True)


class Evaluator:
    """Runs ``config.evals`` on a model's variables; see the module docstring.

    Args:
        model: a remoteclip_jax CLIP module.
        config: the run config (reads ``evals`` and ``eval``).
        mesh: the training mesh (axes "data", "fsdp").
        workdir: results go to ``workdir/eval``.
        raise_on_error: raise `DataError` after a call in which a dataset failed.
        cache_features: keep each dataset's image features on disk, keyed by the weights, so a
            rerun after a crash recomputes nothing finished (default ``config.eval.cache_features``;
            a trainer passes False: its weights change between evaluations).
    """

    def __init__(self, model, config, mesh, workdir, *, raise_on_error: bool = True,
                 cache_features: bool | None = None):
        from remoteclip_jax.tokenizer import tokenize

        self.model, self.mesh = model, mesh
        self.entries = check_entries(config.evals)
        self.out_dir = as_path(workdir) / "eval"
        self.raise_on_error = raise_on_error
        self.model_name = str(config.eval.model_name)
        self.cache = (config.eval.cache_features if cache_features is None
                      else bool(cache_features))
        local = len(mesh.local_devices)
        self.batch_size = max(local, -(-int(config.eval.batch_size) // local) * local)
        self.num_workers = int(config.eval.num_workers)
        self.encode_image = self.encode_text = None   # jitted at the first call (see _encoders)
        self._tokenize = lambda texts: tokenize(texts, model.context_length)
        self._datasets: dict[str, tuple | DataError] = {}
        self._prepared: dict[str, Any] = {}
        for name, entry in self.entries.items():
            try:
                info = self._dataset(entry)[1]
                self._prepared[name] = registry()[entry["task"]].prepare(entry, info, self._tokenize)
            except UserError as e:
                self._prepared[name] = DataError(one_line(e))
                logging.error("eval %s: %s", name, e)

    # -- preparation (once) ------------------------------------------------------------------
    def _dataset(self, entry) -> tuple[pipeline.EvalData, Dataset]:
        key = _spec_key(entry)
        if key not in self._datasets:
            try:
                source = source_registry.build_source(
                    {k: entry[k] for k in source_registry.SOURCE_DEFAULTS}, f"config.evals.{entry['name']}")
                items = [source_registry.item_metadata(source, i) for i in range(len(source))]
                info = Dataset(source_registry.source_name(entry),
                               [str(it.get("path") or it.get("image_id") or i) for i, it in enumerate(items)],
                               [[c for c in it.get("captions", ()) if isinstance(c, str) and c.strip()]
                                for it in items],
                               [str(it.get("label") or "") for it in items],
                               [dict(it.get("counts") or {}) for it in items])
                data = pipeline.EvalData(
                    source, source_registry.source_name(entry), image_size=self.model.image_size,
                    batch_size=self.batch_size, num_workers=self.num_workers,
                    process_index=jax.process_index(), process_count=jax.process_count(),
                    mean=None, std=None)
                self._datasets[key] = (data, info)
            except UserError as e:
                self._datasets[key] = DataError(one_line(e))
        found = self._datasets[key]
        if isinstance(found, Exception):
            raise found
        return found

    # -- encoding (every call) ---------------------------------------------------------------
    def _encoders(self, variables) -> None:
        """Jits both encoders once, for the shardings the variables have (FSDP-sharded
        parameters stay sharded inside the program instead of being gathered first)."""
        if self.encode_image is not None:
            return
        replicated = NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        shardings = jax.tree.map(
            lambda x: x.sharding if isinstance(x, jax.Array) and isinstance(x.sharding, NamedSharding)
            and x.sharding.mesh == self.mesh else replicated, variables)
        self.encode_image = encode.encode_function(self.model, "encode_image", self.mesh, shardings)
        self.encode_text = encode.encode_function(self.model, "encode_text", self.mesh, shardings)

    def image_features(self, variables, dataset: tuple[pipeline.EvalData, Dataset],
                       desc: str = "images") -> np.ndarray:
        """(N, E) float32 unnormalised features of every image of a dataset (`_dataset`'s
        reader and items), in source order."""
        from tqdm import tqdm

        data, keys = dataset[0], dataset[1].keys
        feats = np.zeros((data.num_images, int(self.model.embed_dim)), np.float32)
        bad = []
        for batch in tqdm(data, desc=desc, leave=False, disable=None, unit="batch"):
            out = self.encode_image(variables, shard_batch(batch["images"], self.mesh))
            out = np.asarray(out.addressable_data(0), np.float32)
            index, mask = _all_processes(batch["index"]), _all_processes(batch["mask"])
            feats[index[mask]] = out[mask]
            bad += [i for i in index[(~mask) & (index >= 0)]]
        if bad:
            reason = data.stats.skipped[0][1] if data.stats.skipped else "unreadable"
            if not reason.startswith(keys[bad[0]]):
                reason = f"{keys[bad[0]]}: {reason}"
            raise DataError(f"{reason} ({len(bad)} of {len(keys)} images unreadable)")
        return feats

    def text_features(self, variables, tokens: np.ndarray) -> np.ndarray:
        """(N, E) float32 unnormalised features of token rows, encoded in padded batches."""
        bs, share = self.batch_size * jax.process_count(), self.batch_size
        out = []
        for start in range(0, len(tokens), bs):
            chunk = tokens[start:start + bs]
            local = encode.pad_rows(chunk, bs)[jax.process_index() * share:][:share]
            f = self.encode_text(variables, shard_batch(local, self.mesh))
            out.append(np.asarray(f.addressable_data(0), np.float32)[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, self.model.embed_dim), np.float32)

    # -- one evaluation ------------------------------------------------------------------------
    def __call__(self, variables, step: int | None = None, out_dir=None) -> dict[str, float]:
        """Evaluates every entry with `variables`; returns ``{"eval/<name>/<metric>": value}``.
        Results go to `out_dir` (default: WORKDIR/eval)."""
        out_dir = as_path(out_dir) if out_dir is not None else self.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        results: dict[str, float] = {}
        details: dict = {"step": step, "datasets": {}, "errors": {}, "seconds": {}}
        curves: dict = {}
        memo: dict[str, np.ndarray] = {}
        fingerprint = weights_fingerprint(variables) if self.cache else None
        self._encoders(variables)
        for name, entry in self.entries.items():
            t0 = time.perf_counter()
            task = registry()[entry["task"]]
            try:
                prepared = self._prepared[name]
                if isinstance(prepared, Exception):
                    raise prepared
                dataset = self._dataset(entry)
                key = _spec_key(entry)
                if key not in memo:
                    memo[key] = self._cached(out_dir, fingerprint, key, lambda: (
                        self.image_features(variables, dataset, f"{name} images")))
                metrics, extra = task.run(self, variables, entry, prepared, memo[key])
            except UserError as e:
                logging.error("eval %s (%s) skipped: %s", name, entry["task"], e)
                details["errors"][name] = one_line(e)
                report.write_results(out_dir, results, details, curves, self.model_name)
                continue
            details["seconds"][name] = round(time.perf_counter() - t0, 3)
            details["datasets"][name] = {"name": name, "task": entry["task"], "metrics": metrics,
                                         **extra}
            results.update({f"eval/{name}/{task.prefix}{m}": float(v) for m, v in metrics.items()})
            if "fewshot" in extra:
                curves[name] = {int(k): v for k, v in extra["fewshot"].items()}
            report.write_results(out_dir, results, details, curves, self.model_name)
        report.append_history(out_dir, step, results)
        if details["errors"] and self.raise_on_error:
            raise DataError("; ".join(f"{k}: {v}" for k, v in details["errors"].items()))
        return results

    def _cached(self, out_dir, fingerprint, key, compute) -> np.ndarray:
        if fingerprint is None:
            return compute()
        digest = hashlib.sha1(f"{fingerprint}{key}{self.model.image_size}".encode()).hexdigest()[:20]
        path = out_dir / "cache" / f"p{jax.process_index()}" / f"{digest}.npy"
        if path.exists():
            with path.open("rb") as f:
                return np.load(f)
        feats = compute()
        with atomic_write(path, "wb") as f:
            np.save(f, feats)
        return feats


def _all_processes(x: np.ndarray) -> np.ndarray:
    """Every process's rows of a per-process batch array, in process order (as the global
    batch of `shard_batch` lays them out)."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))
