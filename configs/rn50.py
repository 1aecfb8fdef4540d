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
from configs.recipe_extras import remoteclip_recipe  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = remoteclip_recipe("rn50.py", "RN50-quickgelu", "RN50.pt", "resnet", arg)
    c.optim.b2 = 0.999                  # open_clip get_default_params for ResNets
    c.optim.eps = 1e-8                  # open_clip get_default_params for ResNets
    return c
