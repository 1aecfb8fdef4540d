"""What the recipes in ``configs/`` share: the RemoteCLIP continual-pretraining recipe, the
optimizer ITRA effectively ran, and the tiny models of the smoke variants. Recipes import this
module (installed with the package), so a ``configs/*.py`` file loads from any working directory.

RemoteCLIP was trained with ITRA (an open_clip fork, branch ``test``). Where its settings come from
its command-line defaults, the trailing comment names the line of ``itra/training/params.py``
that sets them; "RemoteCLIP paper" marks the paper's own numbers, "ours" our choices.
"""
from __future__ import annotations

import copy
import pathlib

import ml_collections

from remoteclip_jax import config as schema
from remoteclip_jax.models import configs as model_configs

# RemoteCLIP's training data (paper: RET-3 + DET-10 + SEG-4): 165,745 images. Every image carries
# 5 captions (the RET-3 caption files ship 5 per image; Box-to-Caption writes 5), and ITRA's caption
# CSV holds one row per caption, so one ITRA epoch is 5 x 165,745 = 828,725 pairs.
REMOTECLIP_IMAGES = 165_745
REMOTECLIP_CAPTIONS_PER_IMAGE = 5
REMOTECLIP_PAIRS = REMOTECLIP_IMAGES * REMOTECLIP_CAPTIONS_PER_IMAGE


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


def find_data(root, default: str, *others: str) -> str:
    """``root/X`` for the first of `others`, then `default`, that exists; else ``root/default``.

    Datasets unpack under names that differ between releases and reference code (RSITMD ships
    ``dataset_RSITMD.json``; ITRA reads EuroSAT's classes from ``EuroSAT/2750``, inside the
    folder that would otherwise look like one class "2750"): `others` are checked first, and the
    documented `default` names the path in the message when nothing is there.
    """
    for candidate in (*others, default):
        if (pathlib.Path(root) / candidate).exists():
            return str(pathlib.Path(root) / candidate)
    return str(pathlib.Path(root) / default)


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


def itra_adamw(c: ml_collections.ConfigDict) -> None:
    """Sets the AdamW that ITRA's ``create_optimizer`` actually builds, for every model.

    ITRA's ``params.py`` fills ``--beta1/--beta2/--eps`` with open_clip's per-model values, but
    ``create_optimizer`` never reads them: it passes ``--opt_eps`` (default 1e-8) and ``--opt_betas``
    (default None, so torch's own (0.9, 0.999)). Its parameter groups exclude from weight decay
    1-D parameters, names ending in ".bias" and the top-level ``logit_scale`` (its skip list is
    matched by whole name), which is the parameter set of open_clip's main.py rule ("open_clip").
    Gradient clipping is ``--max-grad-norm`` 1e16 (off). Its train loop, unlike open_clip's, never
    clamps ``logit_scale`` after the update. Precision: AMP (float16 autocast with a
    loss scaler, params.py line 356); our nearest is ``--config.dtype=bfloat16``, float32 here.
    """
    c.optim.lr = 5e-4                   # ITRA default via get_default_params (itra/training/params.py line 10)
    c.optim.b1 = 0.9                    # torch AdamW default: --opt_betas is None (itra/training/params.py line 320)
    c.optim.b2 = 0.999                  # torch AdamW default: --opt_betas is None (itra/training/params.py line 320)
    c.optim.eps = 1e-8                  # ITRA default --opt_eps (itra/training/params.py line 318)
    c.optim.weight_decay = 0.05         # ITRA default --weight_decay (itra/training/params.py line 326)
    c.optim.wd_exclude = "open_clip"    # ITRA get_parameter_groups (itra/training/optimization.py line 105)
    c.optim.schedule = "cosine"         # ITRA cosine_lr (itra/training/main.py line 200)
    c.optim.grad_clip_norm = 0.0        # ITRA default --max-grad-norm 1e16 = off (itra/training/params.py line 360)
    c.optim.clamp_logit_scale = False   # ITRA's train loop never clamps logit_scale (itra/training/train.py lines 171-188)
    c.dtype = "float32"                 # ITRA default --precision amp (itra/training/params.py line 356): ours float32


def remoteclip(config_file: str, model: str, init_from: str, family: str,
               arg: str | None) -> ml_collections.ConfigDict:
    """The RemoteCLIP recipe shared by rn50/vitb32/vitl14: continual pretraining of every
    parameter from OpenAI CLIP weights, with the settings ITRA effectively ran.

    open_clip's variants stay one flag away: ``--config.optim.b2=0.98 --config.optim.eps=1e-6``
    (its ViT AdamW), ``--config.optim.warmup_steps=10000`` (its ``--warmup`` default),
    ``--config.optim.wd_exclude=open_clip_head``, ``--config.data.sources.train.pairs=image``
    (one caption per image per epoch).

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
    itra_adamw(c)
    c.optim.warmup_steps = 0            # ITRA default --warmup (itra/training/params.py line 347)
    c.data.batch_size_per_device = 64   # ITRA default --batch-size per GPU (itra/training/params.py line 340)
    c.data.image_size = 224             # RemoteCLIP paper / OpenAI CLIP input size
    c.train.epochs = 32                 # ITRA default --epochs (itra/training/params.py line 341)
    # Yours (RemoteCLIP's data is not shipped): --config.data.sources.train.path=DIR of record
    # shards from `remoteclip-jax convert-data`, or another kind (--config.data.sources.train.kind).
    # An epoch is every (image, caption) row once, as ITRA's caption CSV (itra/data/train_data.py
    # line 189) gives it.
    c.data.sources.train = schema.source(kind="records", pairs="caption")
    return variant(c, arg, config_file, family)

