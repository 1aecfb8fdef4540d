"""The README's first command: a tiny CLIP trained from scratch on the built-in synthetic scenes.

    python -m remoteclip_jax.main --config=configs/demo.py --workdir=/tmp/demo

A few minutes on a laptop CPU; then it prints retrieval recall and counting accuracy on 400
held-out synthetic scenes. Measured on a shared 2-core CPU (~6.5 CPU-minutes): counting top-1
33 % (chance 10 %, always answering the most common count 13 %; mean abs. error 1.2), retrieval
mean recall 15.7 % (chance 1.3 %). The scenes are procedurally drawn
(`remoteclip_jax.data.synthetic`), not real imagery: the demo shows that the whole path — data,
sharded training, checkpoints, evaluation, export — works, nothing more.
`--config=configs/demo.py:smoke` is the seconds-long variant the tests run.
"""
import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # so `configs` imports
from configs import base  # noqa: E402
from configs.recipe_extras import add_recipe_keys, smoke  # noqa: E402

# Small enough for a shared 2-core CPU, fine enough to see objects of 5-15 px: 64 px scenes cut
# into 8x8 patches (64 tokens) for a narrow image tower; captions need at most ~21 tokens.
DEMO_MODEL = {
    "embed_dim": 64, "quick_gelu": False,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 2},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_base_config()
    add_recipe_keys(c)
    del c.model
    c.model = DEMO_MODEL
    c.init_from = ""                   # from scratch
    c.data.demo = True
    c.data.demo_images = 2048          # training scenes (seed = config.seed)
    c.data.demo_max_categories = 1     # one object category per scene: counts are learnable fast
    c.data.image_size = 64
    c.data.batch_size = 128            # global batch, whatever the device count
    c.optim.lr = 2e-3                  # a tiny model from scratch tolerates more than 5e-4
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.05        # RemoteCLIP
    c.train.steps = 700
    c.train.log_every = 10
    c.train.checkpoint_every = 100
    c.eval.batch_size = 200
    c.eval.num_workers = 2             # image-loading threads of the evaluator
    c.eval.demo_images = 400           # held-out scenes for retrieval + counting (another seed)
    c.eval.demo_image_size = 64
    if arg == "smoke":
        smoke(c, "vit")
        c.data.batch_size = 0
        c.eval.demo_images = 16
        c.eval.demo_image_size = 32
    elif arg:
        raise ValueError(f"configs/demo.py: unknown variant {arg!r}; use 'smoke' or nothing")
    return c
