"""optax AdamW with open_clip's parameter groups, warmup + cosine schedule, clipping and locking.

Every rule here mirrors open_clip's training code (`src/training/main.py`, `scheduler.py`,
`train.py`; the same code RemoteCLIP's ITRA fork trains with), so that one optimizer step moves
the parameters exactly as `torch.optim.AdamW` with open_clip's two parameter groups does:

* torch AdamW: p ← p − lr·wd·p − lr·m̂/(√v̂ + ε) = optax `scale_by_adam` (ε outside the root),
  `add_decayed_weights`, `scale_by_learning_rate`.
* Weight decay mask: see `decay_mask` (rules "open_clip", "open_clip_head", "all_embeddings").
* Schedule: `cosine_lr` / `const_lr`, evaluated at the 0-based step count *before* the update.
* Clipping: `torch.nn.utils.clip_grad_norm_` (coefficient max_norm / (‖g‖ + 1e-6), capped at 1),
  over the trainable parameters only.
* Locking (`lock_image`, `lock_text`, as open_clip's `--lock-image`/`--lock-text`, LiT): a locked
  parameter has no optimizer state, no update, no weight decay. `lock_image_unlocked_groups` /
  `lock_text_unlocked_layers` leave the last N *layer groups* of a locked tower trainable, the
  groups open_clip defines (see `layer_group`).
* After each update `logit_scale` is clamped to [0, ln 100] (`clamp_logit_scale`), unless
  ``config.optim.clamp_logit_scale`` is off (ITRA's loop never clamps).
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from remoteclip_jax.config import SCHEDULES, WD_RULES
from remoteclip_jax.errors import ConfigError, check_choice

MAX_LOGIT_SCALE = math.log(100.0)
IMAGE_TOWER = "visual"  # top-level key of the image tower, as open_clip's `model.visual`

# open_clip's main.py (v2.x and the installed v3.3.0, open_clip_train/main.py:335; RemoteCLIP's
# ITRA fork has the same line):
#   exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
# Flax paths keep the torch module names (`ln_1`, `bn1`, `in_proj/bias`, ...), so the substring
# test on "/"-joined Flax paths selects the same parameters (pinned in tests/test_optim.py through
# the converter).
_OPEN_CLIP_SUBSTRINGS = ("bn", "ln", "bias", "logit_scale")
# open_clip's development head (open_clip_train/optim.py, after v3.3.0): `p.ndim <= 1` or in the
# model's `no_weight_decay()` (text positional embedding plus the ViT's; ModifiedResNet has none).
_OPEN_CLIP_HEAD_NAMES = ("positional_embedding", "visual/positional_embedding",
                       "visual/class_embedding")


def _path_name(path: tuple) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(params: Any, rule: str = "open_clip") -> Any:
    """Which parameters get weight decay (True) under open_clip's grouping.

    Args:
        params: the parameter tree (arrays or ShapeDtypeStructs).
        rule: "open_clip" — open_clip's `main.py` lambda verbatim (ndim < 2 or a name containing
            bn/ln/bias/logit_scale; RemoteCLIP trained with this; positional and token embeddings
            are decayed, `class_embedding` is not). "open_clip_head" — open_clip's development
            head (after v3.3.0): ndim ≤ 1 or one of the model's `no_weight_decay()` names (text
            and ViT positional embeddings, ViT class embedding). "all_embeddings" — "open_clip"
            plus every `*embedding*` parameter (token, positional, class, attention-pool
            positional).

    Returns:
        A tree of bools with the structure of `params`.
    """
    def decays(path, p):
        name = _path_name(path)
        if rule == "open_clip_head":
            return not (p.ndim <= 1 or name in _OPEN_CLIP_HEAD_NAMES)
        excluded = p.ndim < 2 or any(s in name for s in _OPEN_CLIP_SUBSTRINGS)
        if rule == "all_embeddings":
            excluded = excluded or "embedding" in name
        return not excluded

    return jax.tree_util.tree_map_with_path(decays, params)


# open_clip's text tower: the parameters its `lock_text_tower` (open_clip/transformer.py) collects
# from a CLIP model (`cls_emb` exists only in CoCa-style text towers).
TEXT_TOWER = ("token_embedding", "positional_embedding", "transformer", "ln_final",
              "text_projection")


def _num_blocks(names, prefix: str) -> int:
    blocks = {n[len(prefix):].split("/", 1)[0] for n in names if n.startswith(prefix)}
    return len(blocks)


def layer_group(name: str, tower: str, num_blocks: int) -> int | None:
    """The index of parameter `name` in open_clip's layer groups of a tower (None: in no group).

    open_clip's groups, first to last (``--lock-image-unlocked-groups N`` /
    ``--lock-text-unlocked-layers N`` unlock the last N):

    * image ViT (``VisionTransformer.lock``): [conv1, class_embedding, positional_embedding,
      ln_pre], each residual block but the last, [the last block, ln_post], [proj];
    * text (``lock_text_tower``): [token_embedding, positional_embedding], each residual block
      but the last, [the last block, ln_final], [text_projection].

    Args:
        name: "/"-joined Flax path ("visual/transformer/resblocks_3/mlp/c_fc/kernel").
        tower: "image" or "text".
        num_blocks: residual blocks of that tower's transformer.
    """
    if tower == "image":
        if not name.startswith(IMAGE_TOWER + "/"):
            return None
        name, blocks = name[len(IMAGE_TOWER) + 1:], "transformer/resblocks_"
        first, last, head = ("conv1", "class_embedding", "positional_embedding", "ln_pre"), "ln_post", "proj"
    else:
        blocks = "transformer/resblocks_"
        first, last, head = ("token_embedding", "positional_embedding"), "ln_final", "text_projection"
    top = name.split("/", 1)[0]
    if top in first:
        return 0
    if name.startswith(blocks):
        return 1 + int(name[len(blocks):].split("/", 1)[0])
    if top == last:
        return num_blocks                      # with the last block
    if top == head:
        return num_blocks + 1
    return None


def trainable_labels(params: Any, lock_image: bool, *, lock_text: bool = False,
                     image_unlocked_groups: int = 0, text_unlocked_layers: int = 0) -> Any:
    """"train" / "frozen" label per parameter.

    Args:
        params: the parameter tree.
        lock_image: freeze the image tower (``visual``) but its last `image_unlocked_groups`
            layer groups (open_clip ``--lock-image``, ``--lock-image-unlocked-groups``).
        lock_text: freeze the text tower but its last `text_unlocked_layers` layer groups
            (open_clip ``--lock-text``, ``--lock-text-unlocked-layers``). `logit_scale` and
            `logit_bias` belong to neither tower and always train.

    Raises:
        ConfigError: unlocked groups asked of a ResNet image tower (open_clip has none).
    """
    names = [_path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    image_blocks = _num_blocks(names, f"{IMAGE_TOWER}/transformer/resblocks_")
    text_blocks = _num_blocks(names, "transformer/resblocks_")
    if lock_image and image_unlocked_groups and not image_blocks:
        raise ConfigError(
            f"config.lock_image_unlocked_groups={image_unlocked_groups}: open_clip has no layer "
            "groups for a ResNet image tower (partial locking is not supported there); set it "
            "to 0 to lock the whole tower")

    def frozen(name: str) -> bool:
        if name.split("/", 1)[0] == IMAGE_TOWER:
            if not lock_image:
                return False
            group = layer_group(name, "image", image_blocks)
            return group is None or group < image_blocks + 2 - image_unlocked_groups
        if name.split("/", 1)[0] in TEXT_TOWER:
            if not lock_text:
                return False
            group = layer_group(name, "text", text_blocks)
            return group is None or group < text_blocks + 2 - text_unlocked_layers
        return False

    def label(path, _):
        return "frozen" if frozen(_path_name(path)) else "train"

    return jax.tree_util.tree_map_with_path(label, params)


def lock_settings(config: Any) -> dict:
    """The keyword arguments of `trainable_labels` / `frozen_mask` a config asks for."""
    return {"lock_image": bool(config.lock_image), "lock_text": bool(config.lock_text),
            "image_unlocked_groups": int(config.lock_image_unlocked_groups),
            "text_unlocked_layers": int(config.lock_text_unlocked_layers)}


def lr_schedule(optim_config: Any, total_steps: int) -> optax.Schedule:
    """open_clip's `cosine_lr` / `const_lr` as an optax schedule of the 0-based update count.

    Warmup: lr·(step + 1)/warmup for step < warmup. Cosine: 0.5·(1 + cos(π·e/es))·lr with
    e = step − warmup, es = total_steps − warmup (e is capped at es, so lr stays 0 past the end).
    """
    base = float(optim_config.lr)
    warmup = int(optim_config.warmup_steps)
    kind = str(optim_config.schedule)
    check_choice("config.optim.schedule", kind, SCHEDULES)
    decay_steps = max(int(total_steps) - warmup, 1)

    def schedule(count):
        step = jnp.asarray(count, jnp.float32)
        warm = base * (step + 1.0) / max(warmup, 1)
        if kind == "const":
            after = jnp.float32(base)
        else:
            e = jnp.minimum(step - warmup, decay_steps)
            # 0.5·(1 + cos(π·e/es)) = sin²(π·(es − e)/(2·es)): the same value, but float32 keeps
            # its relative precision as the lr approaches 0 (no cancellation).
            after = jnp.square(jnp.sin(0.5 * jnp.pi * (decay_steps - e) / decay_steps)) * base
        return jnp.where(step < warmup, warm, after).astype(jnp.float32)

    return schedule


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
    """`torch.nn.utils.clip_grad_norm_`: g·min(1, max_norm / (‖g‖₂ + 1e-6))."""
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        norm = optax.global_norm(updates)
        coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
        return jax.tree.map(lambda g: (g * coef).astype(g.dtype), updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config: Any, total_steps: int) -> tuple[optax.GradientTransformation,
                                                           optax.Schedule]:
    """AdamW as open_clip builds it, from the config.

    Reads `config.optim.{lr, warmup_steps, schedule, weight_decay, b1, b2, eps, grad_clip_norm,
    wd_exclude}` (wd_exclude defaults to "all_embeddings") and the lock keys (`lock_settings`).

    Args:
        config: the training ConfigDict.
        total_steps: number of optimizer steps of the run (the cosine's end).

    Returns:
        (optimizer, schedule); `schedule(step)` is the learning rate of update `step` (0-based).
    """
    oc = config.optim
    schedule = lr_schedule(oc, total_steps)
    rule = str(oc.wd_exclude)
    check_choice("config.optim.wd_exclude", rule, WD_RULES)
    clip_norm = float(oc.grad_clip_norm)
    if clip_norm < 0:
        raise ConfigError(f"config.optim.grad_clip_norm={clip_norm} must be >= 0 (0 = off)")
    steps = []
    if clip_norm > 0:
        steps.append(clip_by_global_norm_torch(clip_norm))
    steps += [
        optax.scale_by_adam(b1=float(oc.b1), b2=float(oc.b2), eps=float(oc.eps)),
        optax.add_decayed_weights(float(oc.weight_decay), mask=lambda p: decay_mask(p, rule)),
        optax.scale_by_learning_rate(schedule),
    ]
    adamw = optax.chain(*steps)
    locks = lock_settings(config)
    tx = optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()},
                               lambda p: trainable_labels(p, **locks))
    return tx, schedule


def clamp_logit_scale(params: Any) -> Any:
    """open_clip's `logit_scale.clamp_(0, ln 100)` after each optimizer step."""
    if "logit_scale" not in params:
        return params
    params = dict(params)
    params["logit_scale"] = jnp.clip(params["logit_scale"], 0.0, MAX_LOGIT_SCALE)
    return params


def frozen_mask(params: Any, lock_image: bool, **locks) -> Any:
    """True for parameters that receive no gradient (see `trainable_labels` for `locks`)."""
    return jax.tree.map(lambda label: label == "frozen",
                        trainable_labels(params, lock_image, **locks))

