"""The tile grid over a scene: windows, footprints, and batches of chips read window by window.

Grid rules (chosen so every tile holds real pixels and the whole scene is covered):

* Tiles are ``tile_h x tile_w`` pixels, placed every ``stride`` pixels from the top-left corner
  (stride < tile gives overlap). Sizes may be given in metres; they are converted to pixels with
  the ground sample distance of the geotransform and rounded to whole pixels.
* **Edge tiles are shifted inward**: where the last stride step would run past the scene edge, the
  last row/column of tiles is placed flush with the edge instead, so no tile is padded and none is
  lost. Only a scene *smaller* than one tile is padded, and the padding counts as no data.
* A tile's footprint is the polygon of its four pixel corners mapped through the scene's affine
  transform: exact, and correct for rotated or sheared geotransforms as well.
* Chips are delivered at their native pixel size: the encoder's own preprocessing (open_clip's
  bicubic resize + centre crop) brings them to the model's input size, so a tile is embedded
  exactly as the same chip saved to a file and embedded on its own would be. ``chip_size`` may
  downsample chips in the reader instead (PIL bicubic, the filter the encoder uses) to keep batches
  of very large tiles small.

Tile-resolution rasters (class map, heatmap) hold **whole cells only**: one pixel per tile of the
regular grid (the tiles every stride from the corner), each a stride-sized square centred on its
tile's centre, so every pixel holds the value of the tile whose centre it contains and the raster
lies inside the scene. The edge tiles shifted inward have no cell (they would share one with a
regular tile); they are in the GeoJSON outputs, which list every tile.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from remoteclip_jax.errors import ConfigError

UNITS = ("px", "m")


def grid_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles along one axis: every ``stride``, the last one flush with the edge.

    A scene side shorter than the tile gets one tile at 0 (padded past the edge).
    """
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def tile_id(scene_path: str, row: int, col: int) -> str:
    """``"scene.tif:row:col"``: the name a tile has in every output."""
    return f"{os.path.basename(scene_path)}:{row}:{col}"


def pixel_to_world(transform, col: float, row: float) -> tuple[float, float]:
    """Pixel-corner coordinates ``(col, row)`` -> CRS ``(x, y)`` through the affine geotransform."""
    t = transform
    return float(t.a * col + t.b * row + t.c), float(t.d * col + t.e * row + t.f)


def _pixel_size(transform) -> tuple[float, float]:
    # Length of one pixel step along a column (x) and along a row (y), in CRS units; hypot keeps
    # rotated geotransforms right.
    return math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)


def to_pixels(value: float | None, units: str, axis_size: float, crs, name: str) -> int | None:
    """A tile/stride length in ``units`` -> whole pixels along an axis of ``axis_size`` CRS units."""
    if value is None:
        return None
    if units not in UNITS:
        raise ConfigError(f"--units {units!r}: expected one of {', '.join(UNITS)}")
    if units == "px":
        pixels = value
    else:
        if crs is None or crs.is_geographic:
            raise ConfigError(f"--{name} {value} m: the scene's CRS is "
                            f"{'missing' if crs is None else 'geographic (degrees)'}, so metres "
                            f"cannot be converted to pixels; give --{name} in pixels (--units px)")
        _, metres_per_unit = crs.linear_units_factor
        pixels = value / metres_per_unit / axis_size
    result = int(round(pixels))
    if result < 1:
        raise ConfigError(f"--{name} {value} {units}: less than one pixel ({pixels:.3g} px)")
    return result


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """Tiles over a ``height x width`` scene. Tile ``i`` is row ``i // n_cols``, col ``i % n_cols``."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    stride_h: int
    stride_w: int

    @classmethod
    def for_scene(cls, height: int, width: int, transform, crs, tile: float = 224,
                  stride: float | None = None, units: str = "px") -> "TileGrid":
        """The grid for a scene, with tile and stride given in pixels or metres.

        Args:
            height, width: scene size in pixels.
            transform: the scene's affine geotransform (used for metres only).
            crs: the scene's CRS (metres need a projected one).
            tile: tile side.
            stride: step between tiles (default: the tile side, no overlap).
            units: ``"px"`` or ``"m"``.

        Raises:
            UserError: a size below one pixel, stride > tile (gaps), or metres on a geographic CRS.
        """
        size_x, size_y = _pixel_size(transform)
        tile_w = to_pixels(tile, units, size_x, crs, "tile")
        tile_h = to_pixels(tile, units, size_y, crs, "tile")
        stride_w = to_pixels(stride, units, size_x, crs, "stride") or tile_w
        stride_h = to_pixels(stride, units, size_y, crs, "stride") or tile_h
        if stride_w > tile_w or stride_h > tile_h:
            raise ConfigError(f"--stride {stride} is larger than --tile {tile}: tiles would leave gaps;"
                            f" use a stride <= the tile size")
        return cls(height, width, tile_h, tile_w, stride_h, stride_w)

    @property
    def row_starts(self) -> list[int]:
        return grid_starts(self.height, self.tile_h, self.stride_h)

    @property
    def col_starts(self) -> list[int]:
        return grid_starts(self.width, self.tile_w, self.stride_w)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of tiles."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        n_rows, n_cols = self.shape
        return n_rows * n_cols

    def rowcol(self, index: int) -> tuple[int, int]:
        n_cols = self.shape[1]
        return index // n_cols, index % n_cols

    def window(self, index: int) -> tuple[int, int, int, int]:
        """``(row_off, col_off, height, width)`` of tile ``index`` in scene pixels."""
        if not 0 <= index < len(self):
            raise IndexError(f"tile {index} out of range (grid of {len(self)} tiles)")
        row, col = self.rowcol(index)
        return self.row_starts[row], self.col_starts[col], self.tile_h, self.tile_w

    def footprint(self, index: int, transform) -> list[tuple[float, float]]:
        """Closed ring of the tile's corners in CRS coordinates (TL, TR, BR, BL, TL)."""
        row_off, col_off, h, w = self.window(index)
        corners = [(col_off, row_off), (col_off + w, row_off), (col_off + w, row_off + h),
                   (col_off, row_off + h)]
        ring = [pixel_to_world(transform, c, r) for c, r in corners]
        return ring + [ring[0]]

    # -- tile-resolution rasters: whole cells, one per tile of the regular grid --

    @property
    def raster_shape(self) -> tuple[int, int]:
        """Cells of a tile-resolution raster: the regular tiles (shifted edge tiles have none)."""
        def regular(size, tile, stride):
            return max(size - tile, 0) // stride + 1
        return (regular(self.height, self.tile_h, self.stride_h),
                regular(self.width, self.tile_w, self.stride_w))

    @property
    def raster_box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the tile-resolution raster, in scene pixels."""
        left, top = (self.tile_w - self.stride_w) / 2, (self.tile_h - self.stride_h) / 2
        rows, cols = self.raster_shape
        return left, top, left + cols * self.stride_w, top + rows * self.stride_h

    def raster_transform(self, transform):
        """The scene transform for the tile-resolution raster: one pixel per stride step, its
        origin at the first tile's cell (half a stride before its centre)."""
        from affine import Affine

        left, top, _, _ = self.raster_box
        return transform @ Affine.translation(left, top) @ Affine.scale(self.stride_w, self.stride_h)

    def to_raster(self, per_tile: np.ndarray) -> np.ndarray:
        """``(n_rows, n_cols)`` tile values -> the ``raster_shape`` raster (regular tiles)."""
        rows, cols = self.raster_shape
        return per_tile[:rows, :cols]


@dataclasses.dataclass
class TileBatch:
    """Tiles read together: the kept ones (``indices``/``chips``) and the ones skipped for nodata."""

    indices: list[int]
    chips: np.ndarray  # uint8 (n, h, w, 3)
    nodata_fractions: list[float]
    skipped: list[int]
    skipped_fractions: list[float]


def fill_nodata(rgb: np.ndarray, valid: np.ndarray, fill: str) -> np.ndarray:
    """Fills pixels without data with 0 (``"zero"``) or the chip's mean valid colour (``"mean"``)."""
    if fill == "zero" or valid.all() or not valid.any():
        return rgb
    if fill != "mean":
        raise ConfigError(f"--fill {fill!r}: expected 'zero' or 'mean'")
    mean = np.rint(rgb[valid].astype(np.float64).mean(axis=0)).astype(np.uint8)
    return np.where(valid[..., None], rgb, mean)


def check_nodata_max_fraction(max_fraction: float) -> None:
    """Raises ConfigError unless the nodata threshold lies in 0..1."""
    if not 0.0 <= max_fraction <= 1.0:
        raise ConfigError(f"--nodata-max-fraction {max_fraction}: must lie in 0..1")


def keep_tile(nodata_fraction: float, max_fraction: float) -> bool:
    """Whether a tile with this nodata share (padding past the scene edge included) is used."""
    # A tile with no data at all is never worth embedding, whatever the threshold.
    return not (nodata_fraction > max_fraction or nodata_fraction >= 1.0)


def read_tile(scene, grid: TileGrid, index: int, fill: str = "zero",
              chip_size: int | None = None) -> tuple[np.ndarray, float]:
    """One tile's chip (``uint8 (h, w, 3)``, nodata filled) and its nodata fraction."""
    rgb, valid = scene.read_window(*grid.window(index))
    fraction = 1.0 - float(valid.mean())
    chip = fill_nodata(rgb, valid, fill)
    if chip_size is not None and chip.shape[:2] != (chip_size, chip_size):
        chip = np.asarray(Image.fromarray(chip).resize((chip_size, chip_size), Image.Resampling.BICUBIC))
    return chip, fraction


def iter_tile_batches(scene, grid: TileGrid, batch_size: int = 64, *,
                      nodata_max_fraction: float = 0.5, fill: str = "zero",
                      chip_size: int | None = None, indices: Sequence[int] | None = None,
                      progress=None) -> Iterator[TileBatch]:
    """Reads the grid's tiles window by window and yields them in batches of ``batch_size`` kept tiles.

    Memory is bounded by one batch of chips: the scene is never read whole.

    Args:
        scene: an open `remoteclip_jax.geo.raster.Scene`.
        grid: the tile grid.
        batch_size: kept tiles per batch (the last batch may be smaller; a batch may also be
            empty of kept tiles when ``indices`` ends, but then lists skipped ones).
        nodata_max_fraction: tiles whose nodata share (including padding past the scene edge)
            exceeds this are skipped.
        fill: how nodata pixels of kept tiles are filled, see `fill_nodata`.
        chip_size: resize chips to this side in the reader (default: native pixels).
        indices: tile indices to read, in order (default: all).
        progress: a tqdm-like bar to ``update(1)`` per tile read, or None.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    check_nodata_max_fraction(nodata_max_fraction)
    order = range(len(grid)) if indices is None else indices
    kept, chips, fractions, skipped, skipped_fractions = [], [], [], [], []
    for index in order:
        chip, fraction = read_tile(scene, grid, index, fill, chip_size)
        if keep_tile(fraction, nodata_max_fraction):
            kept.append(index)
            chips.append(chip)
            fractions.append(fraction)
        else:
            skipped.append(index)
            skipped_fractions.append(fraction)
        if progress is not None:
            progress.update(1)
        if len(kept) == batch_size:
            yield TileBatch(kept, np.stack(chips), fractions, skipped, skipped_fractions)
            kept, chips, fractions, skipped, skipped_fractions = [], [], [], [], []
    if kept or skipped:
        side = (chip_size, chip_size) if chip_size else (grid.tile_h, grid.tile_w)
        stacked = np.stack(chips) if chips else np.zeros((0, *side, 3), np.uint8)
        yield TileBatch(kept, stacked, fractions, skipped, skipped_fractions)
