"""Georeferenced scenes (GeoTIFF / COG): windowed reading, tiling, and outputs in the scene's CRS.

Needs the optional extra ``pip install remoteclip_jax[geo]`` (rasterio). Entry points:

  classify_scene(scene, encode_chips, class_embeddings, classnames, out_dir, ...) -> summary
      writes tiles.geojson (polygons in the scene CRS) and classmap.tif
  query_scene(scene, encode_chips, text_embedding, out_dir, query=...) -> summary
      writes heatmap.tif and heatmap.png
  embed_scene(scene, encode_chips, out_dir, ...) -> summary     tiles into the embedding store
      (`remoteclip_jax.data.store`), which `remoteclip-jax search` answers with places
  SceneTileSource(paths, tile, stride, bands, scale, ...)        chips as a data source

``encode_chips`` is any callable ``uint8 (N, H, W, 3) -> float32 (N, E)`` returning L2-normalised
image embeddings; it does its own preprocessing (resize to the model's input size).
Modules are imported on first use, so importing this package does not import rasterio.
"""
from remoteclip_jax.lazy import lazy_attributes

_EXPORTS = {
    "classify_scene": "remoteclip_jax.geo.workflows",
    "query_scene": "remoteclip_jax.geo.workflows",
    "embed_scene": "remoteclip_jax.geo.workflows",
    "SceneTileSource": "remoteclip_jax.geo.source",
    "Scene": "remoteclip_jax.geo.raster",
    "TileGrid": "remoteclip_jax.geo.tiles",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes("remoteclip_jax.geo", _EXPORTS)
