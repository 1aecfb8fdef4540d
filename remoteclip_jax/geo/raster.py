"""Reading georeferenced rasters (GeoTIFF, Cloud-Optimised GeoTIFF, anything GDAL opens) as RGB.

A `Scene` opens one raster file with rasterio and turns any window of it into the ``uint8
(H, W, 3)`` RGB pixels the CLIP image tower expects, plus a mask of the pixels that hold data:

* **bands**: three bands (or one, repeated as grey) picked by 1-based index (``"4,3,2"``) or by
  band description (``"B4,B3,B2"``, matched against the descriptions stored in the file);
* **scaling** to 0..255: uint8 data is used as it is; other data (16-bit, float) is mapped
  linearly from ``[low, high]`` to ``[0, 255]`` and clipped, with ``low``/``high`` either fixed
  (``"0,10000"``, the same for every band) or per-band percentiles of the scene (``"p2,98"``),
  computed from one decimated read (GDAL serves it from the overviews of a COG), so memory stays
  bounded whatever the scene size;
* **nodata**: GDAL's per-band masks (the nodata value, an alpha band or an internal mask) and,
  for float data, non-finite values mark pixels without data; a window may also reach past the
  scene edge, and those pixels count as no data as well.

Only windows are ever read, never the whole scene, and GDAL's block cache is capped
(`DEFAULT_CACHE_MB`), so memory is bounded by what the caller asks for at a time. rasterio is an
optional dependency, imported on first use.
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings
from typing import Any, Sequence

import numpy as np

from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.lazy import optional_module

INSTALL_HINT = "install rasterio (pip install remoteclip_jax[geo])"
# GDAL caches decoded blocks in a process-wide cache that defaults to 5% of RAM; that alone would
# let a tiled pass over a large scene grow by a gigabyte. 64 MB holds a few rows of 512 px blocks.
DEFAULT_CACHE_MB = 64
DEFAULT_PERCENTILES = (2.0, 98.0)
# Side (pixels) of the decimated read percentiles and previews are computed from.
OVERVIEW_MAX_SIDE = 1024
_SUPPORTED_KINDS = "uib"  # unsigned, signed integers and booleans; floats are handled apart


def require_rasterio():
    """Imports rasterio, or raises a `UserError` saying how to install it."""
    return optional_module("rasterio", f"reading GeoTIFF scenes needs rasterio: {INSTALL_HINT}")


def _configure_gdal(cache_mb: int) -> None:
    # GDAL_CACHEMAX is process-wide. Set through rasterio an integer is taken as BYTES (a small
    # number makes every read re-decode its blocks, ~300x slower), so pass bytes explicitly.
    from rasterio.env import set_gdal_config

    set_gdal_config("GDAL_CACHEMAX", int(cache_mb) * 2 ** 20)


# --- band selection ---------------------------------------------------------------------------


def resolve_bands(spec: str | Sequence[int | str] | None, count: int,
                  descriptions: Sequence[str | None], path: str = "<raster>") -> tuple[int, int, int]:
    """The three 1-based band indexes that make the R, G and B channels.

    Args:
        spec: ``None`` (bands 1,2,3; a one- or two-band raster shows band 1 as grey), a
            comma-separated string or a sequence of 1-based indexes and/or band descriptions
            (case-insensitive, e.g. ``"B4,B3,B2"`` for Sentinel-2), three of them or one (grey).
        count: number of bands in the raster.
        descriptions: the raster's band descriptions (``dataset.descriptions``).
        path: the raster, for error messages.

    Raises:
        DataError: an index out of range, an unknown description or a wrong number of bands.
    """
    if spec is None:
        return (1, 2, 3) if count >= 3 else (1, 1, 1)
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    by_name: dict[str, int] = {}
    for i, d in enumerate(descriptions, start=1):
        if d:
            by_name.setdefault(str(d).strip().lower(), i)
    names = ", ".join(f"{i}={d}" for i, d in enumerate(descriptions, start=1) if d) or "none"
    picked = []
    for item in items:
        if isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.isdigit()):
            index = int(item)
            if not 1 <= index <= count:
                raise DataError(f"{path}: band {index} does not exist (the raster has {count} "
                                  f"bands, numbered from 1); pick bands 1..{count}")
        elif isinstance(item, str) and item.lower() in by_name:
            index = by_name[item.lower()]
        else:
            raise DataError(f"{path}: no band described as {item!r} (band descriptions: {names});"
                              f" give 1-based band numbers instead, e.g. --bands 3,2,1")
        picked.append(index)
    if len(picked) == 1:
        picked *= 3
    if len(picked) != 3:
        raise DataError(f"{path}: --bands needs 3 bands (R,G,B) or 1 (grey), got {len(picked)}: "
                          f"{spec!r}")
    return tuple(picked)


# --- scaling to uint8 ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScaleSpec:
    """What the user asked for: ``auto``, ``none`` (data already 0..255), ``fixed`` or ``percentile``."""

    mode: str = "auto"
    values: tuple[float, float] | None = None


def parse_scale(spec: str | Sequence[float] | ScaleSpec | None) -> ScaleSpec:
    """Parses a scaling request.

    Accepted: ``None``/``"auto"`` (uint8 as is, anything else 2-98% percentile stretch),
    ``"none"``, ``"LOW,HIGH"`` or ``(low, high)`` (fixed linear range, same for all bands), and
    ``"pLOW,HIGH"`` / ``"LOW%,HIGH%"`` (per-band percentile stretch).

    Raises:
        UserError: anything else, or a range that is empty.
    """
    if isinstance(spec, ScaleSpec):
        return spec
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return ScaleSpec("auto")
    if isinstance(spec, str) and spec.strip().lower() == "none":
        return ScaleSpec("none")
    mode = "fixed"
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text.startswith("p") or "%" in text:
            mode = "percentile"
            text = text.lstrip("p").replace("%", "")
        parts = [p for p in re.split(r"[,\s]+", text) if p]
    else:
        parts = list(spec)
    try:
        low, high = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"--scale {spec!r}: expected LOW,HIGH (e.g. 0,10000), pLOW,HIGH "
                        f"(percentiles, e.g. p2,98), 'auto' or 'none'") from None
    if not high > low:
        raise ConfigError(f"--scale {spec!r}: HIGH must be greater than LOW")
    if mode == "percentile" and not (0 <= low and high <= 100):
        raise ConfigError(f"--scale {spec!r}: percentiles must lie in 0..100")
    return ScaleSpec(mode, (low, high))


@dataclasses.dataclass(frozen=True)
class Scaling:
    """The scaling chosen for one scene: per output channel, ``low`` maps to 0 and ``high`` to 255.

    ``mode`` is ``none`` (uint8 data used as it is), ``fixed`` or ``percentile`` (then
    ``percentiles`` holds the two percentiles the per-band ranges came from).
    """

    mode: str
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (255.0, 255.0, 255.0)
    percentiles: tuple[float, float] | None = None

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``(3, h, w)`` raw values -> ``uint8 (3, h, w)``: linear, clipped, rounded to nearest."""
        if self.mode == "none":
            return np.clip(data, 0, 255).astype(np.uint8) if data.dtype != np.uint8 else data
        if data.dtype.kind in "ui" and data.dtype.itemsize <= 2:
            # 8/16-bit data: one lookup per pixel in a table of every possible value (the same
            # arithmetic, done once per value instead of once per pixel; ~5x faster).
            lut, offset = self._lookup_table(data.dtype)
            out = np.empty(data.shape, np.uint8)
            for c in range(3):
                index = data[c].astype(np.int32) + offset if offset else data[c]
                np.take(lut[c], index, out=out[c])
            return out
        return self._linear(data.astype(np.float32))

    def _linear(self, x: np.ndarray) -> np.ndarray:
        low = np.asarray(self.low, np.float32).reshape(3, 1)
        gain = np.float32(255) / (np.asarray(self.high, np.float32) - np.asarray(self.low, np.float32))
        flat = (x.reshape(3, -1) - low) * gain.reshape(3, 1)
        flat = np.nan_to_num(flat, nan=0.0, posinf=255.0, neginf=0.0)
        return np.rint(np.clip(flat, 0, 255)).astype(np.uint8).reshape(x.shape)

    def _lookup_table(self, dtype: np.dtype) -> tuple[np.ndarray, int]:
        key = np.dtype(dtype).str
        cache = self.__dict__.setdefault("_luts", {})
        if key not in cache:
            info = np.iinfo(dtype)
            values = np.arange(info.min, info.max + 1, dtype=np.float32)
            cache[key] = (self._linear(np.broadcast_to(values, (3, values.size))), -int(info.min))
        return cache[key]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record of the scaling, written into every output."""
        out: dict[str, Any] = {"mode": self.mode, "low": list(self.low), "high": list(self.high)}
        if self.percentiles is not None:
            out["percentiles"] = list(self.percentiles)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scaling":
        return cls(d["mode"], tuple(d["low"]), tuple(d["high"]),
                   tuple(d["percentiles"]) if d.get("percentiles") is not None else None)


# --- the scene ------------------------------------------------------------------------------------


class Scene:
    """One open raster, read as RGB windows. Use as a context manager or call `close`.

    Args:
        path: the raster file (GeoTIFF, COG, or any format GDAL reads).
        bands: see `resolve_bands`.
        scale: see `parse_scale`; or an already resolved `Scaling` (reused as is: resuming a run
            must not recompute percentiles on a changed file).
        cache_mb: cap of GDAL's block cache, megabytes.

    Raises:
        DataError: the file is missing, corrupt or not a raster, has an unsupported data type,
            or the bands/scale cannot be applied to it.
    """

    def __init__(self, path: str | os.PathLike, bands=None, scale=None, *,
                 cache_mb: int = DEFAULT_CACHE_MB):
        rasterio = require_rasterio()
        from rasterio.errors import RasterioError

        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise DataError(f"{self.path}: scene file not found")
        _configure_gdal(cache_mb)
        try:
            with warnings.catch_warnings():  # a plain image: the commands say so in one line
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self._ds = rasterio.open(self.path)
        except RasterioError as e:
            raise DataError(f"{self.path}: cannot open as a raster ({_reason(e)}); "
                              f"expected a GeoTIFF/COG or another GDAL-readable image") from None
        try:
            self._setup(bands, scale)
        except BaseException:
            self._ds.close()
            raise

    def _setup(self, bands, scale) -> None:
        ds = self._ds
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.crs = ds.crs
        self.transform = ds.transform
        self.dtype = np.dtype(ds.dtypes[0])
        if self.count < 1 or self.width < 1 or self.height < 1:
            raise DataError(f"{self.path}: raster has no pixels ({self.width}x{self.height}, "
                              f"{self.count} bands)")
        self.bands = resolve_bands(bands, self.count, ds.descriptions, self.path)
        kinds = {np.dtype(ds.dtypes[b - 1]).kind for b in self.bands}
        if not kinds <= set(_SUPPORTED_KINDS + "f"):
            raise DataError(f"{self.path}: unsupported pixel type {ds.dtypes[self.bands[0] - 1]} "
                              f"(complex data); convert it to real-valued bands first")
        self._is_float = "f" in kinds
        from rasterio.enums import MaskFlags

        # Bands without nodata value, alpha or mask: skip reading masks that are all 255 anyway.
        self._all_valid = all(ds.mask_flag_enums[b - 1] == [MaskFlags.all_valid] for b in self.bands)
        self.band_names = tuple(ds.descriptions[b - 1] or f"band {b}" for b in self.bands)
        self.scaling = scale if isinstance(scale, Scaling) else self._resolve_scaling(parse_scale(scale))

    def _resolve_scaling(self, spec: ScaleSpec) -> Scaling:
        is_uint8 = all(np.dtype(self._ds.dtypes[b - 1]) == np.uint8 for b in self.bands)
        if spec.mode == "none" or (spec.mode == "auto" and is_uint8):
            return Scaling("none")
        if spec.mode == "fixed":
            low, high = spec.values
            return Scaling("fixed", (low,) * 3, (high,) * 3)
        p_low, p_high = spec.values if spec.mode == "percentile" else DEFAULT_PERCENTILES
        data, valid = self._read_decimated(OVERVIEW_MAX_SIDE)
        if not valid.any():
            raise DataError(f"{self.path}: every pixel is nodata; nothing to scale or tile")
        lows, highs = [], []
        for band in data:
            values = band[valid].astype(np.float64)
            lo, hi = np.percentile(values, [p_low, p_high])
            if not hi > lo:  # a constant band: any non-empty range maps it to one grey level
                hi = lo + 1.0
            lows.append(float(lo))
            highs.append(float(hi))
        return Scaling("percentile", tuple(lows), tuple(highs), (float(p_low), float(p_high)))

    # -- reads --

    def _valid(self, raw: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        valid = np.ones(raw.shape[1:], bool) if masks is None else np.all(masks > 0, axis=0)
        if self._is_float:
            valid &= np.all(np.isfinite(raw), axis=0)
        return valid

    def _read_decimated(self, max_side: int) -> tuple[np.ndarray, np.ndarray]:
        from rasterio.enums import Resampling

        factor = max(1.0, max(self.height, self.width) / max_side)
        shape = (3, max(1, int(round(self.height / factor))), max(1, int(round(self.width / factor))))
        try:
            raw = self._ds.read(self.bands, out_shape=shape, resampling=Resampling.nearest)
            masks = self._ds.read_masks(self.bands, out_shape=shape, resampling=Resampling.nearest)
        except Exception as e:  # GDAL reports a corrupt block as a generic error
            raise DataError(f"{self.path}: cannot read an overview of the scene ({_reason(e)})") from None
        return raw, self._valid(raw, masks)

    def read_window(self, row_off: int, col_off: int, height: int, width: int
                    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB pixels and validity of a window; parts outside the scene come back as no data.

        Args:
            row_off, col_off: top-left pixel of the window (may be negative).
            height, width: window size in pixels.

        Returns:
            ``(rgb, valid)``: ``uint8 (height, width, 3)`` scaled pixels (0 where there is no
            data) and ``bool (height, width)``.

        Raises:
            DataError: GDAL cannot decode the window (a corrupt file), naming file and window.
        """
        from rasterio.windows import Window

        rgb = np.zeros((height, width, 3), np.uint8)
        valid = np.zeros((height, width), bool)
        r0, c0 = max(row_off, 0), max(col_off, 0)
        r1, c1 = min(row_off + height, self.height), min(col_off + width, self.width)
        if r1 <= r0 or c1 <= c0:
            return rgb, valid
        window = Window(c0, r0, c1 - c0, r1 - r0)
        try:
            raw = self._ds.read(self.bands, window=window)
            masks = None if self._all_valid else self._ds.read_masks(self.bands, window=window)
        except Exception as e:
            raise DataError(f"{self.path}: cannot read pixels at rows {r0}:{r1}, cols {c0}:{c1} "
                              f"({_reason(e)}); the file may be truncated or corrupt") from None
        inside = self._valid(raw, masks)
        pixels = self.scaling.apply(raw).transpose(1, 2, 0)
        pixels = np.where(inside[..., None], pixels, np.uint8(0))
        rgb[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off] = pixels
        valid[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off] = inside
        return rgb, valid

    def preview(self, max_side: int = OVERVIEW_MAX_SIDE) -> tuple[np.ndarray, np.ndarray]:
        """A decimated RGB view of the whole scene (``uint8 (h, w, 3)``, ``bool (h, w)`` valid)."""
        raw, valid = self._read_decimated(max_side)
        rgb = self.scaling.apply(raw).transpose(1, 2, 0)
        return np.where(valid[..., None], rgb, np.uint8(0)), valid

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about the scene and how it is read (recorded in every output)."""
        return {"path": self.path, "width": self.width, "height": self.height,
                "band_count": self.count, "dtype": str(self.dtype), "crs": crs_name(self.crs),
                "transform": list(self.transform)[:6], "bands": list(self.bands),
                "band_names": list(self.band_names), "scaling": self.scaling.to_dict()}

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def crs_name(crs) -> str | None:
    """``"EPSG:32633"`` where the CRS has an EPSG code, its WKT otherwise, ``None`` without CRS."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
