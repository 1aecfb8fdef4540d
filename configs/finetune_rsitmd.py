"""Retrieval fine-tuning on RSITMD + RSICD (GeoRSCLIP's "RET-2"), with GeoRSCLIP's published settings.

    remoteclip-jax train --config=configs/finetune_rsitmd.py --workdir=runs/ft_rsitmd \
        --config.init_from=/path/to/RS5M_ViT-B-32.pt
    remoteclip-jax train --config=configs/finetune_rsitmd.py:smoke --workdir=/tmp/smoke  # seconds
    remoteclip-jax train --config=configs/finetune_rsitmd.py:raw ...   # without de-duplication

GeoRSCLIP's authors tuned their RS5M ViT-B/32 with ITRA on RET-2, the train splits of RSICD and
RSITMD, with lr 5e-6, weight decay 0.5, batch 600, 7 epochs, 100 warmup steps and gradient-norm
clipping at 50 (om-ai-lab/RS5M issue #12, the maintainer's answer of 2024-01-03); the rest is
ITRA's defaults (`remoteclip_jax.recipes.itra_adamw`). Any OpenCLIP ViT-B/32 checkpoint can
start it (RemoteCLIP's, OpenAI's). Retrieval is evaluated on both test splits.

Data: ``$REMOTECLIP_DATA`` (default ``./data/shared``) holding ``RSITMD/dataset_RSITMD.json`` (or
``dataset_rsitmd.json``) with ``RSITMD/images/`` and ``RSICD/dataset_rsicd.json`` with
``RSICD/RSICD_images/``, as the datasets ship; point elsewhere with
``--config.data.sources.rsitmd.path=...`` (and ``.image_root``), and the same for ``rsicd`` and the
``evals.rsitmd_test`` / ``evals.rsicd_test`` entries.

De-duplication. RSICD and RSITMD share scenes: some training images of each are near-copies of the
other's test images, and GeoRSCLIP de-duplicated RET-2 before tuning. Both training sources read
the exclusion list ``$REMOTECLIP_DATA/RET2_exclusions.json`` (``exclude``); build it once with
``remoteclip-jax dedup`` (pHash, threshold 4), from the same files and image folders::

    D=${REMOTECLIP_DATA:-data/shared}
    remoteclip-jax dedup \
      --train "$D/RSITMD/dataset_RSITMD.json?split=train&image_root=$D/RSITMD/images" \
              "$D/RSICD/dataset_rsicd.json?split=train&image_root=$D/RSICD/RSICD_images" \
      --eval "$D/RSITMD/dataset_RSITMD.json?split=test&image_root=$D/RSITMD/images" \
             "$D/RSICD/dataset_rsicd.json?split=test&image_root=$D/RSICD/RSICD_images" \
      --out "$D/RET2_exclusions.json"

Without it, training stops at once with a message that says so; ``:raw`` trains on every image.
"""
import os
import pathlib

import ml_collections

from remoteclip_jax import config as schema
from remoteclip_jax import recipes

DATA = pathlib.Path(os.environ.get("REMOTECLIP_DATA", "data/shared"))
RSITMD = dict(path=recipes.find_data(DATA, "RSITMD/dataset_RSITMD.json", "RSITMD/dataset_rsitmd.json"),
              image_root=str(DATA / "RSITMD" / "images"))
RSICD = dict(path=str(DATA / "RSICD" / "dataset_rsicd.json"),
             image_root=str(DATA / "RSICD" / "RSICD_images"))

# Train split sizes as the datasets ship them, 5 captions per image: RSITMD 4,291 images (its
# 20 blank sentences are rows of ITRA's CSV but no pairs of ours), RSICD 8,734 images.
RSITMD_TRAIN_IMAGES = 4_291
RSICD_TRAIN_IMAGES = 8_734
TRAIN_PAIRS = 5 * (RSITMD_TRAIN_IMAGES + RSICD_TRAIN_IMAGES)  # 65,125 rows of RET-2, before de-duplication
EXCLUSIONS = str(DATA / "RET2_exclusions.json")  # `remoteclip-jax dedup`'s list: see the docstring


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = schema.get_base_config()
    c.model = "ViT-B-32-quickgelu"      # GeoRSCLIP: open_clip "ViT-B/32", pretrained="openai" (RS5M README line 69)
    c.init_from = "RS5M_ViT-B-32.pt"    # GeoRSCLIP's RS5M checkpoint (RS5M README line 56); any ViT-B/32 OpenCLIP file
    recipes.itra_adamw(c)               # GeoRSCLIP tuned with ITRA (RS5M issue #12)
    c.optim.lr = 5e-6                   # GeoRSCLIP issue #12 (om-ai-lab/RS5M): --lr 5e-06
    c.optim.weight_decay = 0.5          # GeoRSCLIP issue #12: --weight_decay 0.5
    c.optim.warmup_steps = 100          # GeoRSCLIP issue #12: --warmup 100 (13% of this run)
    c.optim.grad_clip_norm = 50.0       # GeoRSCLIP issue #12: --max_grad_norm 50.0
    c.data.batch_size = 600             # GeoRSCLIP issue #12: --batch_size 600 (ITRA: per GPU; GPUs unpublished)
    c.data.image_size = 224             # OpenAI CLIP ViT-B/32 input size
    c.train.epochs = 7                  # GeoRSCLIP issue #12: --epochs 7
    c.train.checkpoint_every = 200      # ours: ~4 checkpoints over the 756 steps
    # An epoch is every (image, caption) row once, as ITRA's caption CSV gives it.
    c.data.sources.rsitmd = schema.source(kind="caption_json", split="train", pairs="caption",
                                          exclude=EXCLUSIONS, **RSITMD)
    c.data.sources.rsicd = schema.source(kind="caption_json", split="train", pairs="caption",
                                         exclude=EXCLUSIONS, **RSICD)
    c.evals.rsitmd_test = schema.evaluation("retrieval", kind="caption_json", split="test",
                                            **RSITMD)
    c.evals.rsicd_test = schema.evaluation("retrieval", kind="caption_json", split="test",
                                           **RSICD)
    def raw(c):  # RET-2 as the datasets ship, test-split near-copies included
        for source in c.data.sources.values():
            source.exclude = ""

    return recipes.variant(c, arg, "finetune_rsitmd.py", raw=raw)
