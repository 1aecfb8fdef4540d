"""Zero-shot classification: class embeddings from prompt templates, 100 x cosine logits, metrics.

Class embedding methods (``class_embedding`` in the config):

* ``"average"`` (default): average the *unnormalised* prompt features, then normalise. This is what
  RemoteCLIP's evaluation code does, ChenDelong1999/ITRA branch test
  ``itra/evaluation/zero_shot.py`` lines 34-36 (``class_embeddings.mean(dim=0)`` then
  ``F.normalize``), and GeoRSCLIP's, om-ai-lab/RS5M ``inference/inference_tool.py`` lines 136-139.
* ``"openai"``: L2-normalise each prompt's text feature, average over templates, normalise again
  (OpenAI CLIP's notebook).

Logits are 100 x cosine (ITRA zero_shot.py line 78). Top-k accuracy follows the tie rules of
`remoteclip_jax.evaluate.retrieval` (``ties``, default "expected"; the reference takes
``torch.topk``, arbitrary among exactly equal logits). The confusion matrix and mean-per-class
accuracy use argmax (first maximum) as the prediction.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from remoteclip_jax.evaluate.choices import check_choice
from remoteclip_jax.evaluate.retrieval import hit_probability, l2_normalize, tie_stats_from_scores

CLASS_EMBEDDINGS = ("average", "openai")
DEFAULT_CLASS_EMBEDDING = "average"


def build_prompts(classnames: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Class-major prompt list: all templates for class 0, then class 1, ..."""
    return [t.replace("{}", c) for c in classnames for t in templates]


def class_embeddings(prompt_features, num_classes: int, method: str = DEFAULT_CLASS_EMBEDDING) -> np.ndarray:
    """Combine per-prompt text features into one unit vector per class.

    Args:
        prompt_features: (num_classes * num_templates, E), class-major (see ``build_prompts``).
        num_classes: number of classes.
        method: "average" (average, normalise; the reference code's) or "openai" (normalise,
            average, normalise).

    Returns:
        (num_classes, E) float64, rows of unit norm.
    """
    check_choice("class_embedding", method, CLASS_EMBEDDINGS)
    f = np.asarray(prompt_features, np.float64)
    if f.shape[0] % num_classes:
        raise ValueError(f"{f.shape[0]} prompt features do not split into {num_classes} classes")
    f = f.reshape(num_classes, f.shape[0] // num_classes, f.shape[-1])
    if method == "openai":
        f = l2_normalize(f)
    return l2_normalize(f.mean(axis=1))


def zeroshot_classifier(encode_text: Callable[[list[str]], np.ndarray], classnames: Sequence[str],
                        templates: Sequence[str], method: str = DEFAULT_CLASS_EMBEDDING) -> np.ndarray:
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
