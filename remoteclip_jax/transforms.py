"""CLIP image preprocessing in PIL/numpy, equal to open_clip's ``image_transform``.

No jax and no torch here: these run inside grain worker processes, and forked or spawned
children of a process with jax threads can deadlock.
Outputs are NHWC elements, ``float32 (H, W, 3)``, i.e. open_clip's CHW tensor
transposed.

open_clip's pipelines, and how they are mirrored:

* eval: ``Resize(size)`` (shortest side to ``size``, the long side
  ``int(size * long / short)``, PIL bicubic), ``CenterCrop(size)`` (offset
  ``int(round((dim - size) / 2))``, zero padding if the image is smaller), then
  ``convert("RGB")``, ``/255`` and ``(x - mean) / std`` in float32.
* train: ``RandomResizedCrop(size, scale=(0.9, 1.0), ratio=(3/4, 4/3), bicubic)``
  (torchvision's sampler: 10 tries, then a centred fallback crop), then the same
  conversion and normalisation.

Resizing and cropping happen *before* the RGB conversion, as in open_clip; this
matters for RGBA (PIL resizes premultiplied alpha) and palette images (PIL
resizes them with nearest neighbour). torchvision resizes a PIL image by calling
``PIL.Image.resize(..., BICUBIC)`` itself (its ``antialias`` flag only affects
tensors), so calling PIL the same way gives bit-identical pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "OPENAI_MEAN",
    "OPENAI_STD",
    "EvalTransform",
    "TrainTransform",
    "center_crop",
    "image_transform",
    "normalize",
    "random_resized_crop_params",
    "resize_shortest_side",
    "resized_crop",
    "shortest_side_size",
    "to_rgb_array",
]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_SCALE = (0.9, 1.0)
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_BICUBIC = Image.Resampling.BICUBIC


def _check_image(img, where: str) -> None:
    if not isinstance(img, Image.Image):
        raise TypeError(f"{where}: expected a PIL.Image.Image, got {type(img).__name__}")
    if img.width < 1 or img.height < 1:
        raise ValueError(f"{where}: image has size {img.width}x{img.height}, both sides must be >= 1")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` as ``(height, width)``."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    if len(size) == 1:
        return int(size[0]), int(size[0])
    if len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be an int or (height, width), got {size!r}")


def shortest_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Output ``(width, height)`` when the shorter side is resized to ``size``.

    The longer side is ``int(size * long / short)`` (truncated, as torchvision does).
    """
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_shortest_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side equals ``size``, keeping the aspect ratio (PIL bicubic).

    Args:
        img: input image, any PIL mode (modes PIL cannot resize bicubically, such
            as palette images, are resized as PIL decides, like torchvision).
        size: target length of the shorter side.

    Returns:
        The resized image, or ``img`` itself when it already has that size.
    """
    _check_image(img, "resize_shortest_side")
    new_size = shortest_side_size(img.width, img.height, int(size))
    if new_size == img.size:
        return img
    return img.resize(new_size, _BICUBIC)


def center_crop(img: Image.Image, size: int | Sequence[int]) -> Image.Image:
    """Crop the centre ``size`` (int or ``(height, width)``) like torchvision's ``CenterCrop``.

    A side shorter than the crop is first zero-padded (left/top get the smaller
    half); the crop offset is ``int(round((dim - crop) / 2))`` (round half to even).

    Args:
        img: input image.
        size: crop size.

    Returns:
        The cropped image (``img`` itself when it already has that size).
    """
    _check_image(img, "center_crop")
    crop_h, crop_w = _pair(size)
    width, height = img.size
    if (crop_w, crop_h) == (width, height):
        return img
    # torchvision pads a too-small side with zeros (left/top get the smaller half)
    # and then crops; PIL fills the part of a crop box outside the image with
    # zeros, so one crop with the box shifted by the padding does both.
    pad_left = (crop_w - width) // 2 if crop_w > width else 0
    pad_top = (crop_h - height) // 2 if crop_h > height else 0
    top = int(round((max(height, crop_h) - crop_h) / 2.0)) - pad_top
    left = int(round((max(width, crop_w) - crop_w) / 2.0)) - pad_left
    return img.crop((left, top, left + crop_w, top + crop_h))


def random_resized_crop_params(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
) -> tuple[int, int, int, int]:
    """Sample a crop box with torchvision's ``RandomResizedCrop.get_params`` algorithm.

    Up to 10 tries draw an area fraction uniformly from ``scale`` and an aspect
    ratio (w/h) log-uniformly from ``ratio``; the first box that fits is placed
    uniformly at random. If none fits, the centred crop of the whole image with
    its aspect ratio clamped to ``ratio`` is returned.

    Args:
        height: image height.
        width: image width.
        rng: numpy random generator (the only source of randomness).
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio (width / height).

    Returns:
        ``(top, left, crop_height, crop_width)``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"random_resized_crop_params: image size {width}x{height}, both sides must be >= 1")
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(
    img: Image.Image, top: int, left: int, height: int, width: int, size: int | Sequence[int]
) -> Image.Image:
    """Crop a box and resize it to ``size`` with PIL bicubic (torchvision's ``resized_crop``).

    The crop comes first, so the bicubic filter never reads pixels outside the box
    (``Image.resize(box=...)`` would, and differs at the edges).

    Args:
        img: input image.
        top, left, height, width: the box, in pixels.
        size: output size, int or ``(height, width)``.

    Returns:
        The resized crop.
    """
    _check_image(img, "resized_crop")
    out_h, out_w = _pair(size)
    img = img.crop((left, top, left + width, top + height))
    if img.size == (out_w, out_h):
        return img
    return img.resize((out_w, out_h), _BICUBIC)


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """``uint8 (H, W, 3)`` pixels of ``img.convert("RGB")`` (no copy for RGB images)."""
    _check_image(img, "to_rgb_array")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def _normalize_lut(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, 256) float32 table of ``(v / 255 - mean) / std`` computed in float32 like torch."""
    mean32 = np.asarray(mean, np.float32).reshape(3, 1)
    std32 = np.asarray(std, np.float32).reshape(3, 1)
    scaled = np.arange(256, dtype=np.float32) / np.float32(255)
    return ((scaled[None, :] - mean32) / std32).astype(np.float32)


def normalize(pixels: np.ndarray, mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD) -> np.ndarray:
    """Scale to [0, 1] and standardise per channel, in float32 as torchvision does.

    Args:
        pixels: ``uint8 (H, W, 3)`` (divided by 255 first), or floats already in [0, 1].
        mean: per-channel mean.
        std: per-channel standard deviation.

    Returns:
        ``float32 (H, W, 3)``.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"normalize: expected (H, W, 3) pixels, got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        return _apply_lut(pixels, _normalize_lut(mean, std))
    x = pixels.astype(np.float32, copy=False)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def _apply_lut(pixels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    # A 256-entry table per channel holds exactly the float32 values the
    # arithmetic would give, and a gather is ~3x faster than the arithmetic.
    out = np.empty(pixels.shape, np.float32)
    for c in range(3):
        np.take(lut[c], pixels[..., c], out=out[..., c])
    return out


@dataclass
class EvalTransform:
    """open_clip's eval preprocessing: shortest side resize, centre crop, RGB, normalise.

    Call it on a PIL image to get ``float32 (image_size, image_size, 3)``.
    """

    image_size: int = 224
    mean: Sequence[float] = OPENAI_MEAN
    std: Sequence[float] = OPENAI_STD
    _lut: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self._lut = _normalize_lut(self.mean, self.std)

    def __call__(self, img: Image.Image) -> np.ndarray:
        _check_image(img, "EvalTransform")
        size = self.image_size
        # Fast path: an image already at the target size is left untouched by both
        # torchvision's Resize and its CenterCrop.
        if img.size != (size, size):
            img = center_crop(resize_shortest_side(img, size), size)
        return _apply_lut(to_rgb_array(img), self._lut)


@dataclass
class TrainTransform:
    """open_clip's train preprocessing: random resized crop (bicubic), RGB, normalise.

    Call it as ``transform(img, rng)`` with a ``np.random.Generator``; the crop is
    sampled by torchvision's algorithm, so the distribution matches open_clip's.
    """

    image_size: int = 224
    mean: Sequence[float] = OPENAI_MEAN
    std: Sequence[float] = OPENAI_STD
    scale: Sequence[float] = DEFAULT_SCALE
    ratio: Sequence[float] = DEFAULT_RATIO
    _lut: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self._lut = _normalize_lut(self.mean, self.std)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> np.ndarray:
        _check_image(img, "TrainTransform")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"TrainTransform: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        top, left, h, w = random_resized_crop_params(img.height, img.width, rng, self.scale, self.ratio)
        img = resized_crop(img, top, left, h, w, self.image_size)
        return _apply_lut(to_rgb_array(img), self._lut)


def image_transform(
    image_size: int = 224,
    train: bool = False,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
) -> EvalTransform | TrainTransform:
    """The preprocessing open_clip's ``image_transform(image_size, is_train=train)`` does.

    Args:
        image_size: output side length (224 for ViT-B/32, 336 for ViT-L/14-336, ...).
        train: random resized crop (called as ``f(img, rng)``) instead of resize +
            centre crop (called as ``f(img)``).
        mean: per-channel mean (default OpenAI CLIP's).
        std: per-channel standard deviation (default OpenAI CLIP's).
        scale: train only: crop area range as a fraction of the image.
        ratio: train only: crop aspect-ratio range (width / height).

    Returns:
        A picklable callable producing ``float32 (image_size, image_size, 3)``.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_transform: image_size must be a positive int, got {image_size!r}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"image_transform: mean and std need 3 values each, got {mean!r} and {std!r}")
    if train:
        return TrainTransform(int(image_size), tuple(mean), tuple(std), tuple(scale), tuple(ratio))
    return EvalTransform(int(image_size), tuple(mean), tuple(std))
