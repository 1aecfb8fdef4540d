"""Models for the inference commands: a model directory or an OpenCLIP weights file ->
(model, variables).

A weights file (``RemoteCLIP-ViT-B-32.pt``) is used directly: its architecture comes from
``--arch`` or from a preset's file name (`remoteclip_jax.models.configs.PRESETS`), and the
converted variables are cached under ``$REMOTECLIP_JAX_CACHE`` (default
``~/.cache/remoteclip_jax``), keyed by the file's fingerprint, so the next command starts fast.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys

from remoteclip_jax import files
from remoteclip_jax.errors import ConfigError, WeightsError


def cache_dir() -> str:
    """Where converted weights files are kept."""
    return os.path.join(os.environ.get("REMOTECLIP_JAX_CACHE")
                        or os.path.join(os.path.expanduser("~"), ".cache", "remoteclip_jax"),
                        "weights")


def arch_of_file(path: str, arch: str | None = None):
    """The architecture to load a weights file with: `arch` (a name, or a `.json` file's
    open_clip-style config), or the preset the file name names.

    Raises:
        ConfigError: neither (the message says how to name it).
    """
    from remoteclip_jax.models.configs import PRESETS
    from remoteclip_jax.weights.model_info import model_argument

    if arch:
        return model_argument(arch, "--arch")
    name = os.path.basename(path)
    for preset, entry in PRESETS.items():
        if name == entry.file_name or os.path.splitext(name)[0] == preset:
            return preset
    raise ConfigError(f"{path}: a weights file does not say its architecture; pass --arch NAME "
                      "(an open_clip model name such as ViT-B-32-quickgelu, or a preset such as "
                      f"RemoteCLIP-ViT-B-32; files named as published are recognised: "
                      f"{', '.join(p.file_name for p in PRESETS.values())})")


def load_model(path: str | os.PathLike, arch: str | None = None):
    """Loads a model directory or an OpenCLIP weights file for inference.

    Args:
        path: a directory (see `remoteclip_jax.load_pretrained` for the layouts read) or a
            `.pt`/`.bin`/`.safetensors` file.
        arch: the architecture of a file (default: from a preset's file name); for a directory,
            a check that it holds this architecture.

    Returns:
        (model, variables): the `remoteclip_jax.models.CLIP` module (float32) and its variables.

    Raises:
        UserError: the path is missing or holds no model we read (one line, naming the path).
    """
    from remoteclip_jax.weights.model_dir import load_pretrained, read_model_dir, save_orbax

    path = os.fspath(path)
    if files.is_remote(path) and files.as_path(path).exists():  # gs://...: a downloaded copy
        with files.local_copy(path) as local:
            return load_model(local, arch)
    if not os.path.exists(path):
        raise WeightsError(f"{path}: model directory or weights file not found (--model takes a "
                           "directory written by `remoteclip-jax import-weights`, an open_clip hub "
                           "or transformers CLIPModel directory, or an OpenCLIP .pt/.safetensors)")
    if not os.path.isfile(path):
        from remoteclip_jax.weights.model_info import model_argument

        return load_pretrained(path, model_argument(arch, "--arch"))
    from remoteclip_jax.models import create_model
    from remoteclip_jax.weights.fingerprint import file_fingerprint

    arch = arch_of_file(path, arch)
    name = arch if isinstance(arch, str) else "config-" + hashlib.sha1(
        json.dumps(arch, sort_keys=True).encode()).hexdigest()[:12]
    cached = os.path.join(cache_dir(), f"{file_fingerprint(path)}-{name}")
    if os.path.isfile(os.path.join(cached, "model.json")):
        return load_pretrained(cached)
    print(f"converting {path} ({name}); cached for the next run in {cached}", file=sys.stderr)
    variables, info = read_model_dir(path, arch)
    try:
        save_orbax(variables, cached + ".partial", info)  # model.json last: complete when present
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(cached + ".partial", cached)
    except OSError as e:  # a read-only home is no reason to fail: the next run converts again
        print(f"warning: cannot cache converted weights in {cached} ({e})", file=sys.stderr)
    return create_model(info.model), variables


def make_encoder(model=None, *, encoder=None, arch: str | None = None, **encoder_options):
    """The encoder the inference API functions run: `encoder`, or one built from `model`.

    Args:
        model: a model directory or weights file (see `load_model`) or a `(model, variables)` pair.
        encoder: an existing `Encoder` (wins; reuse it to avoid recompiling across calls).
        arch: the architecture of a weights file.
        **encoder_options: `Encoder` options (batch_size, dtype, num_workers, progress).

    Raises:
        UserError: neither given, or the model cannot be read.
    """
    if encoder is not None:
        return encoder
    if model is None:
        raise ConfigError("no model given (pass --model DIR or FILE, or model=/encoder= in Python)")
    from remoteclip_jax.inference.encoder import Encoder

    if not isinstance(model, tuple) and encoder_options.get("progress", True):
        print(f"loading {os.fspath(model)} (the first batch compiles the model) ...",
              file=sys.stderr, flush=True)
    module, variables = model if isinstance(model, tuple) else load_model(model, arch)
    return Encoder(module, variables, **encoder_options)
