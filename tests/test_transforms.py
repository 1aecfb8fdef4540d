"""Image preprocessing equals open_clip's image_transform / torchvision on the same images."""
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from remoteclip_jax import transforms as T
from remoteclip_jax.transforms import (
    OPENAI_MEAN,
    OPENAI_STD,
    center_crop,
    image_transform,
    normalize,
    random_resized_crop_params,
    resize_shortest_side,
    resized_crop,
)

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
TF = pytest.importorskip("torchvision.transforms.functional")
from torchvision.transforms import InterpolationMode, RandomResizedCrop  # noqa: E402

ATOL = 1e-6


def reference_eval(img, image_size=224):
    return open_clip.image_transform(image_size, is_train=False)(img).numpy().transpose(1, 2, 0)


def random_image(height, width, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    # Smooth gradients plus noise, so resampling differences would show.
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width, 1), yy * 255 / max(height, 1), (xx + yy) % 256], -1)
    noise = rng.integers(0, 64, (height, width, 3))
    rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    if mode == "RGBA":
        alpha = rng.integers(0, 256, (height, width), dtype=np.uint8)
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    return img if mode == "RGB" else img.convert(mode)


def assert_close(ours, ref):
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL)


# ------------------------------------------------------------------- eval path
def _real_images(root):
    aid = sorted((root / "aid_150px").glob("*/*.jpg"))
    paths = aid[:: max(1, len(aid) // 24)][:24]
    paths += sorted((root / "captions").glob("*/images/*.tif"))
    paths += sorted((root / "detection" / "dota" / "images").glob("*.png"))
    return paths


def test_eval_matches_open_clip_on_real_images(shared_data):
    paths = _real_images(shared_data)
    assert len(paths) >= 40
    transform = image_transform(224)
    for path in paths:
        with Image.open(path) as img:
            assert_close(transform(img), reference_eval(img))


@pytest.mark.parametrize(
    "height,width",
    [(1, 1), (1, 300), (300, 1), (7, 1000), (223, 225), (224, 224), (224, 225), (225, 224), (97, 301), (301, 97),
     (150, 150), (500, 333), (1023, 1024)],
)
def test_eval_matches_open_clip_on_odd_sizes(height, width):
    img = random_image(height, width, seed=height * 7 + width)
    assert_close(image_transform(224)(img), reference_eval(img))


@pytest.mark.parametrize("image_size", [32, 64, 97, 336])
def test_eval_matches_open_clip_for_other_image_sizes(image_size):
    for height, width in [(150, 150), (256, 200), (90, 333)]:
        img = random_image(height, width, seed=image_size)
        assert_close(image_transform(image_size)(img), reference_eval(img, image_size))


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1", "I;16", "I", "F"])
def test_eval_matches_open_clip_for_non_rgb_modes(mode):
    # open_clip resizes in the original mode and converts to RGB afterwards (RGBA
    # is resized premultiplied, palette images with nearest neighbour).
    img = random_image(97, 301, mode=mode, seed=3)
    assert img.mode == mode
    assert_close(image_transform(224)(img), reference_eval(img))


def test_eval_fast_path_skips_resampling_for_target_size_images(monkeypatch):
    img = random_image(224, 224, seed=5)
    expected = reference_eval(img)

    def no_resize(*args, **kwargs):
        raise AssertionError("resize called on an image already at the target size")

    monkeypatch.setattr(Image.Image, "resize", no_resize)
    assert_close(image_transform(224)(img), expected)


def test_resize_shortest_side_uses_torchvision_output_size():
    for width, height in [(150, 150), (97, 301), (301, 97), (5, 300), (300, 5), (225, 224)]:
        img = random_image(height, width)
        ours = resize_shortest_side(img, 224)
        ref = TF.resize(img, 224, interpolation=InterpolationMode.BICUBIC)
        assert ours.size == ref.size
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(1, 80), st.integers(1, 80))
def test_center_crop_matches_torchvision_including_zero_padding(height, width, crop_h, crop_w):
    img = random_image(height, width, seed=height + width)
    ours = np.asarray(center_crop(img, (crop_h, crop_w)))
    ref = np.asarray(TF.center_crop(img, [crop_h, crop_w]))
    np.testing.assert_array_equal(ours, ref)


# ------------------------------------------------------------------ train path
@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_resized_crop_matches_torchvision_for_fixed_boxes(data):
    height, width = data.draw(st.integers(8, 160)), data.draw(st.integers(8, 160))
    top, left = data.draw(st.integers(0, height - 1)), data.draw(st.integers(0, width - 1))
    h, w = data.draw(st.integers(1, height - top)), data.draw(st.integers(1, width - left))
    size = data.draw(st.sampled_from([16, 32, 64]))
    mode = data.draw(st.sampled_from(["RGB", "RGBA", "L"]))
    img = random_image(height, width, mode=mode, seed=height * width)
    ours = np.asarray(resized_crop(img, top, left, h, w, size))
    ref = np.asarray(TF.resized_crop(img, top, left, h, w, [size, size], interpolation=InterpolationMode.BICUBIC))
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("height,width,mode", [(150, 150, "RGB"), (256, 200, "RGBA"), (97, 301, "L"), (500, 500, "P")])
def test_train_transform_matches_open_clip_given_the_same_crop(monkeypatch, height, width, mode):
    img = random_image(height, width, mode=mode, seed=height)
    transform = image_transform(224, train=True)
    reference = open_clip.image_transform(224, is_train=True)
    for seed in range(4):
        box = random_resized_crop_params(height, width, np.random.default_rng(seed))
        monkeypatch.setattr(RandomResizedCrop, "get_params", staticmethod(lambda *a, box=box: box))
        ours = transform(img, np.random.default_rng(seed))
        assert_close(ours, reference(img).numpy().transpose(1, 2, 0))


def test_open_clip_train_transform_is_the_one_mirrored():
    # If open_clip changes its default train pipeline, the mirror above is stale.
    steps = open_clip.image_transform(224, is_train=True).transforms
    crop = steps[0]
    assert isinstance(crop, RandomResizedCrop)
    assert tuple(crop.scale) == T.DEFAULT_SCALE and tuple(crop.ratio) == pytest.approx(T.DEFAULT_RATIO)
    assert crop.interpolation == InterpolationMode.BICUBIC and crop.size == (224, 224)
    assert [type(s).__name__ for s in steps[1:]] == ["MaybeConvertMode", "MaybeToTensor", "Normalize"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 2000), st.integers(1, 2000), st.integers(0, 2**32 - 1),
       st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.floats(0.3, 1.0), st.floats(1.0, 3.0))
def test_crop_params_obey_scale_and_ratio_bounds(height, width, seed, s_lo, s_span, r_lo, r_hi):
    scale = (s_lo, s_lo + s_span * (1.0 - s_lo))
    ratio = (r_lo, r_hi)
    top, left, h, w = random_resized_crop_params(height, width, np.random.default_rng(seed), scale, ratio)
    assert 0 <= top and 0 <= left and 1 <= h and 1 <= w and top + h <= height and left + w <= width
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback = (width, int(round(width / ratio[0])))
    elif in_ratio > ratio[1]:
        fallback = (int(round(height * ratio[1])), height)
    else:
        fallback = (width, height)
    if (w, h) == fallback and (top, left) == ((height - h) // 2, (width - w) // 2):
        return  # torchvision's fallback: centred, aspect clamped to the ratio range
    # A sampled box: area and aspect in range, up to rounding to whole pixels.
    area = height * width
    assert (w - 0.5) * (h - 0.5) <= scale[1] * area + 1e-9
    assert (w + 0.5) * (h + 0.5) >= scale[0] * area - 1e-9
    assert (w - 0.5) / (h + 0.5) <= ratio[1] + 1e-9
    assert (w + 0.5) / (h - 0.5) >= ratio[0] - 1e-9


@pytest.mark.parametrize("height,width", [(1000, 10), (10, 1000), (3, 3), (1, 1), (150, 150)])
def test_crop_fallback_matches_torchvision(height, width):
    # scale (1, 1) with these shapes makes every try fail, or succeed only with
    # the whole image, so the result is deterministic and must equal torchvision's.
    img = Image.new("RGB", (width, height))
    ours = random_resized_crop_params(height, width, np.random.default_rng(0), (1.0, 1.0), T.DEFAULT_RATIO)
    torch.manual_seed(0)
    assert ours == tuple(RandomResizedCrop.get_params(img, [1.0, 1.0], list(T.DEFAULT_RATIO)))


@pytest.mark.parametrize(
    "height,width,scale,ratio",
    [(150, 150, (0.9, 1.0), (3 / 4, 4 / 3)), (300, 500, (0.9, 1.0), (3 / 4, 4 / 3)),
     (1000, 1000, (0.05, 0.2), (0.25, 4.0))],  # wide ranges: tells log-uniform from uniform
)
def test_crop_distribution_matches_torchvision(height, width, scale, ratio):
    from scipy.stats import ks_2samp

    n = 3000
    rng = np.random.default_rng(1)
    ours = np.array([random_resized_crop_params(height, width, rng, scale, ratio) for _ in range(n)], np.float64)
    torch.manual_seed(1)
    img = Image.new("RGB", (width, height))
    ref = np.array([RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)], np.float64)
    columns = {"top": 0, "left": 1, "height": 2, "width": 3}
    for name, column in columns.items():
        p = ks_2samp(ours[:, column], ref[:, column]).pvalue
        assert p > 1e-4, f"{name}: KS p={p:.2g}"
    p = ks_2samp(np.log(ours[:, 3] / ours[:, 2]), np.log(ref[:, 3] / ref[:, 2])).pvalue
    assert p > 1e-4, f"log aspect: KS p={p:.2g}"
    # And a clearly different sampler is told apart (the test has power).
    wider = (scale[0] / 2, scale[1])
    other = np.array([random_resized_crop_params(height, width, rng, wider, ratio) for _ in range(n)], np.float64)
    assert ks_2samp(other[:, 2] * other[:, 3], ref[:, 2] * ref[:, 3]).pvalue < 1e-6


def test_train_transform_is_deterministic_given_rng_and_varies_across_draws():
    img = random_image(300, 400)
    transform = image_transform(64, train=True)
    a = transform(img, np.random.default_rng(7))
    b = transform(img, np.random.default_rng(7))
    c = transform(img, np.random.default_rng(8))
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ------------------------------------------------------------------ normalise
def test_normalize_matches_float64_reference():
    pixels = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3) % 256
    pixels = pixels.astype(np.uint8)
    expected = (pixels / 255.0 - np.array(OPENAI_MEAN)) / np.array(OPENAI_STD)
    np.testing.assert_allclose(normalize(pixels), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(normalize(pixels / 255.0), expected, rtol=0, atol=1e-6)
    custom = normalize(pixels, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    np.testing.assert_allclose(custom, pixels / 127.5 - 1.0, rtol=0, atol=1e-6)


def test_normalize_is_bit_identical_to_torchvision_to_tensor_and_normalize():
    # Every uint8 value in every channel; the table must hold torch's float32 results.
    from torchvision.transforms import Normalize

    pixels = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2).repeat(2, axis=1)
    ref = Normalize(OPENAI_MEAN, OPENAI_STD)(TF.to_tensor(Image.fromarray(pixels))).numpy().transpose(1, 2, 0)
    np.testing.assert_array_equal(normalize(pixels), ref)


def test_custom_mean_std_match_open_clip():
    img = random_image(120, 90)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ours = image_transform(64, mean=mean, std=std)(img)
    ref = open_clip.image_transform(64, is_train=False, mean=mean, std=std)(img).numpy().transpose(1, 2, 0)
    assert_close(ours, ref)


# ------------------------------------------------------------ usability bits
def test_transforms_pickle_for_grain_workers():
    img = random_image(100, 130)
    evaluate = image_transform(32)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(evaluate))(img), evaluate(img))
    train = image_transform(32, train=True)
    clone = pickle.loads(pickle.dumps(train))
    np.testing.assert_array_equal(clone(img, np.random.default_rng(0)), train(img, np.random.default_rng(0)))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="EvalTransform: expected a PIL.Image.Image, got ndarray"):
        image_transform(32)(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        image_transform(32, train=True)(random_image(40, 40), 0)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        image_transform(0)
    with pytest.raises(ValueError, match="both sides must be >= 1"):
        image_transform(32)(Image.new("RGB", (0, 5)))
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\)"):
        normalize(np.zeros((4, 4), np.uint8))
    assert math.isclose(T.OPENAI_STD[0], 0.26862954)
