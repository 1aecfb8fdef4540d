"""`remoteclip-jax segment`: a zero-shot class for every ViT patch, of images and of GeoTIFF scenes.

Classes are embedded as `classify` embeds them (prompts x templates, combined per class); each
patch token of the image tower (`CLIP.encode_image(tokens=True)`) is projected into the joint
space, and its label is the class of highest cosine similarity. Two recipes for the tokens:
"value" (default; MaskCLIP, Zhou et al. ECCV 2022: the last block's value path, which keeps each
token's own content instead of the global mix that CLIP's last attention hands the class token)
and "plain" (the last block's output tokens, what `output_tokens` gives in open_clip). A patch
map is coarse (7 x 7 for ViT-B-32 at 224 px); `--image-size` runs the model at a larger input
with its position embedding resampled (open_clip's `resize_pos_embed`), for a finer grid.

    remoteclip-jax segment photos/ --model DIR --classes "water,forest,building" --out seg
    remoteclip-jax segment SCENE.tif --model DIR --classes ... --tile 448 --out seg

Images: OUT/segments.json (classes, the grid of each image) and OUT/png/<name>.png (the model's
centre crop beside the class of each patch). Scenes (`--tile N`, needs rasterio): the scene is cut
into N-pixel tiles from its top-left corner, each tile is one model input, and OUT/classmap.tif
holds a class per patch cell (N / grid pixels a side, the scene's CRS and origin; tiles that run
past the scene's edge are read with no data there, and cells that are mostly no data are 255),
with OUT/classmap.png and OUT/summary.json beside it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

import numpy as np

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.files import atomic_write, write_json
from remoteclip_jax.inference.command_line import (add_class_arguments, add_encoder_arguments,
                                                   encoder_options)
from remoteclip_jax.inference.inputs import list_images
from remoteclip_jax.inference.loading import load_model, make_encoder
from remoteclip_jax.inference.zero_shot import class_classifier, classes_and_templates
from remoteclip_jax.models.vit import DENSE_RECIPES

NODATA = 255  # class-map cells without a label (as `classify`'s class map)
SCENE_CHUNK_TILES = 256  # tiles read and encoded at a time by `segment_scene`


def patch_labels(patch_features: np.ndarray, classifier: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(labels, cosine) of every patch: the class of highest cosine similarity and that similarity.

    Args:
        patch_features: (N, gh, gw, E) unit rows.
        classifier: (C, E) unit class embeddings.
    """
    sims = np.asarray(patch_features, np.float64) @ np.asarray(classifier, np.float64).T
    labels = sims.argmax(-1)
    return labels, np.take_along_axis(sims, labels[..., None], -1)[..., 0]


def _encoder(model, image_size, arch=None, **options):
    """`make_encoder`, with the model first resampled to `image_size` when one is given."""
    if image_size and model is not None:
        from remoteclip_jax.models.clip import at_image_size

        model = at_image_size(*(model if isinstance(model, tuple) else load_model(model, arch)),
                              int(image_size))
    return make_encoder(model, arch=arch, **options)


def segment(images, classes=None, *, model, dataset: str = "", templates=None,
            class_embedding: str = "average", dense: str = "value", image_size: int | None = None,
            out_dir: str | None = None, **encoder_options) -> dict:
    """Patch labels of images (the model's centre crop of each).

    Args:
        images: a folder (recursive), a .txt list, an image file, or a list of these.
        classes, dataset, templates, class_embedding: as `classify`.
        model: a model directory, a weights file (with `arch=` unless its name is a preset's),
            or a `(model, variables)` pair (ViT image tower).
        dense: "value" or "plain" (see the module docstring).
        image_size: run the model at this input size (a multiple of its patch size).
        out_dir: write segments.json and png/ there.

    Returns:
        {"classes", "grid", "images": [{"path", "labels" (gh x gw lists), "coverage"}]}.
    """
    _check_recipe(dense)
    names, prompts = classes_and_templates(classes, dataset, templates, class_embedding)
    encoder = _encoder(model, image_size, **encoder_options)
    classifier = class_classifier(encoder, names, prompts, dataset, class_embedding)
    paths = list_images(images)
    labels, _ = patch_labels(encoder.patches(paths, dense), classifier)
    result = {"classes": names, "grid": list(labels.shape[1:]), "dense": dense,
              "image_size": encoder.model.image_size, "images": [
                  {"path": p, "labels": lab.tolist(), "coverage": _coverage(lab, names)}
                  for p, lab in zip(paths, labels)]}
    if out_dir:
        os.makedirs(os.path.join(out_dir, "png"), exist_ok=True)
        write_json(os.path.join(out_dir, "segments.json"), result)
        for path, lab in zip(paths, labels):
            stem = os.path.splitext(os.path.basename(path))[0]
            _write_png(os.path.join(out_dir, "png", f"{stem}.png"), _view(path, encoder), lab,
                       names, title=os.path.basename(path))
    return result


def segment_scene(scene_path: str, classes=None, *, model, tile: int, dataset: str = "",
                  templates=None, class_embedding: str = "average", dense: str = "value",
                  image_size: int | None = None, bands=None, scale=None, out_dir: str = ".",
                  **encoder_options) -> dict:
    """Patch labels over a georeferenced scene, written as OUT/classmap.tif (+ .png, summary).

    Args:
        scene_path: a GeoTIFF/COG (any raster GDAL reads).
        tile: tile side in scene pixels; each tile is one model input (resized to its size).
        bands, scale: as `classify --tile` (`remoteclip_jax.geo.raster.Scene`).
        Others as `segment`.

    Returns:
        The summary written to OUT/summary.json.
    """
    from affine import Affine

    from remoteclip_jax.geo import outputs
    from remoteclip_jax.geo.raster import Scene, crs_name

    _check_recipe(dense)
    tile = int(tile)
    if tile < 1:
        raise ConfigError(f"--tile {tile}: must be a positive number of pixels")
    names, prompts = classes_and_templates(classes, dataset, templates, class_embedding)
    encoder = _encoder(model, image_size, **encoder_options)
    classifier = class_classifier(encoder, names, prompts, dataset, class_embedding)
    t0 = time.perf_counter()
    with Scene(scene_path, bands, scale) as scene:
        rows, cols = -(-scene.height // tile), -(-scene.width // tile)
        windows = [(r * tile, c * tile) for r in range(rows) for c in range(cols)]
        # Chunks of whole batches: only one chunk's pixels and patch features are held at a time.
        chunk = encoder.batch_size * max(1, SCENE_CHUNK_TILES // encoder.batch_size)
        parts = []
        for start in range(0, len(windows), chunk):
            chips, valid = zip(*(scene.read_window(r0, c0, tile, tile)
                                 for r0, c0 in windows[start:start + chunk]))
            tokens = encoder.patches(list(chips), dense,
                                     desc=f"tiles {start + 1}-{start + len(chips)}/{len(windows)}")
            labels, _ = patch_labels(tokens, classifier)
            # A cell is labelled when most of its pixels hold data.
            covered = _cell_means(np.stack(valid), labels.shape[1])
            parts.append(np.where(covered >= 0.5, labels, NODATA).astype(np.uint8))
        labels = np.concatenate(parts)
        grid = labels.shape[1]
        cell = tile / grid
        classmap = labels.reshape(rows, cols, grid, grid).transpose(0, 2, 1, 3).reshape(
            rows * grid, cols * grid)
        transform = scene.transform @ Affine.scale(cell)
        os.makedirs(out_dir, exist_ok=True)
        written = {"classmap": os.path.join(out_dir, "classmap.tif"),
                   "png": os.path.join(out_dir, "classmap.png")}
        outputs.write_classmap(written["classmap"], classmap, names, transform, scene.crs,
                               tags={"dense": dense, "tile_px": str(tile), "cell_px": f"{cell:g}"})
        preview, _ = scene.preview()
        _write_png(written["png"], preview, classmap, names,
                   title=f"{os.path.basename(scene_path)}: {dense} patch labels, {cell:g}-px cells",
                   extent=(cols * tile / scene.width, rows * tile / scene.height))
        summary = {"scene": os.path.abspath(scene_path), "crs": crs_name(scene.crs),
                   "size": [scene.height, scene.width], "tile_px": tile, "grid_per_tile": grid,
                   "cell_px": cell, "classmap_shape": list(classmap.shape), "dense": dense,
                   "image_size": encoder.model.image_size, "classes": names,
                   "coverage": _coverage(classmap, names), "seconds": time.perf_counter() - t0,
                   "outputs": written}
    write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary


def _check_recipe(dense: str) -> None:
    if dense not in DENSE_RECIPES:
        raise ConfigError(f"--dense {dense!r}: use one of {', '.join(DENSE_RECIPES)}")


def _cell_means(valid: np.ndarray, grid: int) -> np.ndarray:
    """(N, grid, grid) share of valid pixels in each patch cell of (N, tile, tile) masks."""
    edges = np.linspace(0, valid.shape[1], grid + 1).round().astype(int)
    sums = np.add.reduceat(np.add.reduceat(valid.astype(np.float64), edges[:-1], axis=1),
                           edges[:-1], axis=2)
    return sums / np.outer(np.diff(edges), np.diff(edges))


def _coverage(labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Share of labelled cells per class."""
    labels = np.asarray(labels)
    known = labels[labels != NODATA]
    counts = np.bincount(known.ravel(), minlength=len(names))
    return {n: round(float(c) / max(known.size, 1), 6) for n, c in zip(names, counts)}


def _view(path: str, encoder) -> np.ndarray:
    """The pixels the model saw: the image resized and centre-cropped as its preprocessing does."""
    from remoteclip_jax.data.images import open_rgb
    from remoteclip_jax.transforms import center_crop, resize_shortest_side

    size = encoder.model.image_size
    return np.asarray(center_crop(resize_shortest_side(open_rgb(path), size), size))


def _write_png(path: str, picture: np.ndarray, labels: np.ndarray, names: Sequence[str], *,
               title: str, extent: tuple[float, float] = (1.0, 1.0)) -> None:
    """The picture and its label map side by side, with a legend of the classes present.

    `extent`: the share of the picture's width and height the label grid covers (a scene's last
    tiles may run past its edge)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from remoteclip_jax.geo.outputs import class_colours

    colours = class_colours(len(names))
    rgba = np.ones(labels.shape + (4,), np.float32)          # white where nothing is labelled
    for index, colour in colours.items():
        if index != NODATA:
            rgba[labels == index] = np.asarray(colour, np.float32) / 255.0
    h, w = picture.shape[:2]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6 * h / w + 1.0), dpi=100)
    axes[0].imshow(picture)
    axes[1].imshow(rgba, extent=(-0.5, w * extent[0] - 0.5, h * extent[1] - 0.5, -0.5),
                   interpolation="nearest")
    for ax in axes:
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    present = [i for i in range(len(names)) if (labels == i).any()]
    fig.legend(handles=[Patch(color=np.asarray(colours[i]) / 255.0, label=names[i])
                        for i in present],
               loc="lower center", ncol=min(8, max(1, len(present))), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    with atomic_write(path, None) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remoteclip-jax segment",
        description="Zero-shot dense labels: the class of every ViT patch (highest cosine "
                    "similarity to the class embeddings), for images or a GeoTIFF scene.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("input", help="folder of images, .txt list of image paths, one image, "
                                      "or (with --tile) one GeoTIFF/COG scene")
    add_encoder_arguments(parser)
    add_class_arguments(parser)
    parser.add_argument("--dense", default="value", choices=DENSE_RECIPES,
                        help="patch tokens: value (MaskCLIP's value path) or plain (last block)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="run the model at this input size (multiple of the patch size; "
                             "finer grid; position embedding resampled)")
    parser.add_argument("--out", default=".", help="output folder")
    scene = parser.add_argument_group("georeferenced scenes")
    scene.add_argument("--tile", type=int, default=None,
                       help="tile side in scene pixels: INPUT is a scene, OUT/classmap.tif holds "
                            "a class per patch cell")
    scene.add_argument("--bands", default=None, help="bands as RGB, as `classify --bands`")
    scene.add_argument("--scale", default=None, help="to 8 bits, as `classify --scale`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    common = dict(model=args.model, dataset=args.dataset, templates=args.templates,
                  class_embedding=args.class_embedding, dense=args.dense,
                  image_size=args.image_size, **encoder_options(args))
    if args.tile is not None:
        s = segment_scene(args.input, args.classes, tile=args.tile, bands=args.bands,
                          scale=args.scale, out_dir=args.out, **common)
        print(f"segmented {args.input}: {s['classmap_shape'][0]} x {s['classmap_shape'][1]} cells "
              f"of {s['cell_px']:g} px -> {s['outputs']['classmap']}")
        return 0
    result = segment(args.input, args.classes, out_dir=args.out, **common)
    n = len(result["images"])
    print(f"segmented {n} image{'s' if n != 1 else ''} ({result['grid'][0]} x {result['grid'][1]} "
          f"patches each) -> {os.path.join(args.out, 'segments.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
