"""Makes the README's example of `query_scene` output from a procedurally generated scene.

The scene is a mosaic of `remoteclip_jax.data.synthetic` scenes (drawn from random numbers, not a
photograph), written as a 16-bit 4-band GeoTIFF in EPSG:32633; the encoder is the tiny ViT with
random weights, so the heat values show the output format, not a trained model's judgement.

    python scripts/geo_demo.py --out /tmp/geo_demo        # scene.tif, query/heatmap.png, classify/
    python scripts/geo_demo.py --out /tmp/geo_demo --docs-copy docs/geo_heatmap.png
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_procedural_scene(path: str, cells: int = 6, cell: int = 256) -> str:
    """A mosaic of `cells` x `cells` synthetic scenes as a 16-bit NIR,R,G,B GeoTIFF in EPSG:32633
    (0.5 m pixels) with a nodata corner; returns `path`."""
    import rasterio
    from rasterio.transform import from_origin

    from remoteclip_jax.data.synthetic import render_scene

    rng = np.random.default_rng(0)
    rows = [np.concatenate([render_scene(rng, cell).image for _ in range(cells)], axis=1)
            for _ in range(cells)]
    rgb = np.concatenate(rows, axis=0).astype(np.uint16) * 40
    side = rgb.shape[0]
    bands = np.stack([rgb.mean(axis=2).astype(np.uint16), rgb[..., 0], rgb[..., 1], rgb[..., 2]])
    bands[:, : side // 5, : side // 3] = 0  # a nodata corner, as scene edges often have
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 4649776, 0.5, 0.5),
                       nodata=0, tiled=True) as dst:
        dst.write(bands)
        dst.descriptions = ("NIR", "R", "G", "B")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--cells", type=int, default=6, help="synthetic scenes per side")
    parser.add_argument("--cell", type=int, default=256, help="pixels per synthetic scene")
    parser.add_argument("--docs-copy", default=None,
                        help="also save the heatmap PNG here with a 128-colour palette (small file)")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    from PIL import Image

    import remoteclip_jax
    from remoteclip_jax.geo import classify_scene, query_scene
    from remoteclip_jax.models import TINY_VIT

    os.makedirs(args.out, exist_ok=True)
    scene = write_procedural_scene(os.path.join(args.out, "scene.tif"), args.cells, args.cell)

    model = remoteclip_jax.create_model(TINY_VIT)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                                    jnp.zeros((1, 77), jnp.int32))
    transform = remoteclip_jax.transforms.image_transform(s, train=False)
    image_fn = jax.jit(lambda v, x: model.apply(v, x, method="encode_image"))
    text_fn = jax.jit(lambda v, t: model.apply(v, t, method="encode_text"))

    def normalise(x):
        x = np.asarray(x, np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def encode_chips(chips):
        return normalise(image_fn(variables, np.stack([transform(Image.fromarray(c)) for c in chips])))

    def encode_texts(texts):
        return normalise(text_fn(variables, remoteclip_jax.tokenize(texts)))

    common = dict(tile=64, stride=32, units="m", bands="R,G,B", scale="p2,98")
    query = "ships on water"
    summary = query_scene(scene, encode_chips, encode_texts([query])[0], os.path.join(args.out, "query"),
                          query=query, **common)
    print("heatmap:", summary["outputs"]["heatmap_png"], summary["tiles_kept"], "tiles,",
          summary["tiles_skipped_nodata"], "skipped")
    if args.docs_copy:
        with Image.open(summary["outputs"]["heatmap_png"]) as im:
            im.convert("RGB").quantize(128).save(args.docs_copy, optimize=True)
        print("docs copy:", args.docs_copy, os.path.getsize(args.docs_copy) // 1024, "KiB")
    classes = ["water", "grass", "desert", "urban"]
    summary = classify_scene(scene, encode_chips, encode_texts([f"a satellite photo of {c}." for c in classes]),
                             classes, os.path.join(args.out, "classify"), **common)
    print("classes:", summary["class_counts"])


if __name__ == "__main__":
    main()
