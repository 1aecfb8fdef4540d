"""Random-access data sources for the grain pipeline, one per dataset kind, built from a dict.

Every source here has ``__len__`` and ``__getitem__(i) -> dict`` with at least ``captions``
(list[str]) and either ``image`` (encoded bytes or a decoded uint8 array) or ``path`` (an image
file), so the pipeline treats them alike. Sources are picklable (grain sends them to worker
processes) and read lazily: nothing decodes an image until the pipeline asks for it.

Source dicts (the ``sources`` list of the training config)::

    {"kind": "records", "path": "converted/rsicd", "split": "train"}    # remoteclip_jax.data.records
    {"kind": "caption_json", "path": "dataset_rsicd.json", "image_root": "RSICD/images",
     "split": "train"}                                                  # Karpathy-style JSON
    {"kind": "jsonl", "path": "rsicd_aid/train.jsonl", "split": "train"}  # {image, captions}/line

(caption JSON and JSONL are read with `remoteclip_jax.data.readers`; ``image_root`` and
``split`` are passed on to them).
    {"kind": "webdataset", "path": "shards/"}                           # dir, file, glob or list
    {"kind": "synthetic", "num_images": 2000, "image_size": 64, "seed": 0}

plus optional ``weight`` (default 1.0; see `remoteclip_jax.data.pipeline`) and ``name``.

numpy/PIL only: must not import jax (grain workers).
"""
from __future__ import annotations

from remoteclip_jax.errors import UserError
import glob
import json
import os
import tarfile
from typing import Any, Sequence

from remoteclip_jax.data.records import EmptyDatasetError, RecordFormatError, RecordSource

SOURCE_KINDS = ("records", "caption_json", "jsonl", "webdataset", "synthetic")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp")


class SourceSpecError(UserError, ValueError):
    """A source dict is malformed (unknown kind, missing path, ...)."""


class AnnotatedImageSource:
    """A random-access source over `AnnotatedImage`s from the readers (caption JSON, JSONL).

    Args:
        images: what a reader returned.
        name: for error messages (usually the annotation file).

    Raises:
        EmptyDatasetError: when ``images`` is empty.
    """

    def __init__(self, images: Sequence[Any], name: str):
        self._items = [{"path": str(im.path), "captions": list(im.captions),
                        "image_id": im.image_id, "label": im.label, "source": im.source}
                       for im in images]
        if not self._items:
            raise EmptyDatasetError(f"{name}: no images")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self._items[index])


def _read_annotated(kind: str, spec: dict[str, Any]) -> AnnotatedImageSource:
    from remoteclip_jax.data import readers

    read = readers.read_caption_json if kind == "caption_json" else readers.read_caption_jsonl
    kwargs = {"image_root": spec["image_root"]} if spec.get("image_root") else {}
    split = spec.get("split")
    name = str(spec["path"]) + (f" (split {split!r})" if split else "")
    return AnnotatedImageSource(read(spec["path"], split, **kwargs), name)


def _expand_paths(path: str | os.PathLike | Sequence[str | os.PathLike], suffix: str) -> list[str]:
    if isinstance(path, (str, os.PathLike)):
        path = [path]
    files: list[str] = []
    for p in path:
        p = str(p)
        if os.path.isdir(p):
            files.extend(sorted(glob.glob(os.path.join(p, f"*{suffix}"))))
        elif any(ch in p for ch in "*?["):
            files.extend(sorted(glob.glob(p)))
        else:
            files.append(p)
    return files


class WebDatasetSource:
    """Random access into uncompressed webdataset tar shards (RS5M's format).

    A sample is the group of tar members sharing a key (the member path up to the first dot of
    its file name): one image (``.jpg``, ``.png``, ...) and a caption in ``.txt`` (one caption,
    or one per line) or ``.json`` (``caption`` or ``captions``). Construction scans the tar
    headers once and records byte offsets; reading seeks straight to the member, so shards are
    never unpacked. Samples without an image or a caption are left out and counted in
    ``self.incomplete``.

    Args:
        path: a shard, a directory of ``*.tar`` shards, a glob, or a list of these.

    Raises:
        RecordFormatError: naming a shard that is missing, compressed or not a tar file.
        EmptyDatasetError: when no complete sample is found.
    """

    def __init__(self, path: str | os.PathLike | Sequence[str | os.PathLike]):
        self._files = _expand_paths(path, ".tar")
        # Per sample: (file index, key, image offset, image size, text ext, text offset, size).
        self._samples: list[tuple[int, str, int, int, str, int, int]] = []
        self.incomplete = 0
        for file_index, file in enumerate(self._files):
            if not os.path.isfile(file):
                raise RecordFormatError(f"{file}: webdataset shard not found")
            groups: dict[str, dict[str, tuple[int, int]]] = {}
            try:
                # "r:" refuses compressed tars: random access needs plain offsets.
                with tarfile.open(file, "r:") as tar:
                    for member in tar:
                        if not member.isfile():
                            continue
                        directory, name = os.path.split(member.name)
                        if "." not in name or name.startswith("."):
                            continue
                        stem, ext = name.split(".", 1)
                        groups.setdefault(os.path.join(directory, stem), {})[ext.lower()] = (
                            member.offset_data, member.size)
            except tarfile.ReadError as e:
                raise RecordFormatError(f"{file}: not an uncompressed tar shard ({e})") from None
            for key, members in groups.items():
                image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
                text_ext = next((e for e in ("txt", "json") if e in members), None)
                if image is None or text_ext is None:
                    self.incomplete += 1
                    continue
                self._samples.append((file_index, key, *image, text_ext, *members[text_ext]))
        if not self._samples:
            raise EmptyDatasetError(f"{', '.join(self._files) or path}: no image+caption samples")

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        file_index, key, image_offset, image_size, text_ext, text_offset, text_size = (
            self._samples[index])
        file = self._files[file_index]
        with open(file, "rb") as f:
            f.seek(image_offset)
            image = f.read(image_size)
            f.seek(text_offset)
            text = f.read(text_size).decode("utf-8", errors="replace")
        if text_ext == "json":
            obj = json.loads(text)
            captions = obj.get("captions") or obj.get("caption") or []
            captions = [captions] if isinstance(captions, str) else list(captions)
        else:
            captions = [line for line in text.splitlines() if line.strip()]
        return {"image": image, "captions": captions, "image_id": key,
                "_key": f"{file}:{key}"}


def build_source(spec: dict[str, Any]):
    """The random-access source a source dict describes (see the module docstring)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise SourceSpecError(f"source must be a dict with a 'kind' ({SOURCE_KINDS}), got {spec!r}")
    kind = spec["kind"]
    if kind == "synthetic":
        from remoteclip_jax.data.synthetic import SyntheticSource

        return SyntheticSource(int(spec.get("num_images", 1000)), spec.get("image_size", 64),
                               int(spec.get("seed", 0)))
    if kind not in SOURCE_KINDS:
        raise SourceSpecError(f"unknown source kind {kind!r} in {spec!r}; expected one of "
                              f"{SOURCE_KINDS}")
    if "path" not in spec:
        raise SourceSpecError(f"source {spec!r} needs a 'path'")
    if kind == "records":
        return RecordSource(spec["path"], split=spec.get("split"))
    if kind in ("jsonl", "caption_json"):
        return _read_annotated(kind, spec)
    return WebDatasetSource(spec["path"])


def source_name(spec: dict[str, Any]) -> str:
    """A short name for messages and stats: ``name`` if given, else kind:path."""
    return str(spec.get("name") or f"{spec.get('kind')}:{spec.get('path', '')}")
