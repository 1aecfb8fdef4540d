"""Optimizer pieces against open_clip's training code and torch.optim.AdamW."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.config import get_base_config
from remoteclip_jax.train import optim
from remoteclip_jax.errors import ConfigError

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
scheduler = pytest.importorskip("open_clip_train.scheduler")


def open_clip_exclude(name, p):
    """open_clip_train/main.py (v3.3.0, line 335; same in v2.x and RemoteCLIP's ITRA), verbatim."""
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def _torch_model(cfg):
    torch.manual_seed(0)
    cfg = rc.model_config(cfg)
    return open_clip.model.CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"],
                                quick_gelu=cfg["quick_gelu"])


def _mask_by_torch_name(cfg, rule):
    """Our decay mask on the Flax tree, renamed to torch keys through the converter."""
    model = rc.create_model(cfg)
    size = model.image_size
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)),
                              jnp.zeros((1, 8), jnp.int32))
    mask = optim.decay_mask(abstract["params"], rule)
    # Uniform arrays survive the converter's transposes, so each torch key gets its leaf's flag.
    flags = jax.tree.map(lambda m, a: np.full(a.shape, float(m), np.float32), mask,
                         abstract["params"])
    state_dict = rc.to_openclip({"params": flags})
    return {k: bool(v.reshape(-1)[0]) for k, v in state_dict.items()}


@pytest.mark.parametrize("cfg", [rc.models.TINY_VIT, rc.models.TINY_RESNET],
                         ids=["vit", "resnet"])
def test_decay_mask_matches_open_clip_param_groups(cfg):
    ours = _mask_by_torch_name(cfg, "open_clip")
    named = dict(_torch_model(cfg).named_parameters())
    assert set(ours) == set(named)
    theirs = {n: not open_clip_exclude(n, p) for n, p in named.items()}
    assert ours == theirs
    # Not vacuous: both groups are populated, and the classic rule decays positional embeddings.
    assert 0 < sum(ours.values()) < len(ours)
    assert ours["positional_embedding"] and not ours["logit_scale"]


@pytest.mark.parametrize("cfg", [rc.models.TINY_VIT, rc.models.TINY_RESNET],
                         ids=["vit", "resnet"])
def test_decay_mask_head_matches_open_clip_no_weight_decay(cfg):
    ours = _mask_by_torch_name(cfg, "open_clip_head")
    model = _torch_model(cfg)
    no_wd = model.no_weight_decay()
    theirs = {n: not (p.ndim <= 1 or n in no_wd) for n, p in model.named_parameters()}
    assert ours == theirs


def test_decay_mask_all_embeddings_excludes_every_embedding():
    ours = _mask_by_torch_name(rc.models.TINY_VIT, "all_embeddings")
    embeddings = [k for k in ours if "embedding" in k]
    assert set(embeddings) == {"token_embedding.weight", "positional_embedding",
                               "visual.positional_embedding", "visual.class_embedding"}
    assert not any(ours[k] for k in embeddings)
    assert ours["visual.proj"] and ours["transformer.resblocks.0.attn.in_proj_weight"]


@pytest.mark.parametrize("kind,fn", [("cosine", "cosine_lr"), ("const", "const_lr")])
def test_schedule_equals_open_clip_scheduler(kind, fn):
    config = get_base_config()
    config.optim.lr, config.optim.warmup_steps, config.optim.schedule = 5e-4, 7, kind
    total = 30
    ours = optim.lr_schedule(config.optim, total)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    theirs = getattr(scheduler, fn)(opt, 5e-4, 7, total)
    for step in range(total):
        np.testing.assert_allclose(float(ours(step)), theirs(step), rtol=1e-6, atol=0)


def _our_adamw_steps(config, params, grads):
    """`params` after one update of our optimizer per gradient in `grads` (float32)."""
    tx, _ = optim.make_optimizer(config, total_steps=10)
    ours = jax.tree.map(jnp.float32, params)
    state = tx.init(ours)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.float32, g), state, ours)
        ours = jax.tree.map(lambda p, u: p + u, ours, updates)
    return ours


def _torch_adamw_steps(params, grads_per_step, lr, wd, clip, **adamw):
    """torch AdamW with open_clip's two groups, torch.nn.utils.clip_grad_norm_; `adamw` = the
    betas/eps passed (open_clip's ViT values unless given; ITRA passes eps only)."""
    tp = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in params.items()}
    decay = [tp[k] for k in tp if not open_clip_exclude(k, tp[k])]
    rest = [tp[k] for k in tp if open_clip_exclude(k, tp[k])]
    opt = torch.optim.AdamW([{"params": rest, "weight_decay": 0.0},
                             {"params": decay, "weight_decay": wd}],
                            lr=lr, **(adamw or {"betas": (0.9, 0.98), "eps": 1e-6}))
    for grads in grads_per_step:
        for k, g in grads.items():
            tp[k].grad = torch.tensor(g, dtype=torch.float64)
        if clip:
            torch.nn.utils.clip_grad_norm_(list(tp.values()), clip, norm_type=2.0)
        opt.step()
    return {k: v.detach().numpy() for k, v in tp.items()}


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_adamw_updates_equal_torch_adamw(clip):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)), "bias": rng.normal(size=(3,)),
              "logit_scale": np.array(2.0)}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(4)]
    config = get_base_config()
    config.optim.lr, config.optim.warmup_steps, config.optim.schedule = 1e-2, 0, "const"
    config.optim.weight_decay, config.optim.grad_clip_norm = 0.1, clip
    ours = _our_adamw_steps(config, params, grads)
    theirs = _torch_adamw_steps(params, grads, 1e-2, 0.1, clip)
    for k in params:
        np.testing.assert_allclose(np.asarray(ours[k]), theirs[k], rtol=1e-5, atol=1e-6)


def test_lock_image_gives_the_image_tower_no_update():
    config = get_base_config()
    config.lock_image = True
    config.optim.warmup_steps = 0
    tx, _ = optim.make_optimizer(config, total_steps=10)
    params = {"visual": {"proj": jnp.ones((2, 2))}, "text_projection": jnp.ones((2, 2)),
              "logit_scale": jnp.float32(1.0)}
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    assert float(jnp.abs(updates["visual"]["proj"]).max()) == 0.0
    assert float(jnp.abs(updates["text_projection"]).min()) > 0.0


def _frozen_by_torch_name(cfg, **locks):
    """Our frozen labels on the Flax tree, renamed to torch keys through the converter."""
    model = rc.create_model(cfg)
    size = model.image_size
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)),
                              jnp.zeros((1, 8), jnp.int32))
    labels = optim.trainable_labels(abstract["params"], **locks)
    flags = jax.tree.map(lambda label, a: np.full(a.shape, float(label == "frozen"), np.float32),
                         labels, abstract["params"])
    return {k: bool(v.reshape(-1)[0]) for k, v in rc.to_openclip({"params": flags}).items()}


@pytest.mark.parametrize("cfg,image_groups,text_layers", [
    (rc.models.TINY_VIT, None, 0), (rc.models.TINY_VIT, 0, None), (rc.models.TINY_VIT, 1, 1),
    (rc.models.TINY_VIT, 2, 3), (rc.models.TINY_VIT, 3, 2), (rc.models.TINY_VIT, 4, 4),
    (rc.models.TINY_VIT, 9, 9), (rc.models.TINY_RESNET, 0, 2), (rc.models.TINY_RESNET, None, 1)],
    ids=lambda v: "rn" if v is rc.models.TINY_RESNET else "vit" if isinstance(v, dict) else str(v))
def test_locks_freeze_what_open_clips_lock_towers_freeze(cfg, image_groups, text_layers):
    """open_clip's own lock_image_tower / lock_text_tower (unlocked groups / layers from the end)
    decide requires_grad; ours must freeze exactly the parameters it leaves without a gradient."""
    model = _torch_model(cfg)
    if image_groups is not None:
        model.lock_image_tower(unlocked_groups=image_groups)
    if text_layers is not None:
        model.lock_text_tower(unlocked_layers=text_layers)
    theirs = {n: not p.requires_grad for n, p in model.named_parameters()}
    ours = _frozen_by_torch_name(
        cfg, lock_image=image_groups is not None, image_unlocked_groups=image_groups or 0,
        lock_text=text_layers is not None, text_unlocked_layers=text_layers or 0)
    assert ours == theirs
    # Not vacuous: something is frozen unless every group (4 in each tiny tower) is unlocked.
    partly = [n < 4 for n in (image_groups, text_layers) if n is not None]
    assert not ours["logit_scale"] and any(ours.values()) == any(partly)


def test_resnet_image_tower_has_no_layer_groups():
    with pytest.raises(ConfigError, match="lock_image_unlocked_groups=1"):
        _frozen_by_torch_name(rc.models.TINY_RESNET, lock_image=True, image_unlocked_groups=1)


def test_clamp_logit_scale_to_open_clip_range():
    clamped = optim.clamp_logit_scale({"logit_scale": jnp.float32(5.0), "x": jnp.ones(2)})
    assert float(clamped["logit_scale"]) == pytest.approx(math.log(100.0))
    assert float(optim.clamp_logit_scale({"logit_scale": jnp.float32(-1.0)})["logit_scale"]) == 0.0


def test_unknown_optimizer_settings_are_refused():
    config = get_base_config()
    config.optim.schedule = "linear"
    with pytest.raises(ConfigError, match="config.optim.schedule"):
        optim.make_optimizer(config, 10)
    config = get_base_config()
    with config.unlocked():
        config.optim.wd_exclude = "nothing"
    with pytest.raises(ConfigError, match="config.optim.wd_exclude"):
        optim.make_optimizer(config, 10)


# ITRA's get_parameter_groups (itra/training/optimization.py, branch test, line 105) with the skip
# list get_optimizer passes (line 295), re-derived. The skip list is matched by whole name, and
# ITRA's model (itra/model/models.py, ItraModel) names the towers `image_backbone.*` and
# `text_backbone.*` and moves `logit_scale` to the top, so of the list only "logit_scale" matches.
_ITRA_SKIP = {"positional_embedding", "class_embedding", "logit_scale", "bn", "ln", "bias"}


def itra_name(open_clip_name):
    if open_clip_name == "logit_scale":
        return open_clip_name
    if open_clip_name.startswith("visual."):
        return "image_backbone." + open_clip_name[len("visual."):]
    return "text_backbone." + open_clip_name


def itra_exclude(name, p):
    return len(p.shape) == 1 or name.endswith(".bias") or name in _ITRA_SKIP


@pytest.mark.parametrize("cfg", [rc.models.TINY_VIT, rc.models.TINY_RESNET],
                         ids=["vit", "resnet"])
def test_open_clip_rule_is_the_parameter_set_itra_exempts_from_weight_decay(cfg):
    ours = _mask_by_torch_name(cfg, "open_clip")
    named = dict(_torch_model(cfg).named_parameters())
    assert ours == {n: not itra_exclude(itra_name(n), p) for n, p in named.items()}
    # ITRA decays the positional embeddings; open_clip's head rule would not.
    assert ours["positional_embedding"] and not ours["logit_scale"]


def test_remoteclip_recipe_adamw_equals_itras_torch_adamw():
    """ITRA's create_optimizer passes lr, weight_decay and --opt_eps (1e-8) and no betas."""
    from remoteclip_jax import recipes

    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(4, 3)), "bias": rng.normal(size=(3,)),
              "logit_scale": np.array(2.0)}
    grads = [{k: rng.normal(size=v.shape) * 1e-3 for k, v in params.items()} for _ in range(5)]
    config = get_base_config()
    recipes.itra_adamw(config)
    config.optim.warmup_steps, config.optim.schedule = 0, "const"
    ours = _our_adamw_steps(config, params, grads)
    theirs = _torch_adamw_steps(params, grads, 5e-4, 0.05, 0.0, eps=1e-8)
    for k in params:
        np.testing.assert_allclose(np.asarray(ours[k]), theirs[k], rtol=1e-5, atol=1e-7)
    # Not vacuous: open_clip's ViT betas/eps move the parameters measurably differently.
    vit = _torch_adamw_steps(params, grads, 5e-4, 0.05, 0.0)
    assert not np.allclose(vit["w"], theirs["w"], rtol=1e-5, atol=1e-7)
