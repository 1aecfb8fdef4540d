"""Model loading for the inference commands: a model directory -> (model, variables)."""
from __future__ import annotations

import os

from remoteclip_jax.errors import UserError


class ModelLoadError(UserError, ValueError):
    """A --model path that is not a model directory this package can read."""


def load_model(path: str | os.PathLike):
    """Loads a model directory written by `remoteclip-jax import-weights` (orbax + model.json).

    Args:
        path: the directory.

    Returns:
        (model, variables): the `remoteclip_jax.models.CLIP` module (float32) and its variables.

    Raises:
        ModelLoadError: the path is missing or is not such a directory (the message says so).
    """
    # One place to widen when more checkpoint layouts (HF CLIPModel, open_clip hub dirs) are read.
    from remoteclip_jax.models import create_model
    from remoteclip_jax.weights.openclip import load_orbax

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ModelLoadError(f"{path}: model directory not found (pass --model DIR, a directory "
                             "written by `remoteclip-jax import-weights`)")
    if not os.path.isfile(os.path.join(path, "model.json")):
        raise ModelLoadError(f"{path}: no model.json; not a model directory (convert OpenCLIP "
                             "weights with `remoteclip-jax import-weights` first)")
    variables, meta = load_orbax(path)
    return create_model(meta.get("model") or meta["config"]), variables


def make_encoder(model=None, *, encoder=None, **encoder_options):
    """The encoder the inference API functions run: `encoder`, or one built from `model`.

    Args:
        model: a model directory (see `load_model`) or a `(model, variables)` pair.
        encoder: an existing `Encoder` (wins; reuse it to avoid recompiling across calls).
        **encoder_options: `Encoder` options (batch_size, dtype, num_workers, progress).

    Raises:
        ModelLoadError: neither given, or the directory cannot be read.
    """
    if encoder is not None:
        return encoder
    if model is None:
        raise ModelLoadError("no model given (pass --model DIR, or model=/encoder= in Python)")
    from remoteclip_jax.inference.encoder import Encoder

    module, variables = model if isinstance(model, tuple) else load_model(model)
    return Encoder(module, variables, **encoder_options)
