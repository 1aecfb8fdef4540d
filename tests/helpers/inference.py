"""Shared pieces of the inference tests: a tiny random model, a model directory, real AID images,
and reference features computed directly with `model.apply` (no Encoder involved)."""
import functools
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import remoteclip_jax as rc
from remoteclip_jax.transforms import image_transform

AID_CLASSES = ("Airport", "Beach", "Forest")


@functools.lru_cache(maxsize=None)
def tiny_model(seed: int = 0, embed_dim: int = 32):
    """TINY_VIT (or it with another `embed_dim`) with random weights: (model, variables); one
    per session, seed and width.

    Weights are drawn with numpy on the shapes of `model.init` (jitting init itself takes ~15 s
    on a loaded 2-core machine): N(0, 0.05), LayerNorm scales around 1.
    """
    model = rc.create_model({**rc.models.TINY_VIT, "embed_dim": embed_dim})
    s = model.image_size
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                            jnp.zeros((1, model.context_length), jnp.int32))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        base = 1.0 if name.endswith("['scale']") else 0.0
        return (base + 0.05 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

    return model, jax.tree_util.tree_map_with_path(draw, shapes)


def save_model_dir(variables, directory, embed_dim: int = 32) -> str:
    """Writes `variables` of TINY_VIT (of `embed_dim`) as a model directory (what
    `import-weights` writes)."""
    from remoteclip_jax.weights.model_dir import save_orbax

    save_orbax(variables, str(directory), {**rc.models.TINY_VIT, "embed_dim": embed_dim})
    return str(directory)


def aid_subset(shared_data: pathlib.Path, dest: pathlib.Path, per_class: int = 4,
               classes=AID_CLASSES) -> list[str]:
    """Copies the first `per_class` real AID images of each class to dest/<Class>/; sorted paths."""
    root = shared_data / "aid_150px"
    if not root.is_dir():
        pytest.skip(f"AID images not found at {root}")
    out = []
    for c in classes:
        (dest / c).mkdir(parents=True, exist_ok=True)
        for src in sorted((root / c).glob("*.jpg"))[:per_class]:
            shutil.copy(src, dest / c / src.name)
            out.append(str(dest / c / src.name))
    return sorted(out)


def random_images(folder: pathlib.Path, n: int, size: int = 40, seed: int = 0) -> list[str]:
    """n random RGB PNGs folder/img_000.png ...; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size + 7, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def corrupt_images(folder: pathlib.Path) -> list[str]:
    """A JPEG cut in half and a file of garbage bytes, both named .jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "whole.jpg"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(good, quality=95)
    data = good.read_bytes()
    good.unlink()
    truncated, garbage = folder / "truncated.jpg", folder / "garbage.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    garbage.write_bytes(b"not an image at all" * 10)
    return [str(truncated), str(garbage)]


def _unit64(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@functools.lru_cache(maxsize=None)
def _apply(model, method: str):
    """One jitted model.apply on a single device: no batching, padding or sharding."""
    return jax.jit(lambda v, x: model.apply(v, x, method=method))


def reference_image_features(model, variables, paths) -> np.ndarray:
    """Unit float64 image features: PIL decode, eval transform, one model.apply, normalise."""
    transform = image_transform(model.image_size, train=False)
    pixels = np.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    return _unit64(_apply(model, "encode_image")(variables, jnp.asarray(pixels)))


def reference_text_features(model, variables, texts, unit: bool = True) -> np.ndarray:
    """Float64 text features (unit rows unless `unit=False`) from one model.apply."""
    tokens = rc.tokenize(list(texts), context_length=model.context_length)
    features = np.asarray(_apply(model, "encode_text")(variables, jnp.asarray(tokens)), np.float64)
    return _unit64(features) if unit else features


def cli_command(*args) -> list:
    """`python -m remoteclip_jax.cli ARGS` (the console script's entry point, from this checkout)."""
    import sys

    return [sys.executable, "-m", "remoteclip_jax.cli", *map(os.fspath, args)]
