"""Runs every dataset in ``config.eval.datasets`` and writes the results to ``WORKDIR/eval/``.

    from remoteclip_jax.evaluate import run_evaluation
    metrics = run_evaluation(model, variables, config.eval, workdir, step=step)

Dataset entries (dicts) by ``kind``:

* ``retrieval``: ``name``, ``path`` (.json Karpathy / .jsonl / .csv GeoRSCLIP), ``images`` (image
  root; default: paths as the caption file gives them, resolved by ``data.readers``), ``split`` (default "test"; "all" for CSV), ``skip_missing``.
* ``zeroshot``: ``name``, ``path`` (image folder ``<class>/<image>``), ``templates``
  ("paper" default | "remoteclip" | "georsclip" | list), ``class_embedding`` ("openai" default |
  "average"), ``split`` ("test" default = paper 80/20 split; "all"), ``classnames`` (overrides
  {folder: readable name}).
* ``linear_probe`` / ``knn`` / ``fewshot``: ``name``, ``path`` (image folder; train/test by the
  paper split). linear_probe: ``Cs``, ``val_fraction``; knn: ``k`` (20), ``temperature`` (0.07);
  fewshot: ``shots`` ((1, 2, 4, 8, 16, 32)), ``episodes`` (5), ``C`` (1.0).
* ``count``: ``name``, ``manifest`` (JSONL, see ``counting.py``), ``template`` (optional).

Image-folder entries also take ``classes`` (subset of class folders) and ``max_per_class`` (first
N files per class) for quick runs, and ``train_fraction`` (0.8).

Outputs, rewritten after every dataset so a crash keeps what was finished:

* ``eval/results.json``: flat ``{"eval/<name>/<metric>": value}``. Retrieval, zero-shot and
  counting metrics keep their names (``eval/rsicd/i2t_R@1``, ``eval/aid/top1``); probe metrics are
  prefixed by their kind (``eval/aid/linear_probe_top1``, ``eval/aid/knn_top1``,
  ``eval/aid/fewshot_4shot_mean``), so one name can carry every task;
* ``eval/details.json``: per-class accuracies, confusion matrices, few-shot episodes, C, errors;
* ``eval/results.md``: Markdown tables laid out like the RemoteCLIP paper's;
* ``eval/plots/<name>_zeroshot_confusion.png``, ``<name>_count_confusion.png``, ``fewshot.png``;
* ``eval/history.jsonl``: one line per call with ``step`` and the metrics;
* ``eval/cache/``: resumable feature cache (``keep_feature_cache=False`` deletes it when done).

A dataset with bad input (missing folder, empty class folder, no test split, unreadable image)
is reported with a one-line message naming the path, recorded under ``errors`` and skipped; the
other datasets still run, and ``EvalDataError`` is raised at the end unless
``raise_on_error=False`` (what a trainer wants).
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import time
from typing import Callable

import numpy as np

from remoteclip_jax.evaluate import counting, datasets, plots, probes, splits, zeroshot
from remoteclip_jax.evaluate.classnames import readable_classnames
from remoteclip_jax.evaluate.features import EvalDataError, FeatureExtractor
from remoteclip_jax.evaluate.retrieval import retrieval_metrics
from remoteclip_jax.evaluate.templates import get_templates

KINDS = ("retrieval", "zeroshot", "linear_probe", "knn", "fewshot", "count")


def default_preprocess(image_size: int) -> Callable:
    """open_clip's eval transform (``remoteclip_jax.transforms.image_transform``)."""
    from remoteclip_jax.transforms import image_transform
    return image_transform(image_size, train=False)


def _is_writer() -> bool:
    import jax
    return jax.process_index() == 0


def _get(cfg, key, default=None):
    try:
        v = cfg.get(key, default)
    except AttributeError:
        v = getattr(cfg, key, default)
    return default if v is None else v


def _entry_dict(entry) -> dict:
    return entry.to_dict() if hasattr(entry, "to_dict") else dict(entry)


class _Context:
    """Shared state of one evaluation run: extractor, per-image feature memo, output folders."""

    def __init__(self, extractor, preprocess, tokenize, out_dir, cache_dir, preprocess_id):
        self.extractor = extractor
        self.preprocess = preprocess
        self.tokenize = tokenize
        self.out_dir = out_dir
        self.cache_dir = cache_dir
        self.preprocess_id = preprocess_id
        self._memo: dict[str, np.ndarray] = {}

    def image_features(self, paths, desc) -> np.ndarray:
        todo = list(dict.fromkeys(p for p in paths if p not in self._memo))
        if todo:
            feats = self.extractor.images(todo, self.preprocess, self.cache_dir, self.preprocess_id, desc)
            self._memo.update(zip(todo, feats))
        return np.stack([self._memo[p] for p in paths])

    def text_features(self, texts, desc) -> np.ndarray:
        return self.extractor.texts(texts, self.tokenize, self.cache_dir, desc)


def _folder(entry):
    paths, labels, classes = datasets.load_image_folder(
        entry["path"], entry.get("classes"), int(entry.get("max_per_class", 0)))
    return paths, np.asarray(labels), classes


def _split_features(ctx, entry, name):
    paths, labels, classes = _folder(entry)
    train, test = splits.paper_split(paths, labels, float(entry.get("train_fraction", 0.8)))
    if not len(train) or not len(test):
        raise EvalDataError(f"{entry['path']}: the 80/20 split leaves no train or no test images")
    feats = ctx.image_features([paths[i] for i in np.concatenate([train, test])], f"{name} images")
    return feats[:len(train)], labels[train], feats[len(train):], labels[test], classes


def _eval_retrieval(ctx, entry, name):
    paths, caps, t2i = datasets.load_retrieval(entry["path"], entry.get("images", ""),
                                               entry.get("split", "test"), bool(entry.get("skip_missing", False)))
    img = ctx.image_features(paths, f"{name} images")
    txt = ctx.text_features(caps, f"{name} captions")
    m = retrieval_metrics(img, txt, t2i)
    return m, {"num_images": len(paths), "num_captions": len(caps)}


def _eval_zeroshot(ctx, entry, name):
    paths, labels, classes = _folder(entry)
    idx = splits.select_split(paths, labels, entry.get("split", "test"), float(entry.get("train_fraction", 0.8)))
    readable = readable_classnames(classes, name, entry.get("classnames"))
    templates = get_templates(entry.get("templates", "paper"), name)
    prompts = zeroshot.build_prompts(readable, templates)
    cls = zeroshot.class_embeddings(ctx.text_features(prompts, f"{name} prompts"), len(classes),
                                    entry.get("class_embedding", "openai"))
    img = ctx.image_features([paths[i] for i in idx], f"{name} images")
    m = zeroshot.classification_metrics(zeroshot.zeroshot_logits(img, cls), labels[idx], len(classes))
    conf = m.pop("confusion")
    per_class = dict(zip(readable, m.pop("per_class")))
    if _is_writer():
        plots.plot_confusion(conf, readable, ctx.out_dir / "plots" / f"{name}_zeroshot_confusion.png",
                             f"{name} zero-shot (top-1 {m['top1']:.2f}%)")
    return m, {"per_class": per_class, "confusion": conf.tolist(), "classnames": readable,
               "templates": list(templates), "num_images": int(len(idx))}


def _eval_linear_probe(ctx, entry, name):
    tx, ty, vx, vy, classes = _split_features(ctx, entry, name)
    r = probes.linear_probe(tx, ty, vx, vy, Cs=tuple(entry.get("Cs", probes.DEFAULT_CS)),
                            val_fraction=float(entry.get("val_fraction", 0.2)), seed=int(entry.get("seed", 0)))
    return {"top1": r["top1"], "C": r["C"]}, {"val_top1": {str(k): v for k, v in r["val_top1"].items()}}


def _eval_knn(ctx, entry, name):
    tx, ty, vx, vy, classes = _split_features(ctx, entry, name)
    r = probes.knn_classify(tx, ty, vx, vy, len(classes), int(entry.get("k", 20)),
                            float(entry.get("temperature", 0.07)))
    return {"top1": r["top1"], "top5": r["top5"]}, {}


def _eval_fewshot(ctx, entry, name):
    tx, ty, vx, vy, classes = _split_features(ctx, entry, name)
    r = probes.fewshot(tx, ty, vx, vy, shots=tuple(entry.get("shots", probes.DEFAULT_SHOTS)),
                       episodes=int(entry.get("episodes", 5)), C=float(entry.get("C", 1.0)),
                       seed=int(entry.get("seed", 0)))
    m = {}
    for k, v in r.items():
        m[f"{k}shot_mean"] = v["mean"]
        m[f"{k}shot_std"] = v["std"]
    return m, {"fewshot": {str(k): v for k, v in r.items()}}


def _eval_count(ctx, entry, name):
    items = counting.read_count_manifest(entry["manifest"])
    template = entry.get("template", counting.DEFAULT_TEMPLATE)
    cats = sorted({it.category for it in items})
    prompts = [c for cat in cats for c in counting.count_captions(cat, template)]
    pf = ctx.text_features(prompts, f"{name} captions").reshape(len(cats), 10, -1)
    img = ctx.image_features([it.image for it in items], f"{name} images")
    preds = counting.count_predictions(img, dict(zip(cats, pf)), items)
    m = counting.count_metrics(preds, [it.count for it in items])
    conf = m.pop("confusion")
    if _is_writer():
        plots.plot_confusion(conf, [str(n) for n in counting.COUNTS],
                             ctx.out_dir / "plots" / f"{name}_count_confusion.png",
                             f"{name} counting (top-1 {m['top1']:.2f}%)")
    return m, {"confusion": conf.tolist(), "num_images": len(items)}


_EVALUATORS = {"retrieval": _eval_retrieval, "zeroshot": _eval_zeroshot, "linear_probe": _eval_linear_probe,
               "knn": _eval_knn, "fewshot": _eval_fewshot, "count": _eval_count}


def run_evaluation(model, variables, eval_config, workdir, step: int | None = None, *,
                   tokenize: Callable | None = None, preprocess: Callable | None = None,
                   raise_on_error: bool = True, mesh=None) -> dict:
    """Evaluate ``model`` on every dataset of ``eval_config.datasets``.

    Args:
        model: a ``remoteclip_jax`` CLIP module.
        variables: its variables (host or device arrays addressable by this process).
        eval_config: ``config.eval`` (``datasets``, ``batch_size``; optional ``model_name``,
            ``keep_feature_cache`` (True), ``num_workers`` (4)).
        workdir: run directory; results go to ``workdir/eval``.
        step: training step recorded in ``history.jsonl`` (None for a standalone run).
        tokenize: ``list[str], context_length -> int32 ids`` (default ``remoteclip_jax.tokenize``).
        preprocess: ``PIL.Image -> (H, W, 3) float32`` (default ``default_preprocess``).
        raise_on_error: raise ``EvalDataError`` after all datasets ran if any failed on bad input.
        mesh: 1-D ``data`` mesh for extraction (default: all local devices).

    Returns:
        Flat metrics ``{"eval/<name>/<metric>": float}``.
    """
    import jax
    if tokenize is None:
        from remoteclip_jax.tokenizer import tokenize
    preprocess_id = "custom" if preprocess is not None else f"default{model.image_size}"
    preprocess = preprocess or default_preprocess(model.image_size)
    out_dir = pathlib.Path(workdir) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    # Processes extract on their own devices; separate caches keep their files apart.
    cache_dir = out_dir / "cache" / (f"p{jax.process_index()}" if jax.process_count() > 1 else "")
    extractor = FeatureExtractor(model, variables, int(_get(eval_config, "batch_size", 256)), mesh=mesh,
                                 num_workers=int(_get(eval_config, "num_workers", 4)))
    ctx = _Context(extractor, preprocess, tokenize, out_dir, cache_dir, preprocess_id)
    entries = [_entry_dict(e) for e in _get(eval_config, "datasets", [])]
    results: dict[str, float] = {}
    details: dict = {"step": step, "datasets": {}, "errors": {}, "seconds": {}}
    fewshot_curves = {}
    model_name = str(_get(eval_config, "model_name", "model"))
    seen = set()
    for entry in entries:
        kind, name = entry.get("kind"), entry.get("name")
        if kind not in KINDS:
            raise ValueError(f"eval dataset {name!r}: kind must be one of {KINDS}, got {kind!r}")
        if not name:
            raise ValueError(f"eval dataset of kind {kind!r} needs a name")
        key = f"{name}/{kind}"
        if key in seen:
            raise ValueError(f"eval dataset {name!r} of kind {kind!r} is listed twice")
        seen.add(key)
        prefix = "" if kind in ("retrieval", "zeroshot", "count") else f"{kind}_"
        t0 = time.perf_counter()
        try:
            metrics, extra = _EVALUATORS[kind](ctx, entry, name)
        except EvalDataError as e:
            logging.error("eval %s (%s) skipped: %s", key, kind, e)
            details["errors"][key] = str(e)
            _write(out_dir, results, details, fewshot_curves, model_name)
            continue
        details["seconds"][key] = round(time.perf_counter() - t0, 3)
        details["datasets"][key] = {"name": name, "kind": kind, "metrics": metrics, **extra}
        results.update({f"eval/{name}/{prefix}{m}": float(v) for m, v in metrics.items()})
        if kind == "fewshot":
            fewshot_curves[name] = {int(k): v for k, v in extra["fewshot"].items()}
        logging.info("eval %s (%s) in %.1fs: %s", key, kind, details["seconds"][key],
                     ", ".join(f"{m}={v:.2f}" for m, v in metrics.items()))
        _write(out_dir, results, details, fewshot_curves, model_name)
    _write(out_dir, results, details, fewshot_curves, model_name)
    if jax.process_index() == 0:
        with open(out_dir / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "time": time.time(), "metrics": results}) + "\n")
    if not bool(_get(eval_config, "keep_feature_cache", True)):
        shutil.rmtree(cache_dir, ignore_errors=True)
    if details["errors"] and raise_on_error:
        raise EvalDataError("; ".join(f"{k}: {v}" for k, v in details["errors"].items()))
    return results


def _atomic_text(path: pathlib.Path, text: str):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write(out_dir, results, details, fewshot_curves, model_name="model"):
    if not _is_writer():     # every process computes the same metrics; one writes them
        return
    _atomic_text(out_dir / "results.json", json.dumps(results, indent=1, sort_keys=True))
    _atomic_text(out_dir / "details.json", json.dumps(details, indent=1, default=_jsonable))
    _atomic_text(out_dir / "results.md", markdown_tables(details, model_name))
    if fewshot_curves:
        plots.plot_fewshot(fewshot_curves, out_dir / "plots" / "fewshot.png")


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x))


def _fmt(v) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


def markdown_tables(details: dict, model_name: str = "model") -> str:
    """Markdown tables in the RemoteCLIP paper's layout (one per task present)."""
    by_kind: dict[str, list] = {}
    for key, d in details["datasets"].items():
        by_kind.setdefault(d["kind"], []).append((d.get("name", key.split("/")[0]), d))
    lines = [f"# Evaluation{'' if details.get('step') is None else ' at step ' + str(details['step'])}", ""]
    if "retrieval" in by_kind:
        lines += ["## Cross-modal retrieval", "",
                  "| Dataset | Model | I→T R@1 | I→T R@5 | I→T R@10 | T→I R@1 | T→I R@5 | T→I R@10 | Mean Recall |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, d in by_kind["retrieval"]:
            m = d["metrics"]
            vals = [m[k] for k in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mean_recall")]
            lines.append(f"| {name} | {model_name} | " + " | ".join(_fmt(v) for v in vals) + " |")
        lines.append("")
    row_tables = [("zeroshot", "Zero-shot top-1 accuracy", [("zero-shot", "top1")]),
                  ("linear_probe", "Linear probe top-1 accuracy", [("linear probe", "top1")]),
                  ("knn", "k-NN top-1 accuracy", [("k-NN", "top1")])]
    for kind, title, rows in row_tables:
        if kind not in by_kind:
            continue
        names = [n for n, _ in by_kind[kind]]
        lines += [f"## {title}", "", "| Method | " + " | ".join(names) + " | Average |",
                  "|---" * (len(names) + 2) + "|"]
        for label, metric in rows:
            vals = [d["metrics"][metric] for _, d in by_kind[kind]]
            lines.append(f"| {model_name} {label} | " + " | ".join(_fmt(v) for v in vals)
                         + f" | {_fmt(float(np.mean(vals)))} |")
        lines.append("")
    if "fewshot" in by_kind:
        shots = sorted({int(k) for _, d in by_kind["fewshot"] for k in d["fewshot"]})
        lines += ["## Few-shot linear probe (top-1, mean ± std over episodes)", "",
                  "| Dataset | " + " | ".join(f"{k}-shot" for k in shots) + " |", "|---" * (len(shots) + 1) + "|"]
        for name, d in by_kind["fewshot"]:
            cells = [f"{d['fewshot'][str(k)]['mean']:.2f} ± {d['fewshot'][str(k)]['std']:.2f}"
                     if str(k) in d["fewshot"] else "—" for k in shots]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if "count" in by_kind:
        lines += ["## Object counting (RemoteCount-style)", "", "| Dataset | Model | Top-1 | MAE | Images |",
                  "|---|---|---|---|---|"]
        for name, d in by_kind["count"]:
            lines.append(f"| {name} | {model_name} | {_fmt(d['metrics']['top1'])} | {_fmt(d['metrics']['mae'])} | {d['num_images']} |")
        lines.append("")
    if details.get("errors"):
        lines += ["## Skipped (bad input)", ""] + [f"- **{k}**: {v}" for k, v in details["errors"].items()] + [""]
    return "\n".join(lines)
