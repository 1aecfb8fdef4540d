"""The `remoteclip-jax` command: one entry point, one sub-command per job.

    remoteclip-jax train --config=configs/vitb32.py --workdir=runs/vitb32 [--config.KEY=VALUE ...]
    remoteclip-jax eval --config=configs/paper_suite.py --workdir=runs/eval --config.init_from=...
    remoteclip-jax export --config=... --workdir=runs/vitb32
    remoteclip-jax convert-data dota --input DOTA/labelTxt --out data/dota
    remoteclip-jax SUBCOMMAND --help

Every sub-command lives in its own module, which has ``main(argv) -> int`` and builds its own
parser (named ``remoteclip-jax SUBCOMMAND``). This file only dispatches and owns the rules the
commands share (`guarded`): an error caused by the user's input (`remoteclip_jax.errors.UserError`)
is printed as one line on stderr with exit code 2, and Ctrl-C as one line with exit code 130,
never as a traceback.
"""
from __future__ import annotations

import importlib
import sys

from remoteclip_jax import compilation_cache

# name -> (module with main(argv), one-line help). Modules are imported only when their command
# runs, so `remoteclip-jax --help` and light commands start fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("remoteclip_jax.main", "train a recipe (resumes from --workdir automatically)"),
    "eval": ("remoteclip_jax.main", "evaluate a workdir's newest checkpoint or config.init_from"),
    "export": ("remoteclip_jax.main",
               "a workdir's newest checkpoint -> an open_clip directory with a model card"),
    "import-weights": ("remoteclip_jax.weights.cli",
                       "an OpenCLIP file, transformers or open_clip directory -> a model directory"),
    "export-weights": ("remoteclip_jax.weights.cli",
                       "a model directory -> transformers / open_clip directory or OpenCLIP file"),
    "wise-ft": ("remoteclip_jax.wise_ft",
                "WiSE-FT: zero-shot and fine-tuned weights averaged (--alpha), or a sweep evaluated"),
    "convert-data": ("remoteclip_jax.data.convert_annotations",
                     "detection/segmentation/caption annotations -> training record shards"),
    "dedup": ("remoteclip_jax.data.dedup",
              "training images that duplicate evaluation images (pHash) -> an exclusion list"),
    "count-manifest": ("remoteclip_jax.data.readers.count_manifest",
                       "DOTA labels -> a RemoteCount-style counting manifest"),
    "classify": ("remoteclip_jax.inference.zero_shot",
                 "zero-shot labels for images -> predictions.csv, or per tile of a GeoTIFF (--tile)"),
    "segment": ("remoteclip_jax.inference.segment",
                "zero-shot class per ViT patch of images, or a class map of a GeoTIFF (--tile)"),
    "embed": ("remoteclip_jax.inference.embedding",
              "image/caption embeddings, or a GeoTIFF's tiles (--tile) -> a resumable store"),
    "search": ("remoteclip_jax.inference.image_search",
               "text or image query -> top-k images of a store, or places for a scene's tiles"),
    "query": ("remoteclip_jax.inference.scene_query",
              "text query over a GeoTIFF scene -> heatmap.tif (scene CRS) and heatmap.png"),
}
# Commands served by the absl entry point: the sub-command becomes its --mode.
_ABSL_MODES = ("train", "eval", "export")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return ("usage: remoteclip-jax SUBCOMMAND [ARGS ...]\n\nsub-commands:\n" + rows +
            "\n\n`remoteclip-jax SUBCOMMAND --help` lists a sub-command's arguments.")


# Commands whose rerun continues where an interrupted run stopped.
RESUMABLE = ("train", "embed")


def guarded(run, resumes: bool = True) -> int:
    """Calls `run()`; returns its exit code, 2 after a `UserError` (or a cloud storage failure)
    and 130 after Ctrl-C, each reported in one line on stderr (`resumes`: whether the Ctrl-C line says a rerun resumes)."""
    from remoteclip_jax.errors import UserError, one_line

    try:
        return int(run() or 0)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume (finished work is kept)" if resumes
              else "interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bucket that cannot be reached is the user's setup, not a bug
        from remoteclip_jax.files import storage_failure

        if (message := storage_failure(e)) is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def run_command(name: str, argv: list[str]) -> int:
    """Runs sub-command `name` with its arguments (see `guarded` for how it ends)."""
    module = importlib.import_module(COMMANDS[name][0])
    resumes = name in RESUMABLE
    if name in _ABSL_MODES:
        return guarded(lambda: module.main_cli([f"remoteclip-jax {name}", f"--mode={name}", *argv]),
                       resumes)
    if module.__name__ == "remoteclip_jax.weights.cli":
        return guarded(lambda: module.main([name, *argv]), resumes)
    return guarded(lambda: module.main(argv), resumes)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    compilation_cache.enable_by_default()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        near = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        print(f"error: unknown sub-command {name!r}{hint} (see `remoteclip-jax --help`)",
              file=sys.stderr)
        return 2
    return run_command(name, rest)


if __name__ == "__main__":
    sys.exit(main())
