"""Zero-shot classification: class embeddings from prompt templates, 100 x cosine logits, metrics.

Class embedding methods (``class_embedding`` in the config):

* ``"openai"``: L2-normalise each prompt's text feature, average over templates, normalise again
  (OpenAI CLIP's notebook).
* ``"average"``: average the *unnormalised* prompt features, then normalise (RemoteCLIP's and
  GeoRSCLIP's evaluation code); use it to reproduce their numbers.

Top-k uses the same pessimistic tie rule as retrieval: the true class is in the top k when fewer
than k *other* classes score greater than **or equal** to it. The confusion matrix uses argmax
(first maximum) as the prediction.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from remoteclip_jax.evaluate.retrieval import l2_normalize

CLASS_EMBEDDINGS = ("openai", "average")


def build_prompts(classnames: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Class-major prompt list: all templates for class 0, then class 1, ..."""
    return [t.replace("{}", c) for c in classnames for t in templates]


def class_embeddings(prompt_features, num_classes: int, method: str = "openai") -> np.ndarray:
    """Combine per-prompt text features into one unit vector per class.

    Args:
        prompt_features: (num_classes * num_templates, E), class-major (see ``build_prompts``).
        num_classes: number of classes.
        method: "openai" (normalise, average, normalise) or "average" (average, normalise).

    Returns:
        (num_classes, E) float64, rows of unit norm.
    """
    if method not in CLASS_EMBEDDINGS:
        raise ValueError(f"class_embedding must be one of {CLASS_EMBEDDINGS}, got {method!r}")
    f = np.asarray(prompt_features, np.float64)
    if f.shape[0] % num_classes:
        raise ValueError(f"{f.shape[0]} prompt features do not split into {num_classes} classes")
    f = f.reshape(num_classes, f.shape[0] // num_classes, f.shape[-1])
    if method == "openai":
        f = l2_normalize(f)
    return l2_normalize(f.mean(axis=1))


def zeroshot_classifier(encode_text: Callable[[list[str]], np.ndarray], classnames: Sequence[str],
                        templates: Sequence[str], method: str = "openai") -> np.ndarray:
    """Class embeddings (C, E) from a text encoder ``list[str] -> (N, E)`` features."""
    feats = encode_text(build_prompts(classnames, templates))
    return class_embeddings(feats, len(classnames), method)


def zeroshot_logits(image_features, classifier) -> np.ndarray:
    """100 x cosine similarity between images (N, E) and class embeddings (C, E)."""
    return 100.0 * l2_normalize(image_features) @ l2_normalize(classifier).T


def topk_correct(logits, labels, k: int) -> np.ndarray:
    """Per-sample bool: fewer than k other classes score >= the true class (pessimistic ties)."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, np.int64)
    true = logits[np.arange(len(labels)), labels][:, None]
    ahead = (logits >= true).sum(axis=1) - 1
    return ahead < k


def classification_metrics(logits, labels, num_classes: int | None = None, ks=(1, 5)) -> dict:
    """Top-k accuracy, per-class accuracy and confusion matrix from class scores.

    Args:
        logits: (N, C) scores (any monotone scale).
        labels: (N,) true class indices.
        num_classes: C (defaults to logits.shape[1]).
        ks: top-k cut-offs; k >= C gives 100.

    Returns:
        {"top1": %, "top5": %, "mean_per_class": % (balanced accuracy over classes present),
         "per_class": [% or nan per class], "confusion": (C, C) int array [true, predicted]}.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels, np.int64)
    c = num_classes or logits.shape[1]
    out = {f"top{k}": float(100.0 * topk_correct(logits, labels, k).mean()) for k in ks}
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
