"""SceneTileSource: chips from scenes as a picklable random-access data source."""
import pickle

import numpy as np
import pytest

from tests.helpers import geo as gs
from remoteclip_jax.geo import SceneTileSource


def test_items_are_the_hand_cut_chips_in_grid_order(tmp_path, shared_data):
    aid = gs.aid_mosaic(shared_data)  # 450 x 450
    dota = gs.dota_image(shared_data)[:300, :400].copy()
    paths = [gs.write_nir_rgb_16bit(tmp_path / "aid.tif", aid), gs.write_nir_rgb_16bit(tmp_path / "dota.tif", dota)]
    source = SceneTileSource(paths, tile=200, stride=150, bands="R,G,B", scale="0,10200")
    # Starts by hand: aid 0,150,250 per axis (9 tiles); dota rows 0,100 and cols 0,150,200 (6 tiles).
    assert len(source) == 15
    item = source[4]
    assert item["image_id"] == "aid.tif:1:1" and item["path"] == paths[0]
    np.testing.assert_array_equal(item["image"], aid[150:350, 150:350])
    assert item["captions"] == [] and item["label"] == ""
    item = source[9 + 5]
    assert item["image_id"] == "dota.tif:1:2"
    np.testing.assert_array_equal(item["image"], dota[100:300, 200:400])
    assert source[-1]["image_id"] == item["image_id"]
    with pytest.raises(IndexError):
        source[15]


def test_source_pickles_without_open_files_and_reads_after(tmp_path, shared_data):
    aid = gs.aid_mosaic(shared_data)
    data = aid.transpose(2, 0, 1).copy()
    data[data == 0] = 1
    data[:, :300, :] = 0  # the top two thirds have no data
    source = SceneTileSource(gs.write_geotiff(tmp_path / "nd.tif", data, nodata=0), tile=150,
                             chip_size=32)
    assert len(source) == 3  # only the bottom row of the 3 x 3 grid holds data
    first = source[0]["image"]
    assert first.shape == (32, 32, 3)
    clone = pickle.loads(pickle.dumps(source))
    assert clone._open == {}
    np.testing.assert_array_equal(clone[0]["image"], first)
    assert clone[2]["image_id"] == "nd.tif:2:2"


def test_registry_builds_the_tiler_from_a_geotiff_spec(tmp_path, shared_data):
    """`kind: geotiff` in a training source or eval entry reads the same chips."""
    from remoteclip_jax.data.sources import build_source

    aid = gs.aid_mosaic(shared_data)
    path = gs.write_nir_rgb_16bit(tmp_path / "aid.tif", aid)
    direct = SceneTileSource([path], tile=200, stride=150, bands="R,G,B", scale="0,10200")
    built = build_source({"kind": "geotiff", "path": path, "tile": 200, "stride": 150,
                          "bands": "R,G,B", "scale": "0,10200"})
    assert len(built) == len(direct) == 9
    np.testing.assert_array_equal(built[4]["image"], direct[4]["image"])
