"""Training fidelity: our sharded train step follows open_clip's PyTorch training step by step.

Same OpenCLIP init (built in open_clip, converted with `rc.load_openclip`), same batches (no
augmentation), AdamW with open_clip's two parameter groups, `cosine_lr` warmup + cosine,
`clip_grad_norm_`, and the logit-scale clamp; float32 on CPU. The reference loop below is
open_clip's `train_one_epoch` reduced to its numerics (no AMP, one process, accum_freq 1).
"""
import math

import jax
import numpy as np
import pytest

import remoteclip_jax as rc
from remoteclip_jax.config import get_base_config
from remoteclip_jax.train import sharding
from remoteclip_jax.train import state as state_lib
from remoteclip_jax.train import step as step_lib

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
scheduler = pytest.importorskip("open_clip_train.scheduler")

CFG = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 1024, "width": 64, "heads": 2, "layers": 2},
}
STEPS, BATCH, POOL = 20, 16, 48
LR, WARMUP, WD, CLIP = 1e-3, 5, 0.05, 1.0


def _data():
    """A fixed pool of pairs; step s takes a fixed window of it (the "epoch" order)."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(POOL, 32, 32, 3)).astype(np.float32)
    texts = rng.integers(1, 1023, size=(POOL, 16)).astype(np.int32)
    for i, end in enumerate(rng.integers(4, 16, size=POOL)):
        texts[i, end] = 1023
        texts[i, end + 1:] = 0
    batches = []
    for s in range(STEPS):
        idx = (np.arange(BATCH) + s * BATCH) % POOL
        batches.append({"images": images[idx], "texts": texts[idx]})
    return batches


def _open_clip_losses(model, batches):
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731,E501
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
         {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": WD}],
        lr=LR, betas=(0.9, 0.98), eps=1e-6)
    schedule = scheduler.cosine_lr(optimizer, LR, WARMUP, STEPS)
    loss_fn = open_clip.loss.ClipLoss()
    losses = []
    model.train()
    for step, batch in enumerate(batches):
        schedule(step)
        images = torch.from_numpy(batch["images"]).permute(0, 3, 1, 2)  # NHWC -> NCHW
        texts = torch.from_numpy(batch["texts"]).long()
        optimizer.zero_grad()
        img, txt, scale = model(images, texts)
        loss = loss_fn(img, txt, scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP, norm_type=2.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
    return np.array(losses)


def test_per_step_losses_follow_open_clip_training():
    torch.manual_seed(0)
    cfg = rc.model_config(CFG)
    torch_model = open_clip.model.CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"],
                                       quick_gelu=cfg["quick_gelu"])
    variables = rc.load_openclip(torch_model.state_dict(), CFG)
    batches = _data()

    config = get_base_config()
    config.optim.lr, config.optim.warmup_steps, config.optim.weight_decay = LR, WARMUP, WD
    config.optim.grad_clip_norm = CLIP
    config.optim.wd_exclude = "open_clip"  # the parameter groups of open_clip's main.py, as above
    config.train.steps = STEPS
    mesh = sharding.make_mesh(config.mesh)
    model = rc.create_model(CFG)
    state, _ = state_lib.create_train_state(model, config, mesh, jax.random.PRNGKey(0),
                                            init_variables=variables)
    train_step = step_lib.make_train_step(model, config, mesh)
    ours = []
    for batch in batches:
        state, metrics = train_step(state, sharding.shard_batch(batch, mesh),
                                    jax.random.PRNGKey(0))
        ours.append(float(metrics["loss"]))
    ours = np.array(ours)

    theirs = _open_clip_losses(torch_model, batches)
    rel = np.abs(ours - theirs) / np.abs(theirs)
    assert rel.max() < 1e-3, f"per-step relative loss differences: {np.round(rel, 6)}"
    # The run must actually train (otherwise equal losses would prove little).
    assert theirs[-1] < theirs[0] - 0.3
    # And the final weights agree too.
    final = rc.to_openclip(state_lib.model_variables(state))
    for name, p in torch_model.named_parameters():
        np.testing.assert_allclose(final[name], p.detach().numpy(), rtol=0, atol=1e-4,
                                   err_msg=name)
