"""Products and attention per backend: the program each platform gets, and attention's numerics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from remoteclip_jax.models import ops
from tests.helpers.hlo import products


def _dense_loss(w, x):
    y = ops.dot_general(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (((1,), (0,)), ((), ())))
    return jnp.sum(jnp.square(y.astype(jnp.float32)))


def test_bfloat16_products_accumulate_in_float32_on_cpu_only():
    """CPU: bf16 x bf16 -> f32 (YNNPACK's fast kernels). GPU/TPU: plain bf16 GEMMs, in the
    backward pass too (a float32 result there makes the gradient GEMMs float32 x float32)."""
    w, x = jnp.ones((64, 128)), jnp.ones((8, 64))
    grad = jax.grad(_dense_loss, argnums=(0, 1))
    forward = products(_dense_loss, w, x, platform="cpu")
    assert [(d.lhs, d.rhs, d.out) for d in forward] == [("bf16", "bf16", "f32")]
    for platform in ("cuda", "tpu"):
        found = products(grad, w, x, platform=platform)
        assert len(found) == 3  # forward, and the two gradient products
        assert {(d.lhs, d.rhs, d.out) for d in found} == {("bf16", "bf16", "bf16")}, platform


def test_float32_products_are_the_plain_product_on_every_backend():
    w, x = jnp.ones((64, 128)), jnp.ones((8, 64))
    fn = lambda w, x: ops.dot_general(x, w, (((1,), (0,)), ((), ())))  # noqa: E731
    assert "cond" not in str(jax.make_jaxpr(fn)(w, x))
    for platform in ("cpu", "cuda"):
        assert {(d.lhs, d.rhs, d.out) for d in products(fn, w, x, platform=platform)} == {
            ("f32", "f32", "f32")}
    got = ops.dot_general(x, w, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    np.testing.assert_array_equal(got, x @ w)


def _reference_attention(q, k, v, causal):
    """float64 numpy: softmax(q k^T / sqrt(d)) v per head."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if causal:
        t, s = logits.shape[-2:]
        logits = np.where(np.tril(np.ones((t, s), bool)), logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", weights, v)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length", [6, 7])
def test_xla_attention_matches_float64(causal, length):
    q, k, v = jax.random.normal(jax.random.PRNGKey(0), (3, 2, length, 4, 16))
    got = ops.attention(q, k, v, causal=causal, implementation="xla")
    np.testing.assert_allclose(got, _reference_attention(q, k, v, causal), rtol=1e-5, atol=1e-6)
    auto = ops.attention(q, k, v, causal=causal)  # float32: the same program
    np.testing.assert_array_equal(auto, got)


@pytest.mark.parametrize("causal", [False, True])
def test_odd_lengths_padded_for_cudnn_give_the_unpadded_attention(causal):
    """The cuDNN path pads odd lengths by one masked token; run that padding through XLA's kernel."""
    q, k, v = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 7, 4, 16))
    got = ops._even_length_attention(q, k, v, causal, implementation="xla")
    np.testing.assert_allclose(got, _reference_attention(q, k, v, causal), rtol=1e-5, atol=1e-6)


def test_bfloat16_attention_tracks_float32():
    q, k, v = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 9, 4, 16))
    want = _reference_attention(q, k, v, True)
    half = [a.astype(jnp.bfloat16) for a in (q, k, v)]
    got = ops.attention(*half, causal=True)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=3e-2)


def test_cudnn_attention_is_refused_where_it_cannot_run():
    q = jnp.ones((2, 6, 4, 16), jnp.float32)
    with pytest.raises(ops.AttentionUnavailableError, match="16-bit"):
        ops.attention(q, q, q, implementation="cudnn")
    with pytest.raises(ValueError, match="flash"):
        ops.attention(q, q, q, implementation="flash")
