"""Scene reading: band order, scaling to uint8, nodata masks and clear errors, on real imagery."""
import sys

import numpy as np
import pytest

from tests.helpers import geo as gs
from remoteclip_jax.errors import DataError, UserError, one_line
from remoteclip_jax.geo.raster import Scene, parse_scale, resolve_bands


@pytest.fixture(scope="module")
def aid(shared_data):
    return gs.aid_mosaic(shared_data)  # (450, 450, 3) uint8


def test_uint8_rgb_window_is_the_source_pixels(tmp_path, aid):
    path = gs.write_rgb(tmp_path / "rgb.tif", aid)
    with Scene(path) as scene:
        assert scene.scaling.mode == "none" and scene.bands == (1, 2, 3)
        rgb, valid = scene.read_window(100, 37, 224, 224)
    np.testing.assert_array_equal(rgb, aid[100:324, 37:261])
    assert valid.all()


def test_16bit_bands_by_description_and_fixed_scale_recover_the_8bit_source(tmp_path, aid):
    path = gs.write_nir_rgb_16bit(tmp_path / "nirrgb.tif", aid)
    # 8-bit value v was stored as 40 v, so the range 0..10200 maps it back to v exactly.
    with Scene(path, bands="R,G,B", scale="0,10200") as scene:
        assert scene.bands == (2, 3, 4)
        rgb, _ = scene.read_window(0, 0, 150, 150)
    np.testing.assert_array_equal(rgb, aid[:150, :150])
    # By 1-based index, false colour NIR,R,G, against the stored values scaled by hand in float64.
    with Scene(path, bands="1,2,3", scale=(0, 10000)) as scene:
        rgb, _ = scene.read_window(50, 60, 100, 120)
    src = aid[50:150, 60:180].astype(np.float64)
    nir = np.floor(src.mean(axis=2)) * 40
    stored = np.stack([nir, src[..., 0] * 40, src[..., 1] * 40], axis=2)
    expected = np.clip(np.rint(stored * 255.0 / 10000.0), 0, 255)
    assert np.abs(rgb.astype(np.float64) - expected).max() <= 1
    assert np.mean(rgb == expected) > 0.99


def test_percentile_stretch_uses_per_band_percentiles_of_valid_pixels(tmp_path, aid):
    path = gs.write_nir_rgb_16bit(tmp_path / "nirrgb.tif", aid)
    with Scene(path, bands="B,G,R", scale="p2,98") as scene:
        scaling = scene.scaling
        rgb, _ = scene.read_window(0, 0, 450, 450)
    # The scene is smaller than the decimated read, so the read is the full scene.
    for channel, source_channel in zip(range(3), (2, 1, 0)):
        values = aid[..., source_channel].astype(np.float64) * 40
        lo, hi = np.percentile(values, [2, 98])
        assert scaling.low[channel] == pytest.approx(lo) and scaling.high[channel] == pytest.approx(hi)
        expected = np.clip(np.rint((values - lo) * 255.0 / (hi - lo)), 0, 255)
        assert np.abs(rgb[..., channel] - expected).max() <= 1
    assert scaling.to_dict()["percentiles"] == [2.0, 98.0]


def test_16bit_default_scaling_is_a_2_98_percentile_stretch(tmp_path, aid):
    path = gs.write_nir_rgb_16bit(tmp_path / "nirrgb.tif", aid)
    with Scene(path, bands=[2, 3, 4]) as scene:
        assert scene.scaling.mode == "percentile" and scene.scaling.percentiles == (2.0, 98.0)


def test_nodata_value_marks_pixels_invalid_and_zero(tmp_path, aid):
    data = aid.transpose(2, 0, 1).astype(np.uint16) * 40 + 1  # no real pixel is 0
    data[:, :, :200] = 0
    path = gs.write_geotiff(tmp_path / "nodata.tif", data, nodata=0)
    with Scene(path, scale="0,10240") as scene:
        rgb, valid = scene.read_window(0, 100, 224, 224)
    np.testing.assert_array_equal(valid, np.arange(100, 324)[None, :].repeat(224, 0) >= 200)
    assert (rgb[~valid] == 0).all()


def test_window_past_the_edge_is_nodata(tmp_path, aid):
    path = gs.write_rgb(tmp_path / "rgb.tif", aid)
    with Scene(path) as scene:
        rgb, valid = scene.read_window(400, 400, 100, 100)
    assert valid[:50, :50].all() and not valid[50:].any() and not valid[:, 50:].any()
    np.testing.assert_array_equal(rgb[:50, :50], aid[400:, 400:])


def test_float_nan_pixels_are_invalid(tmp_path):
    data = np.linspace(0, 1, 3 * 64 * 64, dtype=np.float32).reshape(3, 64, 64)
    data[:, 10:20, 10:20] = np.nan
    path = gs.write_geotiff(tmp_path / "float.tif", data)
    with Scene(path, scale="0,1") as scene:
        rgb, valid = scene.read_window(0, 0, 64, 64)
    assert not valid[10:20, 10:20].any() and valid.sum() == 64 * 64 - 100
    expected = np.clip(np.rint(data.astype(np.float64) * 255), 0, 255).transpose(1, 2, 0)
    assert np.abs(rgb[valid].astype(float) - expected[valid]).max() <= 1


def test_single_band_is_grey(tmp_path, aid):
    path = gs.write_geotiff(tmp_path / "grey.tif", aid[None, ..., 1].copy())
    with Scene(path) as scene:
        rgb, _ = scene.read_window(0, 0, 10, 10)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], aid[:10, :10, 1])


def test_band_requests_that_cannot_be_met_name_the_file():
    with pytest.raises(DataError, match=r"s\.tif: no band described as 'B8'.*1=R"):
        resolve_bands("B8", 3, ["R", "G", "B"], "s.tif")
    with pytest.raises(DataError, match=r"band 5 does not exist"):
        resolve_bands("5,3,2", 4, [None] * 4, "s.tif")
    with pytest.raises(DataError, match=r"3 bands"):
        resolve_bands("1,2", 4, [None] * 4, "s.tif")
    assert resolve_bands("b4, b3 ,B2", 4, ["B1", "B2", "B3", "B4"]) == (4, 3, 2)


@pytest.mark.parametrize("spec, expected", [("0,10000", ("fixed", (0.0, 10000.0))),
                                            ("p2,98", ("percentile", (2.0, 98.0))),
                                            ("1%,99%", ("percentile", (1.0, 99.0))),
                                            ("none", ("none", None)), (None, ("auto", None))])
def test_parse_scale(spec, expected):
    parsed = parse_scale(spec)
    assert (parsed.mode, parsed.values) == expected


@pytest.mark.parametrize("spec", ["10,5", "abc", "p2,120"])
def test_bad_scale_is_a_user_error(spec):
    with pytest.raises(UserError, match="--scale"):
        parse_scale(spec)


def test_corrupt_and_unsupported_files_are_one_line_errors(tmp_path, aid):
    good = gs.write_rgb(tmp_path / "good.tif", aid, tiled=True, blockxsize=128, blockysize=128,
                        compress="deflate")
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(open(good, "rb").read()[:3000])
    text = tmp_path / "notes.tif"
    text.write_text("not a raster\n")
    for path in (truncated, text):
        with pytest.raises(DataError) as info:
            with Scene(path) as scene:
                scene.read_window(0, 0, 450, 450)
        message = one_line(info.value)
        assert message == str(info.value) and str(path) in message
    with pytest.raises(DataError, match="not found"):
        Scene(tmp_path / "missing.tif")
    complex_path = gs.write_geotiff(tmp_path / "complex.tif", np.ones((1, 8, 8), np.complex64))
    with pytest.raises(DataError, match="unsupported pixel type"):
        Scene(complex_path)


def test_missing_rasterio_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(UserError, match=r"pip install remoteclip_jax\[geo\]"):
        Scene(tmp_path / "x.tif")


def test_cog_reads_windows_exactly_and_stretches_from_its_overviews(tmp_path, shared_data):
    from rasterio.shutil import copy as rio_copy

    dota = gs.dota_image(shared_data)  # 1147 px wide: wider than the decimated read
    plain = gs.write_nir_rgb_16bit(tmp_path / "plain.tif", dota)
    cog = str(tmp_path / "scene_cog.tif")
    rio_copy(plain, cog, driver="COG", blocksize=256, overview_resampling="nearest")
    with gs.rasterio.open(cog) as ds:
        assert ds.overviews(1)  # the COG driver built overviews
    with Scene(cog, bands="R,G,B", scale="p2,98") as scene:
        low, high = scene.scaling.low, scene.scaling.high
    with Scene(cog, bands="R,G,B", scale="0,10200") as scene:
        rgb, _ = scene.read_window(300, 700, 224, 224)
    np.testing.assert_array_equal(rgb, dota[300:524, 700:924])
    # Percentiles of a decimated view agree with the full-resolution ones to a few grey levels.
    for c in range(3):
        lo, hi = np.percentile(dota[..., c].astype(np.float64) * 40, [2, 98])
        assert abs(low[c] - lo) <= 3 * 40 and abs(high[c] - hi) <= 3 * 40


def test_gdal_block_cache_is_capped_in_megabytes_not_bytes(tmp_path, aid):
    from rasterio.env import get_gdal_config

    with Scene(gs.write_rgb(tmp_path / "rgb.tif", aid), cache_mb=48):
        assert int(get_gdal_config("GDAL_CACHEMAX")) == 48 * 2 ** 20
