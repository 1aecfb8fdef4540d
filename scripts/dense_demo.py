"""Makes the README's dense-label pictures: `remoteclip-jax segment` over a real DOTA image (written
as a GeoTIFF with made-up georeferencing) and over the procedurally generated scene of
`scripts/geo_demo.py`.

No pretrained weights can be downloaded here, so `--model` is whatever model directory you have:
the pictures in docs/ came from the small ViT that `configs/rsicd_aid.py` trains from scratch
(300 steps on RSICD captions of AID images, 64-px inputs, 16-px patches), run at 256 px with its
position embedding resampled. They show the output format and the recipes side by side, not what
RemoteCLIP's weights would label.

    python scripts/dense_demo.py --model runs/rsicd_aid/export --data ../shared/data --out /tmp/dense
    python scripts/dense_demo.py ... --docs-dir docs      # also docs/dense_{dota,procedural}.png
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DOTA_CLASSES = ["parking lot", "buses", "buildings", "road", "trees", "grass"]  # P0003: a bus depot
PROCEDURAL_CLASSES = ["water", "grass", "desert", "urban"]


def _write_dota(path: str, image: str) -> str:
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    rgb = np.asarray(Image.open(image).convert("RGB"))
    with rasterio.open(path, "w", driver="GTiff", width=rgb.shape[1], height=rgb.shape[0], count=3,
                       dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 4649776, 0.5, 0.5)) as dst:
        dst.write(rgb.transpose(2, 0, 1))
    return path


def _to_docs(png: str, dest: str) -> None:
    from PIL import Image

    with Image.open(png) as im:
        im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(dest, optimize=True)
    print("docs copy:", dest, os.path.getsize(dest) // 1024, "KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model directory (ViT image tower)")
    parser.add_argument("--data", default="../shared/data", help="folder holding detection/dota")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tile", type=int, default=256, help="scene pixels per model input")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--dense", default="value")
    parser.add_argument("--docs-dir", default=None)
    args = parser.parse_args()

    from geo_demo import write_procedural_scene

    from remoteclip_jax.inference.segment import segment_scene

    os.makedirs(args.out, exist_ok=True)
    scenes = {
        "dota": (_write_dota(os.path.join(args.out, "dota_P0003.tif"),
                             os.path.join(args.data, "detection", "dota", "images", "P0003.png")),
                 DOTA_CLASSES, None),
        "procedural": (write_procedural_scene(os.path.join(args.out, "procedural.tif"), 4, 256),
                       PROCEDURAL_CLASSES, "R,G,B"),
    }
    for name, (scene, classes, bands) in scenes.items():
        summary = segment_scene(scene, classes, model=args.model, tile=args.tile,
                                image_size=args.image_size, dense=args.dense, bands=bands,
                                out_dir=os.path.join(args.out, name))
        print(f"{name}: {summary['classmap_shape']} cells of {summary['cell_px']:g} px, "
              f"coverage {summary['coverage']}")
        if args.docs_dir:
            _to_docs(summary["outputs"]["png"], os.path.join(args.docs_dir, f"dense_{name}.png"))


if __name__ == "__main__":
    main()
