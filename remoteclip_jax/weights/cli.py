"""`remoteclip-jax import-weights` / `export-weights`: weights in and out of model directories.

    remoteclip-jax import-weights RemoteCLIP-ViT-B-32.pt --model RemoteCLIP-ViT-B-32 --out weights/b32
    remoteclip-jax import-weights hf-clip-dir/ --out weights/b32          # model read from config.json
    remoteclip-jax export-weights weights/b32 --format hf --out hf/b32 --license apache-2.0
    remoteclip-jax export-weights weights/b32 --format open_clip --out oc/b32 --eval-results runs/x/eval/results.json
    remoteclip-jax export-weights weights/b32 --out RemoteCLIP-ViT-B-32.safetensors
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.weights.model_info import model_argument

_FILE_FORMATS = {".safetensors": "safetensors", ".pt": "pt", ".pth": "pt", ".bin": "pt"}


def _import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="remoteclip-jax import-weights", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Convert a checkpoint into our model directory (orbax variables + model.json "
                    "recording the model, its activation and the source).")
    p.add_argument("source", metavar="SRC",
                   help="an OpenCLIP .pt/.pth/.bin/.safetensors file, a transformers CLIPModel "
                        "directory (config.json), an open_clip hub directory "
                        "(open_clip_config.json), or one of our model directories")
    p.add_argument("--model", default=None,
                   help="open_clip model name (ViT-B-32-quickgelu), preset (RemoteCLIP-ViT-B-32) or "
                        "a .json file holding an open_clip-style config; required for a file, whose weights cannot tell the activation; for a "
                        "directory it must agree with the directory's config")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="remoteclip-jax export-weights", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write a model directory (any layout import-weights reads) in another format.")
    p.add_argument("directory", metavar="DIR", help="a model directory (ours, open_clip or transformers)")
    p.add_argument("--format", choices=("hf", "open_clip", "safetensors", "pt"), default=None,
                   help="hf: a transformers CLIPModel + CLIPProcessor directory; open_clip: a "
                        "directory for open_clip's `local-dir:` models; safetensors / pt: one "
                        "OpenCLIP state-dict file (.pt needs torch). Default: from --out's suffix "
                        "(.safetensors, .pt, .pth, .bin), else hf")
    p.add_argument("--out", required=True, help="output directory (hf, open_clip) or file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    card = p.add_argument_group("model card (README.md of hf and open_clip directories)")
    card.add_argument("--license", default=None, help="licence identifier, e.g. apache-2.0, mit")
    card.add_argument("--license-link", default=None, help="where the licence text is")
    card.add_argument("--eval-results", default=None, metavar="PATH",
                      help="a run's eval/results.json, listed as the evaluation table")
    card.add_argument("--training-data", default=None, help="what the model was trained on")
    card.add_argument("--training-steps", type=int, default=None, help="how many steps it was trained")
    card.add_argument("--description", default=None, help="a paragraph under the card's title")
    return p


def _count(variables) -> float:
    import jax
    return sum(int(np.prod(np.shape(v))) for v in jax.tree.leaves(variables)) / 1e6


def _check_out(out: str, overwrite: bool) -> None:
    """One rule for every command that writes a folder or file of results: an existing one is
    replaced only with --overwrite (as `embed` asks)."""
    if overwrite or not os.path.exists(out) or (os.path.isdir(out) and not os.listdir(out)):
        return
    raise ConfigError(f"--out {out}: exists; use another --out, or --overwrite to replace it")


def import_weights(argv: list[str]) -> int:
    from remoteclip_jax.weights import model_dir
    args = _import_parser().parse_args(argv)
    _check_out(args.out, args.overwrite)
    variables, info = model_dir.read_model_dir(args.source, model_argument(args.model))
    info = model_dir.save_orbax(variables, args.out, info)
    print(f"wrote {args.out}: {info.display_name}, activation {info.activation}, "
          f"{_count(variables):.1f}M values")
    return 0


def export_weights(argv: list[str]) -> int:
    from remoteclip_jax.weights import model_dir, openclip
    args = _export_parser().parse_args(argv)
    fmt = args.format or _FILE_FORMATS.get(os.path.splitext(args.out)[1], "hf")
    if fmt in ("safetensors", "pt") and os.path.isdir(args.out):
        raise ConfigError(f"--out {args.out}: is a directory; --format {fmt} writes one file")
    if fmt == "safetensors" and not args.out.endswith(".safetensors"):
        raise ConfigError(f"--out {args.out}: --format safetensors needs a .safetensors file name")
    _check_out(args.out, args.overwrite)
    variables, info = model_dir.read_model_dir(args.directory)
    if fmt in ("safetensors", "pt"):
        openclip.save_state_dict(openclip.to_openclip(variables, info.config), args.out)
    else:
        training = {k: v for k, v in (("data", args.training_data), ("steps", args.training_steps))
                    if v is not None}
        model_dir.save_pretrained(variables, info.name or info.config, args.out, fmt,
                                  training=training or None, eval_results=args.eval_results,
                                  license=args.license, license_link=args.license_link,
                                  description=args.description, source=info.source)
    print(f"wrote {args.out} ({fmt}; model {info.display_name}, activation {info.activation})")
    return 0


def main(argv: list[str]) -> int:
    """argv[0] is the sub-command name (``import-weights`` or ``export-weights``)."""
    commands = {"import-weights": import_weights, "export-weights": export_weights}
    if not argv or argv[0] not in commands:
        raise ConfigError(f"expected import-weights or export-weights, got {argv[:1]}")
    return commands[argv[0]](argv[1:])
