"""Tile grid: coverage, edge tiles shifted inward, exact footprints, metres, nodata skipping."""
import numpy as np
import pytest

from tests.helpers import geo as gs
from remoteclip_jax.errors import UserError
from remoteclip_jax.geo.raster import Scene
from remoteclip_jax.geo.tiles import TileGrid, grid_starts, iter_tile_batches

from affine import Affine  # noqa: E402  (installed with rasterio, which tests.helpers.geo requires)
from rasterio.crs import CRS  # noqa: E402


@pytest.mark.parametrize("size, tile, stride", [(1023, 224, 224), (1023, 224, 160), (448, 224, 224),
                                                (225, 224, 100), (150, 224, 224), (1000, 7, 3)])
def test_grid_covers_every_pixel_with_full_tiles_inside_the_scene(size, tile, stride):
    starts = grid_starts(size, tile, stride)
    covered = np.zeros(max(size, tile), bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered[:size].all()
    assert starts[0] == 0 and all(b - a <= stride for a, b in zip(starts, starts[1:]))
    if size >= tile:
        assert starts[-1] == size - tile  # flush with the edge, never past it
    else:
        assert starts == [0]


def test_footprints_are_the_affine_image_of_pixel_corners():
    grid = TileGrid.for_scene(1023, 1147, gs.TRANSFORM, CRS.from_epsg(32633), tile=224, stride=160)
    assert grid.shape == (6, 7)
    index = 2 * 7 + 6  # row 2, last column (shifted inward to 1147 - 224 = 923)
    assert grid.window(index) == (320, 923, 224, 224)
    ring = grid.footprint(index, gs.TRANSFORM)
    x0, y0 = 500000 + 0.5 * 923, 4649776 - 0.5 * 320
    assert ring == [(x0, y0), (x0 + 112, y0), (x0 + 112, y0 - 112), (x0, y0 - 112), (x0, y0)]


def test_footprints_follow_a_rotated_geotransform():
    # 30 degrees rotation, 2 m pixels: corner (c, r) -> (c0 + 2(c cos - r sin), f0 + 2(c sin + r cos))
    cos, sin = np.cos(np.radians(30)), np.sin(np.radians(30))
    transform = Affine(2 * cos, -2 * sin, 1000.0, 2 * sin, 2 * cos, 5000.0)
    grid = TileGrid.for_scene(100, 100, transform, CRS.from_epsg(32633), tile=20, units="m")
    assert (grid.tile_h, grid.tile_w) == (10, 10)
    ring = grid.footprint(grid.shape[1] + 1, transform)  # row 1, col 1: corner (10, 10)
    expected = [(1000 + 2 * (c * cos - r * sin), 5000 + 2 * (c * sin + r * cos))
                for c, r in [(10, 10), (20, 10), (20, 20), (10, 20), (10, 10)]]
    np.testing.assert_allclose(ring, expected, rtol=0, atol=1e-9)


def test_metres_are_converted_with_the_ground_sample_distance():
    grid = TileGrid.for_scene(1000, 1000, gs.TRANSFORM, CRS.from_epsg(32633), tile=112, stride=56,
                              units="m")
    assert (grid.tile_h, grid.tile_w, grid.stride_h, grid.stride_w) == (224, 224, 112, 112)
    feet = CRS.from_epsg(2229)  # California zone 5, US survey feet: 1 ft = 0.3048006 m
    grid = TileGrid.for_scene(100, 100, Affine(1, 0, 0, 0, -1, 0), feet, tile=30.48006, units="m")
    assert grid.tile_w == 100
    with pytest.raises(UserError, match="geographic"):
        TileGrid.for_scene(100, 100, Affine(1e-4, 0, 0, 0, -1e-4, 0), CRS.from_epsg(4326), tile=50,
                           units="m")
    with pytest.raises(UserError, match="gaps"):
        TileGrid.for_scene(100, 100, gs.TRANSFORM, None, tile=20, stride=30)


def test_tile_resolution_raster_holds_whole_cells_centred_on_the_regular_tiles():
    grid = TileGrid.for_scene(1023, 1147, gs.TRANSFORM, CRS.from_epsg(32633), tile=224, stride=160)
    assert grid.shape == (6, 7)  # starts 0, 160, ..., 640 then 799 (shifted); 0, ..., 800 then 923
    per_tile = np.arange(42).reshape(6, 7)
    raster = grid.to_raster(per_tile)
    assert raster.shape == (5, 6)  # the shifted edge tiles have no cell
    t = grid.raster_transform(gs.TRANSFORM)
    for i in range(5):
        for j in range(6):
            x, y = t @ (j + 0.5, i + 0.5)  # the cell's centre, in the CRS
            assert (x, y) == gs.world(160 * j + 112, 160 * i + 112)  # = its tile's centre
            assert raster[i, j] == per_tile[i, j]
    assert (t.a, t.e) == (80.0, -80.0)  # one pixel per 160 px stride


def test_mostly_nodata_tiles_are_skipped_and_counted(tmp_path, shared_data):
    aid = gs.aid_mosaic(shared_data)
    data = aid.transpose(2, 0, 1).copy()
    data[data == 0] = 1
    data[:, :, :130] = 0  # columns 0..129 are nodata
    path = gs.write_geotiff(tmp_path / "nodata.tif", data, nodata=0)
    with Scene(path) as scene:
        grid = TileGrid.for_scene(450, 450, scene.transform, scene.crs, tile=100, stride=50)
        batches = list(iter_tile_batches(scene, grid, batch_size=7, nodata_max_fraction=0.5,
                                         fill="mean"))
    kept = [i for b in batches for i in b.indices]
    skipped = [i for b in batches for i in b.skipped]
    assert sorted(kept + skipped) == list(range(len(grid)))
    # By hand: a tile starting at column c has max(0, min(180 - c, 100)) nodata columns of 100.
    expected_skipped = [i for i in range(len(grid))
                        if max(0, min(130 - grid.window(i)[1], 100)) / 100 > 0.5]
    assert skipped == expected_skipped and len(skipped) > 0
    assert all(len(b.indices) <= 7 for b in batches)
    # A kept tile with nodata columns: they hold the mean colour of its valid pixels.
    index = next(i for i in kept if grid.window(i)[1] == 100)  # columns 100..199: 30 nodata
    batch = next(b for b in batches if index in b.indices)
    chip = batch.chips[batch.indices.index(index)]
    row_off = grid.window(index)[0]
    source = aid[row_off:row_off + 100, 100:200].astype(np.float64)
    source[source == 0] = 1
    mean = np.rint(source[:, 30:].reshape(-1, 3).mean(axis=0))
    np.testing.assert_array_equal(chip[:, :30], np.broadcast_to(mean, (100, 30, 3)))
    np.testing.assert_array_equal(chip[:, 30:], source[:, 30:])
    assert batch.nodata_fractions[batch.indices.index(index)] == pytest.approx(0.3)


def test_keep_tile_rule_at_its_edges():
    from remoteclip_jax.geo.tiles import check_nodata_max_fraction, keep_tile

    assert keep_tile(0.5, 0.5) and keep_tile(0.0, 0.0)     # at the threshold: kept
    assert not keep_tile(0.51, 0.5)
    assert not keep_tile(1.0, 1.0)                        # no data at all: never kept
    with pytest.raises(UserError, match="nodata-max-fraction"):
        check_nodata_max_fraction(1.5)
