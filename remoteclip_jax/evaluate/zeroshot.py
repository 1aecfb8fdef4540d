"""Zero-shot classification: class embeddings from prompt templates, 100 x cosine logits, metrics.

Class embeddings come from `remoteclip_jax.prompts` (``class_embedding``: "average" or "openai").
Logits are 100 x cosine (ITRA zero_shot.py line 78). Top-k accuracy follows the tie rules of
`remoteclip_jax.evaluate.retrieval` (``ties``, default "expected"; the reference takes
``torch.topk``, arbitrary among exactly equal logits). The confusion matrix and mean-per-class
accuracy use argmax (first maximum) as the prediction.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from absl import logging

from remoteclip_jax.data.classnames import CLASS_NAMES, dataset_key, resolve_classnames
from remoteclip_jax.evaluate import plots, report
from remoteclip_jax.evaluate.retrieval import (SCORE_TIE_RULES, TIES_KEY, hit_probability,
                                               tie_stats_from_scores)
from remoteclip_jax.evaluate.splits import SPLIT_KEYS, SPLIT_ORDERS, labelled_split
from remoteclip_jax.evaluate.task import Task
from remoteclip_jax.prompts import (CLASS_EMBEDDINGS, build_prompts, class_embeddings, get_templates,
                                    l2_normalize)

def zeroshot_classifier(encode_text: Callable[[list[str]], np.ndarray], classnames: Sequence[str],
                        templates: Sequence[str], method: str = "average") -> np.ndarray:
    """Class embeddings (C, E) from a text encoder ``list[str] -> (N, E)`` features."""
    feats = encode_text(build_prompts(classnames, templates))
    return class_embeddings(feats, len(classnames), method)


def zeroshot_logits(image_features, classifier) -> np.ndarray:
    """100 x cosine similarity between images (N, E) and class embeddings (C, E)."""
    return 100.0 * l2_normalize(image_features) @ l2_normalize(classifier).T


def topk_correct(logits, labels, k: int, ties: str = "expected") -> np.ndarray:
    """Per sample, the probability that the true class is among the k highest scores.

    0/1 under "pessimistic" (classes tied with the true one rank first) and "optimistic";
    the exact expectation over random orders of tied classes under "expected".
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels, np.int64)
    right = np.arange(logits.shape[1])[None, :] == labels[:, None]
    return hit_probability(tie_stats_from_scores(logits, right), k, ties)


def classification_metrics(logits, labels, num_classes: int | None = None, ks=(1, 5),
                           ties: str = "expected") -> dict:
    """Top-k accuracy, per-class accuracy and confusion matrix from class scores.

    Args:
        logits: (N, C) scores (any monotone scale).
        labels: (N,) true class indices.
        num_classes: C (defaults to logits.shape[1]).
        ks: top-k cut-offs; k >= C gives 100.
        ties: tie rule for top-k ("expected", "pessimistic", "optimistic").

    Returns:
        {"top1": %, "top5": %, "mean_per_class": % (balanced accuracy over classes present),
         "per_class": [% or nan per class], "confusion": (C, C) int array [true, predicted]}.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels, np.int64)
    c = num_classes or logits.shape[1]
    out = {f"top{k}": float(100.0 * topk_correct(logits, labels, k, ties).mean()) for k in ks}
    pred = logits.argmax(axis=1)
    conf = np.zeros((c, c), np.int64)
    np.add.at(conf, (labels, pred), 1)
    support = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, 100.0 * np.diag(conf) / support, np.nan)
    out["mean_per_class"] = float(np.nanmean(per_class)) if np.any(support > 0) else float("nan")
    out["per_class"] = per_class.tolist()
    out["confusion"] = conf
    return out


# --- the zeroshot task -----------------------------------------------------------------------------

KEYS = {
    # "remoteclip" (RemoteCLIP's per-dataset prompt sets) | "paper" | "georsclip" | a list of
    # "{}" templates.
    "templates": "remoteclip",
    # "average" (mean of raw prompt features, then normalised: ITRA and GeoRSCLIP) | "openai"
    # (mean of normalised prompt features, OpenAI CLIP's notebook).
    "class_embedding": "average",
    "classnames": {},          # {class folder: readable name} overrides
    # Whose reference class names and per-dataset templates to use ("aid", "eurosat",
    # "WHU-RS19", ...); "" = the entry's name. Classes without a table entry get rule-made names
    # (a warning says so), e.g. after renaming an entry.
    "dataset": "",
    "subset": "test",          # "test" = the paper's held-out 20% per class | "all"
    **TIES_KEY, **SPLIT_KEYS,
}


def _prepare(entry, ds, tokenize) -> dict:
    out = labelled_split(entry, ds)
    if entry["subset"] == "all":
        out["test"] = np.arange(len(out["labels"]))
    dataset = entry["dataset"] or entry["name"]
    readable, name_sources = resolve_classnames(out["classes"], dataset,
                                                dict(entry["classnames"]) or None)
    _warn_rule_names(entry, dataset, out["classes"], name_sources)
    templates = get_templates(list(entry["templates"]) if isinstance(entry["templates"], (list, tuple))
                              else entry["templates"], dataset)
    return {**out, "readable": readable, "name_sources": name_sources,
            "templates": list(templates), "tokens": tokenize(build_prompts(readable, templates))}


def _warn_rule_names(entry, dataset, classes, name_sources) -> None:
    """Says when class names fall back to the generic rules: a renamed entry, or a dataset
    without a reference table, should not change prompts silently."""
    ruled = [c for c, s in zip(classes, name_sources) if s == "rule"]
    if not ruled:
        return
    known = dataset_key(dataset) in CLASS_NAMES
    why = (f"dataset {dataset!r} has no reference class-name table" if not known
           else f"{len(ruled)} of {len(classes)} classes are not in {dataset!r}'s table")
    logging.warning("eval %s: %s; rule-made names for %s%s. Set config.evals.%s.dataset to the "
                    "dataset's name (e.g. aid, eurosat) or config.evals.%s.classnames",
                    entry["name"], why, ", ".join(ruled[:3]), " ..." if len(ruled) > 3 else "",
                    entry["name"], entry["name"])


def _run(ev, variables, entry, prep, image_features):
    classes, readable, idx = prep["classes"], prep["readable"], prep["test"]
    cls = class_embeddings(ev.text_features(variables, prep["tokens"]), len(classes),
                           entry["class_embedding"])
    m = classification_metrics(zeroshot_logits(image_features[idx], cls), prep["labels"][idx],
                               len(classes), ties=entry["ties"])
    conf = m.pop("confusion")
    per_class = dict(zip(readable, m.pop("per_class")))
    if report.is_writer():
        plots.plot_confusion(conf, readable, ev.out_dir / "plots" / f"{entry['name']}_zeroshot_confusion.png",
                             f"{entry['name']} zero-shot (top-1 {m['top1']:.2f}%)")
    return m, {"per_class": per_class, "confusion": conf.tolist(), "classnames": readable,
               "classname_sources": prep["name_sources"], "templates": prep["templates"],
               "num_images": int(len(idx)), "ties": entry["ties"]}


TASKS = [Task("zeroshot", KEYS, _prepare, _run,
              choices={"ties": SCORE_TIE_RULES, "class_embedding": CLASS_EMBEDDINGS,
                       "subset": ("test", "all"), "split_order": SPLIT_ORDERS})]
