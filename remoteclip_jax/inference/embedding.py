"""`remoteclip-jax embed`: image and caption embeddings -> a resumable store (see `store`).

Inputs and the rows they give:

* a folder, a .txt list of image paths or one image: one row per image, `img_emb/` only;
  metadata column `image_path`.
* a caption file (.json Karpathy-style, .jsonl, .csv; `data.readers.read_captions`): one row per
  (image, caption) pair, `img_emb/` and `text_emb/` row-aligned, columns `image_path, caption`
  (clip-retrieval's pairing; an image with five captions appears in five rows, encoded once).
  `--modality image` gives one row per image instead, `--modality text` captions only.

Unreadable images are left out of the store (with every row that uses them) and listed in
OUT/skipped.csv. A killed run keeps its finished shards; rerun the same command to finish.

    remoteclip-jax embed photos/ --model models/RemoteCLIP-ViT-B-32 --out store/
    remoteclip-jax embed data/rsicd_aid/val.jsonl --model ... --out val_store/ --shard-size 5000
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

from remoteclip_jax.data.readers import read_captions
from remoteclip_jax.inference.command_line import (add_encoder_arguments, encoder_options,
                                                   report_skipped)
from remoteclip_jax.inference.inputs import list_images
from remoteclip_jax.inference.loading import make_encoder
from remoteclip_jax.weights.fingerprint import weights_fingerprint
from remoteclip_jax.inference.store import METADATA_FORMATS, StoreWriter
from remoteclip_jax.errors import ConfigError, DataError

CAPTION_SUFFIXES = (".json", ".jsonl", ".csv")
MODALITIES = ("image", "text", "both")
DEFAULT_SHARD_SIZE = 10_000


@dataclasses.dataclass
class EmbedSummary:
    """What an `embed` call did.

    Attributes:
        out_dir: the store folder.
        rows: rows the store holds (unreadable images left out).
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
               image_root: str | None = None) -> tuple[list[tuple[str | None, str | None]], tuple]:
    """The store's rows as (image_path, caption) pairs, and the modalities to embed.

    Args:
        source: an image source (see `inputs.list_images`) or a caption file.
        modality: "image", "text" or "both" (default: "image" for images, "both" for captions).
        split: for caption files, keep only this split ("train", "val", "test").
        image_root: for caption files, the folder image paths are relative to.
    """
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"--modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    is_captions = (isinstance(source, (str, os.PathLike)) and os.path.isfile(source)
                   and os.path.splitext(os.fspath(source))[1].lower() in CAPTION_SUFFIXES)
    if not is_captions:
        if modality in ("text", "both"):
            raise ConfigError(f"{source}: --modality {modality} needs a caption file "
                             f"({', '.join(CAPTION_SUFFIXES)}); images alone have no captions")
        return [(p, None) for p in list_images(source)], ("image",)
    modality = modality or "both"
    kwargs = {"image_root": image_root} if image_root else {}
    records = read_captions(source, split, **kwargs)
    if modality == "image":
        rows = [(r.path, None) for r in records]
    else:
        rows = [(r.path, c) for r in records for c in r.captions]
    if not rows:
        raise DataError(f"{source}: no {'images' if modality == 'image' else 'captions'}"
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
    """Embeds images and/or captions into a clip-retrieval-style store at `out_dir`, resumably.

    Args:
        source: a folder, a .txt list of images, an image, or a caption file (.json/.jsonl/.csv).
        out_dir: the store folder (created; a rerun with the same inputs resumes in it).
        model: a model directory or a `(model, variables)` pair (or pass `encoder`).
        encoder: an `Encoder` to reuse.
        modality: "image", "text" or "both" (see `store_rows`).
        split: caption files: keep only this split.
        image_root: caption files: the folder their image paths are relative to.
        shard_size: rows per shard (the unit of resumption).
        metadata_format: "parquet" (needs pyarrow) or "jsonl".
        overwrite: replace a store of other inputs in `out_dir`.
        **encoder_options: batch_size, dtype, num_workers, progress for a new `Encoder`.

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
                "model_fingerprint": weights_fingerprint(encoder.variables),
                "dtype": str(encoder.dtype), "embed_dim": encoder.embed_dim}
    info = {"source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
            "model": os.fspath(model) if isinstance(model, (str, os.PathLike)) else None}
    writer = StoreWriter(out_dir, identity, info, len(shards), modalities, metadata_format,
                         overwrite)
    todo = [k for k in range(len(shards)) if not writer.is_done(k)]
    if "image" in modalities:
        _embed_image_shards(encoder, writer, shards, todo, with_text="text" in modalities)
    else:
        for k in todo:
            captions = [c for _, c in shards[k]]
            writer.write_shard(k, {"text": encoder.texts(captions, desc=f"shard {k}")},
                               {"image_path": [p for p, _ in shards[k]], "caption": captions})
    skipped = writer.finish()
    unreadable = dict(skipped)
    kept = sum(1 for p, _ in rows if p not in unreadable) if "image" in modalities else len(rows)
    if not kept:
        raise DataError(f"none of the {len(unreadable)} images could be read; first: "
                         f"{skipped[0][1]} (all are listed in {os.path.join(out_dir, 'skipped.csv')})")
    return EmbedSummary(out_dir, kept, len(shards), len(todo), skipped,
                        time.perf_counter() - start)


def _embed_image_shards(encoder, writer: StoreWriter, shards, todo, with_text: bool) -> None:
    """Encodes the distinct images of the shards in `todo` as one stream (so decoding runs ahead
    across shard boundaries) and writes each shard as soon as its last image is encoded."""
    images, ends = [], []
    for k in todo:
        images += list(dict.fromkeys(p for p, _ in shards[k]))
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
            by_path = {images[i]: i for i in span}
            kept = [(p, c) for p, c in shards[k] if by_path[p] not in reasons]
            embeddings = {"image": np.stack([features[by_path[p]] for p, _ in kept])
                          if kept else np.zeros((0, encoder.embed_dim), np.float32)}
            metadata = {"image_path": [p for p, _ in kept]}
            if with_text:
                embeddings["text"] = encoder.texts([c for _, c in kept], desc=f"shard {k} captions")
                metadata["caption"] = [c for _, c in kept]
            elif any(c is not None for _, c in kept):
                metadata["caption"] = [c for _, c in kept]
            writer.write_shard(k, embeddings, metadata,
                               [(images[i], reasons[i]) for i in span if i in reasons])
            for i in span:  # finished shards leave memory
                features.pop(i, None)
            first, pending = ends[pending], pending + 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remoteclip-jax embed",
        description="Image and caption embeddings (L2-normalised float32) -> a store in "
                    "clip-retrieval's layout: OUT/img_emb/img_emb_NNNN.npy, "
                    "OUT/text_emb/text_emb_NNNN.npy, OUT/metadata/metadata_NNNN.parquet. "
                    "Rerunning the same command after an interruption computes only the "
                    "missing shards.")
    parser.add_argument("input", help="folder of images (recursive), .txt list of image paths, one "
                                      "image, or a caption file (.json, .jsonl, .csv)")
    add_encoder_arguments(parser)
    parser.add_argument("--out", required=True, help="store folder")
    parser.add_argument("--modality", choices=MODALITIES, default=None,
                        help="image | text | both (default: image for images, both for captions)")
    parser.add_argument("--split", default=None, help="caption files: keep only this split")
    parser.add_argument("--image-root", default=None,
                        help="caption files: folder the image paths are relative to")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                        help="rows per shard, the unit that a rerun can skip")
    parser.add_argument("--metadata", choices=METADATA_FORMATS, default="parquet",
                        help="parquet (needs pyarrow; what clip-retrieval tools read) or jsonl")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a store of other inputs or settings in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = embed(args.input, args.out, model=args.model, modality=args.modality,
                    split=args.split, image_root=args.image_root, shard_size=args.shard_size,
                    metadata_format=args.metadata, overwrite=args.overwrite,
                    **encoder_options(args))
    report_skipped(summary.skipped)
    reused = summary.shards - summary.computed
    print(f"embedded {summary.rows} rows in {summary.shards} shards"
          f"{f' ({reused} kept from an earlier run)' if reused else ''}, "
          f"skipped {len(summary.skipped)} images, {summary.seconds:.1f} s -> {summary.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
