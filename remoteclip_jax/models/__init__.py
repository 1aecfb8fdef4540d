"""Flax CLIP towers that reproduce open_clip's outputs on open_clip's weights."""
from remoteclip_jax.models.clip import CLIP, create_model, init_variables, l2_normalize
from remoteclip_jax.models.configs import MODEL_CONFIGS, TINY_RESNET, TINY_VIT, list_models, model_config

__all__ = ["CLIP", "create_model", "init_variables", "l2_normalize", "MODEL_CONFIGS", "TINY_RESNET", "TINY_VIT",
           "list_models", "model_config"]
