"""RemoteCLIP ViT-L/14: continual pretraining of every parameter from OpenAI CLIP weights.

    python -m remoteclip_jax.main --config=configs/vitl14.py --workdir=runs/vitl14 \
        --config.init_from=/path/to/ViT-L-14.pt \
        --config.data.sources_json='[{"kind": "records", "path": "data/rs_records"}]'
    python -m remoteclip_jax.main --config=configs/vitl14.py:smoke --workdir=/tmp/smoke  # CPU

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
    c.model = "ViT-L-14-quickgelu"
    # RemoteCLIP starts from OpenAI CLIP: the ViT-L-14.pt that openai/CLIP publishes.
    c.init_from = "ViT-L-14.pt"
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
    # ViT-L/14's parameters and Adam state (~5 GB in float32) fit on one accelerator, but FSDP
    # frees memory for activations on 16 GB TPU cores: e.g. --config.mesh.fsdp=4.
    c.remat = False
    if arg == "smoke":
        smoke(c, "vit")
    elif arg:
        raise ValueError(f"configs/vitl14.py: unknown variant {arg!r}; use 'smoke' or nothing")
    return c
