"""Webdataset tar shards of image + caption (RS5M's format), read with the standard library.

A shard is a tar whose members are grouped into samples by key: the member path up to the first
dot of its file name (`shard/000123.jpg`, `shard/000123.txt`, `shard/000123.json` form sample
`shard/000123`). A sample needs one image (`.jpg`, `.jpeg`, `.png`, `.webp`) and a caption from
`.txt` (the whole text) and/or `.json` (`caption`, `title`, `text` string or `captions` list).
"""
from __future__ import annotations

import glob
import json
import os
import pathlib
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from remoteclip_jax.files import as_path, is_remote
from remoteclip_jax.data.readers.errors import AnnotationError, OnError, report
from remoteclip_jax.errors import DataError
from remoteclip_jax.data.types import AnnotatedImage

# Image members of a sample (webdataset writers store these).
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
_JSON_CAPTION_KEYS = ("caption", "title", "text")


def _shard_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    shards: list[pathlib.Path] = []
    for item in paths:
        item = as_path(item)
        if item.is_dir():
            shards.extend(sorted(item.glob("*.tar")))
        elif any(ch in str(item) for ch in "*?["):
            shards.extend(sorted(item.parent.glob(item.name)) if is_remote(item)  # last part only
                          else [pathlib.Path(p) for p in sorted(glob.glob(str(item)))])
        else:
            shards.append(item)
    return shards


def _json_captions(raw: bytes, shard: pathlib.Path, key: str) -> tuple[list[str], list[str]]:
    """(captions of the single-caption keys, the ``captions`` list) of a sample's JSON."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(shard, None, f"{key}.json: invalid JSON ({e})") from None
    if not isinstance(meta, dict):
        return [], []
    single = [meta[k] for k in _JSON_CAPTION_KEYS if isinstance(meta.get(k), str)]
    listed = meta.get("captions") if isinstance(meta.get("captions"), list) else []
    return single, [c for c in listed if isinstance(c, str)]


def _find_part(parts: dict[str, bytes], kinds: tuple[str, ...]) -> str | None:
    """The member extension holding one of `kinds`: an exact match ("jpg") first, then one whose
    last dotted part matches ("tar.gz.jpg"), as webdataset keys may contain dots."""
    exact = next((k for k in kinds if k in parts), None)
    if exact is not None:
        return exact
    return next((ext for ext in parts if ext.rsplit(".", 1)[-1] in kinds), None)


def sample_parts(key: str, parts: dict[str, bytes], shard: str | os.PathLike) -> tuple[str, list[str]]:
    """The image member's extension and the captions of one sample (its members by extension).

    The one caption parser for webdataset samples: conversion (`iter_webdataset`) and the
    training/evaluation source (`remoteclip_jax.data.sources.WebDatasetSource`) both use it.
    Captions come from ``.txt`` (the whole text) and ``.json`` (caption keys and ``captions``),
    whitespace-collapsed, blank ones dropped. A caption that two fields repeat (a title also in
    the list) is kept once; repeats inside the ``captions`` list are kept, as caption files keep
    them, because retrieval counts every caption of an image.

    Raises:
        AnnotationError: no image member, undecodable text, invalid JSON or no caption.
    """
    shard = as_path(shard)
    image_suffix = _find_part(parts, IMAGE_SUFFIXES)
    if image_suffix is None:
        raise AnnotationError(shard, None, f"sample '{key}' has no image "
                                           f"({', '.join(sorted(parts))})")
    single, listed = [], []
    if (txt := _find_part(parts, ("txt",))) is not None:
        try:
            single.append(parts[txt].decode("utf-8"))
        except UnicodeDecodeError as e:
            raise AnnotationError(shard, None, f"{key}.{txt}: not UTF-8 ({e.reason})") from None
    if (meta := _find_part(parts, ("json",))) is not None:
        more, listed = _json_captions(parts[meta], shard, key)
        single += more
    single = [c for c in (" ".join(s.split()) for s in single) if c]
    single = [c for i, c in enumerate(single) if c not in single[:i]]
    listed = [c for c in (" ".join(s.split()) for s in listed) if c]
    captions = single + [c for c in listed if c not in single]
    if not captions:
        raise AnnotationError(shard, None, f"sample '{key}' has no caption (.txt or .json)")
    return image_suffix, captions


def scan_shard(shard: str | os.PathLike) -> dict[str, dict[str, tuple[int, int]]]:
    """The samples of one uncompressed tar shard: key -> {extension: (byte offset, size)}.

    The one tar scanner: conversion (`iter_webdataset`) and random access (`WebDatasetSource`)
    both read samples through it, seeking straight to the members (shards are never unpacked).

    Raises:
        AnnotationError: a missing, compressed ("r:" needs plain offsets) or corrupt shard.
    """
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with as_path(shard).open("rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for member in tar:
                directory, _, filename = member.name.rpartition("/")
                if not member.isfile() or filename.startswith("."):  # macOS "._" forks
                    continue
                stem, dot, suffix = filename.partition(".")
                key = f"{directory}/{stem}" if directory else stem
                groups.setdefault(key, {})[suffix.lower() if dot else ""] = (member.offset_data,
                                                                             member.size)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise AnnotationError(shard, None, f"unreadable tar shard ({e}); webdataset shards "
                                           "must be uncompressed tar files") from None
    return groups


def read_members(shard, members: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """The bytes of a sample's members (extension -> bytes), read by offset from `shard` (a
    path, or the shard already open in binary mode)."""
    if isinstance(shard, (str, os.PathLike)):
        with as_path(shard).open("rb") as f:
            return read_members(f, members)
    parts = {}
    for ext, (offset, size) in members.items():
        shard.seek(offset)
        parts[ext] = shard.read(size)
    return parts


def iter_webdataset(paths: str | os.PathLike | Iterable[str | os.PathLike], *, source: str = "",
                    on_error: OnError | None = None) -> Iterator[AnnotatedImage]:
    """Yields the samples of webdataset tar shards, in shard and member order.

    Args:
        paths: a shard, a directory of `*.tar` shards, a glob pattern, or a list of these.
        source: dataset name for provenance (default: each shard's parent directory name).
        on_error: None raises on a bad sample or shard; a callable receives each error and the
            sample (or the rest of an unreadable shard) is skipped.

    Yields:
        AnnotatedImage with `data` (the encoded image bytes), `captions`, `image_id` (the
        sample key) and `path` = "<shard>#<key>.<ext>" for messages.

    Raises:
        AnnotationError: naming the shard, for a missing or corrupt tar or a sample without an
            image or a caption.
    """
    shards = _shard_paths(paths)
    if not shards:
        raise AnnotationError(as_path(str(paths)), None, "no .tar shards found")
    for shard in shards:
        try:
            groups = scan_shard(shard)
        except AnnotationError as e:
            report(e, on_error)
            continue
        with as_path(shard).open("rb") as f:  # once per shard (a bucket object: one open)
            for key, members in groups.items():
                parts = read_members(f, members)
                try:
                    image_suffix, captions = sample_parts(key, parts, shard)
                except AnnotationError as e:
                    report(e, on_error)
                    continue
                yield AnnotatedImage(path=f"{shard}#{key}.{image_suffix}", captions=captions,
                                     source=source or shard.parent.name, image_id=key,
                                     data=parts[image_suffix])


class WebDatasetSource:
    """Random access into uncompressed webdataset tar shards (RS5M's format).

    Construction scans the tar headers once (`scan_shard`); reading seeks straight to a sample's
    members. Captions are parsed as conversion parses them (`sample_parts`). Samples without an
    image or a caption are left out and counted in ``self.incomplete``.

    Raises:
        DataError: naming a shard that is missing, compressed or not a tar file, or when no
            complete sample is found.
    """

    def __init__(self, path: str | os.PathLike | Sequence[str | os.PathLike]):
        self._files = [str(p) for p in _shard_paths(path)]
        self._samples: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
        self.incomplete = 0
        for file_index, file in enumerate(self._files):
            if not as_path(file).is_file():
                raise DataError(f"{file}: webdataset shard not found")
            for key, members in scan_shard(file).items():
                ends = {ext.rsplit(".", 1)[-1] for ext in members}
                if not (ends & set(IMAGE_SUFFIXES) and ends & {"txt", "json"}):
                    self.incomplete += 1
                    continue
                self._samples.append((file_index, key, members))
        if not self._samples:
            raise DataError(f"{', '.join(self._files) or path}: no image+caption samples")

    def __len__(self) -> int:
        return len(self._samples)

    def _read(self, index: int, with_image: bool) -> dict[str, Any]:
        file_index, key, members = self._samples[index]
        file = self._files[file_index]
        if not with_image:
            members = {e: m for e, m in members.items() if e.rsplit(".", 1)[-1] in ("txt", "json")}
            members[_find_part(self._samples[index][2], IMAGE_SUFFIXES)] = (0, 0)
        parts = read_members(file, members)
        image_ext, captions = sample_parts(key, parts, file)
        item = {"captions": captions, "image_id": key, "_key": f"{file}:{key}"}
        if with_image:
            item["image"] = parts[image_ext]
        meta = next((parts[e] for e in parts if e.rsplit(".", 1)[-1] == "json"), None)
        if meta is not None:  # optional class label and object counts beside the captions
            meta = json.loads(meta)
            if isinstance(meta, dict):
                item.update({k: meta[k] for k in ("label", "counts") if k in meta})
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._read(index, True)

    def metadata(self, index: int) -> dict[str, Any]:
        """Item `index` without reading its image bytes."""
        return self._read(index, False)
