"""Named model sizes, as open_clip's `model_configs/*.json` define them, plus tiny test sizes.

A config is an open_clip-style dict: `embed_dim`, `vision_cfg`, `text_cfg` and `quick_gelu`.
`vision_cfg.layers` is an int for a ViT and a list of four stage depths for a ModifiedResNet.
Two optional top-level keys take open_clip's `CLIP(...)` argument names and meaning:
`init_logit_scale` (default ln(1/0.07)) and `init_logit_bias` (absent: no `logit_bias` parameter;
a number: the model holds a 0-d `logit_bias` initialised to it, as SigLIP models do). They are
left out of the resolved config when not given, so configs without them resolve as before.
"""
from __future__ import annotations

from remoteclip_jax.errors import ConfigError
import copy
import dataclasses
from typing import Any

_TEXT_B = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}

_BASE: dict[str, dict[str, Any]] = {
    "RN50": {"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64},
             "text_cfg": _TEXT_B},
    "RN101": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": [3, 4, 23, 3], "width": 64},
              "text_cfg": _TEXT_B},
    "ViT-B-32": {"embed_dim": 512,
                 "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
                 "text_cfg": _TEXT_B},
    "ViT-B-16": {"embed_dim": 512,
                 "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
                 "text_cfg": _TEXT_B},
    "ViT-L-14": {"embed_dim": 768,
                 "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12,
                              "layers": 12}},
    "ViT-H-14": {"embed_dim": 1024,
                 "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80,
                                "patch_size": 14},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16,
                              "layers": 24}},
}

MODEL_CONFIGS: dict[str, dict[str, Any]] = {}
for _name, _cfg in _BASE.items():
    MODEL_CONFIGS[_name] = {**_cfg, "quick_gelu": False}
    MODEL_CONFIGS[_name + "-quickgelu"] = {**_cfg, "quick_gelu": True}

# Tiny sizes for tests and demos (same families, seconds on a CPU).
TINY_VIT: dict[str, Any] = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_RESNET: dict[str, Any] = {
    "embed_dim": 32, "quick_gelu": False,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


# Named checkpoints users hold, with the architecture and activation each must run with. The
# activation cannot be read from a state dict (GELU and QuickGELU weights have identical shapes),
# so each preset records it: RemoteCLIP (all three) and GeoRSCLIP ViT-B-32 were fine-tuned from
# OpenAI CLIP and run with QuickGELU; GeoRSCLIP ViT-H-14 starts from LAION weights (exact GELU).
@dataclasses.dataclass(frozen=True)
class Preset:
    model: str        # open_clip model name, activation included
    file_name: str    # the file as its authors publish it
    source: str


PRESETS: dict[str, Preset] = {
    "RemoteCLIP-RN50": Preset("RN50-quickgelu", "RemoteCLIP-RN50.pt", "chendelong/RemoteCLIP"),
    "RemoteCLIP-ViT-B-32": Preset("ViT-B-32-quickgelu", "RemoteCLIP-ViT-B-32.pt", "chendelong/RemoteCLIP"),
    "RemoteCLIP-ViT-L-14": Preset("ViT-L-14-quickgelu", "RemoteCLIP-ViT-L-14.pt", "chendelong/RemoteCLIP"),
    "GeoRSCLIP-ViT-B-32": Preset("ViT-B-32-quickgelu", "RS5M_ViT-B-32.pt", "Zilun/GeoRSCLIP"),
    "GeoRSCLIP-ViT-H-14": Preset("ViT-H-14", "RS5M_ViT-H-14.pt", "Zilun/GeoRSCLIP"),
    "OpenAI-RN50": Preset("RN50-quickgelu", "RN50.pt", "openai/CLIP"),
    "OpenAI-RN101": Preset("RN101-quickgelu", "RN101.pt", "openai/CLIP"),
    "OpenAI-ViT-B-32": Preset("ViT-B-32-quickgelu", "ViT-B-32.pt", "openai/CLIP"),
    "OpenAI-ViT-B-16": Preset("ViT-B-16-quickgelu", "ViT-B-16.pt", "openai/CLIP"),
    "OpenAI-ViT-L-14": Preset("ViT-L-14-quickgelu", "ViT-L-14.pt", "openai/CLIP"),
}


def list_models() -> list[str]:
    return sorted(MODEL_CONFIGS)


def model_config(name_or_config: str | dict) -> dict[str, Any]:
    """Returns a complete open_clip-style config dict (a copy) for a name or a partial dict."""
    if isinstance(name_or_config, str):
        if name_or_config not in MODEL_CONFIGS:
            # Presets (RemoteCLIP-ViT-B-32, ...) name a checkpoint family; resolve them here too.
            if name_or_config in PRESETS:
                return model_config(PRESETS[name_or_config].model)
            raise ConfigError(
                f"unknown model {name_or_config!r}; known: {', '.join(list_models())} "
                f"(or a preset: {', '.join(sorted(PRESETS))}, or an open_clip-style config dict)")
        cfg = MODEL_CONFIGS[name_or_config]
    else:
        cfg = dict(name_or_config)
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise ConfigError(f"model config lacks {missing}; need embed_dim, vision_cfg, text_cfg")
    cfg = copy.deepcopy(dict(cfg))
    cfg.setdefault("quick_gelu", False)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    v.setdefault("image_size", 224)
    v.setdefault("width", 768)
    v.setdefault("head_width", 64)
    v.setdefault("mlp_ratio", 4.0)
    v.setdefault("patch_size", None)
    t.setdefault("context_length", 77)
    t.setdefault("vocab_size", 49408)
    t.setdefault("width", 512)
    t.setdefault("heads", 8)
    t.setdefault("layers", 12)
    t.setdefault("mlp_ratio", 4.0)
    unsupported = {k: v.get(k) for k in ("attentional_pool", "timm_model_name", "no_ln_pre",
                                          "final_ln_after_pool", "ls_init_value")
                   if v.get(k)}
    unsupported.update({k: t.get(k) for k in ("hf_model_name", "embed_cls", "ls_init_value")
                        if t.get(k)})
    if cfg.get("nonscalar_logit_scale"):
        unsupported["nonscalar_logit_scale"] = cfg["nonscalar_logit_scale"]
    if unsupported:
        raise ConfigError(f"model config options not supported: {unsupported}")
    for key in ("init_logit_scale", "init_logit_bias"):
        if cfg.get(key) is None:
            cfg.pop(key, None)
        elif not isinstance(cfg[key], (int, float)) or isinstance(cfg[key], bool):
            raise ConfigError(f"model config {key}={cfg[key]!r} must be a number")
        else:
            cfg[key] = float(cfg[key])
    return cfg


def is_resnet(cfg: dict[str, Any]) -> bool:
    return isinstance(cfg["vision_cfg"]["layers"], (list, tuple))
