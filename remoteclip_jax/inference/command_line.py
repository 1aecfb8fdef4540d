"""Pieces the inference commands share: model/encoder, class and tiling flags, the skipped-image
report."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

SOURCE_HELP = ("a folder of images (searched recursively), a .txt list of image paths (relative "
               "paths are read relative to the list's folder), one image, or KIND:PATH "
               "(image_folder:AID, dota:DOTA_ROOT, ...; see `remoteclip-jax convert-data --help`)")
MODEL_HELP = ("the model: a directory (`remoteclip-jax import-weights` output, an open_clip hub "
              "directory, a transformers CLIPModel directory) or an OpenCLIP weights file "
              "(.pt/.bin/.safetensors; a preset's file such as RemoteCLIP-ViT-B-32.pt is "
              "recognised by name, any other needs --arch)")


def report_skipped(skipped: Sequence[tuple[str, str]], limit: int = 10) -> None:
    """Prints the first `limit` skipped images to stderr (all of them are in skipped.csv)."""
    for _, reason in skipped[:limit]:
        print(f"skipped: {reason}", file=sys.stderr)
    if len(skipped) > limit:
        print(f"skipped: ... and {len(skipped) - limit} more", file=sys.stderr)


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --arch, --batch-size, --dtype, --workers: shared by the inference commands."""
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--arch", default=None,
                        help="architecture of a weights file given as --model: an open_clip "
                             "model name (ViT-B-32-quickgelu) or a preset (RemoteCLIP-ViT-B-32)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: fastest setting for this backend)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="compute dtype; bfloat16 is faster on CPUs with AMX/avx512_bf16 and "
                             "on accelerators; cosine similarities move by up to ~2e-3 (ViT-B-32)")
    parser.add_argument("--workers", type=int, default=None, help="image-decoding threads")


def encoder_options(args) -> dict:
    """`Encoder` keyword arguments from `add_encoder_arguments`' flags."""
    return {"arch": args.arch, "batch_size": args.batch_size, "dtype": args.dtype,
            "num_workers": args.workers}


def add_class_arguments(parser: argparse.ArgumentParser) -> None:
    """--classes, --dataset, --templates, --class-embedding: the zero-shot classes."""
    from remoteclip_jax.prompts import CLASS_EMBEDDINGS

    parser.add_argument("--classes", help='class names: "a,b,c", a file with one name per line, '
                                          "or a folder whose sub-folders are the classes")
    parser.add_argument("--dataset", default="",
                        help="scene dataset preset (aid, eurosat, resisc45, ucm, whurs19, rsc11, "
                             "siriwhu, optimal31, patternnet, mlrsnet, rs2800, rsicb128, "
                             "rsicb256): its class list when --classes is not given, its prompt "
                             "names and template set")
    parser.add_argument("--templates", default=None,
                        help='paper | remoteclip | georsclip, a template such as "a photo of {}." '
                             "({} is where the class name goes), or a file with one template per "
                             "line (default: remoteclip with --dataset, else paper: \"a satellite "
                             "photo of {}.\")")
    parser.add_argument("--class-embedding", choices=CLASS_EMBEDDINGS, default="average",
                        help="average: average the prompts' raw features, normalise (RemoteCLIP's "
                             "evaluation, as `remoteclip-jax eval`); openai: normalise each "
                             "prompt's feature first")


def add_tiling_arguments(parser: argparse.ArgumentParser, outputs: str) -> None:
    """--tile, --stride, --units, --bands, --scale, --nodata-max-fraction: scene inputs."""
    scene = parser.add_argument_group(
        "georeferenced scenes", f"with --tile, INPUT is one GeoTIFF/COG scene (needs rasterio): "
        f"{outputs}")
    scene.add_argument("--tile", type=float, default=None,
                       help="tile side, in pixels (or metres with --units m)")
    scene.add_argument("--stride", type=float, default=None,
                       help="tile step (default: the tile side, no overlap)")
    scene.add_argument("--units", choices=("px", "m"), default="px",
                       help="units of --tile/--stride; m uses the scene's ground sample distance")
    scene.add_argument("--bands", default=None,
                       help='bands as RGB: 1-based indices "4,3,2" or descriptions "B4,B3,B2" '
                            "(default: the first three)")
    scene.add_argument("--scale", default=None,
                       help='to 8 bits: "LOW,HIGH" (e.g. 0,10000), "p2,98" (percentile stretch), '
                            "none; default: uint8 as is, other types p2,98")
    scene.add_argument("--nodata-max-fraction", type=float, default=0.5,
                       help="skip (and count) tiles with more nodata than this")


def tiling_options(args) -> dict:
    """Keyword arguments of the `remoteclip_jax.geo` scene functions from the tiling flags."""
    return {"tile": args.tile, "stride": args.stride, "units": args.units, "bands": args.bands,
            "scale": args.scale, "nodata_max_fraction": args.nodata_max_fraction}
