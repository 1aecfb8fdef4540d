"""The sharded contrastive losses equal a float64 numpy reference (value and gradients)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from remoteclip_jax.train import loss as loss_lib
from remoteclip_jax.train import sharding
from remoteclip_jax.errors import ConfigError

N_PER_DEVICE = 4
EMBED = 16


def _mesh(data, fsdp):
    return sharding.make_mesh(ml_collections.ConfigDict({"data": data, "fsdp": fsdp}))


def _features(seed, n):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, EMBED))
    txt = img * 0.3 + rng.normal(size=(n, EMBED))  # correlated pairs: non-trivial logits
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return img, txt


def _softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _np_clip_loss_and_grads(img, txt, s):
    """float64 CLIP loss and its analytic gradients w.r.t. (img, txt, s)."""
    n = img.shape[0]
    y = np.eye(n)
    sim = img @ txt.T
    a = _softmax_rows(s * sim)      # image -> text
    b = _softmax_rows(s * sim.T)    # text -> image
    loss = -(np.log(np.diag(a)).mean() + np.log(np.diag(b)).mean()) / 2
    ga, gb = (a - y) / n, (b - y) / n
    d_img = s * (ga @ txt + gb.T @ txt) / 2
    d_txt = s * (ga.T @ img + gb @ img) / 2
    d_s = (np.sum(ga * sim) + np.sum(gb * sim.T)) / 2
    return loss, d_img, d_txt, d_s


def _np_sigmoid_loss_and_grads(img, txt, s, bias):
    n = img.shape[0]
    y = 2 * np.eye(n) - 1
    sim = img @ txt.T
    z = s * sim + bias
    loss = np.sum(np.logaddexp(0, -y * z)) / n
    g = -y / (1 + np.exp(y * z)) / n  # d loss / d z
    return loss, s * g @ txt, s * g.T @ img, np.sum(g * sim), np.sum(g)


def _rel(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def _sharded_value_and_grads(mesh, loss_type, img, txt, s, bias):
    fn = loss_lib.make_loss_fn(mesh, loss_type)
    spec = NamedSharding(mesh, P(sharding.BATCH_AXES))
    args = (jax.device_put(jnp.asarray(img, jnp.float32), spec),
            jax.device_put(jnp.asarray(txt, jnp.float32), spec),
            jnp.float32(s), jnp.float32(bias))
    return jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2, 3)))(*args)


@pytest.mark.parametrize("data,fsdp", [(8, 1), (4, 2)])
def test_sharded_softmax_loss_and_grads_match_float64(data, fsdp):
    mesh = _mesh(data, fsdp)
    img, txt = _features(0, 8 * N_PER_DEVICE)
    s = 1 / 0.07
    value, (g_img, g_txt, g_s, _) = _sharded_value_and_grads(mesh, "softmax", img, txt, s, 0.0)
    ref, r_img, r_txt, r_s = _np_clip_loss_and_grads(img, txt, s)
    assert abs(float(value) - ref) / ref < 1e-6
    assert _rel(g_img, r_img) < 1e-6
    assert _rel(g_txt, r_txt) < 1e-6
    assert abs(float(g_s) - r_s) / abs(r_s) < 1e-6


def test_sharded_sigmoid_loss_and_grads_match_float64():
    mesh = _mesh(8, 1)
    img, txt = _features(1, 8 * N_PER_DEVICE)
    s, bias = 10.0, -10.0 + 3.0  # move off the init so positives and negatives both matter
    value, (g_img, g_txt, g_s, g_b) = _sharded_value_and_grads(mesh, "sigmoid", img, txt, s, bias)
    ref, r_img, r_txt, r_s, r_b = _np_sigmoid_loss_and_grads(img, txt, s, bias)
    assert abs(float(value) - ref) / ref < 1e-6
    assert _rel(g_img, r_img) < 1e-6
    assert _rel(g_txt, r_txt) < 1e-6
    assert abs(float(g_s) - r_s) / abs(r_s) < 1e-6
    assert abs(float(g_b) - r_b) / abs(r_b) < 1e-6


def test_single_device_losses_match_float64():
    img, txt = _features(2, 12)
    value = loss_lib.clip_loss(jnp.asarray(img, jnp.float32), jnp.asarray(txt, jnp.float32),
                               jnp.float32(20.0))
    assert abs(float(value) - _np_clip_loss_and_grads(img, txt, 20.0)[0]) < 1e-5
    value = loss_lib.sigmoid_loss(jnp.asarray(img, jnp.float32), jnp.asarray(txt, jnp.float32),
                                  jnp.float32(10.0), jnp.float32(-10.0))
    assert abs(float(value) - _np_sigmoid_loss_and_grads(img, txt, 10.0, -10.0)[0]) < 1e-4


def test_normalize_matches_torch_semantics():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(loss_lib.normalize(jnp.asarray(x)), [[0.6, 0.8], [0.0, 0.0]])


def test_unknown_loss_type_is_refused():
    with pytest.raises(ValueError, match="config.loss.type"):
        loss_lib.make_loss_fn(_mesh(8, 1), "hinge")


def test_mesh_that_does_not_fit_the_devices_is_refused():
    with pytest.raises(ConfigError, match="config.mesh.data"):
        _mesh(3, 2)
    with pytest.raises(ConfigError, match="config.mesh.fsdp"):
        _mesh(-1, 3)


def test_losses_equal_open_clip_loss_modules():
    torch = pytest.importorskip("torch")
    open_clip_loss = pytest.importorskip("open_clip.loss")
    mesh = _mesh(8, 1)
    img, txt = _features(3, 8 * N_PER_DEVICE)
    ti, tt = torch.from_numpy(img), torch.from_numpy(txt)
    theirs = open_clip_loss.ClipLoss()(ti, tt, torch.tensor(20.0, dtype=torch.float64)).item()
    ours, _ = _sharded_value_and_grads(mesh, "softmax", img, txt, 20.0, 0.0)
    assert abs(float(ours) - theirs) / theirs < 1e-6
    theirs = open_clip_loss.SigLipLoss()(ti, tt, torch.tensor(10.0, dtype=torch.float64),
                                         torch.tensor(-7.0, dtype=torch.float64)).item()
    ours, _ = _sharded_value_and_grads(mesh, "sigmoid", img, txt, 10.0, -7.0)
    assert abs(float(ours) - theirs) / theirs < 1e-6
