"""`remoteclip-jax wise-ft`: WiSE-FT, a weight-space ensemble of a zero-shot and a fine-tuned model.

    remoteclip-jax wise-ft ZERO_SHOT_DIR FINETUNED_DIR --alpha 0.5 --out DIR [--format open_clip]
    remoteclip-jax wise-ft ZERO_SHOT_DIR FINETUNED_DIR --sweep 0,0.25,0.5,0.75,1 --out DIR \\
        --config=configs/paper_suite.py [--config.evals.NAME.KEY=VALUE ...]

The weights are ``(1 - alpha) * zero-shot + alpha * fine-tuned`` (`weights.interpolate`). The two
models are any two directories `rc.load_pretrained` reads (ours, open_clip's, Hugging Face's) or
OpenCLIP files (with ``--model``), of one architecture and activation.

``--alpha`` writes the averaged model as a model directory. ``--sweep`` evaluates the config's
``evals`` entries (any recipe, e.g. ``configs/paper_suite.py``; overrides as for ``eval``) at each
alpha, with one evaluator (datasets read once, encoders compiled once), and writes
``DIR/alpha_<a>/`` (each alpha's results, as ``eval`` writes them), ``DIR/wise_ft.md`` (one table:
a row per alpha, a column per dataset's headline metric), ``DIR/wise_ft.json`` (every metric) and
``DIR/wise_ft.png`` (the headline metrics against alpha).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from remoteclip_jax.errors import ConfigError

# The metric a dataset's column shows, first one present (retrieval, zero-shot / count, probes).
HEADLINE = ("mean_recall", "top1", "linear_probe_top1", "knn_top1")
FORMATS = ("orbax", "open_clip", "hf")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="remoteclip-jax wise-ft", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="WiSE-FT: average a zero-shot and a fine-tuned model in weight space, "
                    "(1 - alpha) x zero-shot + alpha x fine-tuned; write it (--alpha) or evaluate "
                    "a sweep of alphas (--sweep, with --config=RECIPE).")
    p.add_argument("zero_shot", metavar="ZERO_SHOT_DIR", help="the model before fine-tuning")
    p.add_argument("finetuned", metavar="FINETUNED_DIR", help="the fine-tuned model")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--alpha", type=float, help="the fine-tuned model's weight, 0..1")
    mode.add_argument("--sweep", metavar="A,B,...",
                      help="alphas to evaluate, e.g. 0,0.25,0.5,0.75,1 (needs --config)")
    p.add_argument("--out", required=True,
                   help="--alpha: the model directory to write; --sweep: the results folder")
    p.add_argument("--format", choices=FORMATS, default="orbax",
                   help="--alpha: our model directory (orbax, default), open_clip's or "
                        "transformers' (hf)")
    p.add_argument("--model", default=None,
                   help="model or preset name, needed for OpenCLIP files (a directory says it)")
    return p


def _alphas(args) -> list[float]:
    try:
        alphas = [args.alpha] if args.sweep is None else [float(a) for a in args.sweep.split(",")]
    except ValueError:
        raise ConfigError(f"--sweep {args.sweep}: expected numbers separated by commas, e.g. "
                          "0,0.25,0.5,0.75,1") from None
    bad = [a for a in alphas if not 0.0 <= a <= 1.0]
    if bad:
        raise ConfigError(f"alpha {bad[0]}: must lie in [0, 1] (0 = zero-shot, 1 = fine-tuned)")
    return alphas


def read_pair(zero_shot: str, finetuned: str, model=None):
    """Both models' variables and the zero-shot one's `ModelInfo`; refuses two architectures."""
    from remoteclip_jax.weights import model_dir

    v0, info0 = model_dir.read_model_dir(zero_shot, model)
    file = model_dir.detect_layout(finetuned) == "file"
    v1, info1 = model_dir.read_model_dir(finetuned, model or (info0.model if file else None))
    if info1.config != info0.config:
        raise ConfigError(f"{finetuned} holds {info1.display_name} ({info1.activation}) but "
                          f"{zero_shot} holds {info0.display_name} ({info0.activation}); WiSE-FT "
                          "averages two models of one architecture and activation")
    return v0, v1, info0


def _config(argv: list[str]):
    """The recipe of ``--config=FILE[:ARG]`` with its ``--config.KEY=VALUE`` overrides."""
    from absl import flags
    from ml_collections import config_flags

    if not any(a.startswith("--config=") or a == "--config" for a in argv):
        raise ConfigError("--sweep evaluates a recipe's evals: pass --config=configs/<recipe>.py")
    argv = ["remoteclip-jax wise-ft", *argv]
    values = flags.FlagValues()
    # The override flags (--config.a.b=v) are declared from the arguments at definition time.
    config_flags.DEFINE_config_file("config", None, "recipe file", flag_values=values,
                                    lock_config=True, sys_argv=argv)
    try:
        values(argv)
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
        raise ConfigError(f"config: {str(e).splitlines()[0]}") from None
    return values.config


def headline_table(rows: list[tuple[float, dict]]) -> tuple[list[str], str]:
    """(columns, markdown): one row per alpha, one column per dataset's headline metric."""
    names = sorted({k.split("/")[1] for _, m in rows for k in m})
    columns = []
    for name in names:
        present = {k.split("/", 2)[2] for _, m in rows for k in m if k.split("/")[1] == name}
        metric = next((h for h in HEADLINE if h in present), sorted(present)[0])
        columns.append(f"eval/{name}/{metric}")
    header = "| alpha | " + " | ".join(c[len("eval/"):] for c in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for alpha, m in rows:
        cells = [f"{m[c]:.2f}" if c in m else "–" for c in columns]
        lines.append(f"| {alpha:g} | " + " | ".join(cells) + " |")
    return columns, "\n".join(lines) + "\n"


def sweep(v0, v1, info, alphas, config, out: pathlib.Path) -> list[tuple[float, dict]]:
    """Evaluates ``config.evals`` at each alpha; writes the table, the JSON and the plot."""
    import jax

    from remoteclip_jax import config as schema
    from remoteclip_jax.evaluate import plots
    from remoteclip_jax.evaluate.evaluator import Evaluator
    from remoteclip_jax.models import create_model
    from remoteclip_jax import sharding
    from remoteclip_jax.weights.interpolate import interpolate

    schema.validate(config, jax.device_count(), jax.process_count(), for_training=False)
    if not len(config.evals):
        raise ConfigError("the recipe has no evals to sweep; use one with config.evals entries")
    mesh = sharding.make_mesh(config.mesh)
    evaluator = Evaluator(create_model(info.model), config, mesh, out)
    rows = []
    for alpha in alphas:
        metrics = evaluator(interpolate(v0, v1, alpha), out_dir=out / f"alpha_{alpha:g}")
        rows.append((alpha, metrics))
        print(f"alpha {alpha:g}: " + ", ".join(f"{k[len('eval/'):]} {v:.2f}" for k, v in
                                             sorted(metrics.items()) if k.endswith(HEADLINE)),
              flush=True)
    columns, table = headline_table(rows)
    if jax.process_index() == 0:
        (out / "wise_ft.md").write_text("WiSE-FT: (1 - alpha) x zero-shot + alpha x fine-tuned\n\n"
                                        + table)
        (out / "wise_ft.json").write_text(json.dumps(
            [{"alpha": a, "metrics": m} for a, m in rows], indent=1) + "\n")
        curves = {c[len("eval/"):]: {a: m[c] for a, m in rows if c in m} for c in columns}
        plots.plot_against_alpha(curves, out / "wise_ft.png")
    return rows


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config_args = [a for a in argv if a.startswith("--config")]
    args = build_parser().parse_args([a for a in argv if not a.startswith("--config")])
    alphas = _alphas(args)
    if args.sweep is None and config_args:
        raise ConfigError("--config is for --sweep; --alpha only writes the averaged model")
    config = _config(config_args) if args.sweep is not None else None
    v0, v1, info = read_pair(args.zero_shot, args.finetuned, args.model)
    out = pathlib.Path(args.out)
    if args.sweep is not None:
        out.mkdir(parents=True, exist_ok=True)
        sweep(v0, v1, info, alphas, config, out)
        print(f"wrote {out / 'wise_ft.md'}, {out / 'wise_ft.png'}")
        return 0
    from remoteclip_jax.weights import model_dir
    from remoteclip_jax.weights.interpolate import interpolate

    variables = interpolate(v0, v1, args.alpha)
    source = (f"WiSE-FT alpha={args.alpha:g}: (1 - alpha) x {args.zero_shot} + "
              f"alpha x {args.finetuned}")
    if args.format == "orbax":
        model_dir.save_orbax(variables, str(out), info.replace(source=source))
    else:
        model_dir.save_pretrained(variables, info.model, str(out), args.format, source=source,
                                  training={"weights": source})
    print(f"wrote {out} ({args.format}; {info.display_name}, alpha {args.alpha:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
