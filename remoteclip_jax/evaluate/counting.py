"""RemoteCount-style object counting as zero-shot classification over count captions.

For an image showing ``n`` objects of one category (1 <= n <= 10), ten captions are built that
differ only in the number, and the predicted count is the caption most similar to the image.
Reported: top-1 accuracy, mean absolute error, a 10 x 10 confusion matrix and the top-k accuracy
curve for k = 1..10 that the RemoteCLIP paper plots for RemoteCount (the ten captions ranked by
similarity; top-k = the true count is among the k best). Top-k uses the tie rules of
`remoteclip_jax.evaluate.retrieval` (``ties``, default "expected").

Caption form (default): "There is one tennis court in the picture." / "There are two tennis
courts in the picture." ... "There are ten tennis courts in the picture.": numbers spelled out as
words, with verb and plural agreeing (the RemoteCLIP paper shows spelled-out counts in this
"There are ... " form; its exact template was not released, so this is our reconstruction).
Another template can be given with ``{be}``, ``{number}`` (the word), ``{digits}`` and
``{objects}`` placeholders; "There {be} {digits} {objects} in the picture." matches the digits
that Box-to-Caption writes, for models trained on B2C captions.

RemoteCount's 947 DOTA images were never released, so counts come from a manifest read by
`remoteclip_jax.data.readers.count_manifest` (or any source whose items carry ``counts``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from remoteclip_jax.errors import DataError
from remoteclip_jax.evaluate import plots, report
from remoteclip_jax.evaluate.retrieval import SCORE_TIE_RULES, TIES_KEY
from remoteclip_jax.evaluate.task import Task
from remoteclip_jax.prompts import l2_normalize

NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
DEFAULT_TEMPLATE = "There {be} {number} {objects} in the picture."
COUNTS = tuple(range(1, 11))


def count_caption(category: str, n: int, template: str = DEFAULT_TEMPLATE) -> str:
    """The caption stating ``n`` objects of ``category`` (number as a word, plural agreement)."""
    from remoteclip_jax.data.classnames import pluralize
    objects = category if n == 1 else pluralize(category)
    return template.format(be="is" if n == 1 else "are", number=NUMBER_WORDS[n - 1], digits=n,
                           objects=objects)


def count_captions(category: str, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """The ten captions for counts 1..10."""
    return [count_caption(category, n, template) for n in COUNTS]


def count_scores(image_features, caption_features: dict[str, np.ndarray], items: Sequence) -> np.ndarray:
    """(N, 10) cosine similarity of each item's image to its category's captions for counts 1..10.

    Args:
        image_features: (N, E) features of the items' images, in item order.
        caption_features: {category: (10, E) features of ``count_captions(category)``}.
        items: each item's category, or items with a ``category`` (manifest `CountItem`s).
    """
    img = l2_normalize(image_features)
    scores = np.empty((len(items), len(COUNTS)), np.float64)
    for i, it in enumerate(items):
        scores[i] = l2_normalize(caption_features[getattr(it, "category", it)]) @ img[i]
    return scores


def count_predictions(image_features, caption_features: dict[str, np.ndarray], items: Sequence) -> np.ndarray:
    """Predicted counts: argmax over each item's category's ten caption features (cosine)."""
    return np.asarray(COUNTS)[np.argmax(count_scores(image_features, caption_features, items), axis=1)]


def count_topk_curve(scores, counts, ks=COUNTS, ties: str = "expected") -> dict[int, float]:
    """Top-k accuracy (%) for each k: the true count is among the k highest-scoring captions.

    Args:
        scores: (N, 10) scores of the captions for counts 1..10 (``count_scores``).
        counts: (N,) true counts in 1..10.
        ks: cut-offs (default 1..10).
        ties: "expected" (default), "pessimistic" or "optimistic".
    """
    from remoteclip_jax.evaluate.zeroshot import topk_correct
    labels = np.asarray(counts, np.int64) - 1
    return {int(k): float(100.0 * topk_correct(scores, labels, int(k), ties).mean()) for k in ks}


def count_report(scores, counts, ties: str = "expected") -> tuple[dict, dict]:
    """Everything RemoteCount reports, from the (N, 10) caption scores.

    Returns:
        (metrics, details): metrics {"top1": % (tie rule), "mae": mean |argmax count - true|,
        "top5": %}; details {"topk_curve": {k: %} for k = 1..10, "confusion": (10, 10) int array
        [true-1, predicted-1] of the argmax prediction, "ties": rule}.
    """
    scores = np.asarray(scores)
    counts = np.asarray(counts, np.int64)
    preds = np.asarray(COUNTS)[np.argmax(scores, axis=1)]
    curve = count_topk_curve(scores, counts, COUNTS, ties)
    base = count_metrics(preds, counts)
    metrics = {"top1": curve[1], "mae": base["mae"], "top5": curve[5]}
    return metrics, {"topk_curve": curve, "confusion": base["confusion"], "ties": ties}


def count_metrics(preds, counts) -> dict:
    """{"top1": %, "mae": mean |pred - true|, "confusion": (10, 10) [true-1, pred-1]}."""
    preds, counts = np.asarray(preds), np.asarray(counts)
    conf = np.zeros((10, 10), np.int64)
    np.add.at(conf, (counts - 1, preds - 1), 1)
    return {"top1": float(100.0 * np.mean(preds == counts)),
            "mae": float(np.mean(np.abs(preds - counts))), "confusion": conf}


# --- the count task --------------------------------------------------------------------------------

def _prepare(entry, ds, tokenize) -> dict:
    questions = [(i, cat, n) for i, c in enumerate(ds.counts) for cat, n in sorted(c.items())
                 if 1 <= n <= 10]
    if not questions:
        raise DataError(f"{ds.name}: no object counts between 1 and 10")
    cats = sorted({cat for _, cat, _ in questions})
    prompts = [p for cat in cats for p in count_captions(cat, entry["template"])]
    return {"questions": questions, "cats": cats, "tokens": tokenize(prompts)}


def _run(ev, variables, entry, prep, feats):
    cats, questions = prep["cats"], prep["questions"]
    pf = ev.text_features(variables, prep["tokens"]).reshape(len(cats), 10, -1)
    scores = count_scores(feats[[i for i, _, _ in questions]], dict(zip(cats, pf)),
                          [cat for _, cat, _ in questions])
    m, details = count_report(scores, [n for _, _, n in questions], ties=entry["ties"])
    conf = details.pop("confusion")
    if report.is_writer():
        name = entry["name"]
        plots.plot_confusion(conf, [str(n) for n in COUNTS],
                             ev.out_dir / "plots" / f"{name}_count_confusion.png",
                             f"{name} counting (top-1 {m['top1']:.2f}%)")
        plots.plot_count_topk({name: details["topk_curve"]}, ev.out_dir / "plots" / f"{name}_count_topk.png")
    return m, {**details, "confusion": conf.tolist(), "num_images": len(questions)}


# template: the count prompt, with {be}, {number}, {digits} and {objects}.
TASKS = [Task("count", {"template": DEFAULT_TEMPLATE, **TIES_KEY}, _prepare, _run,
              choices={"ties": SCORE_TIE_RULES})]
