"""What the recipes in ``configs/`` share: the RemoteCLIP continual-pretraining recipe and the
tiny models of the smoke variants. Recipes import this module (installed with the package), so a
``configs/*.py`` file loads from any working directory."""
from __future__ import annotations

import copy

import ml_collections

from remoteclip_jax import config as schema
from remoteclip_jax.models import configs as model_configs


def _one_block(config: dict, quick_gelu: bool) -> dict:
    """A copy of a tiny test model with one text block (and one ViT block): shorter compiles."""
    c = copy.deepcopy(config)
    c["quick_gelu"] = quick_gelu
    c["text_cfg"]["layers"] = 1
    if not isinstance(c["vision_cfg"]["layers"], list):
        c["vision_cfg"]["layers"] = 1
    return c


SMOKE_VIT = _one_block(model_configs.TINY_VIT, quick_gelu=True)
SMOKE_RESNET = _one_block(model_configs.TINY_RESNET, quick_gelu=True)


def variant(c: ml_collections.ConfigDict, arg: str | None, config_file: str, family: str = "vit",
            **others) -> ml_collections.ConfigDict:
    """Applies the variant after the colon of ``--config=FILE:ARG``: one of `others` (name ->
    function changing the config in place), or "smoke" (tiny model, synthetic data, 4 steps)."""
    if arg in others:
        others[arg](c)
    elif arg == "smoke":
        smoke(c, family)
    elif arg:
        names = ", ".join(["smoke", *others])
        raise schema.ConfigError(f"configs/{config_file}: unknown variant {arg!r}; use {names} "
                                 "or nothing")
    return c


def smoke(c: ml_collections.ConfigDict, family: str = "vit") -> None:
    """The smoke variant of a recipe, with the tiny model of its family (see `config.smoke`)."""
    schema.smoke(c, SMOKE_RESNET if family == "resnet" else SMOKE_VIT)


def remoteclip(config_file: str, model: str, init_from: str, family: str,
               arg: str | None) -> ml_collections.ConfigDict:
    """The RemoteCLIP recipe shared by rn50/vitb32/vitl14: continual pretraining of every
    parameter from OpenAI CLIP weights.

    Args:
      config_file: the recipe's file name, for error messages.
      model: open_clip model name (QuickGELU: OpenAI CLIP ran it, and RemoteCLIP keeps it).
      init_from: the OpenAI CLIP checkpoint that openai/CLIP publishes for this model.
      family: "vit" or "resnet", the tiny model family of the smoke variant.
      arg: the variant after the colon in --config=FILE:ARG ("smoke" or None).
    """
    c = schema.get_base_config()
    c.model = model
    c.init_from = init_from
    c.optim.lr = 5e-4                   # RemoteCLIP
    c.optim.weight_decay = 0.05         # RemoteCLIP
    c.optim.schedule = "cosine"         # RemoteCLIP / open_clip: linear warmup, then cosine decay
    c.optim.warmup_steps = 10000        # open_clip default --warmup
    c.data.batch_size_per_device = 64   # RemoteCLIP: 64 pairs per GPU
    c.data.image_size = 224             # RemoteCLIP / OpenAI CLIP
    c.train.epochs = 32                 # RemoteCLIP
    # Yours (RemoteCLIP's data is not shipped): --config.data.sources.train.path=DIR of record
    # shards from `remoteclip-jax convert-data`, or another kind (--config.data.sources.train.kind).
    c.data.sources.train = schema.source(kind="records")
    return variant(c, arg, config_file, family)
