"""The README's first command: a tiny CLIP trained from scratch on the built-in synthetic scenes.

    remoteclip-jax train --config=configs/demo.py --workdir=runs/demo
    (or: python -m remoteclip_jax.main --config=configs/demo.py --workdir=runs/demo)

A few minutes on a laptop CPU; then it prints retrieval recall and counting accuracy on 400
held-out synthetic scenes. The scenes are procedurally drawn (`remoteclip_jax.data.synthetic`),
not real imagery: the demo shows that the whole path — data, sharded training, checkpoints,
evaluation, export — works, nothing more. Training and evaluation data are ordinary `synthetic`
sources: the scenes of one seed train, those of another seed are held out.
`--config=configs/demo.py:smoke` is the seconds-long variant the tests run.
"""
import ml_collections

from remoteclip_jax import config as schema
from remoteclip_jax import recipes

# Small enough for a shared 2-core CPU, fine enough to see objects of 5-15 px: 64 px scenes cut
# into 8x8 patches (64 tokens) for a narrow image tower; captions need at most ~21 tokens.
DEMO_MODEL = {
    "embed_dim": 64, "quick_gelu": False,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 2},
}
EVAL_SEED = 10_007  # held-out scenes: another seed than the training scenes'


def scenes(num_images: int, image_size: int, seed: int) -> dict:
    """Synthetic scenes with one object category each and counts spelled out ("three cars"), as
    the counting prompts spell them: a tiny model learns to count such scenes in minutes."""
    return dict(kind="synthetic", num_images=num_images, image_size=image_size, seed=seed,
                max_categories=1, spell_counts=True)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = schema.get_base_config()
    schema.set_model(c, DEMO_MODEL)
    c.init_from = ""                   # from scratch
    c.data.sources.scenes = schema.source(**scenes(2048, 64, seed=0))
    c.data.image_size = 64
    c.data.batch_size = 128            # global batch, whatever the device count
    c.optim.lr = 2e-3                  # a tiny model from scratch tolerates more than 5e-4
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.05        # RemoteCLIP
    c.train.steps = 700
    c.train.log_every = 10
    c.train.checkpoint_every = 100
    c.eval.batch_size = 200
    held_out = scenes(400, 64, EVAL_SEED)
    c.evals.synthetic_retrieval = schema.evaluation("retrieval", **held_out)
    c.evals.synthetic_count = schema.evaluation("count", **held_out)

    def smoke(c):  # the recipe's smoke variant, still with both evaluations
        recipes.smoke(c)
        small = scenes(16, 32, EVAL_SEED)
        c.evals.synthetic_retrieval = schema.evaluation("retrieval", **small)
        c.evals.synthetic_count = schema.evaluation("count", **small)

    return recipes.variant(c, arg, "demo.py", smoke=smoke)
