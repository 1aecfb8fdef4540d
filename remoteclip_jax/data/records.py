"""The on-disk record format: ArrayRecord shards of msgpack-encoded image-caption records.

A converted dataset is a directory::

    out_dir/records-00000-of-00003.array_record
    out_dir/records-00001-of-00003.array_record
    out_dir/records-00002-of-00003.array_record
    out_dir/manifest.json

Each ArrayRecord entry (written with ``group_size:1`` so that grain can read any index without
decompressing its neighbours) is one msgpack map:

==========  ===============  =====================================================================
key         type             meaning
==========  ===============  =====================================================================
image       bytes            the image, JPEG-encoded (pre-resized with :func:`encode_jpeg`)
captions    list[str]        one or more captions (the pipeline samples one per image per epoch)
source      str              dataset name, e.g. ``"rsicd"``, ``"dota"``
image_id    str              id of the image in its source dataset (provenance)
ann_ids     list[str]        ids of the annotations the captions were built from (provenance)
width       int              width of the stored image (filled in by the writer)
height      int              height of the stored image (filled in by the writer)
label       str              optional: scene class
split       str              optional: "train" / "val" / "test"; indexed, see below
boxes       list[dict]       optional: ``{category, x0, y0, x1, y1, difficult, ann_id}`` in the
                             pixel frame of the *stored* image (see :func:`scale_boxes`)
==========  ===============  =====================================================================

Other msgpack-serialisable keys are kept as they are. ``manifest.json`` records the number of
records, the shards and their counts, the per-source counts, the union of fields and any metadata
the writer was given (e.g. a conversion summary). When records carry a ``split``, the writer also
stores ``split-<name>.npy`` (the int64 record indices of that split, listed under ``splits`` in the
manifest), so ``RecordSource(dir, split="train")`` selects a split without reading any record.

numpy/PIL/msgpack only: this module runs inside grain workers and must not import jax.
"""
from __future__ import annotations

from remoteclip_jax.errors import DataError
import collections
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import re
import tempfile
import threading
from typing import Any, Iterable, Sequence

import msgpack
import numpy as np
from PIL import Image

from remoteclip_jax.data.types import Box
from remoteclip_jax.files import as_path, is_remote, upload_tree, write_json

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_SHARD_RE = re.compile(r"^records-(\d{5})-of-(\d{5})\.array_record$")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
REQUIRED_FIELDS = ("image", "captions", "source", "image_id", "ann_ids")
# Random access in grain needs one record per chunk (array_record's own advice for grain).
_WRITER_OPTIONS = "group_size:1"
_READER_OPTIONS = "readahead_buffer_size:0"


def shard_name(index: int, count: int) -> str:
    """File name of shard ``index`` of ``count``: ``records-00001-of-00004.array_record``."""
    return f"records-{index:05d}-of-{count:05d}.array_record"


def encode_jpeg(image: Image.Image, size: int | None = None, *, quality: int = 90) -> bytes:
    """Encodes an image as RGB JPEG, first shrinking it so its shortest side is ``size``.

    The CLIP transforms resize the shortest side to the model's input size and then crop, so
    storing images with the shortest side at (or a little above) that size keeps everything
    they will ever use while making decoding cheap. Images are never enlarged.

    Args:
        image: any PIL image; converted to RGB (alpha, palette and grey images included).
        size: target length of the shortest side in pixels; ``None`` keeps the original size.
        quality: JPEG quality (1-95).

    Returns:
        The JPEG bytes.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    if size is not None:
        width, height = image.size
        new_size = resized_size(width, height, size)
        if new_size != (width, height):
            image = image.resize(new_size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The (width, height) that :func:`encode_jpeg` produces: shortest side ``size``, no upscaling."""
    shortest = min(width, height)
    if shortest <= size:
        return width, height
    scale = size / shortest
    return max(1, round(width * scale)), max(1, round(height * scale))


def scale_boxes(boxes: Sequence[Box], sx: float, sy: float) -> list[Box]:
    """Boxes rescaled by (sx, sy), for storing boxes in the frame of a resized image."""
    return [dataclasses.replace(b, x0=b.x0 * sx, y0=b.y0 * sy, x1=b.x1 * sx, y1=b.y1 * sy)
            for b in boxes]


def boxes_to_record(boxes: Iterable[Box]) -> list[dict[str, Any]]:
    """Boxes as msgpack-friendly dicts (the ``boxes`` field of a record)."""
    return [dataclasses.asdict(b) for b in boxes]


def boxes_from_record(items: Iterable[dict[str, Any]]) -> list[Box]:
    """Inverse of :func:`boxes_to_record`."""
    return [Box(**item) for item in items]


def serialize_record(record: dict[str, Any]) -> bytes:
    """Encodes one record dict as msgpack bytes (the payload of one ArrayRecord entry)."""
    return msgpack.packb(record, use_bin_type=True)


def deserialize_record(raw: bytes, *, where: str = "record") -> dict[str, Any]:
    """Decodes msgpack bytes written by :func:`serialize_record`.

    Raises:
        DataError: naming ``where`` when the bytes are not a msgpack map.
    """
    try:
        record = msgpack.unpackb(raw, raw=False)
    except Exception as e:  # msgpack raises several unrelated exception types.
        raise DataError(f"{where}: corrupt record ({type(e).__name__}: {e})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: record is a {type(record).__name__}, not a map")
    return record


def _validate(record: dict[str, Any]) -> dict[str, Any]:
    """Checks the required fields and fills in width/height from the JPEG header."""
    where = f"record {record.get('source', '?')}/{record.get('image_id', '?')}"
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}")
    if not isinstance(record["image"], (bytes, bytearray)):
        raise DataError(f"{where}: 'image' must be encoded bytes (use encode_jpeg)")
    captions = record["captions"]
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise DataError(f"{where}: 'captions' must be a list of strings")
    record = dict(record)
    record["captions"] = list(captions)
    record["ann_ids"] = [str(a) for a in record["ann_ids"]]
    record["image_id"] = str(record["image_id"])
    if "boxes" in record:
        record["boxes"] = [dataclasses.asdict(b) if isinstance(b, Box) else dict(b)
                           for b in record["boxes"]]
    if "width" not in record or "height" not in record:
        try:
            # Image.open reads only the header: cheap, and it rejects bytes that are no image.
            with Image.open(io.BytesIO(record["image"])) as im:
                record["width"], record["height"] = im.size
        except Exception as e:
            raise DataError(f"{where}: 'image' is not a readable image ({e})") from None
    return record


class RecordWriter:
    """Writes records into ArrayRecord shards plus ``manifest.json``; use as a context manager.

    Shards are written under temporary names and renamed to ``records-XXXXX-of-YYYYY`` when
    the writer closes (the total is known only then). If the ``with`` block raises, the partial
    shards are deleted and no manifest is written, so a directory with a manifest is complete.

    Example::

        with RecordWriter("out/rsicd", shard_size=2000) as writer:
            writer.write({"image": encode_jpeg(im, 256), "captions": [...], "source": "rsicd",
                          "image_id": "airport_1", "ann_ids": []})
            writer.metadata["summary"] = {"skipped": 3}

    Args:
        out_dir: directory to create (may exist, but must hold no shards).
        shard_size: records per shard.
        metadata: extra JSON-serialisable entries for the manifest (also settable later via
            ``writer.metadata``).
        overwrite: delete a dataset already in ``out_dir`` (its shards, split indices and
            manifest) instead of refusing.
    """

    def __init__(self, out_dir: str | os.PathLike, shard_size: int = 2000,
                 metadata: dict[str, Any] | None = None, overwrite: bool = False):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir = pathlib.Path(out_dir)
        self.shard_size = shard_size
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.overwrite = overwrite
        self.count = 0
        self._splits: dict[str, list[int]] = {}
        self._sources: collections.Counter[str] = collections.Counter()
        self._fields: set[str] = set()
        self._shard_counts: list[int] = []
        self._tmp_paths: list[pathlib.Path] = []
        self._writer = None
        self._closed = False

    def __enter__(self) -> "RecordWriter":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for p in _dataset_files(self.out_dir, self.overwrite):
            p.unlink()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, record: dict[str, Any]) -> None:
        """Validates and appends one record (see the module docstring for the fields)."""
        from array_record.python import array_record_module

        if self._closed:
            raise RuntimeError("RecordWriter is closed")
        record = _validate(record)
        split = record.get("split")
        if split:
            if not isinstance(split, str) or not _SPLIT_RE.match(split):
                raise DataError(f"record {record['source']}/{record['image_id']}: "
                                        f"split must be a plain name, got {split!r}")
            self._splits.setdefault(split, []).append(self.count)
        if self._writer is None or self._shard_counts[-1] >= self.shard_size:
            self._close_shard()
            path = self.out_dir / f".records-{len(self._shard_counts):05d}.array_record.tmp"
            self._writer = array_record_module.ArrayRecordWriter(str(path), _WRITER_OPTIONS)
            self._tmp_paths.append(path)
            self._shard_counts.append(0)
        self._writer.write(serialize_record(record))
        self._shard_counts[-1] += 1
        self.count += 1
        self._sources[str(record["source"])] += 1
        self._fields.update(record)

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> dict[str, Any]:
        """Finishes the shards, writes and returns the manifest.

        Raises:
            DataError: when nothing was written.
        """
        if self._closed:
            raise RuntimeError("RecordWriter is already closed")
        self._close_shard()
        self._closed = True
        if self.count == 0:
            raise DataError(f"{self.out_dir}: no records were written")
        n = len(self._tmp_paths)
        shards = []
        for i, (tmp, count) in enumerate(zip(self._tmp_paths, self._shard_counts)):
            name = shard_name(i, n)
            tmp.rename(self.out_dir / name)
            shards.append({"file": name, "count": count})
        splits = {}
        for name, indices in sorted(self._splits.items()):
            file = f"split-{name}.npy"
            np.save(self.out_dir / file, np.asarray(indices, np.int64))
            splits[name] = {"count": len(indices), "file": file}
        manifest = {
            "format": "remoteclip_jax.records",
            "version": FORMAT_VERSION,
            "count": self.count,
            "shards": shards,
            "sources": dict(sorted(self._sources.items())),
            "fields": sorted(self._fields),
            "splits": splits,
            **self.metadata,
        }
        write_json(self.out_dir / MANIFEST_NAME, manifest, indent=2, default=str)
        return manifest

    def abort(self) -> None:
        """Deletes the partial shards without writing a manifest."""
        self._close_shard()
        self._closed = True
        for path in self._tmp_paths:
            path.unlink(missing_ok=True)
        self._tmp_paths = []


def _dataset_files(directory, overwrite: bool) -> list:
    """The files of a dataset already in `directory` (shards, split indices, manifest), to be
    replaced; refused unless `overwrite`.

    Raises:
        DataError: `directory` holds a dataset and overwrite is False.
    """
    found = [p for p in directory.iterdir()
             if _SHARD_RE.match(p.name) or p.name == MANIFEST_NAME
             or (p.name.startswith("split-") and p.name.endswith(".npy"))]
    if found and not overwrite:
        raise DataError(f"{directory}: already holds a dataset ({found[0].name}, ...); choose an "
                        "empty directory or pass overwrite=True (--overwrite)")
    return found


@contextlib.contextmanager
def output_folder(out_dir: str | os.PathLike, overwrite: bool = False):
    """Where to write a dataset bound for `out_dir`: `out_dir` itself when local; for a bucket
    (``gs://...``) a local folder whose files are uploaded when the block ends without error,
    the manifest last (a bucket folder with a manifest holds the whole dataset), after the old
    dataset there is deleted (only with `overwrite`; refused before any work otherwise)."""
    if not is_remote(out_dir):
        yield out_dir
        return
    target = as_path(out_dir)
    stale = _dataset_files(target, overwrite) if target.is_dir() else []
    with tempfile.TemporaryDirectory(prefix="remoteclip-records-") as local:
        yield local
        for p in stale:
            p.unlink()
        upload_tree(local, target, last=MANIFEST_NAME)


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Loads ``directory/manifest.json``.

    Raises:
        DataError: naming the file when it is missing or malformed.
    """
    path = as_path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (not a converted dataset directory, "
                                "or its conversion did not finish)")
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("shards"), list) or "count" not in manifest:
            raise ValueError("needs 'count' and a 'shards' list")
    except ValueError as e:
        raise DataError(f"{path}: malformed manifest ({e})") from None
    return manifest


def _split_indices(directory, manifest: dict[str, Any], split: str) -> np.ndarray:
    splits = manifest.get("splits") or {}
    if split not in splits:
        available = ", ".join(sorted(splits)) or "none (records carry no 'split')"
        raise DataError(f"{directory / MANIFEST_NAME}: no split {split!r}; "
                                f"splits: {available}")
    path = directory / splits[split]["file"]
    try:
        indices = np.load(io.BytesIO(path.read_bytes()))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: missing or unreadable split index ({e})") from None
    if indices.ndim != 1 or len(indices) != splits[split]["count"] or (
            len(indices) and (indices.min() < 0 or indices.max() >= manifest["count"])):
        raise DataError(f"{path}: split index does not match {directory / MANIFEST_NAME}")
    return indices.astype(np.int64)


def _open_reader(path):
    from array_record.python import array_record_module

    if not path.is_file():
        raise DataError(f"{path}: shard not found")
    try:
        reader = array_record_module.ArrayRecordReader(str(path), _READER_OPTIONS)
        if not reader.ok():
            raise ValueError("reader not ok")
    except Exception as e:
        raise DataError(f"{path}: corrupt or unreadable ArrayRecord shard ({e})") from None
    return reader


class RecordSource:
    """A grain random-access data source over record shards; ``source[i]`` is a record dict.

    Accepts a dataset directory (uses its manifest), one ``.array_record`` file, or a list of
    either. Shards open lazily and reopen after pickling, so the source can travel to grain
    worker processes. All shards are checked at construction (existence, and that each holds the
    number of records the manifest claims), so a missing or corrupt shard fails early with its
    path rather than mid-epoch.

    Args:
        paths: a directory, a shard file, or a sequence of them.
        split: keep only the records of this split (directories only; uses the split index the
            writer stored, so no record is read).

    The paths may be in a bucket (``gs://...``): the manifest and split indices are read
    through `etils.epath`, the shards by array_record itself, which speaks GCS with the
    environment's credentials (a TPU VM's service account), so nothing is copied to local disk.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
                 split: str | None = None):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        selected: list[np.ndarray] = []
        self._files: list = []  # pathlib or, in a bucket, epath paths
        self._counts: list[int] = []
        self.sources: collections.Counter[str] = collections.Counter()
        for p in paths:
            p = as_path(p)
            if p.is_dir():
                manifest = read_manifest(p)
                self.sources.update(manifest.get("sources", {}))
                if split:
                    selected.append(_split_indices(p, manifest, split) + sum(self._counts))
                for shard in manifest["shards"]:
                    path = p / shard["file"]
                    reader = _open_reader(path)
                    n = reader.num_records()
                    reader.close()
                    if n != shard["count"]:
                        raise DataError(f"{path}: holds {n} records but {p / MANIFEST_NAME} "
                                                f"says {shard['count']} (truncated shard?)")
                    self._files.append(path)
                    self._counts.append(n)
            else:
                if split:
                    raise DataError(f"{p}: split={split!r} needs a dataset directory "
                                            "(its manifest indexes the splits), not a shard")
                reader = _open_reader(p)
                self._files.append(p)
                self._counts.append(reader.num_records())
                reader.close()
        self._offsets = [0]
        for n in self._counts:
            self._offsets.append(self._offsets[-1] + n)
        # Positions of the selected records among all records, or None for all of them.
        self._selection = np.concatenate(selected) if split else None
        if len(self) == 0:
            raise DataError(f"{', '.join(map(str, paths))}: no records"
                                    + (f" in split {split!r}" if split else ""))
        self._readers: list[Any] = [None] * len(self._files)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        if self._selection is not None:
            return len(self._selection)
        return self._offsets[-1]

    def _locate(self, index: int) -> tuple[int, int]:
        import bisect

        if not 0 <= index < len(self):
            raise IndexError(f"record index {index} out of range [0, {len(self)})")
        if self._selection is not None:
            index = int(self._selection[index])
        shard = bisect.bisect_right(self._offsets, index) - 1
        return shard, index - self._offsets[shard]

    def _reader(self, shard: int):
        reader = self._readers[shard]
        if reader is None:
            with self._lock:
                reader = self._readers[shard]
                if reader is None:
                    reader = self._readers[shard] = _open_reader(self._files[shard])
        return reader

    def read_raw(self, index: int) -> bytes:
        """The serialised bytes of record ``index``."""
        shard, pos = self._locate(int(index))
        try:
            return self._reader(shard).read([pos])[0]
        except Exception as e:
            raise DataError(
                f"{self._files[shard]}: cannot read record {pos} ({e})") from None

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard, pos = self._locate(int(index))
        return deserialize_record(self.read_raw(index), where=f"{self._files[shard]}[{pos}]")

    @property
    def files(self) -> list:
        """The shard files, in index order."""
        return list(self._files)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_readers"] = [None] * len(self._files)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RecordSource({len(self._files)} shards, {len(self)} records)"
