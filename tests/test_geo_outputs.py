"""Output writers: GeoJSON CRS member, class-map colour table, WKT footprints read back."""
import json

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


def test_wkt_footprints_read_back_exactly():
    ring = [(500000.0, 4649776.0), (500112.5, 4649776.0), (500112.5, 4649663.5), (500000.0, 4649776.0)]
    wkt = "POLYGON ((" + ", ".join(f"{x!r} {y!r}" for x, y in ring) + "))"
    assert outputs.wkt_ring(wkt) == ring
