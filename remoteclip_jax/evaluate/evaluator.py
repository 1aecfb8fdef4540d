"""Evaluators built once from the config and run on the training mesh, as often as asked.

    evaluator = Evaluator(model, config, mesh, workdir)          # reads every dataset once
    metrics = evaluator(variables, step)                         # {"eval/<name>/<metric>": x}

Each entry of ``config.evals`` names a task (retrieval, zeroshot, linear_probe, knn, fewshot,
count) and a source spec (`remoteclip_jax.data.sources`), so any source training reads can be
evaluated: caption files, record shards, webdataset shards, image folders, synthetic scenes.

What is done once, in the constructor: building the sources, reading their captions, labels and
counts, tokenising every caption and prompt, and the two encoder functions. What each call does:
encode the images (each process its own share of every dataset, through `pipeline.EvalData`) and
the texts with the given variables, compute the metrics, write WORKDIR/eval/ (see `report`).

The encoders are jitted once and reused by every call: batches are padded to one shape, and the
variables keep the shardings the train state gives them (FSDP parameters stay sharded; nothing
gathers the model to the host). The image batch is split over the mesh's batch axes like a
training batch; the features come back replicated, so every process computes the same metrics.

A dataset with bad input (missing folder, no test split, an unreadable image) is reported in one
line naming the path and skipped; the others still run, and `EvalDataError` is raised at the end
unless ``raise_on_error=False`` (what a trainer wants).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from remoteclip_jax import config as schema
from remoteclip_jax.data import pipeline, sources as source_registry
from remoteclip_jax.errors import EvalDataError, UserError
from remoteclip_jax.data.classnames import resolve_classnames
from remoteclip_jax.evaluate import counting, itra_probes, plots, probes, report, splits, zeroshot
from remoteclip_jax.evaluate.retrieval import reference_order, retrieval_report
from remoteclip_jax.evaluate.templates import get_templates
from remoteclip_jax.weights.fingerprint import weights_fingerprint


@dataclasses.dataclass
class _Dataset:
    """One source as the evaluator holds it: the reader and every item's metadata."""
    data: pipeline.EvalData
    keys: list[str]            # image path or id, for messages and the paper's split order
    captions: list[list[str]]
    labels: list[str]
    counts: list[dict[str, int]]


def _spec_key(spec: dict) -> str:
    return json.dumps({k: spec[k] for k in source_registry.SOURCE_DEFAULTS}, sort_keys=True)


class Evaluator:
    """Runs ``config.evals`` on a model's variables; see the module docstring.

    Args:
        model: a remoteclip_jax CLIP module.
        config: the run config (``evals``, ``eval``).
        mesh: the training mesh (axes "data", "fsdp").
        workdir: results go to ``workdir/eval``.
        raise_on_error: raise `EvalDataError` after a call in which a dataset failed.
        cache_features: keep each dataset's image features on disk, keyed by the weights, so a
            rerun after a crash recomputes nothing finished (default ``config.eval.cache_features``;
            a trainer passes False: its weights change between evaluations).
    """

    def __init__(self, model, config, mesh, workdir, *, raise_on_error: bool = True,
                 cache_features: bool | None = None):
        from remoteclip_jax.tokenizer import tokenize
        from remoteclip_jax.train import sharding as sharding_lib

        self.model, self.mesh = model, mesh
        self.entries = schema.eval_entries(config)
        self.out_dir = pathlib.Path(workdir) / "eval"
        self.raise_on_error = raise_on_error
        self.model_name = str(config.eval.model_name)
        self.cache = (config.eval.cache_features if cache_features is None
                      else bool(cache_features))
        local = len(mesh.local_devices)
        self.batch_size = max(local, -(-int(config.eval.batch_size) // local) * local)
        self.num_workers = int(config.eval.num_workers)
        self._shard = lambda x: sharding_lib.shard_batch(x, mesh)
        self._replicated = NamedSharding(mesh, P())
        self._batch = NamedSharding(mesh, sharding_lib.BATCH_SPEC)
        self.encode_image = self.encode_text = None   # jitted at the first call (see _encoders)
        self._tokenize = lambda texts: tokenize(texts, model.context_length)
        self._datasets: dict[str, _Dataset | EvalDataError] = {}
        self._prepared: dict[str, Any] = {}
        for name, entry in self.entries.items():
            try:
                self._prepared[name] = self._prepare(entry)
            except UserError as e:
                self._prepared[name] = EvalDataError(_one_line(e))
                logging.error("eval %s: %s", name, e)

    # -- preparation (once) ------------------------------------------------------------------
    def _dataset(self, entry) -> _Dataset:
        key = _spec_key(entry)
        if key not in self._datasets:
            try:
                source = source_registry.build_source(
                    {k: entry[k] for k in source_registry.SOURCE_DEFAULTS}, f"config.evals.{entry['name']}")
                keys, captions, labels, counts = [], [], [], []
                for i in range(len(source)):  # one pass; images are not kept
                    item = source[i]
                    keys.append(str(item.get("path") or item.get("image_id") or i))
                    captions.append([c for c in item.get("captions", ())
                                     if isinstance(c, str) and c.strip()])
                    labels.append(str(item.get("label") or ""))
                    counts.append(dict(item.get("counts") or {}))
                data = pipeline.EvalData(
                    source, source_registry.source_name(entry), image_size=self.model.image_size,
                    batch_size=self.batch_size, num_workers=self.num_workers,
                    process_index=jax.process_index(), process_count=jax.process_count(),
                    mean=None, std=None)
                self._datasets[key] = _Dataset(data, keys, captions, labels, counts)
            except UserError as e:
                self._datasets[key] = EvalDataError(_one_line(e))
        found = self._datasets[key]
        if isinstance(found, Exception):
            raise found
        return found

    def _prepare(self, entry) -> dict:
        ds, task = self._dataset(entry), entry["task"]
        where = f"{source_registry.source_name(entry)}"
        if task == "retrieval":
            captions, t2i = [], []
            for i, caps in enumerate(ds.captions):
                captions += caps
                t2i += [i] * len(caps)
            if not captions:
                raise EvalDataError(f"{where}: no captions to retrieve")
            # File names, for the reference's image order under ties "index".
            names = [os.path.basename(k) for k in ds.keys]
            return {"tokens": self._tokenize(captions), "t2i": np.asarray(t2i), "names": names}
        if task == "count":
            questions = [(i, cat, n) for i, c in enumerate(ds.counts)
                         for cat, n in sorted(c.items()) if 1 <= n <= 10]
            if not questions:
                raise EvalDataError(f"{where}: no object counts between 1 and 10")
            cats = sorted({cat for _, cat, _ in questions})
            prompts = [p for cat in cats for p in counting.count_captions(cat, entry["template"])]
            return {"questions": questions, "cats": cats, "tokens": self._tokenize(prompts)}
        if not all(ds.labels):
            missing = ds.keys[ds.labels.index("")]
            raise EvalDataError(f"{where}: {missing} has no class label (use an image_folder "
                                "source, or records/caption files whose items carry a label)")
        classes = sorted(set(ds.labels))
        labels = np.asarray([classes.index(lab) for lab in ds.labels])
        train, test = splits.paper_split(ds.keys, labels, entry["train_fraction"],
                                         order=entry["split_order"])
        out = {"classes": classes, "labels": labels, "train": train, "test": test}
        if task == "zeroshot":
            if entry["subset"] == "all":
                out["test"] = np.arange(len(labels))
            dataset = entry["dataset"] or entry["name"]
            readable, name_sources = resolve_classnames(classes, dataset,
                                                        dict(entry["classnames"]) or None)
            _warn_rule_names(entry, dataset, classes, name_sources)
            templates = get_templates(_plain(entry["templates"]), dataset)
            out.update(readable=readable, name_sources=name_sources, templates=list(templates),
                       tokens=self._tokenize(zeroshot.build_prompts(readable, templates)))
        elif not len(train) or not len(test):
            raise EvalDataError(f"{where}: the {entry['train_fraction']:.0%} split leaves no "
                                "train or no test images")
        return out

    # -- encoding (every call) ---------------------------------------------------------------
    def _encoders(self, variables) -> None:
        """Jits both encoders once, for the shardings the variables have (FSDP-sharded
        parameters stay sharded inside the program instead of being gathered first)."""
        if self.encode_image is not None:
            return
        shardings = jax.tree.map(
            lambda x: x.sharding if isinstance(x, jax.Array) and isinstance(x.sharding, NamedSharding)
            and x.sharding.mesh == self.mesh
            else self._replicated, variables)

        def encoder(method):
            return jax.jit(lambda v, x: self.model.apply(v, x, method=method),
                           in_shardings=(shardings, self._batch), out_shardings=self._replicated)

        self.encode_image = encoder("encode_image")
        self.encode_text = encoder("encode_text")

    def image_features(self, variables, ds: _Dataset, desc: str = "images") -> np.ndarray:
        """(N, E) float32 unnormalised features of every image of `ds`, in source order."""
        from tqdm import tqdm

        feats = np.zeros((ds.data.num_images, int(self.model.embed_dim)), np.float32)
        bad = []
        for batch in tqdm(ds.data, desc=desc, leave=False, disable=None, unit="batch"):
            out = self.encode_image(variables, self._shard(batch["images"]))
            out = np.asarray(out.addressable_data(0), np.float32)
            index, mask = _all_processes(batch["index"]), _all_processes(batch["mask"])
            feats[index[mask]] = out[mask]
            bad += [i for i in index[(~mask) & (index >= 0)]]
        if bad:
            reason = ds.data.stats.skipped[0][1] if ds.data.stats.skipped else "unreadable"
            if not reason.startswith(ds.keys[bad[0]]):
                reason = f"{ds.keys[bad[0]]}: {reason}"
            raise EvalDataError(f"{reason} ({len(bad)} of {len(ds.keys)} images unreadable)")
        return feats

    def text_features(self, variables, tokens: np.ndarray) -> np.ndarray:
        """(N, E) float32 unnormalised features of token rows, encoded in padded batches."""
        n, bs = len(tokens), self.batch_size * jax.process_count()
        out = []
        for start in range(0, n, bs):
            chunk = tokens[start:start + bs]
            padded = np.zeros((bs, tokens.shape[1]), np.int32)
            padded[:len(chunk)] = chunk
            share = bs // jax.process_count()
            local = padded[jax.process_index() * share:(jax.process_index() + 1) * share]
            f = self.encode_text(variables, self._shard(local))
            out.append(np.asarray(f.addressable_data(0), np.float32)[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, self.model.embed_dim), np.float32)

    # -- one evaluation ------------------------------------------------------------------------
    def __call__(self, variables, step: int | None = None) -> dict[str, float]:
        """Evaluates every entry with `variables`; returns ``{"eval/<name>/<metric>": value}``."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        results: dict[str, float] = {}
        details: dict = {"step": step, "datasets": {}, "errors": {}, "seconds": {}}
        curves: dict = {}
        memo: dict[str, np.ndarray] = {}
        fingerprint = weights_fingerprint(variables) if self.cache else None
        self._encoders(variables)
        for name, entry in self.entries.items():
            t0 = time.perf_counter()
            try:
                prepared = self._prepared[name]
                if isinstance(prepared, Exception):
                    raise prepared
                ds = self._dataset(entry)
                key = _spec_key(entry)
                if key not in memo:
                    memo[key] = self._cached(fingerprint, key, lambda: self.image_features(
                        variables, ds, f"{name} images"))
                metrics, extra = _TASKS[entry["task"]](self, variables, entry, prepared, memo[key])
            except UserError as e:
                logging.error("eval %s (%s) skipped: %s", name, entry["task"], e)
                details["errors"][name] = _one_line(e)
                report.write_results(self.out_dir, results, details, curves, self.model_name)
                continue
            details["seconds"][name] = round(time.perf_counter() - t0, 3)
            details["datasets"][name] = {"name": name, "task": entry["task"], "metrics": metrics,
                                         **extra}
            prefix = "" if entry["task"] in ("retrieval", "zeroshot", "count") else f"{entry['task']}_"
            results.update({f"eval/{name}/{prefix}{m}": float(v) for m, v in metrics.items()})
            if entry["task"] == "fewshot":
                curves[name] = {int(k): v for k, v in extra["fewshot"].items()}
            report.write_results(self.out_dir, results, details, curves, self.model_name)
        report.append_history(self.out_dir, step, results)
        if details["errors"] and self.raise_on_error:
            raise EvalDataError("; ".join(f"{k}: {v}" for k, v in details["errors"].items()))
        return results

    def _cached(self, fingerprint, key, compute) -> np.ndarray:
        if fingerprint is None:
            return compute()
        digest = hashlib.sha1(f"{fingerprint}{key}{self.model.image_size}".encode()).hexdigest()[:20]
        path = self.out_dir / "cache" / f"p{jax.process_index()}" / f"{digest}.npy"
        if path.exists():
            return np.load(path)
        feats = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.save(f, feats)
        os.replace(tmp, path)
        return feats


def _warn_rule_names(entry, dataset, classes, name_sources) -> None:
    """Says when class names fall back to the generic rules: a renamed entry, or a dataset
    without a reference table, should not change prompts silently."""
    ruled = [c for c, s in zip(classes, name_sources) if s == "rule"]
    if not ruled:
        return
    from remoteclip_jax.data.classnames import CLASS_NAMES, dataset_key

    known = dataset_key(dataset) in CLASS_NAMES
    why = (f"dataset {dataset!r} has no reference class-name table" if not known
           else f"{len(ruled)} of {len(classes)} classes are not in {dataset!r}'s table")
    logging.warning("eval %s: %s; rule-made names for %s%s. Set config.evals.%s.dataset to the "
                    "dataset's name (e.g. aid, eurosat) or config.evals.%s.classnames",
                    entry["name"], why, ", ".join(ruled[:3]), " ..." if len(ruled) > 3 else "",
                    entry["name"], entry["name"])


def _plain(value):
    """Config values as plain Python (lists for tuples and ConfigDict lists)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def _one_line(e: BaseException) -> str:
    from remoteclip_jax.errors import one_line
    return one_line(e)


def _all_processes(x: np.ndarray) -> np.ndarray:
    """Every process's rows of a per-process batch array, in process order (as the global
    batch of `shard_batch` lays them out)."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))


# --- the tasks: features in hand -> (metrics, details) ----------------------------------------------

def _retrieval(ev, variables, entry, prep, image_feats):
    txt, t2i = ev.text_features(variables, prep["tokens"]), prep["t2i"]
    # Captions with the same tokens (UCM and Sydney repeat many; case is lost in tokenising)
    # share one embedding, so they tie exactly.
    keys = [row.tobytes() for row in prep["tokens"]]
    if entry["ties"] == "index":  # lowest index first: rank in the reference's load order
        image_order, caption_order = reference_order(prep["names"], t2i)
        rank = np.argsort(image_order)
        image_feats, txt = image_feats[image_order], txt[caption_order]
        t2i, keys = rank[t2i[caption_order]], [keys[i] for i in caption_order]
    return retrieval_report(image_feats, txt, t2i, ties=entry["ties"], caption_keys=keys)


def _zeroshot(ev, variables, entry, prep, image_feats):
    classes, readable = prep["classes"], prep["readable"]
    cls = zeroshot.class_embeddings(ev.text_features(variables, prep["tokens"]), len(classes),
                                    entry["class_embedding"])
    idx = prep["test"]
    m = zeroshot.classification_metrics(zeroshot.zeroshot_logits(image_feats[idx], cls),
                                        prep["labels"][idx], len(classes), ties=entry["ties"])
    conf = m.pop("confusion")
    per_class = dict(zip(readable, m.pop("per_class")))
    if report.is_writer():
        plots.plot_confusion(conf, readable, ev.out_dir / "plots" / f"{entry['name']}_zeroshot_confusion.png",
                             f"{entry['name']} zero-shot (top-1 {m['top1']:.2f}%)")
    return m, {"per_class": per_class, "confusion": conf.tolist(), "classnames": readable,
               "classname_sources": prep["name_sources"], "templates": prep["templates"],
               "num_images": int(len(idx)), "ties": entry["ties"]}


def _split(prep, feats):
    tr, te = prep["train"], prep["test"]
    return feats[tr], prep["labels"][tr], feats[te], prep["labels"][te]


def _linear_probe(ev, variables, entry, prep, feats):
    if entry["protocol"] == "itra":
        r = itra_probes.itra_linear_probe(*_split(prep, feats), mode=entry["itra_mode"],
                                          seed=entry["sample_seed"], epochs=entry["epochs"])
        metrics = {"top1": r["top1"]}
    else:
        r = probes.linear_probe(*_split(prep, feats), Cs=tuple(entry["Cs"]),
                                val_fraction=entry["val_fraction"], seed=entry["sample_seed"])
        metrics = {"top1": r["top1"], "C": r["C"]}
    return metrics, {k: v for k, v in r.items() if k not in metrics}


def _knn(ev, variables, entry, prep, feats):
    r = probes.knn_classify(*_split(prep, feats), len(prep["classes"]), entry["k"],
                            entry["temperature"])
    return {"top1": r["top1"], "top5": r["top5"]}, {}


def _fewshot(ev, variables, entry, prep, feats):
    if entry["protocol"] == "itra":
        r = itra_probes.itra_fewshot(*_split(prep, feats), shots=tuple(entry["shots"]),
                                     episodes=entry["episodes"], mode=entry["itra_mode"],
                                     pool=entry["pool"], seed=entry["sample_seed"],
                                     epochs=entry["epochs"])
    else:
        r = probes.fewshot(*_split(prep, feats), shots=tuple(entry["shots"]),
                           episodes=entry["episodes"], C=entry["C"], seed=entry["sample_seed"])
    m = {}
    for k, v in r.items():
        m[f"{k}shot_mean"], m[f"{k}shot_std"] = v["mean"], v["std"]
    return m, {"fewshot": {str(k): v for k, v in r.items()}, "protocol": entry["protocol"]}


def _count(ev, variables, entry, prep, feats):
    cats, questions = prep["cats"], prep["questions"]
    pf = ev.text_features(variables, prep["tokens"]).reshape(len(cats), 10, -1)
    items = [counting.CountItem(str(i), cat, n) for i, cat, n in questions]
    scores = counting.count_scores(feats[[i for i, _, _ in questions]], dict(zip(cats, pf)), items)
    m, details = counting.count_report(scores, [n for _, _, n in questions], ties=entry["ties"])
    conf = details.pop("confusion")
    if report.is_writer():
        name = entry["name"]
        plots.plot_confusion(conf, [str(n) for n in counting.COUNTS],
                             ev.out_dir / "plots" / f"{name}_count_confusion.png",
                             f"{name} counting (top-1 {m['top1']:.2f}%)")
        plots.plot_count_topk({name: details["topk_curve"]},
                              ev.out_dir / "plots" / f"{name}_count_topk.png")
    return m, {**details, "confusion": conf.tolist(), "num_images": len(questions)}


_TASKS = {"retrieval": _retrieval, "zeroshot": _zeroshot, "linear_probe": _linear_probe,
          "knn": _knn, "fewshot": _fewshot, "count": _count}
