"""Scene-level commands: classify every tile, map a text query, embed tiles into the store.

Each function opens one scene, cuts it into the tile grid of `remoteclip_jax.geo.tiles`, reads
tiles window by window in batches, hands each batch to a caller-supplied image encoder and writes
georeferenced outputs in the scene's CRS. The encoder is a plain callable, so any model or
runtime can be plugged in:

    encode_chips(chips: uint8 (N, H, W, 3)) -> float32 (N, E), rows L2-normalised

(it does its own preprocessing, including resizing chips to the model's input size). Class and
query embeddings are text embeddings from the same model, ``(C, E)`` / ``(E,)``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.files import write_json
from remoteclip_jax.geo import outputs
from remoteclip_jax.geo.raster import Scene, crs_name
from remoteclip_jax.geo.tiles import TileGrid, iter_tile_batches, tile_id

EncodeChips = Callable[[np.ndarray], np.ndarray]


def _normalise(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if not np.all(norms > 0):
        raise DataError(f"{what}: an embedding is all zeros")
    return x / norms


def _encode(encode_chips: EncodeChips, chips: np.ndarray) -> np.ndarray:
    emb = np.asarray(encode_chips(chips), np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(chips):
        raise ValueError(f"encode_chips returned shape {emb.shape} for {len(chips)} chips; "
                         f"expected ({len(chips)}, E)")
    return emb


def _progress(total: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tile", desc=os.path.basename(name), disable=not enabled,
                dynamic_ncols=True)


def _tile_record(scene: Scene, grid: TileGrid, index: int) -> tuple[dict[str, Any], list]:
    row, col = grid.rowcol(index)
    row_off, col_off, h, w = grid.window(index)
    ring = grid.footprint(index, scene.transform)
    props = {"tile_id": tile_id(scene.path, row, col), "row": row, "col": col,
             "window": {"row_off": row_off, "col_off": col_off, "height": h, "width": w}}
    return props, ring


def _settings(scene: Scene, grid: TileGrid, **extra) -> dict[str, Any]:
    return {"scene": scene.describe(),
            "grid": {"tile_px": [grid.tile_h, grid.tile_w], "stride_px": [grid.stride_h, grid.stride_w],
                     "shape": list(grid.shape), "tiles": len(grid), "edge": "shift-inward"},
            **extra}


class _Run:
    """Shared plumbing: scene, grid, timing and the summary every command returns."""

    def __init__(self, scene_path, out_dir, *, tile, stride, units, bands, scale, nodata_max_fraction,
                 fill, batch_size, chip_size, progress):
        self.scene = Scene(scene_path, bands=bands, scale=scale)
        self.grid = TileGrid.for_scene(self.scene.height, self.scene.width, self.scene.transform,
                                       self.scene.crs, tile, stride, units)
        if self.grid.tile_h > self.scene.height or self.grid.tile_w > self.scene.width:
            self.scene.close()
            raise ConfigError(f"--tile {tile:g}{'' if units == 'px' else ' m'}: larger than the "
                              f"scene ({self.scene.width} x {self.scene.height} px); use a tile of "
                              f"at most {min(self.scene.width, self.scene.height)} px, or give the "
                              "image without --tile (classify, embed)")
        if self.scene.crs is None:
            print(f"warning: {self.scene.path} has no georeferencing (no CRS): outputs are in "
                  "pixel coordinates", file=sys.stderr)
        self.out_dir = os.fspath(out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self.read_args = {"batch_size": batch_size, "nodata_max_fraction": nodata_max_fraction,
                          "fill": fill, "chip_size": chip_size}
        self.progress = progress
        self.start = time.perf_counter()
        self.kept = 0
        self.skipped = 0

    def batches(self, indices=None):
        total = len(self.grid) if indices is None else len(indices)
        with _progress(total, self.scene.path, self.progress) as bar:
            for batch in iter_tile_batches(self.scene, self.grid, indices=indices, progress=bar,
                                           **self.read_args):
                self.kept += len(batch.indices)
                self.skipped += len(batch.skipped)
                yield batch

    def settings(self, **extra) -> dict[str, Any]:
        return _settings(self.scene, self.grid, nodata_max_fraction=self.read_args["nodata_max_fraction"],
                         fill=self.read_args["fill"], chip_size=self.read_args["chip_size"], **extra)

    def summary(self, outputs_written: dict[str, str], **extra) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start
        done = self.kept + self.skipped
        summary = {**self.settings(), "tiles_kept": self.kept, "tiles_skipped_nodata": self.skipped,
                   "seconds": round(seconds, 3), "tiles_per_s": round(done / seconds, 2) if seconds else None,
                   "outputs": outputs_written, **extra}
        if self.scene.crs is None:
            summary["warning"] = "the scene has no CRS: coordinates are in pixel units"
        write_json(os.path.join(self.out_dir, "summary.json"), summary)
        return summary

    def close(self):
        self.scene.close()


def classify_scene(scene_path: str | os.PathLike, encode_chips: EncodeChips, class_embeddings: np.ndarray,
                   classnames: Sequence[str], out_dir: str | os.PathLike, *, tile: float = 224,
                   stride: float | None = None, units: str = "px", bands=None, scale=None,
                   nodata_max_fraction: float = 0.5, fill: str = "zero", batch_size: int = 64,
                   top_k: int = 3, logit_scale: float = 100.0, chip_size: int | None = None,
                   wgs84: bool = False, progress: bool = True) -> dict[str, Any]:
    """Zero-shot classifies every tile of a scene.

    Writes ``out_dir/tiles.geojson`` (one polygon per kept tile in the scene's CRS, with
    ``label``, ``score`` (softmax probability of ``logit_scale`` x cosine similarity, CLIP's
    zero-shot rule), ``similarity`` (cosine), ``top_k``, ``row``/``col``, ``window``,
    ``nodata_fraction``), ``out_dir/classmap.tif`` (uint8 class index per stride cell, 255 where
    tiles were skipped, colour table, class names in tags), optionally
    ``out_dir/tiles_wgs84.geojson`` (RFC 7946 lon/lat), and ``out_dir/summary.json``.

    Args:
        scene_path: the GeoTIFF/COG.
        encode_chips: ``uint8 (N, H, W, 3) -> float32 (N, E)`` L2-normalised image embeddings.
        class_embeddings: ``(C, E)`` text embeddings of the class prompts (normalised here).
        classnames: the ``C`` names, in the order of ``class_embeddings``.
        out_dir: output directory (created).
        tile, stride, units: tile grid, see `TileGrid.for_scene`.
        bands, scale: see `remoteclip_jax.geo.raster.Scene`.
        nodata_max_fraction: tiles with more nodata than this are skipped (and counted).
        fill: ``"zero"`` or ``"mean"`` for nodata pixels inside kept tiles.
        batch_size: tiles per encoder call; bounds memory.
        top_k: class scores kept per tile.
        logit_scale: multiplier of the similarities before the softmax (100 for CLIP models).
        chip_size: resize chips in the reader (default: native size, the encoder resizes).
        wgs84: also write ``tiles_wgs84.geojson``.
        progress: show a tqdm bar.

    Returns:
        The summary (also written to ``summary.json``): scene facts, scaling, grid, counts,
        per-class tile counts, timing and output paths.
    """
    classnames = list(classnames)
    class_emb = _normalise(class_embeddings, "class_embeddings")
    if class_emb.ndim != 2 or len(class_emb) != len(classnames) or not classnames:
        raise ConfigError(f"{len(classnames)} class names for class embeddings of shape {class_emb.shape}")
    top_k = max(1, min(int(top_k), len(classnames)))
    run = _Run(scene_path, out_dir, **dict(tile=tile, stride=stride, units=units, bands=bands, scale=scale,
                                         nodata_max_fraction=nodata_max_fraction, fill=fill,
                                         batch_size=batch_size, chip_size=chip_size, progress=progress))
    try:
        per_tile = np.full(run.grid.shape, outputs.CLASSMAP_NODATA, np.uint8)
        features = []
        counts = dict.fromkeys(classnames, 0)
        for batch in run.batches():
            if not batch.indices:
                continue
            emb = _encode(encode_chips, batch.chips)
            sims = emb @ class_emb.T
            logits = logit_scale * sims.astype(np.float64)
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            for k, index in enumerate(batch.indices):
                order = np.argsort(-probs[k], kind="stable")[:top_k]
                best = int(order[0])
                props, ring = _tile_record(run.scene, run.grid, index)
                props.update(label=classnames[best], score=float(probs[k, best]),
                             similarity=float(sims[k, best]),
                             top_k=[{"label": classnames[int(c)], "score": float(probs[k, c])} for c in order],
                             nodata_fraction=round(batch.nodata_fractions[k], 6))
                features.append(outputs.tile_feature(ring, props))
                per_tile[props["row"], props["col"]] = best
                counts[classnames[best]] += 1
        settings = run.settings(classnames=classnames, top_k=top_k, logit_scale=logit_scale)
        written = {"tiles": os.path.join(run.out_dir, "tiles.geojson"),
                   "classmap": os.path.join(run.out_dir, "classmap.tif")}
        header = {**settings, "tiles_kept": run.kept, "tiles_skipped_nodata": run.skipped}
        if run.scene.crs is None:
            header["warning"] = "the scene has no CRS: coordinates are in pixel units"
        outputs.write_geojson(written["tiles"], features, crs_name(run.scene.crs), header)
        if wgs84 and run.scene.crs is not None:
            written["tiles_wgs84"] = os.path.join(run.out_dir, "tiles_wgs84.geojson")
            outputs.write_geojson_wgs84(written["tiles_wgs84"], features, run.scene.crs, header)
        outputs.write_classmap(written["classmap"], run.grid.to_raster(per_tile), classnames,
                               run.grid.raster_transform(run.scene.transform), run.scene.crs,
                               tags=_tags(settings))
        return run.summary(written, class_counts=counts)
    finally:
        run.close()


def _tags(settings: dict[str, Any]) -> dict[str, str]:
    scene = settings["scene"]
    return {"remoteclip_source": scene["path"], "remoteclip_bands": json.dumps(scene["bands"]),
            "remoteclip_scaling": json.dumps(scene["scaling"]),
            "remoteclip_grid": json.dumps(settings["grid"])}


def query_scene(scene_path: str | os.PathLike, encode_chips: EncodeChips, text_embedding: np.ndarray,
                out_dir: str | os.PathLike, *, query: str = "", tile: float = 224,
                stride: float | None = None, units: str = "px", bands=None, scale=None,
                nodata_max_fraction: float = 0.5, fill: str = "zero", batch_size: int = 64,
                chip_size: int | None = None, preview_side: int = 1024, top_n: int = 5,
                progress: bool = True) -> dict[str, Any]:
    """Maps how well each tile matches a text query.

    Writes ``out_dir/heatmap.tif`` (float32 cosine similarity per stride cell, NaN where tiles
    were skipped, georeferenced), ``out_dir/heatmap.png`` (decimated scene with the heatmap
    over it, colour bar, the query as title) and ``summary.json``.

    Args:
        text_embedding: ``(E,)`` or ``(1, E)`` embedding of the query text (normalised here).
        query: the query text, for the picture and the summary.
        preview_side: longest side of the scene preview in the PNG.
        top_n: best-matching tiles listed (with footprints) in the summary.
        Other arguments: as `classify_scene`.

    Returns:
        The summary, with ``best_tiles``: the ``top_n`` highest-similarity tiles.
    """
    text = _normalise(np.asarray(text_embedding).reshape(-1), "text_embedding")
    run = _Run(scene_path, out_dir, **dict(tile=tile, stride=stride, units=units, bands=bands, scale=scale,
                                         nodata_max_fraction=nodata_max_fraction, fill=fill,
                                         batch_size=batch_size, chip_size=chip_size, progress=progress))
    try:
        per_tile = np.full(run.grid.shape, np.nan, np.float32)
        for batch in run.batches():
            if not batch.indices:
                continue
            sims = _encode(encode_chips, batch.chips) @ text
            for index, s in zip(batch.indices, sims):
                per_tile[run.grid.rowcol(index)] = s
        heat = run.grid.to_raster(per_tile)
        settings = run.settings(query=query)
        written = {"heatmap": os.path.join(run.out_dir, "heatmap.tif"),
                   "heatmap_png": os.path.join(run.out_dir, "heatmap.png")}
        outputs.write_tile_raster(written["heatmap"], heat, run.grid.raster_transform(run.scene.transform),
                                  run.scene.crs, nodata=np.nan, tags={**_tags(settings), "query": query},
                                  description=f"cosine similarity to: {query}")
        preview, _ = run.scene.preview(preview_side)
        outputs.write_heatmap_png(written["heatmap_png"], preview, heat, run.grid.raster_box,
                                  (run.scene.width, run.scene.height),
                                  f"{os.path.basename(run.scene.path)}: \"{query}\"",
                                  note=f"{crs_name(run.scene.crs) or 'no CRS'}; tiles "
                                       f"{run.grid.tile_w}x{run.grid.tile_h} px every "
                                       f"{run.grid.stride_w} px; {run.skipped} tiles skipped "
                                       f"(no data, shown without colour)")
        order = np.argsort(-np.nan_to_num(per_tile.ravel(), nan=-np.inf), kind="stable")
        best = []
        for index in order[:top_n]:
            if np.isnan(per_tile.ravel()[index]):
                break
            props, ring = _tile_record(run.scene, run.grid, int(index))
            best.append({**props, "similarity": float(per_tile.ravel()[index]), "footprint": ring})
        return run.summary(written, best_tiles=best)
    finally:
        run.close()


def _wkt(ring) -> str:
    return "POLYGON ((" + ", ".join(f"{x!r} {y!r}" for x, y in ring) + "))"


def embed_scene(scene_path: str | os.PathLike, encode_chips: EncodeChips, out_dir: str | os.PathLike, *,
                tile: float = 224, stride: float | None = None, units: str = "px", bands=None,
                scale=None, nodata_max_fraction: float = 0.5, fill: str = "zero", batch_size: int = 64,
                chip_size: int | None = None, shard_tiles: int = 4096, metadata_format: str = "auto",
                identity: dict | None = None, overwrite: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """Embeds every kept tile into the embedding store (`remoteclip_jax.data.store`), resumably.

    Shard ``k`` holds the kept tiles of grid indices ``[k * shard_tiles, (k + 1) * shard_tiles)``;
    its metadata rows carry ``tile_id``, ``image_path`` (the scene), ``row``/``col``, the pixel
    window, ``minx``..``maxy`` and ``footprint_wkt`` in the scene's CRS (named in store.json), and
    ``nodata_fraction``. Rerunning the same command after an interruption keeps finished shards;
    other settings (scene, bands, scaling, grid, nodata rules, model) are refused.

    Args:
        shard_tiles: grid tiles per shard.
        metadata_format: ``"auto"`` (parquet when pyarrow is installed, else JSONL),
            ``"parquet"`` or ``"jsonl"``.
        identity: more facts the store must match on resume (e.g. the model's fingerprint).
        overwrite: replace a store of other inputs in `out_dir`.
        Other arguments: as `classify_scene`.

    Returns:
        The summary, with ``shards``, ``resumed_tiles`` (tiles already done) and ``tiles_in_store``.
    """
    from remoteclip_jax.data.store import EmbeddingStore, StoreWriter

    if shard_tiles < 1:
        raise ConfigError(f"--shard-tiles {shard_tiles}: must be at least 1")
    if metadata_format == "auto":
        metadata_format = "parquet" if importlib.util.find_spec("pyarrow") else "jsonl"
    run = _Run(scene_path, out_dir, **dict(tile=tile, stride=stride, units=units, bands=bands, scale=scale,
                                         nodata_max_fraction=nodata_max_fraction, fill=fill,
                                         batch_size=batch_size, chip_size=chip_size, progress=progress))
    try:
        num_shards = -(-len(run.grid) // shard_tiles)
        settings = run.settings(shard_tiles=shard_tiles)
        # The store may be resumed and searched from any directory: the scene by absolute path.
        settings["scene"] = {**settings["scene"], "path": os.path.abspath(run.scene.path)}
        writer = StoreWriter(run.out_dir, {**settings, **(identity or {})},
                             {"crs": crs_name(run.scene.crs), "source": run.scene.path},
                             num_shards, ("image",), metadata_format, overwrite)
        todo = [k for k in range(num_shards) if not writer.is_done(k)]
        resumed = sum(min(shard_tiles, len(run.grid) - k * shard_tiles)
                      for k in range(num_shards) if k not in todo)
        width = None  # the embedding width, for shards whose tiles are all skipped
        for k in todo:
            embeddings, rows = [], []
            for batch in run.batches(range(k * shard_tiles, min((k + 1) * shard_tiles, len(run.grid)))):
                if batch.indices:
                    embeddings.append(_encode(encode_chips, batch.chips))
                    width = embeddings[-1].shape[1]
                for index, fraction in zip(batch.indices, batch.nodata_fractions):
                    props, ring = _tile_record(run.scene, run.grid, index)
                    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
                    rows.append({"tile_id": props["tile_id"], "image_path": os.path.abspath(run.scene.path),
                                 "row": props["row"], "col": props["col"], **props["window"],
                                 "minx": min(xs), "miny": min(ys), "maxx": max(xs), "maxy": max(ys),
                                 "footprint_wkt": _wkt(ring), "nodata_fraction": round(fraction, 6)})
            if not embeddings:  # every tile of the shard skipped
                if width is None:  # nothing encoded yet: learn the width once, from a zero tile
                    width = _encode(encode_chips, np.zeros(
                        (1, run.grid.tile_h, run.grid.tile_w, 3), np.uint8)).shape[1]
                embeddings = [np.zeros((0, width), np.float32)]
            columns = {key: [r[key] for r in rows] for key in (rows[0] if rows else ())}
            writer.write_shard(k, {"image": np.concatenate(embeddings)}, {"image": columns})
        writer.finish()
        return run.summary({"store": run.out_dir}, shards=num_shards, resumed_tiles=resumed,
                           tiles_in_store=len(EmbeddingStore(run.out_dir)))
    finally:
        run.close()
