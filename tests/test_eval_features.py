"""Sharded feature extraction equals a plain apply; the cache resumes after a crash; bad images
name their path."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import remoteclip_jax as rc
from remoteclip_jax.evaluate.features import EvalDataError, FeatureExtractor, load_image


@pytest.fixture(scope="module")
def tiny():
    model = rc.create_model(rc.models.TINY_VIT)
    s = model.image_size
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)), jnp.zeros((1, 77), jnp.int32))
    return model, variables


def _images(tmp_path, n, size=40):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def _pre(size):
    def f(im):
        return np.asarray(im.resize((size, size)), np.float32) / 255.0 - 0.5
    return f


def test_sharded_image_features_equal_plain_apply_and_resume(tiny, tmp_path):
    model, variables = tiny
    paths = _images(tmp_path, 21)
    pre = _pre(model.image_size)
    ex = FeatureExtractor(model, variables, batch_size=8)   # 8 fake devices, 3 batches, last padded
    want = np.asarray(model.apply(variables, np.stack([pre(load_image(p)) for p in paths]),
                                  method="encode_image"))
    np.testing.assert_allclose(ex.images(paths, pre), want, atol=1e-5)

    # Crash in the third batch: the first two batches are on disk and are not recomputed.
    calls = []

    def crashing(im):
        calls.append(1)
        if len(calls) > 16:
            raise RuntimeError("simulated crash")
        return pre(im)

    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="simulated crash"):
        ex.images(paths, crashing, cache_dir=cache, preprocess_id="p")
    counted = []

    def counting(im):
        counted.append(1)
        return pre(im)

    got = ex.images(paths, counting, cache_dir=cache, preprocess_id="p")
    assert len(counted) == 5
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert ex.images(paths, None, cache_dir=cache, preprocess_id="p").shape == want.shape


def test_text_features_equal_plain_apply(tiny):
    model, variables = tiny
    texts = [f"a satellite photo of {n} ships." for n in range(11)]
    ex = FeatureExtractor(model, variables, batch_size=8)
    got = ex.texts(texts, rc.tokenize)
    want = np.asarray(model.apply(variables, rc.tokenize(texts), method="encode_text"))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_unreadable_image_names_the_path(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(EvalDataError, match="broken.jpg: unreadable image"):
        load_image(str(bad))
