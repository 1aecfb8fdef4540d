"""Tiles of georeferenced scenes as a random-access data source (evaluate or fine-tune on chips).

This module registers the ``geotiff`` source kind (``path``: a scene, a folder of ``*.tif`` or a
glob; ``tile``, ``stride``, ``units``, ``bands``, ``scale``, ``nodata_max_fraction``) with
`remoteclip_jax.data.sources`. `SceneTileSource` has the interface of those sources: ``len`` and
``source[i] -> {"image": uint8 (H, W, 3), "captions": [], "label": "", "image_id":
"scene.tif:row:col", "path": scene}``. It is picklable: only paths and settings travel to worker
processes, and each process opens the rasters itself on first use. Tiles mostly without data are
left out when the source is built (that needs one pass over the masks), so every index holds data.
"""
from __future__ import annotations

import bisect
import glob
import os
from typing import Any, Sequence

from remoteclip_jax.data import sources
from remoteclip_jax.errors import ConfigError
from remoteclip_jax.geo.raster import Scene
from remoteclip_jax.geo.tiles import (TileGrid, check_nodata_max_fraction, keep_tile, read_tile,
                                      tile_id)


class SceneTileSource:
    """Chips cut from one or more scenes on the tile grid of `remoteclip_jax.geo.tiles`.

    Args:
        paths: a scene path or a list of them.
        tile, stride, units: tile grid (pixels or metres), as in `TileGrid.for_scene`.
        bands, scale: band selection and scaling, as in `remoteclip_jax.geo.raster.Scene`
            (a percentile stretch is computed per scene, once, when the source is built).
        nodata_max_fraction: tiles with more nodata than this are left out; ``None`` keeps
            every tile without reading masks up front.
        fill: how nodata pixels are filled (``"zero"`` or ``"mean"``).
        chip_size: resize chips to this side (default: native tile size).
        labels: optional per-scene label strings (one per path), e.g. for evaluation.

    Raises:
        UserError: no scenes, unreadable scenes, or bad grid settings.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], tile: float = 224,
                 stride: float | None = None, bands=None, scale=None, *, units: str = "px",
                 nodata_max_fraction: float | None = 0.5, fill: str = "zero",
                 chip_size: int | None = None, labels: Sequence[str] | None = None):
        self.paths = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [os.fspath(p) for p in paths]
        if not self.paths:
            raise ConfigError("SceneTileSource: no scene paths given")
        if labels is not None and len(labels) != len(self.paths):
            raise ConfigError(f"SceneTileSource: {len(labels)} labels for {len(self.paths)} scenes")
        self.labels = list(labels) if labels is not None else [""] * len(self.paths)
        self.bands, self.fill, self.chip_size = bands, fill, chip_size
        self._scalings, self._grids, self._tiles = [], [], []
        for path in self.paths:
            with Scene(path, bands=bands, scale=scale) as scene:
                grid = TileGrid.for_scene(scene.height, scene.width, scene.transform, scene.crs,
                                          tile, stride, units)
                self._scalings.append(scene.scaling)
                self._grids.append(grid)
                if nodata_max_fraction is None:
                    self._tiles.append(range(len(grid)))
                else:  # the scene commands' skip rule, on each tile's validity mask
                    check_nodata_max_fraction(nodata_max_fraction)
                    self._tiles.append([i for i in range(len(grid)) if keep_tile(
                        _nodata_fraction(scene, grid, i), nodata_max_fraction)])
        self._offsets = [0]
        for tiles in self._tiles:
            self._offsets.append(self._offsets[-1] + len(tiles))
        self._open: dict[int, Scene] = {}

    def __len__(self) -> int:
        return self._offsets[-1]

    def _scene(self, k: int) -> Scene:
        # Opened on first use in whichever process reads, never pickled.
        if k not in self._open:
            self._open[k] = Scene(self.paths[k], bands=self.bands, scale=self._scalings[k])
        return self._open[k]

    def _locate(self, index: int) -> tuple[int, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"SceneTileSource: index {index} out of range ({len(self)} tiles)")
        k = bisect.bisect_right(self._offsets, index) - 1
        return k, self._tiles[k][index - self._offsets[k]]

    def metadata(self, index: int) -> dict[str, Any]:
        """Item `index` without reading its pixels."""
        k, tile_index = self._locate(index)
        return {"captions": [], "label": self.labels[k], "path": self.paths[k],
                "image_id": tile_id(self.paths[k], *self._grids[k].rowcol(tile_index))}

    def __getitem__(self, index: int) -> dict[str, Any]:
        k, tile_index = self._locate(index)
        chip, _ = read_tile(self._scene(k), self._grids[k], tile_index, self.fill, self.chip_size)
        return {"image": chip, **self.metadata(index)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def close(self) -> None:
        for scene in self._open.values():
            scene.close()
        self._open = {}


def _nodata_fraction(scene: Scene, grid: TileGrid, index: int) -> float:
    """A tile's nodata share as `read_tile` measures it, without filling or resizing a chip."""
    _, valid = scene.read_window(*grid.window(index))
    return 1.0 - float(valid.mean())


def _build(spec: dict[str, Any]) -> SceneTileSource:
    path = spec["path"]
    paths = sorted(glob.glob(os.path.join(path, "*.tif")) if os.path.isdir(path) else
                   glob.glob(path) if any(ch in path for ch in "*?[") else [path])
    return SceneTileSource(paths, spec["tile"], spec["stride"] or None, spec["bands"] or None,
                           spec["scale"] or None, units=spec["units"],
                           nodata_max_fraction=spec["nodata_max_fraction"])


sources.register_kind("geotiff", {"path": "", "tile": 224.0, "stride": 0.0, "units": "px",
                                  "bands": "", "scale": "", "nodata_max_fraction": 0.5},
                      build=_build)
