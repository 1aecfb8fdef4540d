"""The one config schema: every key, its default and what it means. Recipes only override.

A recipe in ``configs/`` is a ``get_config(arg)`` function that starts from `get_base_config()`,
sets what differs, and may offer variants (``--config=configs/vitb32.py:smoke``).

Datasets are *named entries*, so the command line reaches every field without JSON strings:

* ``config.data.sources.<name>``: a training source, a dict of the source keys of
  `remoteclip_jax.data.sources.SOURCE_DEFAULTS` (``kind``, ``path``, ``split``, ...);
* ``config.evals.<name>``: an evaluation, the same source keys plus ``task`` and the task's own
  keys (`EVAL_DEFAULTS`), e.g. ``--config.evals.rsicd.path=/data/RSICD/dataset_rsicd.json``.

Build entries with `source(...)` and `evaluation(task, ...)`, which fill in every default, so each
key exists for the command line to override. `validate(config)` refuses, before anything runs, an
unknown key anywhere (naming the nearest valid one), a key an entry's kind or task does not read,
and values that cannot work.
"""
from __future__ import annotations

from typing import Any

import ml_collections

import remoteclip_jax.geo.source  # noqa: F401  (registers the geotiff source kind)
from remoteclip_jax.data.sources import SOURCE_DEFAULTS, nearest, normalize_spec
from remoteclip_jax.errors import ConfigError, check_choice
from remoteclip_jax.evaluate.task import check_entries, eval_defaults, plain

# Evaluation entries: ``task`` plus the keys of the tasks of `remoteclip_jax.evaluate.task` (each
# task module documents its keys); tasks that share a key share its default.
EVAL_DEFAULTS: dict[str, Any] = eval_defaults()
# The values the choice keys allow; the train modules that act on them take these lists.
DTYPES = ("float32", "bfloat16")
ATTENTION = ("auto", "xla", "cudnn")  # see `models.ops.attention`
LOSS_TYPES = ("softmax", "sigmoid")           # softmax (InfoNCE, CLIP) | sigmoid (SigLIP)
SCHEDULES = ("cosine", "const")
WD_RULES = ("open_clip", "open_clip_head", "all_embeddings")  # see `train.optim.decay_mask`


def source(**keys) -> dict[str, Any]:
    """A training source entry with every source key filled in (checked by `validate`)."""
    unknown = sorted(set(keys) - set(SOURCE_DEFAULTS))
    if unknown:
        raise ConfigError(f"source(): unknown key {unknown[0]!r}{nearest(unknown[0], SOURCE_DEFAULTS)}")
    return {**SOURCE_DEFAULTS, **keys}


def evaluation(task: str, **keys) -> dict[str, Any]:
    """An evaluation entry: task, source keys and task keys, every default filled in."""
    entry = {**SOURCE_DEFAULTS, **EVAL_DEFAULTS, "task": task}
    unknown = sorted(set(keys) - set(entry))
    if unknown:
        raise ConfigError(f"evaluation({task!r}): unknown key {unknown[0]!r}{nearest(unknown[0], entry)}")
    entry.update(keys)
    return entry


def get_base_config() -> ml_collections.ConfigDict:
    """Every key with its default. "open_clip" = open_clip's params.py / training/main.py."""
    c = ml_collections.ConfigDict()
    c.seed = 0                    # model init, data order, augmentation
    # An open_clip model name ("ViT-B-32-quickgelu") or an open_clip-style dict
    # {embed_dim, vision_cfg, text_cfg, quick_gelu}.
    c.model = "ViT-B-32-quickgelu"
    c.dtype = "float32"           # compute dtype: float32 | bfloat16 (params stay float32)
    c.remat = False               # rematerialise residual blocks (saves activation memory)
    # Attention kernel: "auto" = cuDNN flash attention for bfloat16 on NVIDIA GPUs, XLA's
    # elsewhere; "xla" or "cudnn" to choose (models/ops.py).
    c.attention = "auto"
    # Persistent cache of compiled programs: "auto" = the user cache directory
    # ($REMOTECLIP_JAX_CACHE_DIR or ~/.cache/remoteclip_jax/jax), a directory, or "" for off.
    c.compilation_cache = "auto"
    # Initial weights: an OpenCLIP checkpoint file, a model directory (`remoteclip-jax
    # import-weights`), or "" to train from scratch.
    c.init_from = ""
    c.lock_image = False          # LiT-style: freeze the image tower (open_clip --lock-image)
    # ...but train its last N layer groups (open_clip --lock-image-unlocked-groups; ViT only:
    # [patch embedding, class and position embeddings, ln_pre], each block, [last block, ln_post],
    # [proj]).
    c.lock_image_unlocked_groups = 0
    c.lock_text = False           # freeze the text tower (open_clip --lock-text)
    # ...but train its last N layer groups (open_clip --lock-text-unlocked-layers: [token and
    # position embeddings], each block, [last block, ln_final], [text_projection]).
    c.lock_text_unlocked_layers = 0

    c.loss = ml_collections.ConfigDict()
    c.loss.type = "softmax"       # softmax (InfoNCE, CLIP) | sigmoid (SigLIP)

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 5e-4             # peak learning rate
    c.optim.warmup_steps = 10000  # linear warmup (open_clip --warmup default)
    c.optim.schedule = "cosine"   # cosine | const (after the warmup)
    c.optim.weight_decay = 0.05   # AdamW decoupled weight decay
    c.optim.b1 = 0.9              # AdamW beta1 (open_clip ViT default)
    c.optim.b2 = 0.98             # AdamW beta2 (open_clip ViT default)
    c.optim.eps = 1e-6            # AdamW eps (open_clip ViT default)
    c.optim.grad_clip_norm = 0.0  # global-norm clipping; 0 = off
    # Clamp logit_scale to [0, ln 100] after every update, as open_clip's trainer does
    # (open_clip_train/train.py l.189); ITRA, which RemoteCLIP trained with, never clamps
    # (`recipes.itra_adamw` turns it off).
    c.optim.clamp_logit_scale = True
    # Parameters without weight decay: "all_embeddings" (biases, norms, logit_scale and every
    # embedding), "open_clip" (open_clip's main.py rule: ndim < 2 or bn/ln/bias/logit_scale in
    # the name) or "open_clip_head" (newer open_clip's no_weight_decay(): adds the positional
    # embeddings).
    c.optim.wd_exclude = "all_embeddings"
    c.accum_steps = 1             # gradient accumulation with cached features (open_clip --accum-freq)

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1              # data-parallel axis size; -1 = devices not used by other axes
    c.mesh.fsdp = 1               # > 1 shards parameters and optimizer state over this axis

    c.data = ml_collections.ConfigDict()
    c.data.batch_size = 0         # global batch; 0 = batch_size_per_device x devices
    c.data.batch_size_per_device = 64
    # Model input side (train transform: RandomResizedCrop 0.9-1): 0 = the model's; any other
    # value must equal it (the model fixes its input size).
    c.data.image_size = 0
    c.data.num_workers = 0        # grain worker processes per host (0 = decode in-process)
    c.data.sources = ml_collections.ConfigDict()   # named sources: see `source()`

    c.train = ml_collections.ConfigDict()
    c.train.epochs = 32           # run length in epochs of the training sources...
    c.train.steps = 0             # ...unless steps > 0
    c.train.log_every = 10        # steps between metric lines
    c.train.checkpoint_every = 1000  # steps between checkpoints
    c.train.keep_checkpoints = 3  # newest checkpoints kept
    c.train.eval_every = 0        # steps between evaluations; 0 = only at the end
    c.train.export = True         # write OpenCLIP weights to WORKDIR/export at the end
    c.train.peak_tflops_per_device = 0.0  # for MFU; 0 = look the device kind up (none for CPU)
    # FLIP's patch dropout (open_clip `patch_dropout`): share of image patches each training
    # image drops (ViT towers; the class token stays; evaluation sees every patch).
    c.train.patch_dropout = 0.0
    # A jax.profiler trace of steps START..START+N-1 in WORKDIR/profile: "START,N", "auto"
    # (`train --profile`: 5 steps from this run's second) or "" (off). See `train.profile`.
    c.train.profile_steps = ""
    # Also log the metrics to this Weights & Biases project ("" = off; `pip install
    # remoteclip_jax[wandb]`); a resumed run continues the same W&B run.
    c.train.wandb_project = ""

    # An exponential moving average of the weights (train/ema.py): ITRA's --model_ema /
    # --model_ema_decay (timm ModelEma), timm ModelEmaV3's warmup.
    c.ema = ml_collections.ConfigDict()
    c.ema.decay = 0.0             # 0 = off; else e.g. 0.9999 (ITRA's default when on)
    c.ema.warmup_power = 0.0      # 0 = constant decay; p > 0: min(decay, 1 - (1 + t)^-p) (timm: 2/3, 3/4)
    c.ema.evaluate = False        # also evaluate the EMA weights: eval_ema/<dataset>/<metric>, WORKDIR/eval_ema
    c.ema.export = False          # also export the EMA weights: WORKDIR/export_ema (or <export_dir>_ema)

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 256       # images or texts per encoder call, per process
    c.eval.num_workers = 0        # grain worker processes decoding evaluation images
    c.eval.cache_features = True  # eval mode: keep image features in WORKDIR/eval/cache (resumable)
    c.eval.model_name = "model"   # how results.md names the model
    c.evals = ml_collections.ConfigDict()          # named evaluations: see `evaluation()`
    return c


def set_model(c: ml_collections.ConfigDict, model: str | dict) -> None:
    """Sets ``config.model`` to a name or a config dict (the schema's default is a name, and a
    ConfigDict field keeps its type, so a dict needs the field replaced)."""
    del c.model
    c.model = model


def smoke(c: ml_collections.ConfigDict, model: dict) -> None:
    """Turns a recipe into its CPU smoke variant in place: `model` (a tiny config dict), built-in
    synthetic scenes and 4 steps, keeping the recipe's optimiser and schedule (big_vision's
    `runlocal` idea: every recipe runs end to end on a laptop in seconds)."""
    set_model(c, dict(model))
    c.data.image_size = c.model.vision_cfg.image_size
    c.init_from = ""
    c.data.sources = {"scenes": source(kind="synthetic", num_images=64,
                                        image_size=max(32, c.data.image_size))}
    c.data.batch_size = 0
    c.data.batch_size_per_device = 2
    c.optim.warmup_steps = 2
    c.train.steps = 4
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.evals = {}


# --- validation -------------------------------------------------------------------------------

_CHOICES = {"dtype": DTYPES, "attention": ATTENTION, "loss.type": LOSS_TYPES,
            "optim.schedule": SCHEDULES,
            "optim.wd_exclude": WD_RULES}
_ENTRY_SECTIONS = ("data.sources", "evals")


def _check_keys(config, schema, prefix: str) -> None:
    for key in config.keys():
        dotted = f"{prefix}{key}"
        if dotted.rstrip(".") in _ENTRY_SECTIONS:
            continue
        if key not in schema:
            raise ConfigError(f"config.{dotted}: unknown key{nearest(key, schema.keys())}")
        if isinstance(schema[key], ml_collections.ConfigDict) and dotted != "model":
            if not isinstance(config[key], ml_collections.ConfigDict):
                raise ConfigError(f"config.{dotted} must be a section, got {config[key]!r}")
            _check_keys(config[key], schema[key], dotted + ".")


def source_entries(config) -> dict[str, dict[str, Any]]:
    """``config.data.sources`` as {name: complete, checked source spec}."""
    return {name: normalize_spec(plain(spec), f"config.data.sources.{name}")
            for name, spec in config.data.sources.items()}


def eval_entries(config) -> dict[str, dict[str, Any]]:
    """``config.evals`` as {name: complete, checked evaluation entry} (see `evaluate.task`)."""
    return check_entries(config.evals)


def _check_image_size(config) -> None:
    size = int(config.data.image_size)
    if not size:
        return
    from remoteclip_jax.models.configs import model_config

    try:
        wanted = int(model_config(plain(config.model))["vision_cfg"]["image_size"])
    except ConfigError:
        return  # building the model reports a bad config.model in its own words
    if size != wanted:
        raise ConfigError(f"config.data.image_size={size}: the model takes {wanted}-px images; "
                          f"set config.data.image_size={wanted} or 0 (the model's)")


def global_batch_size(config, device_count: int) -> int:
    """config.data.batch_size if set (> 0), else batch_size_per_device x devices."""
    if config.data.batch_size > 0:
        return int(config.data.batch_size)
    return int(config.data.batch_size_per_device) * device_count


def validate(config: ml_collections.ConfigDict, device_count: int = 1, process_count: int = 1,
             *, for_training: bool = True) -> None:
    """Refuses a config that cannot run, before any model or data is built.

    Raises:
        ConfigError, ConfigError: naming the key and what to change.
    """
    _check_keys(config, get_base_config(), "")
    for key, choices in _CHOICES.items():
        section, _, leaf = key.rpartition(".")
        check_choice(f"config.{key}", (config[section] if section else config)[leaf], choices)
    if not 0.0 <= config.ema.decay < 1.0:
        raise ConfigError(f"config.ema.decay={config.ema.decay}: must lie in [0, 1) (0 = no EMA; "
                          "typically 0.999 to 0.9999)")
    if config.ema.warmup_power < 0:
        raise ConfigError(f"config.ema.warmup_power={config.ema.warmup_power}: must be >= 0 "
                          "(0 = no warmup; timm suggests 2/3 or 3/4)")
    eval_entries(config)
    _check_image_size(config)
    if not for_training:
        return
    source_entries(config)
    if config.data.batch_size_per_device < 1 and config.data.batch_size < 1:
        raise ConfigError("config.data.batch_size_per_device must be >= 1")
    if config.accum_steps < 1:
        raise ConfigError("config.accum_steps must be >= 1")
    for tower, key in (("image", "lock_image_unlocked_groups"), ("text", "lock_text_unlocked_layers")):
        if config[key] < 0:
            raise ConfigError(f"config.{key}={config[key]} must be >= 0")
        if config[key] and not config[f"lock_{tower}"]:
            raise ConfigError(f"config.{key}={config[key]} unlocks part of a locked {tower} tower; "
                              f"also set config.lock_{tower}=true (or {key}=0)")
    if config.train.steps <= 0 and config.train.epochs <= 0:
        raise ConfigError("set config.train.steps > 0 or config.train.epochs > 0")
    if config.train.log_every < 1 or config.train.checkpoint_every < 1:
        raise ConfigError("config.train.log_every and config.train.checkpoint_every must be >= 1")
    if config.train.keep_checkpoints < 1:
        raise ConfigError("config.train.keep_checkpoints must be >= 1")
    if not len(config.data.sources):
        raise ConfigError("no training data: add a source, e.g. --config.data.sources.train.kind="
                          "records --config.data.sources.train.path=DIR in a recipe that has a "
                          "'train' entry, or config.data.sources.<name> = source(...) in the recipe")
    global_batch = global_batch_size(config, device_count)
    if global_batch % device_count:
        raise ConfigError(
            f"global batch {global_batch} (config.data.batch_size) cannot be split over the "
            f"{device_count} devices of the mesh; set config.data.batch_size to a multiple of "
            f"{device_count}, or 0 to use config.data.batch_size_per_device")
    if global_batch % (config.accum_steps * device_count):
        raise ConfigError(
            f"global batch {global_batch} with config.accum_steps={config.accum_steps} gives "
            f"micro-batches the {device_count} devices cannot split; make the batch a multiple of "
            f"accum_steps x devices = {config.accum_steps * device_count}")
    if global_batch % process_count:
        raise ConfigError(f"global batch {global_batch} cannot be split over {process_count} "
                          f"processes; make it a multiple of {process_count}")


__all__ = ["ConfigError", "EVAL_DEFAULTS", "eval_entries",
           "evaluation", "get_base_config", "global_batch_size", "smoke", "source",
           "source_entries", "validate"]
