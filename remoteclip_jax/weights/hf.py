"""Hugging Face `transformers.CLIPModel` directories <-> Flax variables, via OpenCLIP keys.

There is one key table for weights, OpenCLIP state dict <-> Flax (`weights.openclip`). A
transformers checkpoint is first renamed into an OpenCLIP state dict by `_HF_TABLE` below, then
goes through that table; exporting runs the same two steps backwards. The facts the table encodes
(taken from transformers' `modeling_clip.py` and its conversion script
`convert_clip_original_pytorch_to_hf.py`):

  * transformers splits torch's fused attention input projection into `q_proj`, `k_proj`,
    `v_proj`: `in_proj_weight` (3D, D) is their weights stacked in q, k, v order, likewise biases;
  * both projections are bias-free `nn.Linear` layers, so their weights are OpenCLIP's
    `visual.proj` / `text_projection` (width, embed_dim) transposed;
  * the vision tower's `pre_layrnorm` / `post_layernorm` are OpenCLIP's `ln_pre` / `ln_post`, the
    class and position embeddings are the same arrays under other names.

A directory also holds `config.json`. The activation is read from and written to its
`hidden_act` ("quick_gelu" or "gelu", exact erf GELU in both libraries), never inferred from the
weights, which are identical in shape for both. ModifiedResNet image towers (RN50, RN101) have
no transformers counterpart and are refused.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping

import numpy as np

from remoteclip_jax.errors import WeightsError
from remoteclip_jax.weights import openclip
from remoteclip_jax.weights.model_info import ModelInfo, source_record, read_json
from remoteclip_jax.files import atomic_write, write_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Read in this order: transformers' own preference (safetensors first, then a sharded index).
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_SUPPORTED_ACTIVATIONS = ("quick_gelu", "gelu")
_LAYER_NORM_EPS = 1e-5  # what our LayerNorm (and open_clip's) uses
# Buffers older transformers versions saved with the weights; they hold no learned values.
_IGNORED_SUFFIXES = (".embeddings.position_ids",)

# HF defaults for keys a config.json may omit (transformers configuration_clip.py,
# CLIPTextConfig / CLIPVisionConfig / CLIPConfig field defaults).
_HF_TEXT_DEFAULTS = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048,
                     "num_hidden_layers": 12, "num_attention_heads": 8,
                     "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                     "layer_norm_eps": 1e-5}
_HF_VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "num_channels": 3, "image_size": 224,
                       "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
_HF_PROJECTION_DIM_DEFAULT = 512


# ---------------------------------------------------------------------------------------------
# The key table: transformers CLIPModel key <-> OpenCLIP key.
# Layouts: "same" (identical array), "transpose" (2-D transpose), "qkv" (three HF arrays stacked
# along axis 0 into one OpenCLIP array). "{p}" stands for both "weight" and "bias".

_HF_TABLE: tuple[tuple[str, str, str], ...] = (
    ("logit_scale", "logit_scale", "same"),
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight", "same"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding", "same"),
    ("text_model.final_layer_norm.{p}", "ln_final.{p}", "same"),
    ("text_projection.weight", "text_projection", "transpose"),
    ("vision_model.embeddings.class_embedding", "visual.class_embedding", "same"),
    ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight", "same"),
    ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding", "same"),
    ("vision_model.pre_layrnorm.{p}", "visual.ln_pre.{p}", "same"),
    ("vision_model.post_layernorm.{p}", "visual.ln_post.{p}", "same"),
    ("visual_projection.weight", "visual.proj", "transpose"),
)
# Residual block {i} of each tower.
_HF_TOWERS = (("text_model.encoder.layers.{i}.", "transformer.resblocks.{i}."),
              ("vision_model.encoder.layers.{i}.", "visual.transformer.resblocks.{i}."))
_HF_BLOCK_TABLE: tuple[tuple[str, str, str], ...] = (
    ("layer_norm1.{p}", "ln_1.{p}", "same"),
    ("self_attn.{qkv}_proj.{p}", "attn.in_proj_{p}", "qkv"),
    ("self_attn.out_proj.{p}", "attn.out_proj.{p}", "same"),
    ("layer_norm2.{p}", "ln_2.{p}", "same"),
    ("mlp.fc1.{p}", "mlp.c_fc.{p}", "same"),
    ("mlp.fc2.{p}", "mlp.c_proj.{p}", "same"),
)


def key_pairs(text_layers: int, vision_layers: int) -> list[tuple[tuple[str, ...], str, str]]:
    """The table expanded for a model: [(HF keys, OpenCLIP key, layout)], one entry per array.

    HF keys is a 1-tuple, or (q, k, v) for the fused attention projection.
    """
    def expand(hf: str, oc: str, layout: str, fmt: dict) -> list[tuple[tuple[str, ...], str, str]]:
        out = []
        for p in (("weight", "bias") if "{p}" in hf else ("",)):
            names = ("q", "k", "v") if layout == "qkv" else ("",)
            hf_keys = tuple(hf.format(p=p, qkv=n, **fmt) for n in names)
            out.append((hf_keys, oc.format(p=p, **fmt), layout))
        return out

    pairs = [e for hf, oc, layout in _HF_TABLE for e in expand(hf, oc, layout, {})]
    for (hf_prefix, oc_prefix), layers in zip(_HF_TOWERS, (text_layers, vision_layers)):
        for i in range(layers):
            for hf, oc, layout in _HF_BLOCK_TABLE:
                pairs.extend(expand(hf_prefix + hf, oc_prefix + oc, layout, {"i": i}))
    return pairs


def hf_to_openclip(state: Mapping[str, np.ndarray], config: Mapping,
                   origin: str = "state dict") -> dict[str, np.ndarray]:
    """Renames a transformers CLIPModel state dict into OpenCLIP keys (arrays unchanged in value).

    Raises:
      WeightsError: keys missing from, or left over in, `state` (listed in one line).
    """
    pairs = key_pairs(config["text_cfg"]["layers"], _vision_layers(config))
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()
    missing: list[str] = []
    for hf_keys, oc_key, layout in pairs:
        absent = [k for k in hf_keys if k not in state]
        used.update(k for k in hf_keys if k in state)  # known keys, even when their group is incomplete
        if absent:
            missing.extend(absent)
            continue
        arrays = [np.asarray(state[k]) for k in hf_keys]
        if layout == "qkv":
            out[oc_key] = np.concatenate(arrays, axis=0)
        elif layout == "transpose":
            out[oc_key] = np.ascontiguousarray(arrays[0].T)
        else:
            out[oc_key] = arrays[0]
    unexpected = sorted(k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    if missing or unexpected:
        raise WeightsError(
            f"{origin} does not fit a CLIPModel of this config: " + "; ".join(
                f"{label} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys))
    return out


def openclip_to_hf(state: Mapping[str, np.ndarray], config: Mapping) -> dict[str, np.ndarray]:
    """The inverse of `hf_to_openclip`: OpenCLIP keys -> transformers CLIPModel keys."""
    out: dict[str, np.ndarray] = {}
    for hf_keys, oc_key, layout in key_pairs(config["text_cfg"]["layers"], _vision_layers(config)):
        value = np.asarray(state[oc_key])
        if layout == "qkv":
            for key, part in zip(hf_keys, np.split(value, 3, axis=0)):
                out[key] = np.ascontiguousarray(part)
        elif layout == "transpose":
            out[hf_keys[0]] = np.ascontiguousarray(value.T)
        else:
            out[hf_keys[0]] = value
    return out


def _vision_layers(config: Mapping) -> int:
    layers = config["vision_cfg"]["layers"]
    if isinstance(layers, (list, tuple)):
        raise WeightsError("a ModifiedResNet image tower (RN50/RN101 family) has no transformers "
                            "CLIPModel counterpart; export it with --format open_clip, safetensors or pt")
    return int(layers)


# ---------------------------------------------------------------------------------------------
# config.json <-> our model config.

def hf_config(config: Mapping) -> dict[str, Any]:
    """The `config.json` of a transformers CLIPModel with our model's architecture."""
    _vision_layers(config)  # refuses ResNets
    v, t = config["vision_cfg"], config["text_cfg"]
    act = "quick_gelu" if config["quick_gelu"] else "gelu"
    embed = int(config["embed_dim"])
    from remoteclip_jax.tokenizer import EOT_ID, SOT_ID
    text = {"model_type": "clip_text_model", "vocab_size": int(t["vocab_size"]),
            "hidden_size": int(t["width"]), "intermediate_size": int(t["width"] * t["mlp_ratio"]),
            "num_hidden_layers": int(t["layers"]), "num_attention_heads": int(t["heads"]),
            "max_position_embeddings": int(t["context_length"]), "hidden_act": act,
            "layer_norm_eps": _LAYER_NORM_EPS, "projection_dim": embed,
            # Text pooling takes the first end token (49407), which is what our argmax finds.
            "bos_token_id": SOT_ID, "eos_token_id": EOT_ID, "pad_token_id": EOT_ID}
    vision = {"model_type": "clip_vision_model", "hidden_size": int(v["width"]),
              "intermediate_size": int(v["width"] * v["mlp_ratio"]),
              "num_hidden_layers": int(v["layers"]),
              "num_attention_heads": int(v["width"] // v["head_width"]),
              "num_channels": 3, "image_size": int(v["image_size"]),
              "patch_size": int(v["patch_size"]), "hidden_act": act,
              "layer_norm_eps": _LAYER_NORM_EPS, "projection_dim": embed}
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": embed,
            "logit_scale_init_value": 2.6592, "initializer_factor": 1.0, "dtype": "float32",
            "text_config": text, "vision_config": vision}


def model_config_from_hf(data: Mapping, origin: str = CONFIG_NAME) -> dict[str, Any]:
    """Our open_clip-style model config from a transformers CLIP `config.json` payload."""
    if data.get("model_type", "clip") != "clip":
        raise WeightsError(f"{origin}: model_type {data.get('model_type')!r} is not a CLIP model "
                            "(transformers CLIPModel directories say \"clip\")")
    # Old transformers wrote `*_config_dict`; CLIPConfig lets those override `*_config`.
    text = {**_HF_TEXT_DEFAULTS, **(data.get("text_config") or {}),
            **(data.get("text_config_dict") or {})}
    vision = {**_HF_VISION_DEFAULTS, **(data.get("vision_config") or {}),
              **(data.get("vision_config_dict") or {})}
    acts = {text["hidden_act"], vision["hidden_act"]}
    if len(acts) != 1 or not acts <= set(_SUPPORTED_ACTIVATIONS):
        raise WeightsError(f"{origin}: hidden_act text={text['hidden_act']!r} "
                            f"vision={vision['hidden_act']!r}; remoteclip_jax runs one activation for "
                            f"both towers, one of {', '.join(_SUPPORTED_ACTIVATIONS)}")
    for tower, cfg in (("text_config", text), ("vision_config", vision)):
        if abs(float(cfg["layer_norm_eps"]) - _LAYER_NORM_EPS) > 1e-12:
            raise WeightsError(f"{origin}: {tower}.layer_norm_eps={cfg['layer_norm_eps']}; "
                                f"remoteclip_jax's LayerNorm uses {_LAYER_NORM_EPS}")
    if int(vision["num_channels"]) != 3 or not isinstance(vision["image_size"], int) \
            or not isinstance(vision["patch_size"], int):
        raise WeightsError(f"{origin}: vision_config needs num_channels 3 and square int "
                            f"image_size/patch_size, got {vision['num_channels']}, "
                            f"{vision['image_size']!r}, {vision['patch_size']!r}")
    return {
        "embed_dim": int(data.get("projection_dim") or _HF_PROJECTION_DIM_DEFAULT),
        "quick_gelu": acts == {"quick_gelu"},
        "vision_cfg": {"image_size": int(vision["image_size"]),
                       "layers": int(vision["num_hidden_layers"]),
                       "width": int(vision["hidden_size"]),
                       "head_width": int(vision["hidden_size"]) // int(vision["num_attention_heads"]),
                       "mlp_ratio": _mlp_ratio(vision),
                       "patch_size": int(vision["patch_size"])},
        "text_cfg": {"context_length": int(text["max_position_embeddings"]),
                     "vocab_size": int(text["vocab_size"]), "width": int(text["hidden_size"]),
                     "heads": int(text["num_attention_heads"]),
                     "layers": int(text["num_hidden_layers"]),
                     "mlp_ratio": _mlp_ratio(text)},
    }


def _mlp_ratio(tower: Mapping) -> float:
    """The ratio whose `int(width * ratio)` (how open_clip and we size the MLP) gives back
    `intermediate_size`; the plain quotient can round one below it (e.g. 240 / 176)."""
    hidden, intermediate = int(tower["hidden_size"]), int(tower["intermediate_size"])
    ratio = intermediate / hidden
    while int(hidden * ratio) < intermediate:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


# ---------------------------------------------------------------------------------------------
# Directories.

def read_hf_dir(directory: str) -> tuple[dict, ModelInfo]:
    """Reads a transformers CLIPModel directory into (Flax variables, ModelInfo).

    Raises:
      WeightsError: no or unusable config.json, no weight file, a tokenizer vocabulary that is
        not CLIP's.
      WeightsError: weights that do not fit the config.
    """
    config_path = os.path.join(directory, CONFIG_NAME)
    data = read_json(config_path, WeightsError, "not found; not a transformers model directory")
    config = model_config_from_hf(data, config_path)
    _check_vocabulary(directory)
    weights_path, state = _read_weights(directory)
    variables = openclip.load_openclip(hf_to_openclip(state, config, weights_path), config)
    return variables, ModelInfo.from_model(config, variables=variables, source=source_record(directory))


def _read_weights(directory: str) -> tuple[str, dict[str, np.ndarray]]:
    for name in _WEIGHT_FILES:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        if not name.endswith(".index.json"):
            return path, openclip.read_state_dict(path)
        index = read_json(path, WeightsError, "not found")
        shards = sorted(set(index.get("weight_map", {}).values()))
        state: dict[str, np.ndarray] = {}
        for shard in shards:
            state.update(openclip.read_state_dict(os.path.join(directory, shard)))
        return path, state
    raise WeightsError(f"{directory}: config.json but no weights ({', '.join(_WEIGHT_FILES)})")


def _check_vocabulary(directory: str) -> None:
    """Refuses a directory whose tokenizer is not the CLIP BPE vocabulary we tokenize with."""
    path = os.path.join(directory, "vocab.json")
    if not os.path.isfile(path):
        return
    from remoteclip_jax.weights import hf_processor
    theirs = read_json(path, WeightsError, "not found")
    ours = {t: i for i, t in enumerate(hf_processor.vocabulary_tokens())}
    differ = sum(theirs.get(t) != i for t, i in ours.items()) + len(set(theirs) - set(ours))
    if differ:
        raise WeightsError(f"{path}: {differ} of {len(ours)} tokens differ from the CLIP BPE "
                            "vocabulary remoteclip_jax tokenizes with; this model needs its own "
                            "tokenizer and cannot be used with remoteclip_jax.tokenize")


def write_hf_dir(variables: Mapping, info: ModelInfo, out_dir: str) -> list[str]:
    """Writes a directory `CLIPModel.from_pretrained` and `CLIPProcessor.from_pretrained` load.

    Returns:
      The names of the files written (config.json, model.safetensors, the processor files).

    Raises:
      WeightsError: a ResNet image tower or a `logit_bias`, which CLIPModel has no place for.
    """
    config = info.config
    if info.logit_bias or "logit_bias" in variables.get("params", {}):
        raise WeightsError("the model has a SigLIP-style logit_bias, which transformers "
                            "CLIPModel has no parameter for; export with --format open_clip")
    payload = hf_config(config)  # refuses ResNets before anything is written
    state = openclip_to_hf(openclip.to_openclip(variables, config), config)
    os.makedirs(out_dir, exist_ok=True)
    from safetensors.numpy import save_file
    # transformers reads the "format" metadata to know the tensors are torch-laid-out.
    with atomic_write(os.path.join(out_dir, WEIGHTS_NAME), None) as tmp:
        save_file({k: np.array(v, dtype=np.float32, order="C") for k, v in state.items()}, tmp,
                  metadata={"format": "pt"})
    write_json(os.path.join(out_dir, CONFIG_NAME), payload, indent=2)
    from remoteclip_jax.weights import hf_processor
    files = hf_processor.write_processor_files(out_dir, int(config["vision_cfg"]["image_size"]),
                                               int(config["text_cfg"]["context_length"]))
    return [CONFIG_NAME, WEIGHTS_NAME, *files]

