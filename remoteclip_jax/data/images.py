"""The one way this package opens an image: a path, encoded bytes or a uint8 array -> RGB PIL.

Training, evaluation, conversion and inference all read images through `open_rgb`, so they agree
on what a readable image is and on the message an unreadable one gets. numpy/PIL only (runs in
grain worker processes).
"""
from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
from PIL import Image

from remoteclip_jax.errors import ConfigError, ImageReadError
from remoteclip_jax.files import as_path, is_remote

# Remote-sensing scenes are legitimately huge (DOTA up to 20,000 px a side); PIL's default
# decompression-bomb guard (~179 Mpx) would reject them as attacks.
Image.MAX_IMAGE_PIXELS = 1_000_000_000

ImageInput = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]
# File suffixes taken as images wherever folders are listed.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def open_rgb(image: ImageInput, name: str | None = None) -> Image.Image:
    """Decodes `image` fully and returns it in RGB.

    Args:
        image: a file path (local or in a bucket, ``gs://...``), encoded image bytes, a uint8 (H, W) / (H, W, 3|4) array, or a PIL image.
        name: what to call the image in an error (default: the path; "<bytes>" for bytes).

    Raises:
        ImageReadError: missing, truncated or undecodable data, naming `name`.
    """
    label = name or (os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<image>")
    try:
        if isinstance(image, Image.Image):
            im = image
        elif isinstance(image, np.ndarray):
            im = Image.fromarray(image)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            im = Image.open(io.BytesIO(bytes(image)))
        elif is_remote(image):  # an image in a bucket (gs://...)
            im = Image.open(io.BytesIO(as_path(image).read_bytes()))
        else:
            im = Image.open(os.fspath(image))
        im.load()  # decode now: truncated data must fail here, where the name is known
        return im if im.mode == "RGB" else im.convert("RGB")
    except ConfigError:  # a bucket path this machine cannot read: not the image's fault
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{label}: image file not found") from None
    except (OSError, ValueError, SyntaxError, TypeError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{label}: unreadable image ({type(e).__name__}: {e})") from None
