"""Output writers: atomic files, GeoJSON CRS member, class-map colour table, tile store layout."""
import json
import os

import numpy as np
import pytest

from tests.helpers import geo as gs
from remoteclip_jax.errors import UserError
from remoteclip_jax.geo import outputs


def test_geojson_names_the_scene_crs(tmp_path):
    ring = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
    outputs.write_geojson(tmp_path / "t.geojson", [outputs.tile_feature(ring, {"label": "a"})],
                          "EPSG:32633", {"note": 1})
    data = json.loads((tmp_path / "t.geojson").read_text())
    assert data["crs"]["properties"]["name"] == "EPSG:32633" and data["properties"] == {"note": 1}
    assert data["features"][0]["geometry"]["coordinates"][0][2] == [1.0, 1.0]


def test_classmap_has_georeferencing_colours_and_names(tmp_path):
    values = np.array([[0, 1], [255, 2]], np.uint8)
    t = gs.TRANSFORM
    outputs.write_classmap(tmp_path / "c.tif", values, ["water", "forest", "urban"], t, gs.CRS)
    with gs.rasterio.open(tmp_path / "c.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), values)
        assert ds.transform == t and ds.crs.to_epsg() == 32633 and ds.nodata == 255
        colours = ds.colormap(1)
        assert len({colours[i] for i in range(3)}) == 3 and colours[255][3] == 0
        assert ds.tags()["class_2"] == "urban"
    with pytest.raises(UserError, match="at most 255"):
        outputs.write_classmap(tmp_path / "x.tif", values, [str(i) for i in range(300)], t, gs.CRS)


def test_tile_store_round_trip_in_jsonl(tmp_path):
    emb = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    rows = [{"tile_id": f"s.tif:0:{i}", "minx": float(i)} for i in range(3)]
    paths = outputs.write_tile_store(tmp_path, 0, emb, rows, metadata_format="jsonl")
    assert paths["embeddings"].endswith(os.path.join("embeddings", "img_emb", "img_emb_0000.npy"))
    assert paths["metadata"].endswith(os.path.join("metadata", "metadata_0000.jsonl"))
    outputs.write_tile_store(tmp_path, 1, emb[:1], rows[:1], metadata_format="jsonl")
    # A shard whose metadata never got written (interrupted) is not part of the store.
    np.save(tmp_path / "embeddings" / "img_emb" / "img_emb_0002.npy", emb)
    loaded, meta = outputs.load_tile_store(tmp_path)
    np.testing.assert_array_equal(loaded, np.concatenate([emb, emb[:1]]))
    assert [m["tile_id"] for m in meta] == ["s.tif:0:0", "s.tif:0:1", "s.tif:0:2", "s.tif:0:0"]
    with pytest.raises(ValueError):
        outputs.write_tile_store(tmp_path, 3, emb, rows[:2])
    with pytest.raises(UserError, match="no tile embeddings"):
        outputs.load_tile_store(tmp_path / "empty")
