"""RemoteCLIP ViT-L/14: continual pretraining of every parameter from OpenAI CLIP weights.

    remoteclip-jax train --config=configs/vitl14.py --workdir=runs/vitl14 \
        --config.init_from=/path/to/ViT-L-14.pt --config.data.sources.train.path=data/rs_records
    remoteclip-jax train --config=configs/vitl14.py:smoke --workdir=/tmp/smoke   # seconds, on a CPU

(`python -m remoteclip_jax.main` takes the same flags.) "RemoteCLIP" below = the paper (Liu et
al. 2024) and its training code (ITRA, an open_clip fork).
"""
import ml_collections

from remoteclip_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = recipes.remoteclip("vitl14.py", "ViT-L-14-quickgelu", "ViT-L-14.pt", "vit", arg)
    # ViT-L/14 parameters and Adam state (~5 GB in float32) fit on one accelerator, but FSDP
    # frees memory for activations on 16 GB TPU cores: e.g. --config.mesh.fsdp=4.
    c.remat = False
    return c
