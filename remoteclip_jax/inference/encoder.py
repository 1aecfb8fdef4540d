"""`Encoder`: image files, in-memory chips and texts -> L2-normalised float32 CLIP features.

Batches have one fixed size (the last one is padded), so one compiled program serves every batch;
each batch is split over a 1-D `data` mesh of this process's devices. Images are decoded and
preprocessed in a thread pool one batch ahead of the device, and the device works on one batch
while the host collects the previous one. An image that cannot be read is skipped and reported,
never fatal: a folder of 100,000 files should not stop at one truncated JPEG.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from PIL import Image
from tqdm import tqdm

from remoteclip_jax import encode
from remoteclip_jax.data.images import ImageReadError, open_rgb
from remoteclip_jax.inference.execution import ExecutionPlan, execution_plan, precast_params
from remoteclip_jax.tokenizer import tokenize
from remoteclip_jax.transforms import image_transform


def data_mesh(devices=None) -> Mesh:
    """1-D mesh named `data` over this process's devices (default: all local ones)."""
    return Mesh(np.array(list(devices or jax.local_devices())), ("data",))


@dataclasses.dataclass
class EncodedImages:
    """Features of the readable images of a list, in input order.

    Attributes:
        features: (M, E) float32, rows of unit norm.
        paths: the M images that were read.
        indices: (M,) int64 positions of those images in the input list.
        skipped: (path, reason) for each image that could not be read.
    """

    features: np.ndarray
    paths: list[str]
    indices: np.ndarray
    skipped: list[tuple[str, str]]


@dataclasses.dataclass
class EncodedBatch:
    """One batch from `Encoder.iter_images`: features of its readable images and what was skipped.

    Attributes:
        indices: (m,) positions in the input list of the rows of `features`.
        features: (m, E) float32, rows of unit norm.
        skipped: (position in the input list, reason) per unreadable image of the batch.
    """

    indices: np.ndarray
    features: np.ndarray
    skipped: list[tuple[int, str]]


class Encoder:
    """Encodes images and texts with a CLIP model, batched and sharded over the local devices.

    Args:
        model: a `remoteclip_jax` CLIP module (e.g. from `create_model` or `load_model`).
        variables: its variables.
        batch_size: global batch (default: the backend's setting from `execution_plan`); rounded
            up to a multiple of the device count.
        dtype: compute dtype, "float32" or "bfloat16" (default: the model's). Features are
            float32 either way.
        num_workers: image-decoding threads (default: the CPU count, at most 8).
        progress: show a tqdm bar (it is hidden anyway when stderr is not a terminal).
        mesh: a 1-D mesh with a `data` axis (default: every local device).
        plan: override the backend's `ExecutionPlan` (benchmarks compare plans with it).
    """

    def __init__(self, model, variables, *, batch_size: int | None = None, dtype=None,
                 num_workers: int | None = None, progress: bool = True, mesh=None,
                 plan: ExecutionPlan | None = None):
        dtype = jnp.dtype(dtype or model.dtype)
        self.model = model if jnp.dtype(model.dtype) == dtype else model.clone(dtype=dtype)
        self.dtype = dtype
        self.mesh = mesh or data_mesh()
        devices = self.mesh.devices.size
        self.plan = plan or execution_plan(dtype, num_devices=devices)
        wanted = int(batch_size or self.plan.batch_size)
        self.batch_size = max(devices, -(-wanted // devices) * devices)
        self.num_workers = int(num_workers or min(8, os.cpu_count() or 1))
        self.progress = progress
        self.transform = image_transform(self.model.image_size, train=False)
        self._batch_sharding = encode.batch_sharding(self.mesh)
        self._patch_encoders: dict[str, Callable] = {}
        if self.plan.precast:
            variables = precast_params(variables, dtype)
        self.variables = jax.device_put(variables, NamedSharding(self.mesh, P()))
        self._encode_image = self._compiled("encode_image")
        self._encode_text = self._compiled("encode_text")
        # Unnormalised text features: the "average" class embedding of zero-shot evaluation
        # averages prompt features before normalising. (jax.jit compiles on first call only.)
        self._encode_text_raw = self._compiled("encode_text", normalize=False)

    @property
    def embed_dim(self) -> int:
        return int(self.model.embed_dim)

    # -- public API -------------------------------------------------------------------------
    def images(self, paths: Sequence[str | os.PathLike], desc: str = "images") -> EncodedImages:
        """Features of image files; unreadable ones are skipped and listed.

        Args:
            paths: image files (any format PIL reads).
            desc: progress-bar label.
        """
        paths = [os.fspath(p) for p in paths]
        indices, features, skipped = [], [], []
        for batch in self.iter_images(paths, desc=desc):
            indices.append(batch.indices)
            features.append(batch.features)
            skipped += [(paths[i], reason) for i, reason in batch.skipped]
        index = np.concatenate(indices) if indices else np.zeros(0, np.int64)
        return EncodedImages(self._stack(features), [paths[i] for i in index], index, skipped)

    def iter_images(self, paths: Sequence[str | os.PathLike], desc: str = "images"
                    ) -> Iterator[EncodedBatch]:
        """Streams features batch by batch (for stores that write as they go).

        Yields:
            One `EncodedBatch` per `batch_size` inputs, in order.
        """
        paths = [os.fspath(p) for p in paths]
        for positions, values, skipped in self._stream(
                len(paths), lambda i: self._preprocess(open_rgb(paths[i])),
                self._encode_image, desc, "img"):
            yield EncodedBatch(positions, values, skipped)

    def arrays(self, batch) -> np.ndarray:
        """Features of images already in memory, e.g. chips cut from a GeoTIFF.

        Each image gets the same preprocessing as a file (shortest side resized to the model's
        input size, centre crop, CLIP normalisation), so a chip and the same pixels saved as PNG
        give the same feature.

        Args:
            batch: a uint8 array (N, H, W, 3) or (N, H, W), or a sequence of uint8 arrays
                ((H, W, 3) / (H, W), sizes may differ) or PIL images.

        Returns:
            (N, E) float32, rows of unit norm, in input order.

        Raises:
            ImageReadError: an element is not an image (the message gives its index).
        """
        items = list(batch)

        def load(i):
            return self._preprocess_item(items[i], i)

        out = []
        for _, values, skipped in self._stream(len(items), load, self._encode_image, "arrays",
                                               "img", progress=False):
            if skipped:
                raise ImageReadError(skipped[0][1])
            out.append(values)
        return self._stack(out)

    def patches(self, items: Sequence, recipe: str = "plain", desc: str = "images") -> np.ndarray:
        """Unit features of every patch (ViT towers): (N, grid_h, grid_w, E) float32.

        Args:
            items: image files, or in-memory images as `arrays` takes them (same preprocessing:
                the model sees the centre crop; a square tile is seen whole).
            recipe: "plain" (the last block's tokens) or "value" (MaskCLIP's value path); see
                `remoteclip_jax.models.vit.VisionTransformer`.
            desc: progress-bar label.

        Raises:
            ImageReadError: an item cannot be read (its index or path named).
        """
        if recipe not in self._patch_encoders:
            self._patch_encoders[recipe] = self._compiled(
                "encode_image", apply_kwargs={"tokens": True, "dense": recipe})
        items = [os.fspath(i) if isinstance(i, (str, os.PathLike)) else i for i in items]

        def load(i):
            return self._preprocess_item(items[i], i)

        out = []
        for _, values, skipped in self._stream(len(items), load, self._patch_encoders[recipe],
                                               desc, "img"):
            if skipped:
                raise ImageReadError(skipped[0][1])
            out.append(values)
        return np.concatenate(out)

    def texts(self, texts: Sequence[str], desc: str = "texts", normalize: bool = True) -> np.ndarray:
        """(N, E) float32 features of `texts`, in input order.

        Args:
            texts: the strings (tokenized to the model's context length; longer ones truncated).
            desc: progress-bar label.
            normalize: unit rows (default); False gives the model's raw text features.
        """
        texts = [str(t) for t in texts]
        context = self.model.context_length
        tower = self._encode_text if normalize else self._encode_text_raw
        out = [values for _, values, _ in self._stream(
            len(texts), lambda i: tokenize([texts[i]], context_length=context)[0],
            tower, desc, "text")]
        return self._stack(out)

    # -- internals ---------------------------------------------------------------------------
    def _compiled(self, method: str, normalize: bool = True, apply_kwargs: dict | None = None):
        """A tower of `self.model` jitted for this mesh (variables replicated) and plan."""
        return encode.encode_function(self.model, method, self.mesh, normalize=normalize,
                                      compiler_options=self.plan.compiler_options,
                                      apply_kwargs=apply_kwargs)

    def _preprocess(self, image) -> np.ndarray:
        return np.asarray(self.transform(image), np.float32)

    def _preprocess_item(self, item, index: int) -> np.ndarray:
        """A file path, PIL image or uint8 array, decoded and preprocessed (errors name it)."""
        if isinstance(item, str):
            return self._preprocess(open_rgb(item))
        if not isinstance(item, Image.Image):
            item = np.asarray(item)
        return self._preprocess(open_rgb(item, name=f"array {index}"))

    def _stack(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, self.embed_dim), np.float32)

    def _stream(self, n: int, load_one: Callable[[int], np.ndarray], tower, desc: str,
                unit: str, progress: bool | None = None):
        """Yields (positions, features, skipped) per batch of `batch_size` positions of 0..n-1."""
        bs = self.batch_size
        show = self.progress if progress is None else progress
        bar = tqdm(total=n, desc=desc, unit=unit, disable=None if show else True, leave=False)

        def load_batch(start: int):
            positions = range(start, min(n, start + bs))

            def attempt(i):
                try:
                    return load_one(i)
                except (ImageReadError, ValueError) as e:  # ValueError: a 0-pixel image
                    return e
            results = list(workers.map(attempt, positions))
            good = [(i, r) for i, r in zip(positions, results) if not isinstance(r, Exception)]
            bad = [(i, str(r)) for i, r in zip(positions, results) if isinstance(r, Exception)]
            return len(positions), good, bad

        def finish(pending):
            count, positions, values, bad = pending
            host = np.asarray(values)[:len(positions)] if values is not None else \
                np.zeros((0, self.embed_dim), np.float32)
            bar.update(count)
            return np.asarray(positions, np.int64), host, bad

        with concurrent.futures.ThreadPoolExecutor(self.num_workers) as workers, \
                concurrent.futures.ThreadPoolExecutor(1) as ahead:
            upcoming = ahead.submit(load_batch, 0) if n else None
            in_flight = None
            for start in range(0, n, bs):
                count, good, bad = upcoming.result()
                if start + bs < n:
                    upcoming = ahead.submit(load_batch, start + bs)
                values = None
                if good:
                    x = encode.pad_rows(np.stack([r for _, r in good]), bs)
                    # Dispatch is asynchronous: the device starts on this batch while the host
                    # copies out the previous one.
                    values = tower(self.variables, jax.device_put(x, self._batch_sharding))
                if in_flight is not None:
                    yield finish(in_flight)
                in_flight = (count, [i for i, _ in good], values, bad)
            if in_flight is not None:
                yield finish(in_flight)
        bar.close()
