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
from configs.recipe_extras import remoteclip_recipe  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = remoteclip_recipe("vitl14.py", "ViT-L-14-quickgelu", "ViT-L-14.pt", "vit", arg)
    # ViT-L/14's parameters and Adam state (~5 GB in float32) fit on one accelerator, but FSDP
    # frees memory for activations on 16 GB TPU cores: e.g. --config.mesh.fsdp=4.
    c.remat = False
    return c
