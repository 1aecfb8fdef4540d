"""An embedding store on disk in clip-retrieval's layout, written shard by shard, resumable.

    OUT/img_emb/img_emb_0000.npy       (n, E) float32, unit rows: image embeddings of shard 0
    OUT/text_emb/text_emb_0000.npy     (n, E) float32: caption embeddings, row-aligned with img_emb
    OUT/metadata/metadata_0000.parquet n rows: `image_path` and/or `caption` columns
    OUT/store.json                     what was embedded: model, inputs, shard size, progress
    OUT/skipped.csv                    images that could not be read (path, reason)

This is the layout `clip-retrieval inference` writes (`img_emb/`, `text_emb/`, `metadata/`, shard
numbers zero-padded to one width), so `autofaiss build_index --embeddings OUT/img_emb` and
`embedding_reader` (format `parquet_npy`) read it as they read clip-retrieval's output. Row i of
a shard's metadata describes row i of its .npy files.

Every file is written to a hidden temporary name and renamed into place; a shard counts as done
when its marker `OUT/.progress/shard_0000.json` exists, which is written last. A run killed midway
leaves only complete shards, and a rerun with the same inputs computes only the missing ones.

Metadata is Parquet (needs pyarrow: `pip install pyarrow`) or, with `metadata_format="jsonl"`,
JSON Lines (`metadata_0000.jsonl`, one object per row) for machines without pyarrow; clip-retrieval
tools need the Parquet form.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Iterator, Sequence

import numpy as np

from remoteclip_jax.errors import ConfigError, DataError

FOLDERS = {"image": ("img_emb", "img_emb_"), "text": ("text_emb", "text_emb_")}
METADATA_FORMATS = ("parquet", "jsonl")
MANIFEST = "store.json"
STORE_VERSION = 1


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError("Parquet metadata needs pyarrow: install pyarrow (pip install pyarrow), "
                         "or write JSON Lines metadata instead (--metadata jsonl)") from None
    return pyarrow


def shard_tag(index: int, num_shards: int) -> str:
    """Zero-padded shard number, one width per store (at least 4 digits) so names sort."""
    return str(index).zfill(max(4, len(str(max(0, num_shards - 1)))))


def _atomic_write(path: str, write) -> None:
    """Calls write(tmp_path), then renames tmp onto `path` (a reader never sees half a file)."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _save_npy(path: str, array: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array, np.float32))
    _atomic_write(path, write)


def _write_json(path: str, obj) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
    _atomic_write(path, write)


class StoreWriter:
    """Writes shards of one store; refuses to mix inputs or models into an existing one.

    Args:
        root: the output folder.
        identity: what identifies the run (model fingerprint, inputs hash, shard size, ...);
            must equal the identity recorded in `root`, if any, unless `overwrite`.
        info: recorded but not compared (e.g. the model's path, which may move).
        num_shards: shards the run will write.
        modalities: "image" and/or "text".
        metadata_format: "parquet" or "jsonl".
        overwrite: delete an existing store in `root` first.
    """

    def __init__(self, root: str, identity: dict, info: dict, num_shards: int,
                 modalities: Sequence[str], metadata_format: str = "parquet",
                 overwrite: bool = False):
        if metadata_format not in METADATA_FORMATS:
            raise ConfigError(f"metadata format {metadata_format!r}: expected parquet or jsonl")
        if metadata_format == "parquet":
            _pyarrow()
        self.root = root
        self.num_shards = num_shards
        self.modalities = tuple(modalities)
        self.metadata_format = metadata_format
        self.identity = {"version": STORE_VERSION, **identity, "num_shards": num_shards,
                         "modalities": list(self.modalities), "metadata_format": metadata_format}
        self.manifest = {"identity": self.identity, "info": info}
        manifest_path = os.path.join(root, MANIFEST)
        if overwrite:
            self._remove_store()
        if os.path.exists(manifest_path):
            with open(manifest_path, encoding="utf-8") as f:
                old = json.load(f)
            old_key = old.get("identity", {})
            if old_key != self.identity:
                changed = sorted(k for k in set(old_key) | set(self.identity)
                                 if old_key.get(k) != self.identity.get(k))
                raise DataError(f"{root}: holds a store of other inputs or settings (differs in "
                                 f"{', '.join(changed)}); use another --out, or --overwrite to "
                                 "replace it")
        elif any(os.path.exists(os.path.join(root, d)) for d, _ in FOLDERS.values()):
            raise DataError(f"{root}: has embedding folders but no {MANIFEST}; use another "
                             "--out, or --overwrite to replace them")
        for modality in self.modalities:
            os.makedirs(os.path.join(root, FOLDERS[modality][0]), exist_ok=True)
        os.makedirs(os.path.join(root, "metadata"), exist_ok=True)
        os.makedirs(os.path.join(root, ".progress"), exist_ok=True)
        for stale in glob.glob(os.path.join(root, "*", ".*.tmp*")):  # left by a killed run
            os.remove(stale)
        _write_json(manifest_path, {**self.manifest, "complete": False})

    def _remove_store(self):
        for folder in [d for d, _ in FOLDERS.values()] + ["metadata", ".progress"]:
            shutil.rmtree(os.path.join(self.root, folder), ignore_errors=True)
        for name in (MANIFEST, "skipped.csv"):
            if os.path.exists(os.path.join(self.root, name)):
                os.remove(os.path.join(self.root, name))

    def _marker(self, index: int) -> str:
        return os.path.join(self.root, ".progress", f"shard_{shard_tag(index, self.num_shards)}.json")

    def paths(self, index: int) -> list[str]:
        """The files of shard `index` (embeddings first, metadata last)."""
        tag = shard_tag(index, self.num_shards)
        files = [os.path.join(self.root, FOLDERS[m][0], f"{FOLDERS[m][1]}{tag}.npy")
                 for m in self.modalities]
        return files + [os.path.join(self.root, "metadata", f"metadata_{tag}.{self.metadata_format}")]

    def is_done(self, index: int) -> bool:
        """True when shard `index` was written completely (by this run or an earlier one)."""
        return os.path.exists(self._marker(index)) and all(map(os.path.exists, self.paths(index)))

    def write_shard(self, index: int, embeddings: dict[str, np.ndarray],
                    metadata: dict[str, list[str]], skipped: Sequence[tuple[str, str]] = ()) -> None:
        """Writes shard `index` (each file atomically), then its done-marker.

        Args:
            index: shard number.
            embeddings: modality -> (n, E) features, row-aligned with `metadata`.
            metadata: column -> n values.
            skipped: (path, reason) of inputs of this shard that were left out.
        """
        rows = {len(v) for v in metadata.values()} | {len(v) for v in embeddings.values()}
        if len(rows) > 1:
            raise ValueError(f"shard {index}: embeddings and metadata differ in length {rows}")
        files = self.paths(index)
        for modality, path in zip(self.modalities, files):
            _save_npy(path, embeddings[modality])
        if self.metadata_format == "parquet":
            pa = _pyarrow()
            table = pa.table({k: pa.array(v, pa.string()) for k, v in metadata.items()})
            _atomic_write(files[-1], lambda tmp: pa.parquet.write_table(table, tmp))
        else:
            def write(tmp):
                with open(tmp, "w", encoding="utf-8") as f:
                    for values in zip(*metadata.values()):
                        f.write(json.dumps(dict(zip(metadata, values)), ensure_ascii=False) + "\n")
            _atomic_write(files[-1], write)
        _write_json(self._marker(index), {"rows": rows.pop() if rows else 0,
                                          "skipped": [list(s) for s in skipped]})

    def finish(self) -> list[tuple[str, str]]:
        """Marks the store complete, writes OUT/skipped.csv; returns every skipped (path, reason)."""
        skipped = []
        for index in range(self.num_shards):
            with open(self._marker(index), encoding="utf-8") as f:
                skipped += [tuple(s) for s in json.load(f)["skipped"]]
        from remoteclip_jax.inference.command_line import write_skipped

        write_skipped(skipped, self.root)
        _write_json(os.path.join(self.root, MANIFEST), {**self.manifest, "complete": True})
        return skipped


class EmbeddingStore:
    """Reads a store written by `embed` or by clip-retrieval (`img_emb/`, `text_emb/`, `metadata/`).

    Args:
        root: the store folder.

    Raises:
        DataError: no embedding folder, or shard files that do not pair up.
    """

    def __init__(self, root: str):
        self.root = root
        manifest_path = os.path.join(root, MANIFEST)
        self.manifest = {}
        if os.path.exists(manifest_path):
            with open(manifest_path, encoding="utf-8") as f:
                self.manifest = json.load(f)
            if not self.manifest.get("complete", True):
                raise DataError(f"{root}: the embed run that writes this store has not finished; "
                                 "rerun the same `remoteclip-jax embed` command to complete it")
        self.files = {m: sorted(glob.glob(os.path.join(root, folder, f"{prefix}*.npy")))
                      for m, (folder, prefix) in FOLDERS.items()}
        self.files = {m: f for m, f in self.files.items() if f}
        if not self.files:
            raise DataError(f"{root}: not an embedding store (no img_emb/ or text_emb/ .npy files; "
                             "write one with `remoteclip-jax embed`)")
        self.metadata_files = sorted(glob.glob(os.path.join(root, "metadata", "metadata_*.parquet"))
                                     + glob.glob(os.path.join(root, "metadata", "metadata_*.jsonl")))
        counts = {len(f) for f in self.files.values()} | {len(self.metadata_files)}
        if len(counts) > 1:
            raise DataError(f"{root}: {len(self.metadata_files)} metadata files for "
                             f"{', '.join(f'{len(f)} {m} shards' for m, f in self.files.items())}; "
                             "the shards do not pair up")
        self._metadata = None

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.files)

    def shards(self, modality: str = "image") -> Iterator[np.ndarray]:
        """Each shard's (n, E) embeddings, memory-mapped, in order."""
        if modality not in self.files:
            raise DataError(f"{self.root}: has no {modality} embeddings ({FOLDERS[modality][0]}/ is "
                             "missing or empty)")
        for path in self.files[modality]:
            yield np.load(path, mmap_mode="r")

    def features(self, modality: str = "image") -> np.ndarray:
        """All embeddings of `modality`, (N, E) float32 (loads them into memory)."""
        return np.concatenate([np.asarray(s, np.float32) for s in self.shards(modality)])

    def __len__(self) -> int:
        modality = self.modalities[0]
        return sum(s.shape[0] for s in self.shards(modality))

    def metadata(self) -> dict[str, list]:
        """Metadata columns over all shards (e.g. `image_path`, `caption`), one value per row."""
        if self._metadata is None:
            columns: dict[str, list] = {}
            total = 0
            for path in self.metadata_files:
                part, rows = _read_metadata(path)
                for name in list(columns) + [c for c in part if c not in columns]:
                    columns.setdefault(name, [None] * total).extend(part.get(name, [None] * rows))
                total += rows
            self._metadata = columns
        return self._metadata


def _read_metadata(path: str) -> tuple[dict[str, list], int]:
    """One metadata file's columns and row count (.parquet or .jsonl)."""
    if path.endswith(".parquet"):
        table = _pyarrow().parquet.read_table(path)
        return {name: table.column(name).to_pylist() for name in table.column_names}, table.num_rows
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    names = list(dict.fromkeys(k for r in records for k in r))
    return {k: [r.get(k) for r in records] for k in names}, len(records)
