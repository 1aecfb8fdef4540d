"""`remoteclip-jax embed`: image, caption and scene-tile embeddings -> a resumable store.

Inputs (a source spec of `remoteclip_jax.data.sources`) and the rows they give (`data.store`):

* a folder, a .txt list of image paths, an image, or ``KIND:PATH`` naming images: one
  ``img_emb`` row per image, metadata ``image_path`` (absolute, so the store can be searched
  from any directory);
* a caption file (.json Karpathy-style, .jsonl, .csv): each image once in ``img_emb``, each of
  its captions in ``text_emb`` with the row of its image; ``--modality image`` stores the
  images only, ``--modality text`` the captions only;
* a GeoTIFF scene with ``--tile N``: one row per tile with its footprint in the scene's CRS
  (`remoteclip_jax.geo.embed_scene`), so `search` answers with places.

Unreadable images are left out of the store (with their captions) and listed in OUT/skipped.csv.
A killed run keeps its finished shards; rerun the same command to finish.

    remoteclip-jax embed photos/ --model models/RemoteCLIP-ViT-B-32 --out store/
    remoteclip-jax embed data/rsicd_aid/val.jsonl --model RemoteCLIP-ViT-B-32.pt --out val_store/
    remoteclip-jax embed scene.tif --tile 224 --model ... --out scene_store/
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time

import numpy as np

from remoteclip_jax.data import sources
from remoteclip_jax.data.store import METADATA_FORMATS, StoreWriter
from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.inference import command_line
from remoteclip_jax.inference.loading import make_encoder
from remoteclip_jax.weights.fingerprint import weights_fingerprint

MODALITIES = ("image", "text", "both")
DEFAULT_SHARD_SIZE = 10_000


@dataclasses.dataclass
class EmbedSummary:
    """What an `embed` call did.

    Attributes:
        out_dir: the store folder.
        rows: rows the store holds (images, or captions for a captions-only store).
        shards: shards in the store.
        computed: shards this call computed (the others were finished by an earlier run).
        skipped: (path, reason) of images left out.
        seconds: wall time.
    """

    out_dir: str
    rows: int
    shards: int
    computed: int
    skipped: list[tuple[str, str]]
    seconds: float


def store_rows(source, modality: str | None = None, split: str | None = None,
               image_root: str | None = None) -> tuple[list[tuple[str, list[str]]], tuple]:
    """The store's rows, (absolute image path, its captions) per image, and the modalities.

    Args:
        source: a source spec word (see the module docstring) or a list of image paths.
        modality: "image", "text" or "both" (default: "both" when the source has captions).
        split: caption files: keep only this split ("train", "val", "test").
        image_root: caption files: the folder image paths are relative to.
    """
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"--modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        spec = sources.parse_spec(text, split=split, image_root=image_root)
        items = list(sources.read_annotated(spec, text))
    else:
        text, items = "the image list", [sources.AnnotatedImage(path=os.fspath(p)) for p in source]
    rows = [(os.path.abspath(im.path), list(im.captions)) for im in items]
    has_captions = any(captions for _, captions in rows)
    if modality in ("text", "both") and not has_captions:
        raise ConfigError(f"{text}: --modality {modality} needs a caption file (.json, .jsonl, "
                          ".csv); images alone have no captions")
    modality = modality or ("both" if has_captions else "image")
    if modality == "image":
        rows = [(path, []) for path, _ in rows]
    elif modality == "text":
        rows = [row for row in rows if row[1]]
    if not rows:
        raise DataError(f"{text}: no {'captions' if modality == 'text' else 'images'}"
                        f"{f' in split {split!r}' if split else ''}")
    return rows, {"image": ("image",), "text": ("text",), "both": ("image", "text")}[modality]


def _rows_hash(rows) -> str:
    h = hashlib.sha1()
    for row in rows:
        h.update(json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def embed(source, out_dir: str, *, model=None, encoder=None, modality: str | None = None,
          split: str | None = None, image_root: str | None = None,
          shard_size: int = DEFAULT_SHARD_SIZE, metadata_format: str = "parquet",
          overwrite: bool = False, **encoder_options) -> EmbedSummary:
    """Embeds images and/or captions into a store at `out_dir` (`data.store`), resumably.

    Args:
        source: a folder, a .txt list of images, an image, a caption file or ``KIND:PATH``.
        out_dir: the store folder (created; a rerun with the same inputs resumes in it).
        model: a model directory or weights file, or a `(model, variables)` pair (or `encoder`).
        encoder: an `Encoder` to reuse.
        modality: "image", "text" or "both" (see `store_rows`).
        split: caption files: keep only this split.
        image_root: caption files: the folder their image paths are relative to.
        shard_size: images (captions for a captions-only store) per shard, the unit of resumption.
        metadata_format: "parquet" (needs pyarrow) or "jsonl".
        overwrite: replace a store of other inputs in `out_dir`.
        **encoder_options: arch, batch_size, dtype, num_workers, progress for a new `Encoder`.

    Returns:
        `EmbedSummary`.
    """
    start = time.perf_counter()
    if shard_size < 1:
        raise ConfigError(f"--shard-size {shard_size}: must be at least 1")
    rows, modalities = store_rows(source, modality, split, image_root)
    encoder = make_encoder(model, encoder=encoder, **encoder_options)
    shards = [rows[i:i + shard_size] for i in range(0, len(rows), shard_size)]
    identity = {"rows_sha1": _rows_hash(rows), "num_rows": len(rows), "shard_size": shard_size,
                **model_identity(encoder)}
    info = {"source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
            "model": os.fspath(model) if isinstance(model, (str, os.PathLike)) else None}
    writer = StoreWriter(out_dir, identity, info, len(shards), modalities, metadata_format,
                         overwrite)
    todo = [k for k in range(len(shards)) if not writer.is_done(k)]
    if "image" in modalities:
        _embed_image_shards(encoder, writer, shards, todo, with_text="text" in modalities)
    for k in todo if "image" not in modalities else ():
        captions = [(p, c) for p, caps in shards[k] for c in caps]
        writer.write_shard(k, {"text": encoder.texts([c for _, c in captions], desc=f"shard {k}")},
                           {"text": {"caption": [c for _, c in captions],
                                     "image_path": [p for p, _ in captions],
                                     "image": [-1] * len(captions)}})
    skipped = writer.finish()
    unreadable = dict(skipped)
    kept = sum(1 for p, _ in rows if p not in unreadable)
    if not kept:
        raise DataError(f"none of the {len(unreadable)} images could be read; first: "
                        f"{skipped[0][1]} (all are listed in {os.path.join(out_dir, 'skipped.csv')})")
    if modalities == ("text",):
        kept = sum(len(caps) for _, caps in rows)
    return EmbedSummary(out_dir, kept, len(shards), len(todo), skipped,
                        time.perf_counter() - start)


def model_identity(encoder) -> dict:
    """What identifies the model that fills a store (compared when a store is resumed)."""
    return {"model_fingerprint": weights_fingerprint(encoder.variables),
            "dtype": str(encoder.dtype), "embed_dim": encoder.embed_dim}


def _embed_image_shards(encoder, writer: StoreWriter, shards, todo, with_text: bool) -> None:
    """Encodes the images of the shards in `todo` as one stream (so decoding runs ahead across
    shard boundaries) and writes each shard as soon as its last image is encoded."""
    images, ends = [], []
    for k in todo:
        images += [p for p, _ in shards[k]]
        ends.append(len(images))
    features: dict[int, np.ndarray] = {}
    reasons: dict[int, str] = {}
    first = 0  # position in `images` of the next unfinished shard's first image
    pending = 0  # index into `todo`
    for batch in encoder.iter_images(images, desc="images"):
        features.update(zip(batch.indices.tolist(), batch.features))
        reasons.update(batch.skipped)
        done_upto = 1 + max(batch.indices.tolist() + [i for i, _ in batch.skipped])
        while pending < len(todo) and ends[pending] <= done_upto:
            k, span = todo[pending], range(first, ends[pending])
            kept = [i for i in span if i not in reasons]
            embeddings = {"image": np.stack([features[i] for i in kept]) if kept
                          else np.zeros((0, encoder.embed_dim), np.float32)}
            tables = {"image": {"image_path": [images[i] for i in kept]}}
            if with_text:
                captions = [(row, c) for row, i in enumerate(kept) for c in shards[k][i - first][1]]
                embeddings["text"] = encoder.texts([c for _, c in captions], desc=f"shard {k} captions")
                tables["text"] = {"caption": [c for _, c in captions],
                                  "image_path": [images[kept[r]] for r, _ in captions],
                                  "image": [r for r, _ in captions]}
            writer.write_shard(k, embeddings, tables, [(images[i], reasons[i]) for i in span if i in reasons])
            for i in span:  # finished shards leave memory
                features.pop(i, None)
            first, pending = ends[pending], pending + 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remoteclip-jax embed", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Image, caption or scene-tile embeddings (L2-normalised float32) -> a store "
                    "in clip-retrieval's layout: OUT/img_emb/img_emb_NNNN.npy (each image once), "
                    "OUT/text_emb/text_emb_NNNN.npy, OUT/metadata/*.parquet. Rerunning the same "
                    "command after an interruption computes only the missing shards.")
    parser.add_argument("input", help=f"{command_line.SOURCE_HELP}; or a caption file (.json, "
                                      ".jsonl, .csv); or a GeoTIFF scene with --tile")
    command_line.add_encoder_arguments(parser)
    parser.add_argument("--out", required=True, help="store folder")
    parser.add_argument("--modality", choices=MODALITIES, default=None,
                        help="image | text | both (default: image for images, both for captions)")
    parser.add_argument("--split", default=None, help="caption files: keep only this split")
    parser.add_argument("--image-root", default=None,
                        help="caption files: folder the image paths are relative to")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                        help="images (or scene tiles) per shard, the unit that a rerun can skip")
    parser.add_argument("--metadata", choices=METADATA_FORMATS, default="parquet",
                        help="parquet (needs pyarrow; what clip-retrieval tools read) or jsonl")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a store of other inputs or settings in --out")
    command_line.add_tiling_arguments(parser, "every tile of the scene gets a row with its "
                                              "footprint in the scene's CRS")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tile is not None:
        from remoteclip_jax.geo import embed_scene

        encoder = make_encoder(args.model, **command_line.encoder_options(args))
        summary = embed_scene(args.input, encoder.arrays, args.out, shard_tiles=args.shard_size,
                              metadata_format=args.metadata, overwrite=args.overwrite,
                              identity=model_identity(encoder), **command_line.tiling_options(args))
        print(f"embedded {summary['tiles_in_store']} tiles of {args.input} "
              f"({summary['resumed_tiles']} kept from an earlier run) -> {args.out}")
        return 0
    summary = embed(args.input, args.out, model=args.model, modality=args.modality,
                    split=args.split, image_root=args.image_root, shard_size=args.shard_size,
                    metadata_format=args.metadata, overwrite=args.overwrite,
                    **command_line.encoder_options(args))
    command_line.report_skipped(summary.skipped)
    reused = summary.shards - summary.computed
    print(f"embedded {summary.rows} rows in {summary.shards} shards"
          f"{f' ({reused} kept from an earlier run)' if reused else ''}, "
          f"skipped {len(summary.skipped)} images, {summary.seconds:.1f} s -> {summary.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
