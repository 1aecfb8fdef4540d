"""Georeferenced outputs: tile GeoJSON, tile-resolution GeoTIFFs, a heatmap picture, a tile store.

Every file is written to a temporary name beside its destination and renamed into place, so an
interrupted run leaves either the finished file or nothing.

* GeoJSON: a FeatureCollection whose polygons are in the **scene's CRS**, named in a ``crs``
  member (``{"type": "name", "properties": {"name": "EPSG:32633"}}``, the pre-RFC 7946 form that
  GDAL/QGIS read), because tile footprints are only exact in the CRS the pixels were gridded in.
  RFC 7946 GeoJSON (WGS84 longitude/latitude) can be written beside it (`write_geojson_wgs84`).
* GeoTIFFs at tile resolution: one pixel per stride step, with the scene's CRS and its transform
  scaled by the stride (see `remoteclip_jax.geo.tiles`).
* A tile store in the layout clip-retrieval uses, ``embeddings/img_emb/img_emb_0000.npy`` beside
  ``metadata/metadata_0000.parquet`` (or ``.jsonl`` when pyarrow is not installed), with each row's
  footprint (WKT and bounds) so a search answers with places.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from remoteclip_jax.errors import UserError
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
        raise UserError(f"{len(classnames)} classes: a class map holds at most {CLASSMAP_NODATA}")
    names = {f"class_{i}": name for i, name in enumerate(classnames)}
    write_tile_raster(path, class_index.astype(np.uint8), transform, crs, nodata=CLASSMAP_NODATA,
                      tags={**(tags or {}), **names, "classes": json.dumps(list(classnames))},
                      description="class index (tag class_<i> names it)",
                      colormap=class_colours(len(classnames)))


# --- heatmap picture ------------------------------------------------------------------------------


def write_heatmap_png(path: str | os.PathLike, preview: np.ndarray, heat: np.ndarray,
                      heat_extent: tuple[float, float], scene_size: tuple[int, int], title: str,
                      *, note: str = "", alpha: float = 0.55, cmap: str = "inferno",
                      dpi: int = 110) -> None:
    """Scene preview with the heatmap laid over it, a colour bar and a title.

    Args:
        path: the .png file.
        preview: ``uint8 (h, w, 3)`` decimated scene.
        heat: ``float (rows, cols)`` tile-resolution values, NaN where tiles were skipped.
        heat_extent: ``(width, height)`` the heat raster spans, in scene pixels (it may reach
            past the scene edge by less than one stride).
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
    shown = ax.imshow(masked, extent=(0, heat_extent[0], heat_extent[1], 0), cmap=cmap,
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


# --- tile embedding store --------------------------------------------------------------------------


def _have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def write_tile_store(out_dir: str | os.PathLike, shard: int, embeddings: np.ndarray,
                     metadata: Sequence[dict[str, Any]], *, metadata_format: str = "auto") -> dict[str, str]:
    """Writes one shard of tile embeddings and their metadata rows (atomic per file).

    Layout (clip-retrieval's): ``out_dir/embeddings/img_emb/img_emb_{shard:04d}.npy`` (float32
    ``(n, E)``) and ``out_dir/metadata/metadata_{shard:04d}.parquet``, or ``.jsonl`` when pyarrow
    is missing (``metadata_format`` ``"parquet"``/``"jsonl"`` forces one). Row ``i`` of the
    metadata describes row ``i`` of the embeddings. The metadata is written last, so a shard
    whose metadata exists is complete.

    Returns:
        ``{"embeddings": path, "metadata": path}``.
    """
    if len(metadata) != len(embeddings):
        raise ValueError(f"write_tile_store: {len(embeddings)} embeddings but {len(metadata)} rows")
    if metadata_format == "auto":
        metadata_format = "parquet" if _have_pyarrow() else "jsonl"
    out_dir = os.fspath(out_dir)
    emb_path = os.path.join(out_dir, "embeddings", "img_emb", f"img_emb_{shard:04d}.npy")
    meta_path = os.path.join(out_dir, "metadata", f"metadata_{shard:04d}.{metadata_format}")
    with atomic_write(emb_path, "wb") as f:
        np.save(f, np.asarray(embeddings, np.float32))
    with atomic_write(meta_path, None) as tmp:
        if metadata_format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(list(metadata)), tmp)
        elif metadata_format == "jsonl":
            with open(tmp, "w") as f:
                for row in metadata:
                    f.write(json.dumps(row) + "\n")
        else:
            raise ValueError(f"write_tile_store: metadata_format {metadata_format!r}")
    return {"embeddings": emb_path, "metadata": meta_path}


def _read_metadata(path: str) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        if not _have_pyarrow():
            raise UserError(f"{path}: reading parquet metadata needs pyarrow: install pyarrow "
                            f"(pip install pyarrow)")
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_tile_store(out_dir: str | os.PathLike) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """All shards of a tile store: ``(float32 (N, E) embeddings, N metadata rows)``, shard order."""
    out_dir = os.fspath(out_dir)
    embeddings, rows = [], []
    for emb_path in sorted(glob.glob(os.path.join(out_dir, "embeddings", "img_emb", "img_emb_*.npy"))):
        shard = os.path.basename(emb_path)[len("img_emb_"):-len(".npy")]
        metas = glob.glob(os.path.join(out_dir, "metadata", f"metadata_{shard}.*"))
        metas = [m for m in metas if m.endswith((".parquet", ".jsonl"))]
        if not metas:
            continue  # interrupted between the two files: the shard is redone on resume
        emb = np.load(emb_path, mmap_mode="r")
        meta = _read_metadata(metas[0])
        if len(meta) != len(emb):
            raise UserError(f"{metas[0]}: {len(meta)} rows for {len(emb)} embeddings in {emb_path};"
                            f" the store is damaged, embed the scene again into a new directory")
        embeddings.append(np.asarray(emb))
        rows.extend(meta)
    if not embeddings:
        raise UserError(f"{out_dir}: no tile embeddings found (expected embeddings/img_emb/"
                        f"img_emb_0000.npy and metadata/metadata_0000.*)")
    return np.concatenate(embeddings), rows
