"""RemoteCLIP RN50 (ModifiedResNet-50): continual pretraining of every parameter from OpenAI CLIP weights.

    remoteclip-jax train --config=configs/rn50.py --workdir=runs/rn50 \
        --config.init_from=/path/to/RN50.pt --config.data.sources.train.path=data/rs_records
    remoteclip-jax train --config=configs/rn50.py:smoke --workdir=/tmp/smoke   # seconds, on a CPU

(`python -m remoteclip_jax.main` takes the same flags.) The settings are what RemoteCLIP's
training code (ITRA, an open_clip fork) effectively ran; `remoteclip_jax.recipes.remoteclip` names
the source of each. An epoch is every (image, caption) pair once: 828,725 pairs of RemoteCLIP's
165,745 images (`TRAIN_PAIRS`).
"""
import ml_collections

from remoteclip_jax import recipes

TRAIN_PAIRS = recipes.REMOTECLIP_PAIRS  # RemoteCLIP paper: 165,745 images x 5 captions


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = recipes.remoteclip("rn50.py", "RN50-quickgelu", "RN50.pt", "resnet", arg)
    return c
