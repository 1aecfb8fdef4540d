"""`remoteclip-jax classify`: zero-shot scene labels for a folder of images.

Each class is embedded as zero-shot evaluation does (`evaluate.zeroshot`: one prompt per template,
class-major, combined into one unit vector per class), every image is encoded, and an image's
score for a class is the softmax over classes of 100 x cosine similarity, CLIP's zero-shot logit
scale. Results go to OUT/predictions.csv (or .json), one row per readable image.

    remoteclip-jax classify photos/ --model models/RemoteCLIP-ViT-B-32 --classes "forest,river,airport" --out run1
    remoteclip-jax classify list.txt --model ... --dataset aid --templates remoteclip --top-k 3
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from typing import Sequence

import numpy as np

from remoteclip_jax.data.classnames import dataset_classes, readable_classnames
from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.files import atomic_write, write_json
from remoteclip_jax.data.store import write_skipped
from remoteclip_jax.inference import command_line
from remoteclip_jax.inference.inputs import image_items, parse_class_names
from remoteclip_jax.inference.loading import make_encoder
from remoteclip_jax.prompts import (CLASS_EMBEDDINGS, TEMPLATE_SETS, build_prompts,
                                    class_embeddings, get_templates)

FORMATS = ("csv", "json")
DEFAULT_TOP_K = 5


@dataclasses.dataclass
class Predictions:
    """Zero-shot results for a list of images.

    Attributes:
        paths: the images that were read, in input order.
        class_names: the labels, as given.
        probabilities: (N, C) softmax over classes of 100 x cosine(image, class).
        skipped: (path, reason) for each image that could not be read.
        seconds: wall time of the whole call (model compile included).
        truth: the true class of each image when the input says it (class folders), else None.
    """

    paths: list[str]
    class_names: list[str]
    probabilities: np.ndarray
    skipped: list[tuple[str, str]]
    seconds: float
    truth: list[str] | None = None

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) class indices and their probabilities, best first (ties: lower index first)."""
        k = min(int(k), len(self.class_names))
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(self.probabilities, order, axis=1)

    @property
    def labels(self) -> list[str]:
        """Top-1 label per image."""
        return [self.class_names[i] for i in self.top(1)[0][:, 0]]

    def confusion(self) -> np.ndarray:
        """(C, C) counts [true, predicted top-1] of the images with a known class."""
        index = {name: i for i, name in enumerate(self.class_names)}
        matrix = np.zeros((len(index),) * 2, np.int64)
        np.add.at(matrix, ([index[t] for t in self.truth], [index[p] for p in self.labels]), 1)
        return matrix


def resolve_templates(spec, dataset: str = "") -> tuple[str, ...]:
    """`--templates`: paper | remoteclip | georsclip, one template holding `{}`, a file with one
    template per line, or a list of templates."""
    if isinstance(spec, str) and os.path.isfile(spec):
        with open(spec, encoding="utf-8") as f:
            spec = [line.strip() for line in f if line.strip()]
    elif isinstance(spec, str) and "{}" in spec:
        spec = [spec]
    elif isinstance(spec, str) and spec not in TEMPLATE_SETS:
        raise ConfigError(f"--templates {spec!r}: neither a template set ({', '.join(TEMPLATE_SETS)}) "
                          "nor a template: write {} where the class name goes, e.g. --templates "
                          "\"a satellite photo of {}.\" (or give a file with one template per line)")
    try:
        return get_templates(spec, dataset)
    except ValueError as e:
        raise ConfigError(f"--templates {spec!r}: {e}") from None


def class_classifier(encoder, class_names: Sequence[str], templates: Sequence[str],
                     dataset: str = "", method: str = "average") -> np.ndarray:
    """(C, E) class embeddings: prompts from readable names x templates, combined per class.

    Args:
        encoder: an `Encoder`.
        class_names: labels (folder-style names are made readable for the prompts only).
        templates: prompt templates with one `{}`.
        dataset: dataset name for `readable_classnames`' per-dataset fixes.
        method: "average" (average raw prompt features, normalise: RemoteCLIP's evaluation, the
            default) or "openai" (normalise each prompt feature first); see `evaluate.zeroshot`.
    """
    readable = readable_classnames(list(class_names), dataset)
    prompts = build_prompts(readable, list(templates))
    features = encoder.texts(prompts, desc="prompts", normalize=False)  # the method normalises
    return class_embeddings(features, len(class_names), method)


def softmax_scores(image_features: np.ndarray, classifier: np.ndarray) -> np.ndarray:
    """Softmax over classes of 100 x cosine similarity, in float64."""
    logits = 100.0 * np.asarray(image_features, np.float64) @ np.asarray(classifier, np.float64).T
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def classes_and_templates(classes, dataset: str, templates, class_embedding: str):
    """The class names and prompt templates `classify` and `classify_scene` use (checked)."""
    if class_embedding not in CLASS_EMBEDDINGS:
        raise ConfigError(f"--class-embedding {class_embedding!r}: expected one of "
                         f"{', '.join(CLASS_EMBEDDINGS)}")
    if classes is None:
        if not dataset:
            raise ConfigError("no classes given: pass --classes \"a,b,c\" (or a file, or a folder "
                             "of class sub-folders) or --dataset NAME")
        class_names = dataset_classes(dataset)
    else:
        class_names = parse_class_names(classes)
    return class_names, resolve_templates(templates or ("remoteclip" if dataset else "paper"),
                                          dataset)


def classify(images, classes=None, *, model=None, encoder=None, dataset: str = "",
             templates=None, class_embedding: str = "average",
             out_dir: str | None = None, fmt: str = "csv", top_k: int = DEFAULT_TOP_K,
             **encoder_options) -> Predictions:
    """Zero-shot labels for images, optionally written to `out_dir`.

    Args:
        images: a folder (recursive), a .txt list of paths, an image file, or a list of these.
        classes: "a,b,c", a file with one name per line, a folder of class sub-folders, or a list
            (default: the class list of `dataset`).
        model: a model directory or a `(model, variables)` pair (or pass `encoder`).
        encoder: an `Encoder` to reuse.
        dataset: a scene dataset ("aid", "ucm", "resisc45", ...; `presets.SCENE_DATASETS`): its
            class list when `classes` is not given, its template set for
            templates="remoteclip", and its prompt names (`data.classnames`).
        templates: "paper" | "remoteclip" | "georsclip", a template with `{}`, a file, or a list
            (default: "remoteclip" with a dataset, else "paper").
        class_embedding: "average" (as zero-shot evaluation) or "openai" (see `class_classifier`).
        out_dir: write predictions.csv / predictions.json (and skipped.csv) there.
        fmt: "csv" or "json".
        top_k: alternatives written per image.
        **encoder_options: batch_size, dtype, num_workers, progress for a new `Encoder`.

    Returns:
        `Predictions`.
    """
    start = time.perf_counter()
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    class_names, prompt_templates = classes_and_templates(classes, dataset, templates,
                                                           class_embedding)
    items = image_items(images)
    encoder = make_encoder(model, encoder=encoder, **encoder_options)
    classifier = class_classifier(encoder, class_names, prompt_templates, dataset, class_embedding)
    encoded = encoder.images([im.path for im in items])
    if not encoded.paths:
        raise DataError(f"none of the {len(items)} images could be read; first: "
                        f"{encoded.skipped[0][1]}")
    result = Predictions(encoded.paths, class_names, softmax_scores(encoded.features, classifier),
                         encoded.skipped, 0.0, _truth([items[i] for i in encoded.indices],
                                                      class_names))
    if out_dir is not None:
        write_predictions(result, out_dir, fmt, top_k)
    result.seconds = time.perf_counter() - start
    return result


def _truth(items, class_names: Sequence[str]) -> list[str] | None:
    """The true class of each item, when every item names one of `class_names`: its label
    (``image_folder:``), else its folder's name, matched ignoring case, spaces, -, _ and /
    (folder ``StorageTanks`` is class "storage tanks"); None otherwise."""
    from remoteclip_jax.data.classnames import squash

    by_key = {squash(name): name for name in class_names}
    named = [by_key.get(squash(im.label or os.path.basename(os.path.dirname(im.path))))
             for im in items]
    return named if all(named) else None


def write_predictions(predictions: Predictions, out_dir: str, fmt: str = "csv",
                      top_k: int = DEFAULT_TOP_K) -> str:
    """Writes OUT/predictions.csv (columns path,label,score,label_2,score_2,...) or
    OUT/predictions.json, plus OUT/skipped.csv (path,reason) when images were skipped and
    OUT/confusion.csv (true class per row, predicted per column) when the classes are known.

    Returns:
        The predictions file's path.
    """
    os.makedirs(out_dir, exist_ok=True)
    order, scores = predictions.top(top_k)
    names = predictions.class_names
    k = order.shape[1]
    if fmt == "csv":
        path = os.path.join(out_dir, "predictions.csv")
        header = ["path", "label", "score"]
        header += [f"{col}_{j}" for j in range(2, k + 1) for col in ("label", "score")]
        with atomic_write(path, newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for p, idx, sc in zip(predictions.paths, order, scores):
                row = [p]
                for i, s in zip(idx, sc):
                    row += [names[i], f"{s:.6f}"]
                writer.writerow(row)
    else:
        path = os.path.join(out_dir, "predictions.json")
        rows = [{"path": p, "label": names[idx[0]], "score": round(float(sc[0]), 6),
                 "top": [{"label": names[i], "score": round(float(s), 6)} for i, s in zip(idx, sc)]}
                for p, idx, sc in zip(predictions.paths, order, scores)]
        write_json(path, {"classes": names, "predictions": rows,
                          "skipped": [{"path": p, "reason": r} for p, r in predictions.skipped]},
                   indent=1)
    write_skipped(predictions.skipped, out_dir)
    confusion = os.path.join(out_dir, "confusion.csv")
    if predictions.truth is None and os.path.exists(confusion):
        os.remove(confusion)  # of an earlier run: it does not describe these predictions
    if predictions.truth is not None:
        with atomic_write(confusion, newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["true \\ predicted", *names])
            writer.writerows([name, *row] for name, row in zip(names, predictions.confusion()))
    return path


def classify_scene(scene: str, classes=None, *, model=None, encoder=None, dataset: str = "",
                   templates=None, class_embedding: str = "average",
                   out_dir: str = ".", top_k: int = 3, **tiling) -> dict:
    """Zero-shot labels for every tile of a georeferenced scene (GeoTIFF / COG).

    Classes and prompts as `classify`; the tiles, their footprints in the scene's CRS and the
    outputs (``tiles.geojson``, ``classmap.tif``, ``summary.json``) as
    `remoteclip_jax.geo.workflows.classify_scene`, which `tiling` (tile, stride, units, bands,
    scale, nodata_max_fraction, wgs84, batch_size) is passed to.

    Returns:
        The scene summary (tiles kept and skipped, scaling, CRS, output paths).
    """
    from remoteclip_jax.geo import workflows

    class_names, prompt_templates = classes_and_templates(classes, dataset, templates,
                                                           class_embedding)
    encoder = make_encoder(model, encoder=encoder)
    classifier = class_classifier(encoder, class_names, prompt_templates, dataset, class_embedding)
    return workflows.classify_scene(scene, encoder.arrays, classifier, class_names, out_dir,
                                    top_k=top_k, **tiling)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remoteclip-jax classify", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Zero-shot scene labels for images. Score = softmax over the given classes "
                    "of 100 x cosine similarity between the image and each class embedding "
                    "(CLIP's zero-shot logit scale); scores of one image sum to 1. Images in "
                    "folders named after the classes are scored: top-1 accuracy is printed and "
                    "OUT/confusion.csv written.")
    parser.add_argument("input", help=command_line.SOURCE_HELP)
    command_line.add_encoder_arguments(parser)
    command_line.add_class_arguments(parser)
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                        help="alternatives per image (columns label_2, score_2, ...)")
    parser.add_argument("--out", default=".", help="output folder (predictions.csv is written there)")
    parser.add_argument("--format", choices=FORMATS, default="csv",
                        help="csv: predictions.csv; json: predictions.json")
    command_line.add_tiling_arguments(parser, "every tile gets a label; writes OUT/tiles.geojson "
                                      "(tile polygons in the scene's CRS, named in the file), "
                                      "OUT/classmap.tif and OUT/summary.json")
    parser.add_argument("--wgs84", action="store_true",
                        help="scenes: also write tiles_wgs84.geojson (RFC 7946 longitude/latitude)")
    return parser


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise ConfigError(f"--top-k {args.top_k}: must be at least 1")
    options = command_line.encoder_options(args)
    if args.tile is not None:
        summary = classify_scene(
            args.input, args.classes, encoder=make_encoder(args.model, **options),
            dataset=args.dataset, templates=args.templates, class_embedding=args.class_embedding,
            out_dir=args.out, top_k=args.top_k, wgs84=args.wgs84,
            **command_line.tiling_options(args))
        print(f"classified {_count(summary['tiles_kept'], 'tile')} of {args.input}, "
              f"{summary['tiles_skipped_nodata']} skipped as nodata -> "
              f"{os.path.join(args.out, 'tiles.geojson')}")
        return 0
    result = classify(args.input, args.classes, model=args.model, dataset=args.dataset,
                      templates=args.templates, class_embedding=args.class_embedding,
                      out_dir=args.out, fmt=args.format, top_k=args.top_k, **options)
    command_line.report_skipped(result.skipped)
    if len(result.paths) == 1:
        print(f"{result.paths[0]}: {result.labels[0]} ({result.top(1)[1][0, 0]:.3f})")
    if result.truth is not None:
        print(f"top-1 accuracy {100 * np.mean(np.asarray(result.labels) == result.truth):.2f}% "
              f"over {_count(len(result.paths), 'labelled image')} (confusion matrix: "
              f"{os.path.join(args.out, 'confusion.csv')})")
    name = "predictions.csv" if args.format == "csv" else "predictions.json"
    print(f"classified {_count(len(result.paths), 'image')}, skipped {len(result.skipped)}, "
          f"{result.seconds:.1f} s -> {os.path.join(args.out, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
