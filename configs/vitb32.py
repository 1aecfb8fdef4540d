"""RemoteCLIP ViT-B/32: continual pretraining of every parameter from OpenAI CLIP weights.

    remoteclip-jax train --config=configs/vitb32.py --workdir=runs/vitb32 \
        --config.init_from=/path/to/ViT-B-32.pt --config.data.sources.train.path=data/rs_records
    remoteclip-jax train --config=configs/vitb32.py:smoke --workdir=/tmp/smoke   # seconds, on a CPU

(`python -m remoteclip_jax.main` takes the same flags.) The settings are what RemoteCLIP's
training code (ITRA, an open_clip fork) effectively ran; `remoteclip_jax.recipes.remoteclip` names
the source of each. An epoch is every (image, caption) pair once: 828,725 pairs of RemoteCLIP's
165,745 images (`TRAIN_PAIRS`).
"""
import ml_collections

from remoteclip_jax import recipes

TRAIN_PAIRS = recipes.REMOTECLIP_PAIRS  # RemoteCLIP paper: 165,745 images x 5 captions


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = recipes.remoteclip("vitb32.py", "ViT-B-32-quickgelu", "ViT-B-32.pt", "vit", arg)
    return c
