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

RemoteCount's 947 DOTA images were never released, so counts come from a **manifest**, a JSONL
file with one object per line::

    {"image": "images/P0706.png", "category": "ship", "count": 3}

``image`` is absolute or relative to the manifest's folder; ``category`` is a readable class name
(singular); ``count`` is an int in 1..10. Build one from DOTA-style labels (any B2C-convertible
boxes) with::

    python -m remoteclip_jax.evaluate.counting --dota=DOTA_ROOT --out=count.jsonl

which writes one line per (image, category) whose object count lies in 1..10.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Iterable, Sequence

import numpy as np

from remoteclip_jax.errors import EvalDataError

NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
DEFAULT_TEMPLATE = "There {be} {number} {objects} in the picture."
COUNTS = tuple(range(1, 11))


@dataclasses.dataclass(frozen=True)
class CountItem:
    image: str      # resolved path
    category: str   # singular readable name
    count: int      # 1..10


def count_caption(category: str, n: int, template: str = DEFAULT_TEMPLATE) -> str:
    """The caption stating ``n`` objects of ``category`` (number as a word, plural agreement)."""
    from remoteclip_jax.data.classnames import pluralize
    objects = category if n == 1 else pluralize(category)
    return template.format(be="is" if n == 1 else "are", number=NUMBER_WORDS[n - 1], digits=n,
                           objects=objects)


def count_captions(category: str, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """The ten captions for counts 1..10."""
    return [count_caption(category, n, template) for n in COUNTS]


def read_count_manifest(path: str) -> list[CountItem]:
    """Parse a counting manifest; errors name the file and line.

    Raises:
        EvalDataError: missing file, bad JSON, missing key, count outside 1..10, or no items.
    """
    path = str(path)
    root = pathlib.Path(path).parent
    if not os.path.isfile(path):
        raise EvalDataError(f"{path}: counting manifest not found")
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                image, category, count = rec["image"], str(rec["category"]), int(rec["count"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise EvalDataError(f"{path}:{lineno}: expected JSON with image, category, count ({e})") from None
            if not 1 <= count <= 10:
                raise EvalDataError(f"{path}:{lineno}: count {count} outside 1..10")
            items.append(CountItem(str(root / image), category, count))
    if not items:
        raise EvalDataError(f"{path}: counting manifest has no items")
    return items


def count_scores(image_features, caption_features: dict[str, np.ndarray],
                 items: Sequence[CountItem]) -> np.ndarray:
    """(N, 10) cosine similarity of each item's image to its category's captions for counts 1..10.

    Args:
        image_features: (N, E) features of the items' images, in item order.
        caption_features: {category: (10, E) features of ``count_captions(category)``}.
        items: the manifest items.
    """
    from remoteclip_jax.evaluate.retrieval import l2_normalize
    img = l2_normalize(image_features)
    scores = np.empty((len(items), len(COUNTS)), np.float64)
    for i, it in enumerate(items):
        scores[i] = l2_normalize(caption_features[it.category]) @ img[i]
    return scores


def count_predictions(image_features, caption_features: dict[str, np.ndarray],
                      items: Sequence[CountItem]) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Manifest building from detection labels.

def manifest_rows(images: Iterable, min_count: int = 1, max_count: int = 10, dataset: str = "dota",
                  options=None) -> list[dict]:
    """One manifest row per (image, category) whose B2C object count is within the range.

    Args:
        images: ``AnnotatedImage`` records with boxes.
        min_count, max_count: counts kept (1..10 for RemoteCount).
        dataset: dataset name for class-name normalisation.
        options: ``B2COptions`` (difficult/ignore filters), default B2C's.
    """
    from remoteclip_jax.data.b2c import count_objects
    rows = []
    for im in images:
        for category, n in count_objects(im.boxes, options, dataset).items():
            if min_count <= n <= max_count:
                rows.append({"image": im.path, "category": category, "count": int(n)})
    return rows


def dota_images(root: str) -> list:
    """``AnnotatedImage`` per DOTA label file (``root/labelTxt``) whose image exists."""
    from remoteclip_jax.data.readers import AnnotationError, read_dota
    try:
        images = read_dota(pathlib.Path(root) / "labelTxt")
    except AnnotationError as e:
        raise EvalDataError(str(e)) from None
    return [im for im in images if os.path.isfile(im.path)]


def write_manifest(rows: Sequence[dict], out: str):
    """Write rows as JSONL with image paths relative to the manifest's folder."""
    base = pathlib.Path(out).resolve().parent
    base.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            rel = os.path.relpath(pathlib.Path(r["image"]).resolve(), base)
            f.write(json.dumps({**r, "image": rel}) + "\n")


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="Build a RemoteCount-style counting manifest from DOTA labels.")
    p.add_argument("--dota", required=True, help="folder with images/ and labelTxt/")
    p.add_argument("--out", required=True, help="manifest JSONL to write")
    p.add_argument("--min_count", type=int, default=1)
    p.add_argument("--max_count", type=int, default=10)
    p.add_argument("--exclude_difficult", action="store_true", help="drop DOTA difficult objects")
    a = p.parse_args(argv)
    from remoteclip_jax.data.b2c import B2COptions
    opts = B2COptions(include_difficult=not a.exclude_difficult)
    rows = manifest_rows(dota_images(a.dota), a.min_count, a.max_count, options=opts)
    write_manifest(rows, a.out)
    print(f"wrote {len(rows)} items to {a.out}")


if __name__ == "__main__":
    main()
