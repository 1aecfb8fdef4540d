"""What an evaluation writes to WORKDIR/eval/: results, details, paper-style tables, plots.

Files are rewritten atomically after every dataset, so a crash keeps what had finished:

* ``results.json``: flat ``{"eval/<name>/<metric>": value}``;
* ``details.json``: per-class accuracies, confusion matrices, few-shot episodes, C, errors;
* ``results.md``: Markdown tables laid out like the RemoteCLIP paper's;
* ``plots/<name>_zeroshot_confusion.png``, ``<name>_count_confusion.png``, ``fewshot.png``;
* ``history.jsonl``: one line per evaluation with its step.

Only process 0 writes (every process computes the same metrics).
"""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from remoteclip_jax.evaluate import plots
from remoteclip_jax.files import append_text, atomic_write, write_json


def is_writer() -> bool:
    import jax
    return jax.process_index() == 0


def append_history(out_dir: pathlib.Path, step, results: dict) -> None:
    if is_writer():
        append_text(out_dir / "history.jsonl",
                    json.dumps({"step": step, "time": time.time(), "metrics": results}) + "\n")


def write_results(out_dir, results, details, fewshot_curves, model_name="model"):
    if not is_writer():     # every process computes the same metrics; one writes them
        return
    write_json(out_dir / "results.json", results, indent=1, sort_keys=True)
    write_json(out_dir / "details.json", details, indent=1, default=_jsonable)
    with atomic_write(out_dir / "results.md", encoding="utf-8") as f:
        f.write(markdown_tables(details, model_name))
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
        by_kind.setdefault(d["task"], []).append((d.get("name", key.split("/")[0]), d))
    lines = [f"# Evaluation{'' if details.get('step') is None else ' at step ' + str(details['step'])}", ""]
    if "retrieval" in by_kind:
        lines += ["## Cross-modal retrieval", "",
                  "| Dataset | Model | I→T R@1 | I→T R@5 | I→T R@10 | T→I R@1 | T→I R@5 | T→I R@10 | Mean Recall |",
                  "|---|---|---|---|---|---|---|---|---|"]
        tied = False
        for name, d in by_kind["retrieval"]:
            m, bounds = d["metrics"], d.get("bounds", {})
            keys = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mean_recall")
            cells = []
            for k in keys:
                cell = _fmt(m[k])
                if k in d.get("tie_sensitive", ()):  # the tie rules disagree: show their interval
                    cell += f" [{_fmt(bounds[k][0])}, {_fmt(bounds[k][1])}]"
                    tied = True
                cells.append(cell)
            lines.append(f"| {name} | {model_name} | " + " | ".join(cells) + " |")
        lines.append("")
        if tied:
            lines += ["Tied similarities: values use the rule in details.json (\"ties\"); "
                      "[a, b] is the range from ranking tied wrong items first to last.", ""]
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
