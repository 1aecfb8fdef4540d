"""Encoder: sharded, padded batches give the features of one plain model.apply; unreadable images
are skipped and listed; in-memory chips equal the same pixels read from files."""
import json

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.data.images import ImageReadError
from remoteclip_jax.inference.encoder import Encoder
from tests.helpers.inference import (aid_subset, corrupt_images, random_images,
                                     reference_image_features, reference_text_features, tiny_model)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def test_image_features_of_real_aid_images_equal_plain_apply(tiny, shared_data, tmp_path):
    model, variables = tiny
    paths = aid_subset(shared_data, tmp_path, per_class=4)  # 12 images: batch 8 -> 2 padded batches
    encoder = Encoder(model, variables, batch_size=5)  # rounded up to the 8 test devices
    assert encoder.batch_size == 8
    encoded = encoder.images(paths)
    assert encoded.features.dtype == np.float32 and encoded.paths == paths and not encoded.skipped
    np.testing.assert_allclose(np.linalg.norm(encoded.features, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(encoded.features, reference_image_features(model, variables, paths),
                               atol=2e-6)


def test_unreadable_images_are_listed_and_skipped_not_fatal(tiny, tmp_path):
    model, variables = tiny
    good = random_images(tmp_path / "good", 5)
    bad = corrupt_images(tmp_path / "bad")
    missing = str(tmp_path / "gone.png")
    paths = [good[0], bad[0], good[1], missing, good[2], bad[1], good[3], good[4]]
    encoded = Encoder(model, variables, batch_size=8).images(paths)
    assert encoded.paths == good
    assert encoded.indices.tolist() == [0, 2, 4, 6, 7]
    assert [p for p, _ in encoded.skipped] == [bad[0], missing, bad[1]]
    assert all(p in reason for p, reason in encoded.skipped)
    np.testing.assert_allclose(encoded.features, reference_image_features(model, variables, good),
                               atol=2e-6)


def test_arrays_equal_the_same_pixels_read_from_png_files(tiny, tmp_path):
    model, variables = tiny
    paths = random_images(tmp_path, 3, size=45)
    chips = np.stack([np.asarray(Image.open(p)) for p in paths])  # uint8 (3, 45, 52, 3)
    encoder = Encoder(model, variables)
    from_files = encoder.images(paths).features
    np.testing.assert_allclose(encoder.arrays(chips), from_files, atol=1e-6)
    pil_chips = [Image.open(p) for p in paths]
    np.testing.assert_allclose(encoder.arrays(pil_chips), from_files, atol=1e-6)
    with pytest.raises(ImageReadError, match="array 1"):
        encoder.arrays([chips[0], np.zeros((4, 4, 7), np.float64)])


def test_text_features_equal_plain_apply(tiny):
    model, variables = tiny
    texts = [f"{i} storage tanks next to a harbour" for i in range(11)]
    features = Encoder(model, variables, batch_size=8).texts(texts)
    np.testing.assert_allclose(features, reference_text_features(model, variables, texts), atol=2e-6)


def test_bfloat16_features_track_float32(tiny, tmp_path):
    model, variables = tiny
    paths = random_images(tmp_path, 6)
    f32 = Encoder(model, variables).images(paths).features
    bf16 = Encoder(model, variables, dtype="bfloat16").images(paths).features
    assert bf16.dtype == np.float32
    # Cosine between the bf16 and f32 feature of each image: bf16 keeps ~3 significant digits.
    assert np.min(np.sum(f32 * bf16, axis=1)) > 0.995


def test_empty_inputs_give_empty_arrays(tiny):
    model, variables = tiny
    encoder = Encoder(model, variables)
    assert encoder.images([]).features.shape == (0, model.embed_dim)
    assert encoder.texts([]).shape == (0, model.embed_dim)


def test_raw_text_features_are_the_unnormalised_model_output(tiny):
    model, variables = tiny
    texts = ["a bridge over a river", "parking lot"]
    raw = Encoder(model, variables).texts(texts, normalize=False)
    np.testing.assert_allclose(raw, reference_text_features(model, variables, texts, unit=False),
                               rtol=1e-5, atol=1e-6)


def test_arrays_plugs_into_geo_scene_classification_as_encode_chips(tiny, tmp_path):
    """`Encoder.arrays` is the `encode_chips` callable the GeoTIFF workflows take."""
    from tests.helpers import geo as geo_scenes  # skips without rasterio
    from remoteclip_jax.geo.workflows import classify_scene

    model, variables = tiny
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    scene = geo_scenes.write_rgb(tmp_path / "scene.tif", rgb)
    encoder = Encoder(model, variables)
    classes = encoder.texts(["forest", "harbour"])
    classify_scene(scene, encoder.arrays, classes, ["forest", "harbour"], tmp_path / "out",
                   tile=32, progress=False)
    tiles = json.loads((tmp_path / "out" / "tiles.geojson").read_text())["features"]
    chips = {(r, c): rgb[32 * r:32 * r + 32, 32 * c:32 * c + 32] for r in range(2) for c in range(3)}
    assert len(tiles) == len(chips)
    for tile in tiles:
        p = tile["properties"]
        similarity = encoder.arrays([chips[p["row"], p["col"]]]) @ classes.T
        np.testing.assert_allclose(p["similarity"], similarity.max(), atol=1e-5)
