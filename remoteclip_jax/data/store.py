"""The embedding store: clip-retrieval's layout, written shard by shard, resumable, one reader.

    OUT/img_emb/img_emb_0000.npy         (n, E) float32, unit rows: image (or scene tile) rows
    OUT/metadata/metadata_0000.parquet   n rows, typed columns, row i describes img_emb row i:
                                         `image_path` (absolute), and for scene tiles `tile_id`,
                                         `row`, `col`, the pixel window, `minx..maxy` and
                                         `footprint_wkt` in the CRS named in store.json
    OUT/text_emb/text_emb_0000.npy       (m, E) float32: caption embeddings
    OUT/metadata/captions_0000.parquet   m rows: `caption`, `image_path` and `image` (the row of
                                         this shard's img_emb it describes; -1 without images)
    OUT/store.json                       what was embedded (identity), where (info, crs), progress
    OUT/skipped.csv                      images that could not be read (path, reason)

Each image is stored once, however many captions it has. The folders are those `clip-retrieval
inference` writes, so `autofaiss build_index --embeddings OUT/img_emb` and `embedding_reader`
(format `parquet_npy`) read the image side as they read clip-retrieval's output.

Every file is written atomically (`remoteclip_jax.files`); a shard counts as done when its marker
`OUT/.progress/shard_0000.json` exists, which is written last. A killed run leaves only complete
shards, and a rerun with the same inputs computes only the missing ones; a run of other inputs
is refused unless told to overwrite.

Metadata is Parquet (needs pyarrow) or, with `metadata_format="jsonl"`, JSON Lines for machines
without it; clip-retrieval tools need the Parquet form. Stores written by earlier versions of
this package are read (version 1: one row per (image, caption) pair) or refused in one line (the
scene tile stores under `embeddings/img_emb/`).
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import shutil
from typing import Iterator, Sequence

import numpy as np

from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.lazy import optional_module
from remoteclip_jax.files import atomic_write, is_remote, write_json

FOLDERS = {"image": ("img_emb", "img_emb_"), "text": ("text_emb", "text_emb_")}
TABLES = {"image": "metadata", "text": "captions"}  # metadata/<table>_NNNN.<format>
METADATA_FORMATS = ("parquet", "jsonl")
MANIFEST = "store.json"
FORMAT = "remoteclip_jax.store"
STORE_VERSION = 2


def pyarrow():
    """pyarrow with its parquet module, or a one-line `UserError` saying how to get it."""
    optional_module("pyarrow.parquet", "Parquet metadata needs pyarrow: install pyarrow (pip "
                    "install pyarrow), or write JSON Lines metadata instead (--metadata jsonl)")
    import pyarrow
    return pyarrow


def shard_tag(index: int, num_shards: int) -> str:
    """Zero-padded shard number, one width per store (at least 4 digits) so names sort."""
    return str(index).zfill(max(4, len(str(max(0, num_shards - 1)))))


def write_skipped(skipped: Sequence[tuple[str, str]], out_dir: str) -> str | None:
    """OUT/skipped.csv (path,reason) when images were skipped; removes a stale one otherwise."""
    path = os.path.join(out_dir, "skipped.csv")
    if not skipped:
        if os.path.exists(path):
            os.remove(path)
        return None
    with atomic_write(path, newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows(skipped)
    return path


def _local_only(root: str, advice: str) -> None:
    """Stores are local folders: resumed shard by shard and memory-mapped when searched."""
    if is_remote(root):
        raise DataError(f"{root}: embedding stores live on local disk (resumed shard by shard, "
                        f"memory-mapped for search); {advice}")


class StoreWriter:
    """Writes the shards of one store; refuses to mix inputs or models into an existing one.

    Args:
        root: the output folder.
        identity: what identifies the run (model fingerprint, inputs hash, shard size, scene
            settings, ...); must equal the identity recorded in `root`, if any, unless `overwrite`.
        info: recorded but not compared (e.g. the model's path, which may move); ``crs`` names
            the CRS of footprint columns.
        num_shards: shards the run will write.
        modalities: "image" and/or "text".
        metadata_format: "parquet" or "jsonl".
        overwrite: delete an existing store in `root` first.

    Raises:
        DataError: `root` is a file, or holds a store of other inputs (without `overwrite`).
    """

    def __init__(self, root: str, identity: dict, info: dict, num_shards: int,
                 modalities: Sequence[str], metadata_format: str = "parquet",
                 overwrite: bool = False):
        if metadata_format not in METADATA_FORMATS:
            raise ConfigError(f"--metadata {metadata_format!r}: expected parquet or jsonl")
        if metadata_format == "parquet":
            pyarrow()
        _local_only(root, "write it to a local folder, then copy that into the bucket")
        if os.path.exists(root) and not os.path.isdir(root):
            raise DataError(f"{root}: is a file, not a folder; give --out a folder to hold the store")
        self.root, self.num_shards = root, num_shards
        self.modalities, self.metadata_format = tuple(modalities), metadata_format
        self.identity = {"version": STORE_VERSION, **identity, "num_shards": num_shards,
                         "modalities": list(self.modalities), "metadata_format": metadata_format}
        self.manifest = {"format": FORMAT, "identity": self.identity, "info": info}
        manifest_path = os.path.join(root, MANIFEST)
        if overwrite:
            self._remove_store()
        if os.path.exists(manifest_path):
            old = _read_manifest(root)
            old_key = old.get("identity", {})
            if old_key != self.identity:
                changed = sorted(k for k in set(old_key) | set(self.identity)
                                 if old_key.get(k) != self.identity.get(k)) or ["layout"]
                raise DataError(f"{root}: holds a store of other inputs or settings (differs in "
                                f"{', '.join(changed)}); use another --out, or --overwrite to "
                                "replace it")
        elif any(os.path.exists(os.path.join(root, d)) for d in ("img_emb", "text_emb", "embeddings")):
            raise DataError(f"{root}: has embedding folders but no {MANIFEST}; use another "
                            "--out, or --overwrite to replace them")
        for folder in [FOLDERS[m][0] for m in self.modalities] + ["metadata", ".progress"]:
            os.makedirs(os.path.join(root, folder), exist_ok=True)
        for stale in glob.glob(os.path.join(root, "*", ".*.tmp*")):  # left by a killed run
            os.remove(stale)
        write_json(manifest_path, {**self.manifest, "complete": False}, indent=1)

    def _remove_store(self):
        for folder in ("img_emb", "text_emb", "metadata", ".progress", "embeddings"):
            shutil.rmtree(os.path.join(self.root, folder), ignore_errors=True)
        for name in (MANIFEST, "skipped.csv"):
            if os.path.exists(os.path.join(self.root, name)):
                os.remove(os.path.join(self.root, name))

    def _marker(self, index: int) -> str:
        return os.path.join(self.root, ".progress", f"shard_{shard_tag(index, self.num_shards)}.json")

    def paths(self, index: int) -> dict[str, tuple[str, str]]:
        """Per modality, shard `index`'s (embeddings file, metadata file)."""
        tag, ext = shard_tag(index, self.num_shards), self.metadata_format
        return {m: (os.path.join(self.root, FOLDERS[m][0], f"{FOLDERS[m][1]}{tag}.npy"),
                    os.path.join(self.root, "metadata", f"{TABLES[m]}_{tag}.{ext}"))
                for m in self.modalities}

    def is_done(self, index: int) -> bool:
        """True when shard `index` was written completely (by this run or an earlier one)."""
        files = [f for pair in self.paths(index).values() for f in pair]
        return os.path.exists(self._marker(index)) and all(map(os.path.exists, files))

    def write_shard(self, index: int, embeddings: dict[str, np.ndarray],
                    tables: dict[str, dict[str, list]], skipped: Sequence[tuple[str, str]] = ()
                    ) -> None:
        """Writes shard `index` (each file atomically), then its done-marker.

        Args:
            index: shard number.
            embeddings: modality -> (n, E) features.
            tables: modality -> {column: n values}, row-aligned with that modality's features.
            skipped: (path, reason) of inputs of this shard that were left out.
        """
        for modality, (npy, table) in self.paths(index).items():
            array, columns = embeddings[modality], tables[modality]
            if any(len(v) != len(array) for v in columns.values()):
                raise ValueError(f"shard {index}: {modality} embeddings and metadata differ in length")
            with atomic_write(npy, "wb") as f:
                np.save(f, np.ascontiguousarray(array, np.float32))
            if self.metadata_format == "parquet":
                pa = pyarrow()
                with atomic_write(table, None) as tmp:
                    pa.parquet.write_table(pa.table(columns), tmp)
            else:
                with atomic_write(table, encoding="utf-8") as f:
                    for values in zip(*columns.values()):
                        f.write(json.dumps(dict(zip(columns, values)), ensure_ascii=False) + "\n")
        write_json(self._marker(index), {"skipped": [list(s) for s in skipped]})

    def finish(self) -> list[tuple[str, str]]:
        """Marks the store complete, writes OUT/skipped.csv; returns every skipped (path, reason)."""
        skipped = []
        for index in range(self.num_shards):
            with open(self._marker(index), encoding="utf-8") as f:
                skipped += [tuple(s) for s in json.load(f)["skipped"]]
        write_skipped(skipped, self.root)
        write_json(os.path.join(self.root, MANIFEST), {**self.manifest, "complete": True}, indent=1)
        return skipped


def _read_manifest(root: str) -> dict:
    try:
        with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{os.path.join(root, MANIFEST)}: unreadable ({e}); embed again into a "
                        "new --out") from None
    if "settings" in manifest and "ranges" in manifest:
        raise DataError(f"{root}: a scene tile store of an earlier remoteclip_jax (embeddings/"
                        "img_emb/), which this version does not read; embed the scene again: "
                        "remoteclip-jax embed SCENE.tif --tile N --model ... --out NEW_DIR")
    version = manifest.get("identity", {}).get("version", 1)
    if version > STORE_VERSION:
        raise DataError(f"{root}: store version {version} is newer than this remoteclip_jax "
                        f"reads ({STORE_VERSION}); upgrade remoteclip_jax")
    return manifest


class EmbeddingStore:
    """Reads a store written by `embed` (any version this package wrote) or by clip-retrieval.

    Args:
        root: the store folder.

    Raises:
        DataError: not a store, an unfinished or damaged one, or one this version cannot read.
    """

    def __init__(self, root: str):
        _local_only(root, "copy it to local disk first (gcloud storage cp -r URL DIR)")
        self.root = root
        self.manifest = _read_manifest(root) if os.path.exists(os.path.join(root, MANIFEST)) else {}
        if not self.manifest.get("complete", True):
            raise DataError(f"{root}: the embed run that writes this store has not finished; "
                            "rerun the same `remoteclip-jax embed` command to complete it")
        self.files = {m: sorted(glob.glob(os.path.join(root, folder, f"{prefix}*.npy")))
                      for m, (folder, prefix) in FOLDERS.items()}
        self.files = {m: f for m, f in self.files.items() if f}
        if not self.files:
            raise DataError(f"{root}: not an embedding store (no img_emb/ or text_emb/ .npy "
                            "files; write one with `remoteclip-jax embed`)")
        version = self.manifest.get("identity", {}).get("version", 1)
        tables = {m: sorted(glob.glob(os.path.join(root, "metadata", f"{TABLES[m]}_*.parquet"))
                            + glob.glob(os.path.join(root, "metadata", f"{TABLES[m]}_*.jsonl")))
                  for m in self.files}
        if version < 2 and "text" in tables:  # version 1: one metadata row per (image, caption)
            tables["text"] = tables.get("image") or sorted(
                glob.glob(os.path.join(root, "metadata", "metadata_*.*")))
        for m, files in self.files.items():
            if len(tables[m]) != len(files):
                raise DataError(f"{root}: {len(tables[m])} {TABLES[m]} files for {len(files)} "
                                f"{FOLDERS[m][0]} shards; the shards do not pair up")
        self.tables = tables
        self._cache: dict[str, dict[str, list]] = {}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.files)

    @property
    def crs(self) -> str | None:
        """The CRS of the footprint columns of a scene tile store (None otherwise)."""
        return self.manifest.get("info", {}).get("crs")

    @property
    def fingerprint(self) -> str:
        """16 hex digits identifying what was embedded (recorded beside faiss indexes)."""
        key = self.manifest.get("identity") or [os.path.basename(f) for f in self.files["image"]]
        return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def embed_dim(self) -> int:
        return int(np.load(next(iter(self.files.values()))[0], mmap_mode="r").shape[1])

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
        return sum(s.shape[0] for s in self.shards(self.modalities[0]))

    def metadata(self, modality: str = "image") -> dict[str, list]:
        """The metadata columns of `modality`'s rows over all shards, one value per row:
        ``image_path`` (and tile columns) for "image", ``caption``, ``image_path`` and ``image``
        (the global img_emb row; -1 without images) for "text"."""
        if modality not in self._cache:
            offsets = [0]  # where each shard's image rows start
            if modality == "text" and "image" in self.files:
                for shard in self.shards("image"):
                    offsets.append(offsets[-1] + shard.shape[0])
            columns: dict[str, list] = {}
            total = 0
            for k, path in enumerate(self.tables[modality]):
                part, rows = _read_table(path)
                if "image" in part and k + 1 < len(offsets):  # shard row -> store row
                    part["image"] = [r + offsets[k] if r >= 0 else r for r in part["image"]]
                for name in list(columns) + [c for c in part if c not in columns]:
                    columns.setdefault(name, [None] * total).extend(part.get(name, [None] * rows))
                total += rows
            self._cache[modality] = columns
        return self._cache[modality]


def _read_table(path: str) -> tuple[dict[str, list], int]:
    """One metadata file's columns and row count (.parquet or .jsonl)."""
    if path.endswith(".parquet"):
        table = pyarrow().parquet.read_table(path)
        return {name: table.column(name).to_pylist() for name in table.column_names}, table.num_rows
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    names = list(dict.fromkeys(k for r in records for k in r))
    return {k: [r.get(k) for r in records] for k in names}, len(records)
