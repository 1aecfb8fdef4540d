"""The model card (`README.md`) every exported model directory carries.

It states what the weights cannot: the architecture and activation the model must run with, what
it was trained on and for how long, how it scored (from a run's `eval/results.json`, whose keys
are `eval/<dataset>/<metric>`), and the licence the user chose. The YAML front matter uses the
keys model hubs index (`license`, `library_name`, `tags`, `pipeline_tag`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

from remoteclip_jax.errors import DataError
from remoteclip_jax.files import atomic_write

_LIBRARIES = {"hf": "transformers", "open_clip": "open_clip"}


def read_eval_results(path: str) -> dict[str, float]:
    """Reads a run's `eval/results.json` (a flat {"eval/<dataset>/<metric>": value} object)."""
    from remoteclip_jax.weights.model_info import read_json
    data = read_json(path, DataError, "evaluation results file not found")
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise DataError(f"{path}: expected a flat object of metric name -> number "
                             "(as `remoteclip-jax eval` writes to eval/results.json)")
    return data


def _results_table(results: Mapping[str, float]) -> list[str]:
    rows = []
    for key in sorted(results):
        parts = key.split("/")
        if len(parts) >= 3 and parts[0] == "eval":
            dataset, metric = parts[1], "/".join(parts[2:])
        else:
            dataset, metric = "", key
        rows.append(f"| {dataset} | {metric} | {results[key]:.4g} |")
    return ["| dataset | metric | value |", "|---|---|---|", *rows]


def _architecture(config: Mapping) -> str:
    v, t = config["vision_cfg"], config["text_cfg"]
    if isinstance(v["layers"], (list, tuple)):
        image = f"ModifiedResNet (stages {list(v['layers'])}, width {v['width']})"
    else:
        image = f"ViT ({v['layers']} layers, width {v['width']}, patch {v['patch_size']})"
    return (f"image tower {image} at {v['image_size']}px; text tower transformer ({t['layers']} "
            f"layers, width {t['width']}, context {t['context_length']}); "
            f"embedding dimension {config['embed_dim']}")


def write_model_card(out_dir: str, *, model: str | Mapping, quick_gelu: bool,
                     training: Mapping[str, Any] | None = None,
                     eval_results: Mapping[str, float] | str | None = None,
                     license: str | None = None, license_link: str | None = None,
                     format: str = "open_clip", description: str | None = None,
                     source: str | None = None) -> str:
    """Writes `out_dir/README.md` and returns its path.

    Args:
      out_dir: the exported model directory.
      model: the model or preset name, or its config dict (custom sizes).
      quick_gelu: the activation the weights must run with (True: QuickGELU, False: exact GELU).
      training: what the model was trained on, e.g. {"data": "RET-3 + DET-10 + SEG-4",
        "steps": 10000, ...}; every key is listed.
      eval_results: the flat metrics of `eval/results.json`, or that file's path.
      license: the licence identifier the user chose (e.g. "apache-2.0"); "other" when omitted,
        so no licence is implied.
      license_link: where the licence text is, for licences without an identifier.
      format: "open_clip" or "hf": which library the usage snippet and metadata name.
      description: a free-text paragraph placed under the title.
      source: where the weights came from (a checkpoint path or a workdir).
    """
    if isinstance(eval_results, (str, os.PathLike)):
        eval_results = read_eval_results(str(eval_results))
    from remoteclip_jax.models import model_config
    config = model_config(model)
    name = model if isinstance(model, str) else "custom CLIP"
    activation = "QuickGELU (x * sigmoid(1.702 x))" if quick_gelu else "exact GELU (erf)"
    lines = ["---", f"license: {license or 'other'}"]
    if license_link:
        lines.append(f"license_link: {license_link}")
    lines += [f"library_name: {_LIBRARIES.get(format, format)}",
              "pipeline_tag: zero-shot-image-classification",
              "tags:", "- clip", "- remote-sensing", "- remoteclip_jax", "---", "",
              f"# {name}", ""]
    if description:
        lines += [description, ""]
    lines += ["## Model", "", f"- **model:** {name}", f"- **activation:** {activation}",
              f"- **architecture:** {_architecture(config)}"]
    if source:
        lines.append(f"- **weights from:** {source}")
    if not isinstance(model, str):
        lines += ["", "<details><summary>model config</summary>", "", "```json",
                  json.dumps(model, indent=2, default=list), "```", "</details>"]
    lines += ["", "## Training", ""]
    if training:
        lines += [f"- **{key}:** {value}" for key, value in training.items()]
    else:
        lines.append("Not recorded.")
    lines += ["", "## Evaluation", ""]
    lines += _results_table(eval_results) if eval_results else ["Not recorded."]
    lines += ["", "## Licence", "", f"{license or 'Not set by the exporter.'}"
              + (f" ({license_link})" if license_link else ""), "", "## Usage", ""]
    lines += _usage(format, name, quick_gelu)
    path = os.path.join(out_dir, "README.md")
    with atomic_write(path, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _usage(format: str, name: str, quick_gelu: bool) -> list[str]:
    if format == "hf":
        library = ["from transformers import CLIPModel, CLIPProcessor",
                   'model = CLIPModel.from_pretrained("PATH")',
                   'processor = CLIPProcessor.from_pretrained("PATH")']
    else:
        library = ["import open_clip",
                   'model, _, preprocess = open_clip.create_model_and_transforms("local-dir:PATH")',
                   'tokenizer = open_clip.get_tokenizer("local-dir:PATH")']
    return ["```python", *library, "", "# or, in JAX:", "import remoteclip_jax as rc",
            'model, variables = rc.load_pretrained("PATH")', "```", "",
            f"The activation ({'QuickGELU' if quick_gelu else 'GELU'}) is recorded in the config; "
            "GELU and QuickGELU weights have the same shapes, so loading them with the other "
            "activation silently degrades the embeddings."]
