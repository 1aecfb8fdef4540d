"""Scene tiling: memory stays bounded by the tile batch, and throughput against pre-cut chips.

Writes a procedurally generated scene (a mosaic of `remoteclip_jax.data.synthetic` scenes, as a
16-bit, 4-band, block-tiled GeoTIFF) in a child process, then in this process:

1. embeds every tile with `remoteclip_jax.geo.embed_scene` (windowed reads, scaling, tile store)
   and reports the peak RSS growth (``resource.getrusage``) and the peak of Python/numpy
   allocations (``tracemalloc``) against the scene size and the size of one tile batch;
2. embeds the same chips, already cut into in-memory arrays, with the same encoder (the plain
   chip-embedding path), and reports tiles/s for both.

The encoder is the tiny random ViT (TINY_VIT, 32 px input) unless --model names another
architecture: with a small model the figures show the cost of tiling itself.

    python scripts/bench_geo.py                          # 4096 px scene, 224 px tiles, batch 32
    python scripts/bench_geo.py --side 8192 --batch 64
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
import sys
import tracemalloc

import numpy as np

# This checkout's package, not an installed copy.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_scene(path: str, side: int, block: int = 256, seed: int = 0) -> None:
    """Writes the scene block row by block row, so this process never holds it either."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from remoteclip_jax.data.synthetic import render_scene

    rng = np.random.default_rng(seed)
    profile = dict(driver="GTiff", height=side, width=side, count=4, dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(500000, 4649776, 0.5, 0.5), tiled=True, blockxsize=512,
                   blockysize=512)
    with rasterio.open(path, "w", **profile) as dst:
        for i, name in enumerate(["NIR", "R", "G", "B"], start=1):
            dst.set_band_description(i, name)
        for r in range(0, side, block):
            h = min(block, side - r)
            strip = np.concatenate([render_scene(rng, block).image for _ in range(0, side, block)], axis=1)
            strip = strip[:h, :side].astype(np.uint16) * 40
            nir = strip.mean(axis=2).astype(np.uint16)
            dst.write(np.stack([nir, strip[..., 0], strip[..., 1], strip[..., 2]]),
                      window=Window(0, r, side, h))


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _encoder(model_name: str):
    import jax
    import jax.numpy as jnp
    from PIL import Image

    import remoteclip_jax
    from remoteclip_jax.models import TINY_VIT

    model = remoteclip_jax.create_model(TINY_VIT if model_name == "tiny" else model_name)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                                    jnp.zeros((1, 77), jnp.int32))
    encode = jax.jit(lambda v, x: model.apply(v, x, method="encode_image"))
    transform = remoteclip_jax.transforms.image_transform(s, train=False)

    def encode_chips(chips: np.ndarray) -> np.ndarray:
        x = np.stack([transform(Image.fromarray(c)) for c in chips])
        emb = np.asarray(encode(variables, x))
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)

    return encode_chips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096, help="scene side in pixels")
    parser.add_argument("--tile", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model", default="tiny", help="'tiny' (TINY_VIT) or a model name")
    parser.add_argument("--workdir", default=None, help="where the scene is written (default: a temp dir)")
    args = parser.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_geo_")
    scene_path = os.path.join(workdir, "scene.tif")
    if not os.path.exists(scene_path):
        start = time.perf_counter()
        # A child process writes the scene, so its memory never counts in this process's peak.
        child = multiprocessing.get_context("spawn").Process(target=_write_scene,
                                                              args=(scene_path, args.side))
        child.start()
        child.join()
        print(f"wrote {scene_path} in {time.perf_counter() - start:.1f} s")

    from remoteclip_jax.geo import embed_scene
    from remoteclip_jax.geo.raster import Scene

    from remoteclip_jax.geo.tiles import TileGrid

    encode_chips = _encoder(args.model)
    with Scene(scene_path, bands="R,G,B", scale="0,10200") as scene:
        grid = TileGrid.for_scene(scene.height, scene.width, scene.transform, scene.crs, args.tile)
    # Compile for both batch shapes (full and the last, partial one) outside the timed runs.
    for n in {args.batch, len(grid) % args.batch or args.batch}:
        encode_chips(np.zeros((n, args.tile, args.tile, 3), np.uint8))
    scene_mb = args.side ** 2 * 4 * 2 / 2 ** 20
    rgb_mb = args.side ** 2 * 3 / 2 ** 20
    batch_mb = args.batch * args.tile ** 2 * 3 / 2 ** 20

    store = os.path.join(workdir, "store")
    shutil.rmtree(store, ignore_errors=True)  # a fresh store: a resumed one would skip the work
    base_rss = _rss_mb()
    tracemalloc.start()
    start = time.perf_counter()
    summary = embed_scene(scene_path, encode_chips, store, tile=args.tile,
                          bands="R,G,B", scale="0,10200", batch_size=args.batch,
                          metadata_format="jsonl", progress=False)
    geo_s = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = _max_rss_mb()
    tiles = summary["tiles_kept"]

    # The plain path: the same chips, cut beforehand from the scene held in memory.
    with Scene(scene_path, bands="R,G,B", scale="0,10200") as scene:
        rgb, _ = scene.read_window(0, 0, args.side, args.side)
    chips = np.stack([rgb[r:r + h, c:c + w] for r, c, h, w in (grid.window(i) for i in range(len(grid)))])
    del rgb
    start = time.perf_counter()
    for i in range(0, len(chips), args.batch):
        encode_chips(chips[i:i + args.batch])
    plain_s = time.perf_counter() - start

    print(f"scene: {args.side} x {args.side} px, 4 x uint16 = {scene_mb:.0f} MiB on disk/in memory "
          f"({rgb_mb:.0f} MiB as uint8 RGB); {tiles} tiles of {args.tile} px")
    print(f"one tile batch ({args.batch} chips, uint8 RGB): {batch_mb:.1f} MiB")
    print(f"geo path   : peak RSS growth {peak_rss - base_rss:.0f} MiB (RSS before {base_rss:.0f} MiB, "
          f"peak {peak_rss:.0f} MiB); tracemalloc peak (numpy/Python) {traced_peak / 2 ** 20:.1f} MiB")
    print(f"geo path   : {tiles / geo_s:.1f} tiles/s ({geo_s:.1f} s: windowed read + scale + encode + store)")
    print(f"plain chips: {len(chips) / plain_s:.1f} tiles/s ({plain_s:.1f} s: encode pre-cut arrays)")
    print(f"geo / plain throughput: {plain_s / geo_s:.2f}")


if __name__ == "__main__":
    main()
