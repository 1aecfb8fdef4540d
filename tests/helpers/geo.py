"""Shared helpers for the geo tests: GeoTIFFs written from real samples, and a tiny CLIP encoder.

Every scene gets the same made-up georeferencing, so tests can check coordinates by hand:
EPSG:32633 (UTM 33N), top-left corner (500000, 4649776), 0.5 m square pixels, north up.
"""
from __future__ import annotations

import functools
import pathlib

import numpy as np
import pytest
from PIL import Image

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

CRS = "EPSG:32633"
ORIGIN_X, ORIGIN_Y, GSD = 500000.0, 4649776.0, 0.5
TRANSFORM = from_origin(ORIGIN_X, ORIGIN_Y, GSD, GSD)


def world(col: float, row: float) -> tuple[float, float]:
    """Pixel corner (col, row) -> (x, y) by hand: x grows with columns, y falls with rows."""
    return ORIGIN_X + GSD * col, ORIGIN_Y - GSD * row


def load_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def dota_image(shared_data: pathlib.Path) -> np.ndarray:
    path = shared_data / "detection" / "dota" / "images" / "P0003.png"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return load_rgb(path)


def aid_mosaic(shared_data: pathlib.Path, n: int = 3) -> np.ndarray:
    """``n x n`` real AID images (150 px) side by side: a 450 px scene of distinct land covers."""
    classes = ["Airport", "Beach", "Forest", "Farmland", "Parking", "Pond", "Port", "River", "Stadium"]
    tiles = []
    for name in classes[:n * n]:
        files = sorted((shared_data / "aid_150px" / name).glob("*.jpg"))
        if not files:
            pytest.skip(f"AID class {name} not found under {shared_data}")
        tiles.append(load_rgb(files[0]))
    rows = [np.concatenate(tiles[r * n:(r + 1) * n], axis=1) for r in range(n)]
    return np.concatenate(rows, axis=0)


def write_geotiff(path, bands: np.ndarray, *, descriptions=None, nodata=None, transform=TRANSFORM,
                  crs=CRS, **profile) -> str:
    """``bands`` is ``(count, H, W)``; returns the path."""
    count, height, width = bands.shape
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count,
                       dtype=bands.dtype.name, crs=crs, transform=transform, nodata=nodata,
                       **profile) as dst:
        dst.write(bands)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return str(path)


def write_rgb(path, rgb: np.ndarray, **kw) -> str:
    return write_geotiff(path, rgb.transpose(2, 0, 1), **kw)


def write_nir_rgb_16bit(path, rgb: np.ndarray) -> str:
    """4 bands NIR,R,G,B as uint16 = 8-bit value x 40 (so 0..10200), described "NIR","R","G","B"."""
    nir = rgb.astype(np.uint16).mean(axis=2).astype(np.uint16)
    bands = np.stack([nir, rgb[..., 0], rgb[..., 1], rgb[..., 2]]).astype(np.uint16) * 40
    return write_geotiff(path, bands, descriptions=["NIR", "R", "G", "B"])


@functools.lru_cache(maxsize=1)
def tiny_model():
    import jax
    import jax.numpy as jnp

    import remoteclip_jax
    from remoteclip_jax.models import TINY_VIT

    model = remoteclip_jax.create_model(TINY_VIT)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                                    jnp.zeros((1, 77), jnp.int32))
    encode = jax.jit(lambda v, x: model.apply(v, x, method="encode_image"))
    encode_text = jax.jit(lambda v, t: model.apply(v, t, method="encode_text"))
    return model, variables, encode, encode_text


def encode_chips(chips: np.ndarray) -> np.ndarray:
    """The encoder callable the geo functions take: uint8 (N,H,W,3) -> L2-normalised (N,E)."""
    import remoteclip_jax

    model, variables, encode, _ = tiny_model()
    transform = remoteclip_jax.transforms.image_transform(model.image_size, train=False)
    x = np.stack([transform(Image.fromarray(c)) for c in chips])
    emb = np.asarray(encode(variables, x), np.float64)
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def encode_texts(texts) -> np.ndarray:
    import remoteclip_jax

    _, variables, _, encode_text = tiny_model()
    emb = np.asarray(encode_text(variables, remoteclip_jax.tokenize(list(texts))), np.float64)
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def reference_embedding(chip: np.ndarray) -> np.ndarray:
    """One hand-cut chip through the model on its own, normalised in float64."""
    return encode_chips(chip[None])[0].astype(np.float64)
