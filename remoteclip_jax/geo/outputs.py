"""Georeferenced outputs: tile GeoJSON, tile-resolution GeoTIFFs, a heatmap picture, a tile store.

Every file is written to a temporary name beside its destination and renamed into place, so an
interrupted run leaves either the finished file or nothing.

* GeoJSON: a FeatureCollection whose polygons are in the **scene's CRS**, named in a ``crs``
  member (``{"type": "name", "properties": {"name": "EPSG:32633"}}``, the pre-RFC 7946 form that
  GDAL/QGIS read), because tile footprints are only exact in the CRS the pixels were gridded in.
  RFC 7946 GeoJSON (WGS84 longitude/latitude) can be written beside it (`write_geojson_wgs84`).
* GeoTIFFs at tile resolution: one pixel per stride step, with the scene's CRS and its transform
  scaled by the stride (see `remoteclip_jax.geo.tiles`).
* Search hits over a scene's tile store (`remoteclip_jax.data.store`) as places: a GeoJSON of
  the hit tiles' footprints, and their pixels for a contact sheet.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from remoteclip_jax.errors import ConfigError
from remoteclip_jax.files import atomic_write

# Distinct colours for class maps (tab20 without the pale half first): readable on a dark legend.
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
            (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
            (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229)]
CLASSMAP_NODATA = 255  # class index of skipped tiles (so at most 255 classes)


# --- GeoJSON ------------------------------------------------------------------------------------


def tile_feature(ring: Sequence[tuple[float, float]], properties: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON polygon Feature from a closed ring of CRS coordinates."""
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
            "properties": properties}


def write_geojson(path: str | os.PathLike, features: Iterable[dict[str, Any]], crs_name: str | None,
                  properties: dict[str, Any] | None = None) -> None:
    """Writes a FeatureCollection whose coordinates are in ``crs_name`` (named in its ``crs`` member).

    Args:
        path: the .geojson file.
        features: GeoJSON Features (coordinates in the named CRS).
        crs_name: e.g. ``"EPSG:32633"`` (or a WKT string); ``None`` writes ``"crs": null``
            (pixel coordinates of a raster without georeferencing).
        properties: run settings, stored as a top-level ``properties`` member.
    """
    crs = None if crs_name is None else {"type": "name", "properties": {"name": crs_name}}
    collection = {"type": "FeatureCollection", "crs": crs, "properties": properties or {},
                  "features": list(features)}
    with atomic_write(path) as f:
        json.dump(collection, f)


def write_geojson_wgs84(path: str | os.PathLike, features: Sequence[dict[str, Any]], src_crs,
                        properties: dict[str, Any] | None = None) -> None:
    """The same features reprojected to RFC 7946 GeoJSON (EPSG:4326 longitude/latitude)."""
    from rasterio.warp import transform_geom

    geoms = transform_geom(src_crs, "EPSG:4326", [f["geometry"] for f in features])
    out = [{**f, "geometry": g} for f, g in zip(features, geoms)]
    collection = {"type": "FeatureCollection", "properties": properties or {}, "features": out}
    with atomic_write(path) as f:
        json.dump(collection, f)


# --- tile-resolution GeoTIFFs -----------------------------------------------------------------


def class_colours(n: int) -> dict[int, tuple[int, int, int, int]]:
    """Colour table for ``n`` classes (RGBA), index `CLASSMAP_NODATA` transparent."""
    table = {i: (*_PALETTE[i % len(_PALETTE)], 255) for i in range(n)}
    table[CLASSMAP_NODATA] = (0, 0, 0, 0)
    return table


def write_tile_raster(path: str | os.PathLike, values: np.ndarray, transform, crs, *, nodata,
                      tags: dict[str, str] | None = None, description: str = "",
                      colormap: dict[int, tuple[int, ...]] | None = None) -> None:
    """Writes a single-band GeoTIFF (``values`` is ``(rows, cols)``) with georeferencing and tags."""
    import rasterio

    with atomic_write(path, None) as tmp:
        profile = {"driver": "GTiff", "height": values.shape[0], "width": values.shape[1],
                   "count": 1, "dtype": values.dtype.name, "crs": crs, "transform": transform,
                   "nodata": nodata, "compress": "deflate"}
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(values, 1)
            if colormap is not None:
                dst.write_colormap(1, colormap)
            if description:
                dst.set_band_description(1, description)
            if tags:
                dst.update_tags(**tags)


def write_classmap(path: str | os.PathLike, class_index: np.ndarray, classnames: Sequence[str],
                   transform, crs, tags: dict[str, str] | None = None) -> None:
    """uint8 class map (`CLASSMAP_NODATA` where tiles were skipped) with colour table and names.

    Class names are stored as tags ``class_<i>`` and as a JSON list in tag ``classes``.
    """
    if len(classnames) > CLASSMAP_NODATA:
        raise ConfigError(f"{len(classnames)} classes: a class map holds at most {CLASSMAP_NODATA}")
    names = {f"class_{i}": name for i, name in enumerate(classnames)}
    write_tile_raster(path, class_index.astype(np.uint8), transform, crs, nodata=CLASSMAP_NODATA,
                      tags={**(tags or {}), **names, "classes": json.dumps(list(classnames))},
                      description="class index (tag class_<i> names it)",
                      colormap=class_colours(len(classnames)))


# --- heatmap picture ------------------------------------------------------------------------------


def write_heatmap_png(path: str | os.PathLike, preview: np.ndarray, heat: np.ndarray,
                      heat_box: tuple[float, float, float, float], scene_size: tuple[int, int], title: str,
                      *, note: str = "", alpha: float = 0.55, cmap: str = "inferno",
                      dpi: int = 110) -> None:
    """Scene preview with the heatmap laid over it, a colour bar and a title.

    Args:
        path: the .png file.
        preview: ``uint8 (h, w, 3)`` decimated scene.
        heat: ``float (rows, cols)`` tile-resolution values, NaN where tiles were skipped.
        heat_box: ``(left, top, right, bottom)`` of the heat raster, in scene pixels.
        scene_size: ``(width, height)`` of the scene in pixels.
        title: shown above the picture (the query).
        note: a smaller line under the picture (CRS, tile size, skipped tiles).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    width, height = scene_size
    aspect = height / width
    fig_w = 8.0
    fig, ax = plt.subplots(figsize=(fig_w, fig_w * aspect * 0.85 + 0.9), dpi=dpi)
    ax.imshow(preview, extent=(0, width, height, 0), interpolation="bilinear")
    masked = np.ma.masked_invalid(heat)
    finite = heat[np.isfinite(heat)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    shown = ax.imshow(masked, extent=(heat_box[0], heat_box[2], heat_box[3], heat_box[1]), cmap=cmap,
                      alpha=alpha, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-6,
                      interpolation="nearest")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xlabel("scene column (px)")
    ax.set_ylabel("scene row (px)")
    ax.set_title(title, fontsize=11)
    bar = fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02)
    bar.set_alpha(1.0)
    bar.set_label("cosine similarity (tile vs. text)")
    if note:
        fig.text(0.01, 0.005, note, fontsize=8, color="0.3", ha="left", va="bottom")
    with atomic_write(path, None) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


# --- search hits as places -------------------------------------------------------------------------


def wkt_ring(wkt: str) -> list[tuple[float, float]]:
    """The ring of a ``POLYGON ((x y, ...))`` footprint (as the tile store's metadata holds it)."""
    inner = wkt[wkt.index("((") + 2:wkt.rindex("))")]
    return [tuple(float(v) for v in point.split()) for point in inner.split(",")]


def write_places(path: str | os.PathLike, results, metadata: dict, crs_name: str | None,
                 scene: dict) -> str:
    """The hit tiles of search results as a GeoJSON in the scene's CRS (one feature per hit,
    with query, rank, score, tile_id and the tile's window); returns `path`."""
    keys = ("tile_id", "row", "col", "row_off", "col_off", "height", "width")
    features = [tile_feature(wkt_ring(metadata["footprint_wkt"][row]),
                             {"query": r.query, "rank": rank, "score": score,
                              **{k: metadata[k][row] for k in keys if k in metadata}})
                for r in results for rank, (row, (_, score)) in enumerate(zip(r.rows, r.hits), 1)]
    properties = {"scene": scene.get("path")}
    if crs_name is None:
        properties["warning"] = "the scene has no CRS: coordinates are in pixel units"
    write_geojson(path, features, crs_name, properties)
    return os.fspath(path)


def tile_chips(metadata: dict, rows, identity: dict) -> list[np.ndarray]:
    """The pixels of store rows of a scene tile store, read as the store was embedded (bands,
    scaling); nodata shows as black."""
    from remoteclip_jax.geo.raster import Scaling, Scene

    scene = identity.get("scene", {})
    chips, open_scenes = [], {}
    try:
        for row in rows:
            path = metadata["image_path"][row]
            if path not in open_scenes:
                open_scenes[path] = Scene(path, bands=scene.get("bands"),
                                          scale=Scaling.from_dict(scene["scaling"]))
            rgb, valid = open_scenes[path].read_window(
                *(metadata[k][row] for k in ("row_off", "col_off", "height", "width")))
            chips.append(np.where(valid[..., None], rgb, 0).astype(np.uint8))
    finally:
        for opened in open_scenes.values():
            opened.close()
    return chips
