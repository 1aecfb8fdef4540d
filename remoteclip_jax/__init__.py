"""remoteclip_jax: RemoteCLIP in JAX/Flax, weight-exact with OpenCLIP.

Public API (imported lazily, so data workers that only need numpy/PIL never import jax):
  create_model(name_or_config, dtype=..., remat=...) -> flax.linen.Module
  load_openclip(path_or_state_dict, name) -> variables
  to_openclip(variables, name) -> dict[str, numpy.ndarray]
  load_pretrained(path, model=None) -> (model, variables)   # our, open_clip or transformers dir
  save_pretrained(variables, name, out_dir, format="hf" | "open_clip" | "orbax") -> out_dir
  tokenize(texts, context_length=77) -> numpy.ndarray[int32]
  image_transform(image_size=224, train=False) -> callable(PIL.Image) -> (H, W, 3) float32
  classify / embed / search: the inference commands as functions (see remoteclip_jax.inference)
"""
from remoteclip_jax.lazy import lazy_attributes

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "remoteclip_jax.models",
    "list_models": "remoteclip_jax.models",
    "model_config": "remoteclip_jax.models",
    "load_openclip": "remoteclip_jax.weights.openclip",
    "to_openclip": "remoteclip_jax.weights.openclip",
    "load_pretrained": "remoteclip_jax.weights.model_dir",
    "save_pretrained": "remoteclip_jax.weights.model_dir",
    "write_model_card": "remoteclip_jax.weights.model_card",
    "tokenize": "remoteclip_jax.tokenizer",
    "image_transform": "remoteclip_jax.transforms",
    "PRESETS": "remoteclip_jax.models.configs",
    "UserError": "remoteclip_jax.errors",
    "ConfigError": "remoteclip_jax.errors",
    "DataError": "remoteclip_jax.errors",
    "WeightsError": "remoteclip_jax.errors",
    "CheckpointError": "remoteclip_jax.errors",
    # Inference API (remoteclip_jax.inference): one function per command.
    "classify": "remoteclip_jax.inference",
    "embed": "remoteclip_jax.inference",
    "search": "remoteclip_jax.inference",
}
_SUBMODULES = {"models", "weights", "tokenizer", "transforms", "data", "train", "evaluate", "errors",
               "inference", "geo", "config"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)

__getattr__ = lazy_attributes("remoteclip_jax", _EXPORTS, _SUBMODULES)
