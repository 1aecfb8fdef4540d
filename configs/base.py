"""Shared config schema for every recipe. Recipes call `get_base_config()` and override fields.

Every default names its source. "open_clip" = open_clip's `params.py` / `training/main.py`;
"RemoteCLIP" = the training codebase RemoteCLIP was trained with (ITRA, an open_clip fork).
"""
import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Model: an open_clip name ("ViT-B-32-quickgelu") or an open_clip-style dict
    # {embed_dim, vision_cfg, text_cfg, quick_gelu}.
    c.model = "ViT-B-32-quickgelu"
    c.dtype = "float32"           # compute dtype: float32 | bfloat16 (params stay float32)
    c.remat = False               # rematerialise residual blocks (saves activation memory)
    c.init_from = ""              # OpenCLIP checkpoint path or preset name ("" = from scratch)
    c.lock_image = False          # LiT-style: freeze the image tower (open_clip --lock-image)

    c.loss = ml_collections.ConfigDict()
    c.loss.type = "softmax"       # softmax (InfoNCE, CLIP) | sigmoid (SigLIP)

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 5e-4             # RemoteCLIP / open_clip default
    c.optim.warmup_steps = 10000  # open_clip default --warmup
    c.optim.schedule = "cosine"   # cosine | const (after linear warmup)
    c.optim.weight_decay = 0.05   # RemoteCLIP (open_clip default is 0.2)
    c.optim.b1 = 0.9              # open_clip --beta1 for ViT
    c.optim.b2 = 0.98             # open_clip --beta2 for ViT
    c.optim.eps = 1e-6            # open_clip --eps for ViT
    c.optim.grad_clip_norm = 0.0  # 0 = off (open_clip --grad-clip-norm default None)
    # Which parameters get no weight decay. "all_embeddings" (default): biases, norms, logit_scale,
    # and all embeddings (token, positional, class), as the issue specifies. "open_clip": the
    # rule of open_clip's / ITRA's main.py that RemoteCLIP trained with (ndim < 2, or bn/ln/bias/
    # logit_scale in the name: positional and token embeddings do decay). "open_clip_head":
    # newer open_clip's no_weight_decay() (adds the positional embeddings).
    c.optim.wd_exclude = "all_embeddings"
    c.accum_steps = 1             # open_clip --accum-freq (feature-cached, full-batch negatives)

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1              # -1 = all devices not used by other axes
    c.mesh.fsdp = 1               # >1 shards params/optimizer state over this axis

    c.data = ml_collections.ConfigDict()
    c.data.batch_size_per_device = 64  # RemoteCLIP
    c.data.image_size = 224
    c.data.num_workers = 0
    c.data.sources = []           # list of {kind, path, weight}
    c.data.demo = False           # use the built-in procedural aerial scenes

    c.train = ml_collections.ConfigDict()
    c.train.epochs = 32           # RemoteCLIP
    c.train.steps = 0             # >0 overrides epochs
    c.train.log_every = 10
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 3
    c.train.eval_every = 0        # 0 = only at the end

    c.eval = ml_collections.ConfigDict()
    c.eval.datasets = []          # list of {kind, name, path, ...}
    c.eval.batch_size = 256
    return c
