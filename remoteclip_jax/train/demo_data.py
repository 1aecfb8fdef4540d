"""The demo's data: built-in synthetic scenes, rendered once into files for training and eval.

`configs/demo.py` trains on the procedural scenes of `remoteclip_jax.data.synthetic` and must show
retrieval and counting far above chance with no download. This module

* renders the training scenes once into record shards (``WORKDIR/demo_train``): drawing a scene
  costs ~10x more than decoding it, and a run sees every scene many times;
* renders held-out scenes (another seed) into ``WORKDIR/demo_eval``: PNGs plus
  ``retrieval.jsonl`` (``{"image", "captions", "split": "test"}``, the caption JSONL layout) and
  ``count.jsonl`` (``{"image", "category", "count"}``, the counting manifest of
  `remoteclip_jax.evaluate.counting`).

Counts are spelled out ("3 houses" → "three houses") in both, because the counting evaluator's
prompts spell them out ("There are three houses in the picture.") and B2C writes digits.

``max_categories`` keeps only scenes with at most that many object categories (scenes are drawn
in index order and skipped when they have more): one category per scene makes every count caption
about the whole scene, which a tiny model learns in minutes.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil

from PIL import Image

# Training scenes use seed `config.seed`; evaluation scenes use this one.
EVAL_SEED = 10_007
_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_NUMBER = re.compile(r"\b(10|[1-9])\b")


def spell_counts(caption: str) -> str:
    """Replaces the numbers 1-10 in a caption by words ("There are 3 cars" → "... three cars")."""
    return _NUMBER.sub(lambda m: _WORDS[int(m.group(1)) - 1], caption)


def _scenes(source, num_images: int, max_categories: int):
    """The first `num_images` scenes of `source` with at most `max_categories` categories."""
    index, kept = 0, 0
    limit = 50 * num_images  # scenes are random: this many draws always suffice in practice
    while kept < num_images and index < limit:
        scene = source.scene(index)
        index += 1
        if max_categories <= 0 or len(scene.counts) <= max_categories:
            kept += 1
            yield scene
    if kept < num_images:
        raise ValueError(f"only {kept} of {limit} synthetic scenes have <= {max_categories} "
                         "categories")


def _fresh(out_dir: pathlib.Path, spec: dict) -> bool:
    marker = out_dir / "demo_spec.json"
    return marker.exists() and json.loads(marker.read_text()) == spec


def write_demo_train_records(out_dir: str | pathlib.Path, num_images: int, image_size: int,
                             seed: int, max_categories: int = 0) -> pathlib.Path:
    """Renders the training scenes into record shards once; returns the records directory."""
    from remoteclip_jax.data import records
    from remoteclip_jax.data.synthetic import SyntheticSource

    out_dir = pathlib.Path(out_dir)
    spec = {"num_images": int(num_images), "image_size": int(image_size), "seed": int(seed),
            "spelled_counts": True, "max_categories": int(max_categories)}
    if _fresh(out_dir, spec):
        return out_dir
    if out_dir.exists():
        shutil.rmtree(out_dir)
    source = SyntheticSource(50 * num_images, image_size, seed)
    with records.RecordWriter(out_dir, metadata={"synthetic": spec}) as writer:
        for i, scene in enumerate(_scenes(source, num_images, max_categories)):
            writer.write({
                "image": records.encode_jpeg(Image.fromarray(scene.image), quality=95),
                "captions": [spell_counts(c) for c in scene.captions],
                "source": "synthetic", "image_id": f"synthetic-{seed}-{i}",
                "width": scene.image.shape[1], "height": scene.image.shape[0],
                "label": scene.background, "counts": dict(scene.counts),
                "ann_ids": [b.ann_id for b in scene.boxes],
                "boxes": [dataclasses.asdict(b) for b in scene.boxes]})
    (out_dir / "demo_spec.json").write_text(json.dumps(spec))
    return out_dir


def write_demo_eval_set(out_dir: str | pathlib.Path, num_images: int, image_size: int,
                        seed: int = EVAL_SEED, max_categories: int = 0) -> dict:
    """Writes (once) the held-out scenes and returns their eval dataset entries.

    Returns:
        ``{"retrieval": entry, "count": entry}``, dicts for `run_evaluation`.
    """
    from remoteclip_jax.data.synthetic import SyntheticSource

    out_dir = pathlib.Path(out_dir)
    spec = {"num_images": int(num_images), "image_size": int(image_size), "seed": int(seed),
            "spelled_counts": True, "max_categories": int(max_categories)}
    entries = {
        "retrieval": {"kind": "retrieval", "name": "synthetic_retrieval",
                      "path": str(out_dir / "retrieval.jsonl"), "split": "test"},
        "count": {"kind": "count", "name": "synthetic_count",
                  "manifest": str(out_dir / "count.jsonl")},
    }
    if _fresh(out_dir, spec):
        return entries
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    source = SyntheticSource(50 * num_images, image_size, seed)
    retrieval, counts = [], []
    for i, scene in enumerate(_scenes(source, num_images, max_categories)):
        name = f"images/scene_{i:05d}.png"
        Image.fromarray(scene.image).save(out_dir / name)
        retrieval.append({"image": name, "captions": [spell_counts(c) for c in scene.captions],
                          "split": "test"})
        for category, count in sorted(scene.counts.items()):
            if 1 <= count <= 10:
                counts.append({"image": name, "category": category, "count": int(count)})
    (out_dir / "retrieval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in retrieval))
    (out_dir / "count.jsonl").write_text("".join(json.dumps(c) + "\n" for c in counts))
    (out_dir / "demo_spec.json").write_text(json.dumps(spec))
    return entries
