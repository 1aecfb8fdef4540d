"""`remoteclip-jax search`: text -> image and image -> image top-k over an embedding store.

Queries are encoded with the store's model and scored by cosine similarity against the store's
image rows (`data.store`: images, or the tiles of a scene), exactly on the device, approximately,
or with a faiss index built from the store (`inference.topk`). Results are printed, and with
--out written as results.csv plus a contact sheet (PNG and/or a self-contained HTML page); a
scene's tile store answers with places too: OUT/hits.geojson, the hit tiles' footprints in the
scene's CRS. A store written by an earlier version of this package is read, or refused in one
line (`data.store`).

    remoteclip-jax search store/ --model RemoteCLIP-ViT-B-32.pt --text "many planes at an airport" --top-k 8 --out hits/
    remoteclip-jax search scene_store/ --model ... --text "a harbour with ships" --out places/
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Sequence

import numpy as np

from remoteclip_jax.data.store import EmbeddingStore
from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.files import atomic_write
from remoteclip_jax.inference import command_line
from remoteclip_jax.inference.contact_sheet import QueryHits, html_contact_sheet, png_contact_sheet
from remoteclip_jax.inference.loading import make_encoder
from remoteclip_jax.inference.topk import (DEFAULT_CHUNK_ROWS, METHODS, distinct_hits,
                                           duplicates_factor, faiss_top_k, top_k)
from remoteclip_jax.weights.fingerprint import weights_fingerprint

SHEETS = ("png", "html", "both", "none")


def encode_queries(encoder, texts: Sequence[str] = (), images: Sequence[str] = ()) -> np.ndarray:
    """(len(texts) + len(images), E) unit query vectors, texts first.

    Raises:
        DataError: a query image that cannot be read.
    """
    parts = []
    if texts:
        parts.append(encoder.texts(list(texts), desc="queries"))
    if images:
        encoded = encoder.images(list(images), desc="query images")
        if encoded.skipped:
            raise DataError(f"query image {encoded.skipped[0][1]}")
        parts.append(encoded.features)
    return np.concatenate(parts) if parts else np.zeros((0, encoder.embed_dim), np.float32)


def _check_model(store: EmbeddingStore, encoder) -> None:
    if store.embed_dim != encoder.embed_dim:
        raise DataError(f"{store.root}: holds {store.embed_dim}-dimensional embeddings but --model "
                        f"gives {encoder.embed_dim}; search with the model that embedded the store"
                        f" ({store.manifest.get('info', {}).get('model') or 'see its store.json'})")
    identity = store.manifest.get("identity", {})
    if identity.get("dtype") == str(encoder.dtype) and "model_fingerprint" in identity and \
            identity["model_fingerprint"] != weights_fingerprint(encoder.variables):
        print(f"warning: {store.root} was embedded with another model than --model; scores "
              "compare vectors of different models", file=sys.stderr)


def search(store_dir: str, *, texts: Sequence[str] = (), images: Sequence[str] = (),
           model=None, encoder=None, k: int = 10, method: str = "exact",
           faiss_index: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
           out_dir: str | None = None, sheet: str = "both", **encoder_options) -> list[QueryHits]:
    """Top-k images (or scene tiles) of a store for text and/or image queries.

    Args:
        store_dir: a store written by `embed` (or by clip-retrieval).
        texts: text queries.
        images: query image files.
        model: the store's model (directory, weights file or `(model, variables)`), or `encoder`.
        encoder: an `Encoder` to reuse.
        k: distinct images (tiles) per query.
        method: "exact" or "approx" device top-k (ignored with `faiss_index`).
        faiss_index: search this faiss index file instead (built from the store's img_emb rows).
        chunk_rows: store rows per device step (memory bound).
        out_dir: write results.csv, contact sheets and, for a scene's tiles, hits.geojson there.
        sheet: "png", "html", "both" or "none".
        **encoder_options: arch, batch_size, dtype, num_workers, progress for a new `Encoder`.

    Returns:
        One `QueryHits` per query (texts first, then images), hits best first; each hit is
        (image path or tile id, score) and ``rows`` are their store rows.
    """
    if not texts and not images:
        raise ConfigError("no query: pass --text \"...\" and/or --image PATH")
    if k < 1:
        raise ConfigError(f"--top-k {k}: must be at least 1")
    if sheet not in SHEETS:
        raise ConfigError(f"--sheet {sheet!r}: expected one of {', '.join(SHEETS)}")
    store = EmbeddingStore(store_dir)
    meta = store.metadata() if "image" in store.modalities else {}
    names = meta.get("tile_id") or meta.get("image_path")
    if not names:
        raise DataError(f"{store_dir}: has no image embeddings with an image_path column to "
                        "search (embed images, or a caption file with --modality both)")
    encoder = make_encoder(model, encoder=encoder, **encoder_options)
    _check_model(store, encoder)
    queries = encode_queries(encoder, texts, images)
    # Ask for enough rows that k distinct images survive when one image has several rows.
    wanted = min(len(names), k * duplicates_factor(names))
    if faiss_index:
        scores, rows = faiss_top_k(queries, faiss_index, wanted, store=store)
    else:
        scores, rows = top_k(queries, store.shards("image"), wanted, num_rows=len(names),
                             method=method, chunk_rows=chunk_rows)
    labels = [(t, False) for t in texts] + [(os.fspath(p), True) for p in images]
    results = [QueryHits(q, is_image, [(names[i], s) for i, s in hits], rows=[i for i, _ in hits])
               for (q, is_image), hits in zip(labels, distinct_hits(scores, rows, names, k))]
    if out_dir is not None:
        write_results(results, out_dir, sheet, store)
    return results


def write_results(results: Sequence[QueryHits], out_dir: str, sheet: str = "both",
                  store: EmbeddingStore | None = None) -> list[str]:
    """OUT/results.csv (query, rank, score, image_path), the contact sheets and, for a scene's
    tile store, OUT/hits.geojson; returns the paths written."""
    written = [os.path.join(out_dir, "results.csv")]
    with atomic_write(written[0], newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "rank", "score", "image_path"])
        for r in results:
            writer.writerows((r.query, rank, f"{s:.6f}", p) for rank, (p, s) in enumerate(r.hits, 1))
    tiles = store is not None and "footprint_wkt" in store.metadata()
    if tiles:
        from remoteclip_jax.geo import outputs

        written.append(outputs.write_places(os.path.join(out_dir, "hits.geojson"), results,
                                            store.metadata(), store.crs,
                                            store.manifest["identity"].get("scene", {})))
        try:
            for r in results:
                r.images = outputs.tile_chips(store.metadata(), r.rows, store.manifest["identity"])
        except DataError as e:  # the scene moved: the places stand, the sheet goes grey
            print(f"warning: cannot read the hit tiles' pixels ({e}); the contact sheet shows "
                  "them grey", file=sys.stderr)
            for r in results:
                r.images = None
    else:
        missing = sorted({p for r in results for p, _ in r.hits if not os.path.exists(p)})
        if missing and sheet != "none":
            print(f"warning: {len(missing)} hit images are not at their stored path (first: "
                  f"{missing[0]}); the contact sheet shows them grey", file=sys.stderr)
    if sheet in ("png", "both"):
        written.append(png_contact_sheet(results, os.path.join(out_dir, "contact_sheet.png")))
    if sheet in ("html", "both"):
        written.append(html_contact_sheet(results, os.path.join(out_dir, "contact_sheet.html")))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remoteclip-jax search", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Top-k images (or scene tiles) of an embedding store (from `remoteclip-jax "
                    "embed`) for text and/or image queries, by cosine similarity; prints the hits "
                    "and, with --out, writes results.csv, a contact sheet (PNG, HTML) and, for a "
                    "scene's tiles, hits.geojson (their footprints in the scene's CRS).")
    parser.add_argument("store", help="store folder written by `remoteclip-jax embed`")
    command_line.add_encoder_arguments(parser)
    parser.add_argument("--text", action="append", default=[], help="text query (repeatable)")
    parser.add_argument("--image", action="append", default=[], help="query image (repeatable)")
    parser.add_argument("--top-k", "--k", dest="k", type=int, default=10,
                        help="images (tiles) per query")
    parser.add_argument("--method", choices=METHODS, default="exact",
                        help="exact: jax.lax.top_k; approx: jax.lax.approx_max_k (faster on TPU)")
    parser.add_argument("--faiss-index", default=None,
                        help="search this faiss index (built from the store's img_emb rows) "
                             "instead; needs faiss-cpu")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                        help="store rows scored per device step (bounds memory)")
    parser.add_argument("--out", default=None, help="write results.csv and contact sheets here")
    parser.add_argument("--sheet", choices=SHEETS, default="both", help="contact sheet format(s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = search(args.store, texts=args.text, images=args.image, model=args.model,
                     k=args.k, method=args.method, faiss_index=args.faiss_index,
                     chunk_rows=args.chunk_rows, out_dir=args.out, sheet=args.sheet,
                     **command_line.encoder_options(args))
    for r in results:
        print(f"query: {r.query}")
        for rank, (path, score) in enumerate(r.hits, 1):
            print(f"  {rank:3d}  {score:.4f}  {path}")
    if args.out:
        print(f"results and contact sheet -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
