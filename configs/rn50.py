"""RemoteCLIP RN50 (ModifiedResNet-50): continual pretraining of all parameters from OpenAI CLIP.

    python -m remoteclip_jax.main --config=configs/rn50.py --workdir=runs/rn50 \
        --config.init_from=/path/to/RN50.pt \
        --config.data.sources_json='[{"kind": "records", "path": "data/rs_records"}]'
    python -m remoteclip_jax.main --config=configs/rn50.py:smoke --workdir=/tmp/smoke  # CPU

"RemoteCLIP" below = the paper (Liu et al. 2024) and its training code (ITRA, an open_clip fork).
"""
import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # so `configs` imports
from configs import base  # noqa: E402
from configs.recipe_extras import add_recipe_keys, smoke  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_base_config()
    add_recipe_keys(c)
    # OpenAI CLIP ran QuickGELU; RemoteCLIP continues from those weights, so the activation stays.
    c.model = "RN50-quickgelu"
    # RemoteCLIP starts from OpenAI CLIP: the RN50.pt that openai/CLIP publishes.
    c.init_from = "RN50.pt"
    c.optim.lr = 5e-4                   # RemoteCLIP
    c.optim.weight_decay = 0.05         # RemoteCLIP
    c.optim.schedule = "cosine"         # RemoteCLIP / open_clip: linear warmup, then cosine decay
    c.optim.warmup_steps = 10000        # open_clip default --warmup
    c.optim.b2 = 0.999                  # open_clip get_default_params for ResNets
    c.optim.eps = 1e-8                  # open_clip get_default_params for ResNets
    c.data.batch_size_per_device = 64   # RemoteCLIP: 64 pairs per GPU
    c.data.image_size = 224             # RemoteCLIP / OpenAI CLIP
    c.train.epochs = 32                 # RemoteCLIP
    # Training pairs: caption JSONL or record shards from remoteclip_jax.data, e.g.
    # [{"kind": "jsonl", "path": "data/rs_pairs.jsonl"}]; empty here because they are yours.
    c.data.sources = []                 # yours: RemoteCLIP's data is not shipped
    if arg == "smoke":
        smoke(c, "resnet")
    elif arg:
        raise ValueError(f"configs/rn50.py: unknown variant {arg!r}; use 'smoke' or nothing")
    return c
