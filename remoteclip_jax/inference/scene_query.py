"""`remoteclip-jax query`: where in a georeferenced scene a text query matches.

Each tile's cosine similarity to the query's text embedding, as `remoteclip_jax.geo.query_scene`
computes it: OUT/heatmap.tif (float32, one pixel per stride, in the scene's CRS), OUT/heatmap.png
(the scene with the heatmap over it) and OUT/summary.json with the best tiles' footprints.

    remoteclip-jax query scene.tif --text "a harbour with ships" --tile 224 --model RemoteCLIP-ViT-B-32.pt --out q/
"""
from __future__ import annotations

import argparse
import os
import sys

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.inference import command_line
from remoteclip_jax.inference.loading import make_encoder

DEFAULT_TILE = 224


def query_scene(scene: str, text: str, *, model=None, encoder=None, out_dir: str = ".",
                top_k: int = 5, **tiling) -> dict:
    """Maps one text query over a scene (GeoTIFF / COG).

    Args:
        scene: the scene file.
        text: the query, encoded as given (no prompt template).
        model: a model directory or weights file, or `(model, variables)` (or pass `encoder`).
        encoder: an `Encoder` to reuse.
        out_dir: where heatmap.tif, heatmap.png and summary.json go.
        top_k: best tiles listed in the summary.
        **tiling: tile, stride, units, bands, scale, nodata_max_fraction, batch_size (see
            `remoteclip_jax.geo.workflows.query_scene`).

    Returns:
        The scene summary, with ``best_tiles``.
    """
    from remoteclip_jax.geo import workflows

    _check(text, top_k)
    encoder = make_encoder(model, encoder=encoder)
    return workflows.query_scene(scene, encoder.arrays, encoder.texts([text])[0], out_dir,
                                 query=text, top_n=top_k, **tiling)


def _check(text: str, top_k: int) -> None:
    if not text.strip():
        raise ConfigError("--text is empty: give the query, e.g. --text \"a harbour with ships\"")
    if top_k < 1:
        raise ConfigError(f"--top-k {top_k}: must be at least 1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remoteclip-jax query", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Where a text query matches in a georeferenced scene: the cosine similarity "
                    "of every tile to the query -> OUT/heatmap.tif (scene CRS), OUT/heatmap.png "
                    "and OUT/summary.json (the best tiles with their footprints). To search many "
                    "scenes, or one repeatedly, embed them once (`remoteclip-jax embed SCENE.tif "
                    "--tile N`) and use `remoteclip-jax search`.")
    parser.add_argument("scene", help="a GeoTIFF/COG scene (any GDAL-readable raster)")
    parser.add_argument("--text", required=True, help="the query, e.g. \"a harbour with ships\"")
    command_line.add_encoder_arguments(parser)
    parser.add_argument("--out", default=".", help="output folder")
    parser.add_argument("--top-k", type=int, default=5,
                        help="best-matching tiles printed and listed in summary.json")
    command_line.add_tiling_arguments(parser, "the heatmap has one pixel per stride")
    parser.set_defaults(tile=DEFAULT_TILE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check(args.text, args.top_k)  # before the model loads
    options = command_line.encoder_options(args)
    summary = query_scene(args.scene, args.text, encoder=make_encoder(args.model, **options),
                          out_dir=args.out, top_k=args.top_k, **command_line.tiling_options(args))
    for rank, tile in enumerate(summary["best_tiles"], 1):
        print(f"  {rank:3d}  {tile['similarity']:.4f}  {tile['tile_id']}")
    print(f"mapped \"{args.text}\" over {summary['tiles_kept']} tiles of {args.scene}, "
          f"{summary['tiles_skipped_nodata']} skipped as nodata -> "
          f"{os.path.join(args.out, 'heatmap.tif')}, heatmap.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
