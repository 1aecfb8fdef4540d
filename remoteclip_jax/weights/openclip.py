"""OpenCLIP state dict <-> Flax variables, through one key table used in both directions.

The Flax modules mirror open_clip's torch modules name for name, so the table is small (the
top-level scalars `logit_scale` and, for SigLIP-style models, `logit_bias` keep their names):
  * an index under a container joins its name: torch `resblocks.3` <-> Flax `resblocks_3`
    (likewise `layer1.0`, `downsample.0`);
  * leaves are renamed and re-laid out by kind (see `_LEAF_RULES`): Linear weights are
    transposed, Conv weights go OIHW -> HWIO, norm weights become `scale`, BatchNorm running
    statistics live in the `batch_stats` collection, `in_proj_weight` becomes `in_proj/kernel`.

Directories of converted weights (ours, open_clip's, transformers') are in `weights.model_dir`;
the command line is `remoteclip-jax import-weights` / `export-weights` (`weights.cli`).
"""
from __future__ import annotations

import logging
import math
import os
import re
from typing import Any, Mapping

import numpy as np

from remoteclip_jax.errors import WeightsError
from remoteclip_jax.files import atomic_write

_CONTAINERS = ("resblocks", "layer1", "layer2", "layer3", "layer4", "downsample")
_JOINED = re.compile(r"^(%s)_(\d+)$" % "|".join(_CONTAINERS))
# The learnt scalars: open_clip keeps them 0-d by default and (1,) with `nonscalar_logit_scale`.
# `logit_bias` exists only in SigLIP-style models (config `init_logit_bias`).
_SCALARS = (("logit_scale",), ("logit_bias",))
# Keys in OpenAI's files that describe the model rather than hold weights.
_DROPPED = {"input_resolution", "context_length", "vocab_size", "attn_mask"}


# ---------------------------------------------------------------------------------------------
# The key table.

def _torch_to_flax_key(key: str, ndim: int) -> tuple[str, tuple[str, ...], str] | None:
    """torch key -> (collection, Flax path, layout transform), or None for keys to drop."""
    parts = key.split(".")
    path: list[str] = []
    for p in parts[:-1]:
        if p.isdigit() and path and path[-1] in _CONTAINERS:
            path[-1] = f"{path[-1]}_{p}"
        else:
            path.append(p)
    leaf = parts[-1]
    if leaf == "num_batches_tracked":
        return None
    if leaf == "running_mean":
        return "batch_stats", (*path, "mean"), "none"
    if leaf == "running_var":
        return "batch_stats", (*path, "var"), "none"
    if leaf in ("in_proj_weight", "in_proj_bias"):
        return "params", (*path, "in_proj", "kernel" if leaf.endswith("weight") else "bias"), (
            "linear" if leaf.endswith("weight") else "none")
    if leaf == "weight":
        if path and path[-1] == "token_embedding":
            return "params", (*path, "embedding"), "none"
        if ndim == 4:
            return "params", (*path, "kernel"), "conv"
        if ndim == 2:
            return "params", (*path, "kernel"), "linear"
        return "params", (*path, "scale"), "none"
    return "params", (*path, leaf), "none"


def _flax_to_torch_key(collection: str, path: tuple[str, ...], ndim: int) -> tuple[str, str]:
    """(collection, Flax path) -> (torch key, layout transform); the inverse of the above."""
    *parents, leaf = path
    torch_parts: list[str] = []
    for p in parents:
        m = _JOINED.match(p)
        torch_parts.extend([m.group(1), m.group(2)] if m else [p])
    if collection == "batch_stats":
        return ".".join([*torch_parts, {"mean": "running_mean", "var": "running_var"}[leaf]]), "none"
    if torch_parts and torch_parts[-1] == "in_proj":
        torch_parts.pop()
        name = "in_proj_weight" if leaf == "kernel" else "in_proj_bias"
        return ".".join([*torch_parts, name]), "linear" if leaf == "kernel" else "none"
    if leaf == "kernel":
        return ".".join([*torch_parts, "weight"]), "conv" if ndim == 4 else "linear"
    if leaf in ("scale", "embedding"):
        return ".".join([*torch_parts, "weight"]), "none"
    return ".".join([*torch_parts, leaf]), "none"


def _to_flax_layout(x: np.ndarray, transform: str) -> np.ndarray:
    if transform == "linear":
        return np.ascontiguousarray(x.T)
    if transform == "conv":
        return np.ascontiguousarray(x.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    return x


def _to_torch_layout(x: np.ndarray, transform: str) -> np.ndarray:
    if transform == "linear":
        return np.ascontiguousarray(x.T)
    if transform == "conv":
        return np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # HWIO -> OIHW
    return x


# ---------------------------------------------------------------------------------------------
# Reading checkpoint files.

def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads an OpenCLIP checkpoint (.pt/.pth/.bin/.safetensors) into numpy arrays.

    Uses torch when installed (needed for OpenAI's TorchScript archives); otherwise a torch-free
    reader for ordinary `torch.save` state dicts.
    """
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise WeightsError(f"{path}: empty file")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        try:
            return dict(load_file(path))
        except Exception as e:  # safetensors raises its own untyped errors
            raise WeightsError(f"{path}: unreadable safetensors file ({e})") from e
    try:
        import torch  # noqa: F401
    except ImportError:
        from remoteclip_jax.weights import torch_pickle
        return normalize_state_dict(torch_pickle.load(path), path)
    return normalize_state_dict(_torch_load(path), path)


def _torch_load(path: str) -> Any:
    import zipfile

    import torch
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("/constants.pkl") for n in names):  # TorchScript (OpenAI's release format)
            try:
                return torch.jit.load(path, map_location="cpu").state_dict()
            except Exception as e:
                raise WeightsError(f"{path}: TorchScript archive that torch cannot load ({e})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).splitlines()[0][:200]
        raise WeightsError(f"{path}: cannot read as a torch checkpoint (truncated or another "
                              f"format): {reason}") from e


def normalize_state_dict(obj: Any, origin: str = "state dict") -> dict[str, np.ndarray]:
    """Unwraps `{"state_dict": ...}`, strips `module.`, renames ITRA/GeoRSCLIP keys, to numpy."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{origin}: holds a {type(obj).__name__}, not a state dict")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        key = str(key)
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("image_backbone."):
            key = "visual." + key[len("image_backbone."):]
        elif key.startswith("text_backbone."):
            key = key[len("text_backbone."):]
        if key in _DROPPED:
            continue
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu()
            if str(value.dtype) == "torch.bfloat16":
                value = value.float()
            value = value.numpy()
        if not isinstance(value, (np.ndarray, np.generic, float, int)):
            raise WeightsError(f"{origin}: key {key!r} holds a {type(value).__name__}, not a tensor")
        out[key] = np.asarray(value)
    return out


# ---------------------------------------------------------------------------------------------
# Conversion.

def _expected_shapes(model) -> dict[tuple[str, tuple[str, ...]], tuple[int, ...]]:
    import jax
    import jax.numpy as jnp
    s = model.image_size
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3), jnp.float32),
                            jnp.zeros((1, model.context_length), jnp.int32))
    return {(col, tuple(k.key for k in kp)): tuple(leaf.shape)
            for col in shapes for kp, leaf in jax.tree_util.tree_flatten_with_path(shapes[col])[0]}


def _unflatten(flat: dict[tuple[str, ...], np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return tree


def _resized_pos_embed(value: np.ndarray, want: tuple, key: str) -> np.ndarray:
    from remoteclip_jax.models.vit import resize_pos_embed

    grid = int(round(math.sqrt(want[0] - 1)))
    try:
        resized = resize_pos_embed(value, grid)
    except ValueError:
        return value  # not a square grid: reported as mis-shaped
    logging.info("%s: position embedding resampled from %d to %d rows", key, value.shape[0],
                 resized.shape[0])
    return resized


def load_openclip(path_or_state_dict: str | Mapping, name: str | dict) -> dict:
    """Converts an OpenCLIP checkpoint into Flax variables for `create_model(name)`.

    Args:
      path_or_state_dict: a `.pt`/`.pth`/`.bin`/`.safetensors` file, or a state dict (torch
        tensors or numpy arrays), possibly wrapped as `{"state_dict": ...}` with `module.` prefixes.
      name: the model to load into: an open_clip name such as "ViT-B-32-quickgelu", a preset such
        as "RemoteCLIP-ViT-B-32", or a config dict. It fixes the activation, which the weights
        cannot tell (GELU and QuickGELU have the same shapes), and whether there is a
        `logit_bias` (config `init_logit_bias`): a state dict with one needs a config that
        declares it; a config that declares it and a state dict without one (a CLIP checkpoint
        for SigLIP training) give the config's `init_logit_bias`.

    Returns:
      `{"params": ...}` (plus `"batch_stats"` for ResNets), float32 numpy leaves. A ViT
      checkpoint for another input size or patch grid than the model's gets its position
      embedding resampled as open_clip's loader does (bicubic, antialiased; `vit.resize_pos_embed`).

    Raises:
      WeightsError: unreadable file, or keys/shapes that do not fit the model (the message
        lists missing, unexpected and mis-shaped keys).
    """
    from remoteclip_jax.models import create_model
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        origin = str(path_or_state_dict)
        state_dict = read_state_dict(origin)
    else:
        origin = "state dict"
        state_dict = normalize_state_dict(path_or_state_dict)
    model = create_model(name)
    expected = _expected_shapes(model)
    flat: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
    unexpected, misshaped = [], []
    for key, value in state_dict.items():
        mapped = _torch_to_flax_key(key, value.ndim)
        if mapped is None:
            continue
        collection, path, transform = mapped
        if (collection, path) not in expected:
            unexpected.append(key)
            continue
        want = expected[(collection, path)]
        value = _to_flax_layout(value, transform)
        if path in _SCALARS and value.size == 1:
            # open_clip's `nonscalar_logit_scale` models store these as (1,); ours are 0-d.
            value = value.reshape(want)
        if path == ("visual", "positional_embedding") and value.shape != want \
                and value.shape[1:] == want[1:]:
            # A model of another input size or patch grid: resample, as open_clip's loader does.
            value = _resized_pos_embed(value, want, key)
        if value.shape != want:
            # Report both shapes in torch layout, as the user sees them in the checkpoint.
            want_torch = _to_torch_layout(np.empty(want, np.bool_), transform).shape
            misshaped.append(f"{key} {tuple(_to_torch_layout(value, transform).shape)} "
                             f"(model wants {want_torch})")
            continue
        flat[(collection, path)] = value.astype(np.float32)
    if model.has_logit_bias and ("params", ("logit_bias",)) not in flat:
        # A CLIP checkpoint loaded for SigLIP training: open_clip's loader fills the missing bias
        # too (with 0); here it takes the config's init_logit_bias, as a fresh model would.
        flat[("params", ("logit_bias",))] = np.asarray(model.config["init_logit_bias"], np.float32)
    missing = [_flax_to_torch_key(c, p, len(s))[0] for (c, p), s in expected.items()
               if (c, p) not in flat]
    if missing or unexpected or misshaped:
        model_name = name if isinstance(name, str) else "the given config"
        hint = (" (a SigLIP-style checkpoint: set init_logit_bias in the model config)"
                if "logit_bias" in unexpected else "")
        raise WeightsError(
            f"{origin} does not fit {model_name}{hint}: " + "; ".join(
                f"{label} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("mis-shaped", misshaped)) if keys))
    variables: dict[str, dict] = {}
    for collection in sorted({c for c, _ in flat}):
        variables[collection] = _unflatten({p: v for (c, p), v in flat.items() if c == collection})
    return variables


def to_openclip(variables: Mapping, name: str | dict | None = None) -> dict[str, np.ndarray]:
    """Converts Flax variables into a state dict that `open_clip.create_model(name)` loads strictly.

    Args:
      variables: `{"params": ...}` (plus `"batch_stats"` for ResNets).
      name: the model name or config; when given, the variables are checked against it first.
    """
    import jax
    if name is not None:
        from remoteclip_jax.models import create_model
        expected = _expected_shapes(create_model(name))
        got = {(c, tuple(k.key for k in kp)): tuple(np.shape(v)) for c in variables
               for kp, v in jax.tree_util.tree_flatten_with_path(variables[c])[0]}
        if got != expected:
            missing = sorted("/".join(p) for (c, p) in set(expected) - set(got))
            extra = sorted("/".join(p) for (c, p) in set(got) - set(expected))
            shaped = sorted("/".join(p) for k, (c, p) in [(k, k) for k in expected]
                            if k in got and got[k] != expected[k])
            raise WeightsError(f"variables do not fit {name}: missing {missing[:6]}, "
                                  f"unexpected {extra[:6]}, mis-shaped {shaped[:6]}")
    out: dict[str, np.ndarray] = {}
    for collection in variables:
        for kp, value in jax.tree_util.tree_flatten_with_path(variables[collection])[0]:
            value = np.asarray(jax.device_get(value))
            key, transform = _flax_to_torch_key(collection, tuple(k.key for k in kp), value.ndim)
            out[key] = _to_torch_layout(value, transform)
            if collection == "batch_stats" and key.endswith("running_mean"):
                out[key[: -len("running_mean")] + "num_batches_tracked"] = np.array(0, np.int64)
    return out


def save_state_dict(state_dict: Mapping[str, np.ndarray], path: str) -> None:
    """Writes a state dict as `.safetensors` (no torch needed) or `.pt`/`.bin` (needs torch)."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file
        with atomic_write(path, None) as tmp:  # keeps 0-d shapes
            save_file({k: np.array(v, order="C") for k, v in state_dict.items()}, tmp)
        return
    try:
        import torch
    except ImportError as e:
        raise WeightsError(f"{path}: writing .pt needs torch (pip install torch==2.14.1); "
                              "or export to .safetensors") from e
    with atomic_write(path, "wb") as f:
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, f)
