"""RemoteCLIP ViT-B/32: continual pretraining of every parameter from OpenAI CLIP weights.

    python -m remoteclip_jax.main --config=configs/vitb32.py --workdir=runs/vitb32 \
        --config.init_from=/path/to/ViT-B-32.pt \
        --config.data.sources_json='[{"kind": "records", "path": "data/rs_records"}]'
    python -m remoteclip_jax.main --config=configs/vitb32.py:smoke --workdir=/tmp/smoke  # CPU

"RemoteCLIP" below = the paper (Liu et al. 2024) and its training code (ITRA, an open_clip fork).
"""
import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # so `configs` imports
from configs.recipe_extras import remoteclip_recipe  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = remoteclip_recipe("vitb32.py", "ViT-B-32-quickgelu", "ViT-B-32.pt", "vit", arg)
    return c
