"""Convert remote-sensing annotations into the training record format (RemoteCLIP's data scaling).

    python -m remoteclip_jax.data.convert_annotations dota --input DOTA/labelTxt --out data/dota
    python -m remoteclip_jax.data.convert_annotations dior --input DIOR/Annotations/HBB --out data/dior
    python -m remoteclip_jax.data.convert_annotations coco --input NWPU/instances.json --images NWPU/images \\
        --out data/nwpu
    python -m remoteclip_jax.data.convert_annotations masks --input LoveDA/ann_dir --table loveda \\
        --out data/loveda
    python -m remoteclip_jax.data.convert_annotations captions --input RSICD/dataset_rsicd.json --out data/rsicd
    python -m remoteclip_jax.data.convert_annotations webdataset --input RS5M/shards --out data/rs5m
    python -m remoteclip_jax.data.convert_annotations csv --input Ret-3_train.csv --images RET3 \
        --csv-img-key filepath --csv-caption-key title --csv-separator '\t' --out data/ret3
    python -m remoteclip_jax.data.convert_annotations visdrone \
        --input VisDrone2019-DET-train/annotations --out data/visdrone
    (also: auair, carpk, hrsc, hrrsd, levir, rsod, stanford_drone; see --help)

Detection and segmentation data get five Box-to-Caption captions per image (masks go through
Mask-to-Box first); caption data keeps its own captions. Each kept image is stored as JPEG bytes
with its shortest side shrunk to `--image-size`, plus provenance (source dataset, original image
id, annotation ids), its boxes in the stored frame and exact per-category counts. A summary of
kept and skipped images (with the paths of missing and corrupt ones) is printed and saved as
`OUT/summary.json` (and in the manifest). A malformed annotation stops the conversion with
`file:line: reason` unless `--skip-bad-annotations`; converting nothing is an error.

`--workers N` converts the images in N local processes and `--runner beam` in an Apache Beam
pipeline (`convert_beam`); the reader and the record writer stay in this process and records
are written in input order, so the shards are the same bytes whichever runs the work.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import pathlib
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from remoteclip_jax import files
from remoteclip_jax.data import b2c, m2b, records, readers, sources
from remoteclip_jax.data.images import open_rgb
from remoteclip_jax.errors import AnnotationError, ConfigError, DataError, check_choice
from remoteclip_jax.data.types import AnnotatedImage
from remoteclip_jax.files import write_json

# The kinds of the source registry that convert: caption data keeps its captions, the others
# (detection boxes, segmentation masks) get Box-to-Caption captions.
CAPTION_KINDS = ("captions", "caption_json", "jsonl", "csv", "webdataset")
BOX_KINDS = ("dota", "dior", "coco", "hrrsd", "visdrone", "auair", "carpk", "hrsc", "levir",
             "rsod", "stanford_drone", "masks")
KINDS = (*BOX_KINDS, *CAPTION_KINDS)
RUNNERS = ("local", "beam")
# Paths listed in the summary per skip reason; counts are always complete.
_MAX_LISTED = 1000
# Where each skip reason lists its items.
_LISTINGS = {"missing_image": "missing_images", "corrupt_image": "corrupt_images",
             "no_objects": "no_objects", "no_captions": "no_captions",
             "bad_annotation": "bad_annotations"}
# Items per task and tasks in flight per worker process (`--workers`): enough to keep the
# workers busy, few enough that a 5-million-image reader is not read ahead into memory.
_CHUNK, _IN_FLIGHT = 16, 4


@dataclasses.dataclass
class ConversionSummary:
    """What a conversion kept and skipped; saved as `summary.json`."""
    kind: str
    source: str
    input: str
    out: str
    image_size: int
    seed: int
    read: int = 0
    kept: int = 0
    captions: int = 0
    missing_images: list[str] = dataclasses.field(default_factory=list)
    corrupt_images: list[dict[str, str]] = dataclasses.field(default_factory=list)
    no_objects: list[str] = dataclasses.field(default_factory=list)
    no_captions: list[str] = dataclasses.field(default_factory=list)
    bad_annotations: list[str] = dataclasses.field(default_factory=list)
    skipped_counts: dict[str, int] = dataclasses.field(default_factory=lambda: {
        "missing_image": 0, "corrupt_image": 0, "no_objects": 0, "no_captions": 0,
        "bad_annotation": 0})
    elapsed_s: float = 0.0

    def skip(self, reason: str, listing: list, item: Any) -> None:
        self.skipped_counts[reason] += 1
        if len(listing) < _MAX_LISTED:
            listing.append(item)

    def skip_for(self, reason: str, item: Any) -> None:
        """Counts (and lists) an image skipped for `reason`, a key of `skipped_counts`."""
        self.skip(reason, getattr(self, _LISTINGS[reason]), item)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def text(self) -> str:
        """A short human-readable report."""
        c = self.skipped_counts
        lines = [f"{self.kind}: kept {self.kept} of {self.read} images "
                 f"({self.captions} captions) -> {self.out}",
                 f"skipped: {c['missing_image']} missing images, {c['corrupt_image']} corrupt "
                 f"images, {c['no_objects']} without objects, {c['no_captions']} without "
                 f"captions; {c['bad_annotation']} bad annotations skipped"]
        for title, items in (("missing", self.missing_images),
                             ("corrupt", [f"{d['path']} ({d['reason']})"
                                          for d in self.corrupt_images]),
                             ("bad annotation", self.bad_annotations)):
            for item in items[:10]:
                lines.append(f"  {title}: {item}")
            if len(items) > 10:
                lines.append(f"  ... {len(items) - 10} more {title} in summary.json")
        return "\n".join(lines)


def _caption_rng(seed: int, image_id: str) -> np.random.Generator:
    # Seeded per image id, not per position: captions do not change when other images are
    # added, removed or skipped.
    return np.random.default_rng([seed, zlib.crc32(image_id.encode("utf-8"))])


def convert_items(items: Iterable[AnnotatedImage], out_dir: str | pathlib.Path,
                  summary: ConversionSummary, *, box_captions: bool,
                  options: b2c.B2COptions | None = None, dataset: str = "",
                  image_size: int = 256, seed: int = 0, quality: int = 90,
                  shard_size: int = 2000, total: int | None = None, max_images: int = 0,
                  overwrite: bool = False, progress: bool = True,
                  workers: int = 1, runner: str = "local",
                  beam_options: str = "") -> ConversionSummary:
    """Writes `items` as records; fills in and returns `summary` (also saved as summary.json).

    Args:
        items: annotated images (from a reader).
        out_dir: output directory (must not already hold a dataset).
        summary: the summary to fill in.
        box_captions: caption with B2C from the boxes (else keep the items' captions).
        options: B2C options.
        dataset: dataset name for class-name normalisation.
        image_size: shortest side of the stored JPEGs (never enlarged).
        seed: B2C seed.
        quality: JPEG quality.
        shard_size: records per shard.
        total: number of items, for the progress bar.
        max_images: stop after this many kept images (0: all).
        overwrite: replace a dataset already in `out_dir`.
        progress: show a tqdm bar.
        workers: processes that decode, caption and encode the images (the output is the same
            for any number).
        runner: "local" (`workers` processes here) or "beam" (an Apache Beam pipeline,
            `remoteclip_jax.data.convert_beam`; the same output).
        beam_options: Beam pipeline options as shell words (default: DirectRunner, `workers`
            processes).

    Raises:
        DataError: when no image was kept (summary.json is still written).
        AnnotationError: from the reader, unless it was given an error callback.
    """
    from tqdm import tqdm

    options = options or b2c.B2COptions()
    out_dir = files.as_path(out_dir)  # a local folder or a bucket's (gs://...)
    start = time.perf_counter()
    # (PIL's pixel limit for huge scenes is raised where images are opened: data.images.)
    with records.output_folder(out_dir, overwrite) as folder, \
            records.RecordWriter(folder, shard_size=shard_size, overwrite=overwrite) as writer:
        kwargs = dict(source=summary.source, box_captions=box_captions, options=options,
                      dataset=dataset, image_size=image_size, seed=seed, quality=quality)
        if runner == "beam":
            from remoteclip_jax.data import convert_beam

            results = convert_beam.converted(items, kwargs, workers=workers,
                                             temp_root=str(folder), beam_options=beam_options)
        else:
            results = _converted(items, workers, kwargs)
        bar = tqdm(results, total=total, desc=f"converting {summary.kind}", unit="img",
                   disable=not progress, file=sys.stderr)
        try:
            for record, skipped in bar:
                summary.read += 1
                if record is None:
                    summary.skip_for(*skipped)
                    continue
                writer.write(record)
                summary.kept += 1
                summary.captions += len(record["captions"])
                if max_images and summary.kept >= max_images:
                    break
        finally:
            results.close()
        summary.elapsed_s = round(time.perf_counter() - start, 3)
        _save_summary(out_dir, summary)
        if summary.kept == 0:
            raise DataError(f"{summary.input}: no image was kept ({summary.read} read; "
                            f"{summary.text().splitlines()[1]}); see {out_dir / 'summary.json'}")
        writer.metadata["conversion"] = summary.to_json()
    return summary


def _save_summary(out_dir: pathlib.Path, summary: ConversionSummary) -> None:
    write_json(out_dir / "summary.json", summary.to_json(), indent=2)


def _convert_one(item: AnnotatedImage, *, source: str, box_captions: bool,
                 options: b2c.B2COptions, dataset: str, image_size: int, seed: int,
                 quality: int) -> tuple[dict[str, Any] | None, tuple[str, Any] | None]:
    """(record, None), or (None, (skip reason, what to list)): a pure function of the item, so
    it runs in any process and the output does not depend on which."""
    if box_captions:
        kept_boxes = b2c.captioned_boxes(item.boxes, options, dataset)
        if not kept_boxes:
            return None, ("no_objects", item.image_id or item.path)
    elif not item.captions:
        return None, ("no_captions", item.image_id or item.path)
    if not item.data and not files.as_path(item.path).is_file():
        return None, ("missing_image", item.path)
    try:
        image = open_rgb(item.data or item.path, item.path)
        width, height = image.size
        jpeg = records.encode_jpeg(image, image_size, quality=quality)
    except Exception as e:  # PIL raises many unrelated types for broken or exotic files.
        return None, ("corrupt_image", {"path": item.path, "reason": f"{type(e).__name__}: {e}"})
    stored_w, stored_h = records.resized_size(width, height, image_size)
    record: dict[str, Any] = {"image": jpeg, "source": item.source or source,
                              "image_id": item.image_id or pathlib.Path(item.path).stem,
                              "width": stored_w, "height": stored_h}
    if box_captions:
        record["captions"] = b2c.box_to_captions(item.boxes, width, height,
                                                 rng=_caption_rng(seed, record["image_id"]),
                                                 options=options, dataset=dataset)
        record["ann_ids"] = [box.ann_id for box in kept_boxes]
        record["boxes"] = records.boxes_to_record(
            records.scale_boxes(item.boxes, stored_w / width, stored_h / height))
        record["counts"] = b2c.count_objects(item.boxes, options, dataset)
    else:
        record["captions"] = list(item.captions)
        record["ann_ids"] = []
    if item.label:
        record["label"] = item.label
    if item.split:
        record["split"] = item.split
    return record, None


def _chunks(items: Iterable, size: int):
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _convert_chunk(items: list[AnnotatedImage], kwargs: dict[str, Any]) -> list:
    return [_convert_one(item, **kwargs) for item in items]


def _converted(items: Iterable[AnnotatedImage], workers: int, kwargs: dict[str, Any]):
    """`_convert_one` of each item, in input order; with `workers` > 1 in that many processes.

    The reader stays in this process and feeds the workers in chunks, at most `_IN_FLIGHT`
    per worker ahead; results are taken in submission order, so the records (and their shards)
    are the same bytes for any number of workers.
    """
    if workers <= 1:
        for item in items:
            yield _convert_one(item, **kwargs)
        return
    import collections
    import concurrent.futures
    import multiprocessing

    # spawn: forking a process that may hold threads (tqdm, a reader's) is unsafe.
    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: collections.deque = collections.deque()
        try:
            for chunk in _chunks(items, _CHUNK):
                pending.append(pool.submit(_convert_chunk, chunk, kwargs))
                if len(pending) >= workers * _IN_FLIGHT:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            for future in pending:  # stopped early (max_images, an error): drop queued work
                future.cancel()


def convert_dataset(kind: str, input_path: str, out_dir: str, *, images: str | None = None,
                    image_size: int = 256, seed: int = 0, skip_bad_annotations: bool = False,
                    options: b2c.B2COptions | None = None, table: str = "loveda",
                    min_area: int = m2b.DEFAULT_MIN_AREA, source: str = "",
                    split: str | None = None, mask_suffix: str = "", image_suffix: str = "",
                    quality: int = 90, shard_size: int = 2000, max_images: int = 0,
                    overwrite: bool = False, progress: bool = True,
                    csv_options: dict[str, Any] | None = None, workers: int = 1,
                    runner: str = "local", beam_options: str = "") -> ConversionSummary:
    """Reads a dataset of `kind` and writes it as records in `out_dir` (the CLI's work).

    Args:
        kind: one of `KINDS`.
        input_path: the annotations (see the CLI help for what each kind expects).
        out_dir: output directory.
        images: image directory (default: found next to the annotations).
        image_size: shortest side of the stored JPEGs.
        seed: B2C seed.
        skip_bad_annotations: skip malformed annotation lines/entries (listed in the summary)
            instead of stopping at the first.
        options: B2C options.
        table: class table for `masks` (built-in name or JSON file).
        min_area: M2B minimum component size in pixels (`masks`).
        source: dataset name stored as provenance (default: the kind, or the caption file's).
        split: for `captions`, keep only this split.
        mask_suffix / image_suffix: for `masks`, how mask and image file stems differ.
        quality: JPEG quality.
        shard_size: records per shard.
        max_images: stop after this many kept images (0: all).
        overwrite: replace a dataset already in `out_dir`.
        progress: show a progress bar.
        csv_options: for `csv`, keyword arguments of `readers.read_caption_csv`.
        workers: processes converting images (same output for any number).
        runner: "local" or "beam" (same output); see `convert_items`.
        beam_options: Beam pipeline options (shell words) for `runner="beam"`.

    Returns:
        The filled-in summary.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1 (processes converting images)")
    check_choice("--runner", runner, RUNNERS)
    if runner == "beam":
        from remoteclip_jax.data import convert_beam

        convert_beam._import_beam()  # refused before reading anything
    default_source = kind if kind in BOX_KINDS and kind != "coco" else ""
    if kind == "masks":
        default_source = readers.load_class_table(table).dataset
    source = source or default_source
    summary = ConversionSummary(kind=kind, source=source or kind, input=str(input_path),
                                out=str(out_dir), image_size=image_size, seed=seed)

    def on_error(error: AnnotationError) -> None:
        summary.skip_for("bad_annotation", str(error))

    csv = {"csv_" + {"image_column": "image_key", "caption_column": "caption_key",
                     "separator": "separator"}.get(k, k): v for k, v in (csv_options or {}).items()}
    spec = sources.make_spec(kind, input_path, image_root=images, split=split, table=table,
                             min_area=min_area, mask_suffix=mask_suffix, image_suffix=image_suffix,
                             encoding=csv.pop("csv_encoding", None), **csv)
    items = sources.read_annotated(spec, f"--input {input_path}", source=source,
                                   on_error=on_error if skip_bad_annotations else None)
    total = len(items) if hasattr(items, "__len__") else None
    dataset = readers.load_class_table(table).dataset if kind == "masks" else \
        (source or kind)
    return convert_items(items, out_dir, summary, box_captions=kind in BOX_KINDS,
                         options=options, dataset=dataset, image_size=image_size, seed=seed,
                         quality=quality, shard_size=shard_size, total=total,
                         max_images=max_images, overwrite=overwrite, progress=progress,
                         workers=workers, runner=runner, beam_options=beam_options)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="remoteclip-jax convert-data", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Convert remote-sensing annotations to image-caption records "
                    "(B2C captions for boxes and masks).")
    parser.add_argument("kind", choices=KINDS, help=(
        "dota: the dataset root or its labelTxt directory; dior/hrrsd: VOC XML directory (Annotations, or DIOR's "
        "Annotations/HBB or OBB); coco: instances JSON; visdrone: DET annotations/ directory; "
        "auair: annotations.json; carpk: Annotations/ directory; hrsc: HRSC2016 Annotations/ "
        "directory; levir: directory of .txt labels; rsod: RSOD root (class folders); "
        "stanford_drone: a video's annotations.txt (frames extracted into --images); masks: "
        "mask PNG directory; captions: Karpathy .json, .jsonl, .csv or .tsv; csv: caption CSV "
        "with the --csv-* options; webdataset: .tar shard(s), directory or glob"))
    parser.add_argument("--input", required=True, help="annotations (see kind)")
    parser.add_argument("--images", default=None,
                        help="image directory (default: found next to the annotations)")
    parser.add_argument("--out", required=True, help="output directory (must hold no dataset)")
    parser.add_argument("--image-size", type=int, default=256,
                        help="shortest side of stored JPEGs, never enlarged (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="B2C seed (default 0)")
    parser.add_argument("--skip-bad-annotations", action="store_true",
                        help="skip malformed annotation lines and list them in the summary "
                             "instead of stopping")
    parser.add_argument("--source", default="", help="dataset name stored as provenance")
    parser.add_argument("--split", default=None, help="captions: keep only this split")
    parser.add_argument("--csv-img-key", default=None,
                        help="csv: image path column (default: filepath, filename, image, ...)")
    parser.add_argument("--csv-caption-key", default=None,
                        help="csv: caption column (default: title, caption, text, ...)")
    parser.add_argument("--csv-separator", default=None,
                        help="csv: field separator (default: sniffed from the header; write "
                             "a tab as '\\t')")
    parser.add_argument("--csv-encoding", default=None,
                        help="csv: text encoding (default: utf-8, else gb18030)")
    parser.add_argument("--table", default="loveda", help="masks: class table, one of "
                        f"{sorted(readers.CLASS_TABLES)} or a JSON file (default loveda)")
    parser.add_argument("--min-area", type=int, default=m2b.DEFAULT_MIN_AREA,
                        help=f"masks: minimum component size in pixels "
                             f"(default {m2b.DEFAULT_MIN_AREA})")
    parser.add_argument("--mask-suffix", default="",
                        help="masks: stem suffix of mask files, e.g. _instance_color_RGB")
    parser.add_argument("--image-suffix", default="",
                        help="masks: stem suffix of the matching images, e.g. _RGB")
    defaults = b2c.B2COptions()
    parser.add_argument("--center-fraction", type=float, default=defaults.center_fraction,
                        help="B2C central region side, fraction of the image side "
                             f"(default {defaults.center_fraction})")
    parser.add_argument("--many-threshold", type=int, default=defaults.many_threshold,
                        help="B2C: counts above this become 'many', 'lots of', ... "
                             f"(default {defaults.many_threshold})")
    parser.add_argument("--describe-empty-regions", action="store_true",
                        help="B2C: caption an empty centre or edge with 'There is nothing in "
                             "the middle/at the edge of the picture.' (off: a count caption "
                             "takes its place)")
    parser.add_argument("--no-difficult", action="store_true",
                        help="B2C: leave out objects flagged difficult")
    parser.add_argument("--ignore-class", action="append", default=[],
                        help="B2C: a class name never captioned (repeatable; added to the "
                             "defaults: background, clutter, impervious surfaces, ...)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--shard-size", type=int, default=2000, help="records per shard")
    parser.add_argument("--max-images", type=int, default=0,
                        help="stop after this many kept images (default: all)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a converted dataset already in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--workers", type=int, default=1,
                        help="local processes decoding, captioning and encoding images; the "
                             "records are the same bytes for any number (default 1)")
    parser.add_argument("--runner", choices=RUNNERS, default="local",
                        help="local: --workers processes on this machine; beam: an Apache Beam "
                             "pipeline (DirectRunner with --workers processes unless "
                             "--beam-options names a runner); the same records either way")
    parser.add_argument("--beam-options", default="",
                        help="Beam pipeline options, e.g. '--runner=FlinkRunner "
                             "--flink_master=host:8081' (with --runner beam)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0 (bad input and nothing kept raise `DataError`: exit code 2)."""
    args = build_parser().parse_args(argv)
    options = dataclasses.replace(
        b2c.B2COptions(), center_fraction=args.center_fraction,
        many_threshold=args.many_threshold, include_difficult=not args.no_difficult,
        describe_empty_regions=args.describe_empty_regions,
        ignore_classes=b2c.DEFAULT_IGNORE + tuple(args.ignore_class))
    summary = convert_dataset(
        args.kind, args.input, args.out, images=args.images, image_size=args.image_size,
        seed=args.seed, skip_bad_annotations=args.skip_bad_annotations, options=options,
        table=args.table, min_area=args.min_area, source=args.source, split=args.split,
        mask_suffix=args.mask_suffix, image_suffix=args.image_suffix, quality=args.quality,
        shard_size=args.shard_size, max_images=args.max_images, overwrite=args.overwrite,
        progress=not args.no_progress, csv_options=_csv_options(args), workers=args.workers,
        runner=args.runner, beam_options=args.beam_options)
    print(summary.text())
    print(f"summary: {files.as_path(args.out) / 'summary.json'}")
    return 0


def _csv_options(args: argparse.Namespace) -> dict[str, Any]:
    separator = args.csv_separator
    if separator is not None:
        # A shell passes "\t" as two characters (ITRA's --csv-separator "\t" habit).
        separator = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(separator, separator)
    return {"image_column": args.csv_img_key, "caption_column": args.csv_caption_key,
            "separator": separator, "encoding": args.csv_encoding}


if __name__ == "__main__":
    sys.exit(main())
