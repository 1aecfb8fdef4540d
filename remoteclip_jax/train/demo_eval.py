"""Held-out synthetic scenes written as evaluation files for the demo run.

The demo (`configs/demo.py`) trains on the built-in synthetic scenes and must show retrieval and
counting far above chance with no download. The evaluators read files, so this module renders
scenes from a seed the training stream never uses and writes them as PNGs plus

* ``retrieval.jsonl``: ``{"image", "captions", "split": "test"}`` per scene (the caption JSONL
  layout `remoteclip_jax.data.readers.read_caption_jsonl` reads);
* ``count.jsonl``: ``{"image", "category", "count"}`` per (scene, category) with 1–10 objects
  (the counting manifest of `remoteclip_jax.evaluate.counting`).
"""
from __future__ import annotations

import json
import pathlib

from PIL import Image

# Training scenes use seed `config.seed` (0 by default); evaluation scenes use this one.
EVAL_SEED = 10_007


def write_demo_eval_set(out_dir: str | pathlib.Path, num_images: int, image_size: int,
                        seed: int = EVAL_SEED) -> dict:
    """Writes (once) the held-out scenes and returns eval dataset entries for `config.eval`.

    Args:
        out_dir: where the files go; reused when it already holds this exact set.
        num_images: scenes to render.
        image_size: their side in pixels.
        seed: scene seed (keep it different from the training seed).

    Returns:
        ``{"retrieval": entry, "count": entry}``, dicts for `run_evaluation`.
    """
    from remoteclip_jax.data.synthetic import SyntheticSource

    out_dir = pathlib.Path(out_dir)
    marker = out_dir / "done.json"
    spec = {"num_images": int(num_images), "image_size": int(image_size), "seed": int(seed)}
    entries = {
        "retrieval": {"kind": "retrieval", "name": "synthetic_retrieval",
                      "path": str(out_dir / "retrieval.jsonl"), "split": "test"},
        "count": {"kind": "count", "name": "synthetic_count",
                  "manifest": str(out_dir / "count.jsonl")},
    }
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return entries
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    source = SyntheticSource(num_images, image_size, seed)
    retrieval, counts = [], []
    for i in range(num_images):
        scene = source.scene(i)
        name = f"images/scene_{i:05d}.png"
        Image.fromarray(scene.image).save(out_dir / name)
        retrieval.append({"image": name, "captions": scene.captions, "split": "test"})
        for category, count in sorted(scene.counts.items()):
            if 1 <= count <= 10:
                counts.append({"image": name, "category": category, "count": int(count)})
    (out_dir / "retrieval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in retrieval))
    (out_dir / "count.jsonl").write_text("".join(json.dumps(c) + "\n" for c in counts))
    marker.write_text(json.dumps(spec))
    return entries
