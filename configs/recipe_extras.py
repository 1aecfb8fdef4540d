"""Keys every training recipe adds to `base.get_base_config()`, and the tiny smoke variant.

The smoke variant (big_vision's `runlocal` idea) keeps the recipe's optimiser and schedule but
swaps in a tiny model of the same family, the built-in synthetic scenes and a few steps, so any
recipe runs end to end on a CPU in seconds: `--config=configs/vitb32.py:smoke`.
"""
import copy

import ml_collections

from remoteclip_jax.models import configs as model_configs


def _one_block(config: dict, quick_gelu: bool) -> dict:
    """A copy of a tiny test model with one text block (and one ViT block): shorter compiles."""
    c = copy.deepcopy(config)
    c["quick_gelu"] = quick_gelu
    c["text_cfg"]["layers"] = 1
    if not isinstance(c["vision_cfg"]["layers"], list):
        c["vision_cfg"]["layers"] = 1
    return c


TINY_VIT = _one_block(model_configs.TINY_VIT, quick_gelu=True)
TINY_RESNET = _one_block(model_configs.TINY_RESNET, quick_gelu=True)


def add_recipe_keys(c: ml_collections.ConfigDict) -> None:
    """Adds the training-application keys that the shared schema leaves out."""
    # Global batch; 0 = batch_size_per_device x devices (RemoteCLIP's per-GPU convention).
    c.data.batch_size = 0
    # Command-line friendly lists (ml_collections cannot override a list from the command line):
    # a JSON list that, when set, replaces data.sources / eval.datasets, e.g.
    # --config.data.sources_json='[{"kind": "records", "path": "/data/rs_records"}]'
    c.data.sources_json = ""
    c.eval.datasets_json = ""
    c.data.demo_images = 2048          # size of the built-in synthetic scene set (data.demo)
    c.data.demo_max_categories = 0     # keep only demo scenes with <= this many categories (0: all)
    c.train.export = True              # write OpenCLIP weights to WORKDIR/export at the end
    # Peak FLOP/s per device for MFU; 0 = look up the device kind (TPU/GPU table; none for CPU).
    c.train.peak_tflops_per_device = 0.0


def smoke(c: ml_collections.ConfigDict, family: str = "vit") -> None:
    """Turns a recipe into its CPU smoke variant in place (tiny model, synthetic data, 4 steps)."""
    del c.model  # a str in the schema; the tiny model is a config dict
    c.model = dict(TINY_RESNET if family == "resnet" else TINY_VIT)
    c.data.image_size = c.model.vision_cfg.image_size
    c.init_from = ""
    c.data.demo = True
    c.data.sources = []
    c.data.demo_images = 64
    c.data.batch_size_per_device = 2
    c.optim.warmup_steps = 2
    c.train.steps = 4
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.eval.datasets = []


def remoteclip_recipe(config_file: str, model: str, init_from: str, family: str,
                      arg: str | None) -> ml_collections.ConfigDict:
    """The RemoteCLIP recipe shared by rn50/vitb32/vitl14: continual pretraining of every
    parameter from OpenAI CLIP weights, with RemoteCLIP's training defaults.

    Args:
      config_file: the recipe's file name, for error messages.
      model: open_clip model name (QuickGELU: OpenAI CLIP ran it, and RemoteCLIP keeps it).
      init_from: the OpenAI CLIP checkpoint that openai/CLIP publishes for this model.
      family: "vit" or "resnet", the tiny model family of the smoke variant.
      arg: the variant after the colon in --config=FILE:ARG ("smoke" or None).
    """
    from configs import base
    c = base.get_base_config()
    add_recipe_keys(c)
    c.model = model
    c.init_from = init_from
    c.optim.lr = 5e-4                   # RemoteCLIP
    c.optim.weight_decay = 0.05         # RemoteCLIP
    c.optim.schedule = "cosine"         # RemoteCLIP / open_clip: linear warmup, then cosine decay
    c.optim.warmup_steps = 10000        # open_clip default --warmup
    c.data.batch_size_per_device = 64   # RemoteCLIP: 64 pairs per GPU
    c.data.image_size = 224             # RemoteCLIP / OpenAI CLIP
    c.train.epochs = 32                 # RemoteCLIP
    # Training pairs: caption JSONL or record shards from remoteclip_jax.data, e.g.
    # [{"kind": "jsonl", "path": "data/rs_pairs.jsonl"}]; empty here because they are yours.
    c.data.sources = []                 # yours: RemoteCLIP's data is not shipped
    if arg == "smoke":
        smoke(c, family)
    elif arg:
        raise ValueError(f"configs/{config_file}: unknown variant {arg!r}; use 'smoke' or nothing")
    return c
