"""Models for the inference commands: a model directory -> (model, variables), and a fingerprint
of the weights (so a store knows which model filled it)."""
from __future__ import annotations

import os


from remoteclip_jax.errors import WeightsError


def load_model(path: str | os.PathLike):
    """Loads a model directory (ours, open_clip hub, transformers CLIPModel) for inference.

    Args:
        path: the directory (see `remoteclip_jax.load_pretrained` for the layouts read).

    Returns:
        (model, variables): the `remoteclip_jax.models.CLIP` module (float32) and its variables.

    Raises:
        UserError: the path is missing or holds no model we read (one line, naming the path).
    """
    from remoteclip_jax.weights.model_dir import load_pretrained

    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsError(f"{path}: model directory not found (pass --model DIR: a directory "
                             "written by `remoteclip-jax import-weights`, an open_clip hub or a "
                             "transformers CLIPModel directory)")
    return load_pretrained(path)


def make_encoder(model=None, *, encoder=None, **encoder_options):
    """The encoder the inference API functions run: `encoder`, or one built from `model`.

    Args:
        model: a model directory (see `load_model`) or a `(model, variables)` pair.
        encoder: an existing `Encoder` (wins; reuse it to avoid recompiling across calls).
        **encoder_options: `Encoder` options (batch_size, dtype, num_workers, progress).

    Raises:
        WeightsError: neither given, or the directory cannot be read.
    """
    if encoder is not None:
        return encoder
    if model is None:
        raise WeightsError("no model given (pass --model DIR, or model=/encoder= in Python)")
    from remoteclip_jax.inference.encoder import Encoder

    module, variables = model if isinstance(model, tuple) else load_model(model)
    return Encoder(module, variables, **encoder_options)
