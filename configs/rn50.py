"""RemoteCLIP RN50 (ModifiedResNet-50): continual pretraining of every parameter from OpenAI CLIP weights.

    remoteclip-jax train --config=configs/rn50.py --workdir=runs/rn50 \
        --config.init_from=/path/to/RN50.pt --config.data.sources.train.path=data/rs_records
    remoteclip-jax train --config=configs/rn50.py:smoke --workdir=/tmp/smoke   # seconds, on a CPU

(`python -m remoteclip_jax.main` takes the same flags.) "RemoteCLIP" below = the paper (Liu et
al. 2024) and its training code (ITRA, an open_clip fork).
"""
import ml_collections

from remoteclip_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = recipes.remoteclip("rn50.py", "RN50-quickgelu", "RN50.pt", "resnet", arg)
    c.optim.b2 = 0.999                  # open_clip get_default_params for ResNets
    c.optim.eps = 1e-8                  # open_clip get_default_params for ResNets
    return c
