"""The one registry of data sources: training and evaluation read every dataset through it.

A source spec is a dict with a ``kind`` and that kind's keys; `build_source(spec)` returns a
random-access source (``len(src)``, ``src[i] -> dict``) that the grain pipelines read, for
training (`pipeline.make_train_iterator`) and for evaluation (`pipeline.EvalData`). An item holds
``captions`` (list[str], may be empty), either ``image`` (encoded bytes or a uint8 array) or
``path`` (an image file), and where the data has them ``label`` (class name), ``image_id`` and
``counts`` ({category: objects}). Nothing decodes an image until the pipeline asks.

Kinds and the keys each one reads (every key and its default: `SOURCE_DEFAULTS`):

    records        path, split               record shards from `remoteclip-jax convert-data`
    caption_json   path, split, image_root   Karpathy-style JSON (RSICD, RSITMD, UCM, Sydney)
    jsonl          path, split, image_root   one {"image", "captions", ...} per line
    csv            path, split, image_root, csv_*, encoding   caption CSV (RemoteCLIP's, GeoRSCLIP's)
    webdataset     path                      uncompressed tar shards (dir, file or glob)
    image_folder   path, classes, max_per_class   <class>/<image> folders (AID, RESISC45, ...)
    count_manifest path                      counting JSONL: {"image", "category", "count"}
    synthetic      num_images, image_size, seed, max_categories, spell_counts   built-in scenes
    geotiff        path, tile, stride, units, bands, scale, nodata_max_fraction   chips tiled
                   from GeoTIFF / COG scenes (a file or a glob; needs rasterio)

plus ``weight`` (training only: uses of each item per epoch), ``pairs`` (training only, kinds
with captions: "image" = an epoch is each image once, "caption" = each (image, caption) pair
once), ``exclude`` (a de-duplication exclusion list; items whose image path or id it lists are
dropped) and, for the kinds that list images in an annotation file, ``skip_missing`` (drop items
whose image file is absent).

numpy/PIL only: this runs inside grain workers, which must not import jax.
"""
from __future__ import annotations

import difflib
import glob
import os
import tarfile
from typing import Any, Sequence

from remoteclip_jax.data.records import EmptyDatasetError, RecordFormatError, RecordSource
from remoteclip_jax.errors import UserError

# Every key a source spec may hold, with its default; a spec in a config holds all of them.
SOURCE_DEFAULTS: dict[str, Any] = {
    "kind": "",           # one of SOURCE_KINDS
    "path": "",           # file, folder, glob: what the kind reads
    "split": "",          # "" = every item; else the caption file's / record set's split
    "image_root": "",     # folder image paths are relative to ("" = the annotation file's)
    "weight": 1.0,        # training: uses of each item per epoch (0.5 = a random half)
    # training: what one epoch holds. "image": each image once, with one of its captions drawn
    # at random; "caption": every (image, caption) pair once, as a caption CSV with one row per
    # caption (ITRA's and open_clip's loaders) has it.
    "pairs": "image",
    "exclude": "",        # exclusion list (`remoteclip-jax dedup`): listed images are dropped
    "skip_missing": False,  # file kinds: drop items whose image file is absent (partial copies)
    "csv_separator": "",  # csv: "" = detect from the header ("\t" in RemoteCLIP's files)
    "csv_image_key": "",  # csv: image column ("" = filepath, else filename)
    "csv_caption_key": "",  # csv: caption column ("" = title)
    "encoding": "",       # csv: "" = detect (utf-8, then gb18030 as RSICD's CSVs use)
    "classes": "",        # image_folder: comma-separated subset of class folders ("" = all)
    "max_per_class": 0,   # image_folder: keep the first N files per class (0 = all)
    "num_images": 1000,   # synthetic: scenes
    "image_size": 64,     # synthetic: scene side in pixels
    "seed": 0,            # synthetic: generator seed (different seeds, different scenes)
    "max_categories": 0,  # synthetic: keep scenes with at most this many categories (0 = all)
    "spell_counts": False,  # synthetic: "three cars" instead of "3 cars" in captions
    "tile": 224.0,        # geotiff: tile side (pixels, or metres with units="m")
    "stride": 0.0,        # geotiff: tile step; 0 = the tile side (no overlap)
    "units": "px",        # geotiff: "px" | "m" (converted with the ground sample distance)
    "bands": "",          # geotiff: "4,3,2" or band descriptions "B4,B3,B2" ("" = the first 3)
    "scale": "",          # geotiff: "LOW,HIGH" | "p2,98" (percentile stretch) | "" = automatic
    "nodata_max_fraction": 0.5,  # geotiff: tiles with more nodata than this are skipped
}
_COMMON = {"kind", "weight", "exclude"}
KIND_KEYS: dict[str, set[str]] = {
    "records": {"path", "split", "pairs"},
    "caption_json": {"path", "split", "image_root", "skip_missing", "pairs"},
    "jsonl": {"path", "split", "image_root", "skip_missing", "pairs"},
    "csv": {"path", "split", "image_root", "skip_missing", "csv_separator", "csv_image_key", "csv_caption_key",
            "encoding", "pairs"},
    "webdataset": {"path", "pairs"},
    "image_folder": {"path", "classes", "max_per_class"},
    "count_manifest": {"path", "skip_missing"},
    "synthetic": {"num_images", "image_size", "seed", "max_categories", "spell_counts", "pairs"},
    "geotiff": {"path", "tile", "stride", "units", "bands", "scale", "nodata_max_fraction"},
}
PAIRS_CHOICES = ("image", "caption")
SOURCE_KINDS = tuple(KIND_KEYS)
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp")


class SourceSpecError(UserError, ValueError):
    """A source spec that cannot work: unknown kind or key, missing path, a key the kind ignores."""


def nearest(word: str, choices) -> str:
    """", did you mean 'x'?" for the closest of `choices`, or ""."""
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else ""


def normalize_spec(spec: dict[str, Any], where: str = "source") -> dict[str, Any]:
    """`spec` completed with every default, after checking its kind and keys.

    Args:
        spec: a source spec (only the keys that differ from `SOURCE_DEFAULTS` are needed).
        where: how messages name the spec (e.g. "config.data.sources.rsicd").

    Raises:
        SourceSpecError: an unknown kind or key (with the nearest valid one), a file kind without
            a path, or a key set that the kind does not read.
    """
    if not isinstance(spec, dict):
        raise SourceSpecError(f"{where}: a source must be a dict with a 'kind', got {spec!r}")
    unknown = sorted(set(spec) - set(SOURCE_DEFAULTS))
    if unknown:
        raise SourceSpecError(f"{where}: unknown key {unknown[0]!r}{nearest(unknown[0], SOURCE_DEFAULTS)}"
                              f" (source keys: {', '.join(SOURCE_DEFAULTS)})")
    full = {**SOURCE_DEFAULTS, **spec}
    kind = full["kind"]
    if kind not in KIND_KEYS:
        raise SourceSpecError(f"{where}.kind={kind!r}: unknown source kind{nearest(str(kind), KIND_KEYS)}"
                              f" (kinds: {', '.join(SOURCE_KINDS)})")
    if "path" in KIND_KEYS[kind] and not full["path"]:
        raise SourceSpecError(f"{where}: kind {kind!r} needs a path; set {where}.path")
    if full["pairs"] not in PAIRS_CHOICES:
        raise SourceSpecError(f"{where}.pairs={full['pairs']!r}: must be one of {PAIRS_CHOICES} "
                              "(\"image\": each image once per epoch; \"caption\": each caption)")
    used = KIND_KEYS[kind] | _COMMON
    for key, default in SOURCE_DEFAULTS.items():
        if key not in used and full[key] != default:
            raise SourceSpecError(f"{where}.{key}={full[key]!r}: kind {kind!r} does not read "
                                  f"{key!r} (it reads {', '.join(sorted(used - {'kind'}))})")
    return full


def source_name(spec: dict[str, Any]) -> str:
    """A short name for messages and stats: kind:path (kind:seed for synthetic scenes)."""
    if spec.get("kind") == "synthetic":
        return f"synthetic:seed={spec.get('seed', 0)}"
    return f"{spec.get('kind')}:{spec.get('path', '')}"


# --- sources -------------------------------------------------------------------------------------


class ListSource:
    """A random-access source over item dicts held in memory (what the file readers return).

    Raises:
        EmptyDatasetError: when there are no items.
    """

    def __init__(self, items: Sequence[dict[str, Any]], name: str):
        self._items = list(items)
        if not self._items:
            raise EmptyDatasetError(f"{name}: no images")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self._items[index])


def _annotated_items(images) -> list[dict[str, Any]]:
    items = []
    for im in images:
        item = {"path": str(im.path), "captions": list(im.captions), "image_id": im.image_id,
                "label": im.label}
        if getattr(im, "data", None):  # bytes read with the annotation (webdataset members)
            item["image"] = im.data
        if getattr(im, "counts", None):
            item["counts"] = dict(im.counts)
        items.append(item)
    return items


def _read_caption_file(kind: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    from remoteclip_jax.data import readers

    root = {"image_root": spec["image_root"]} if spec["image_root"] else {}
    split = spec["split"] or None
    if kind == "caption_json":
        images = readers.read_caption_json(spec["path"], split, **root)
    elif kind == "jsonl":
        images = readers.read_caption_jsonl(spec["path"], split, **root)
    else:
        options = {"separator": spec["csv_separator"], "image_column": spec["csv_image_key"],
                   "caption_column": spec["csv_caption_key"], "encoding": spec["encoding"]}
        images = readers.read_caption_csv(spec["path"], split, **root,
                                          **{k: v for k, v in options.items() if v})
    return _annotated_items(images)


def _image_folder_items(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Items of a <class>/<image> folder in class order, files by name (the paper's order)."""
    from remoteclip_jax.data.readers import read_image_folder

    root = spec["path"]
    if not os.path.isdir(root):
        raise EmptyDatasetError(f"{root}: image folder not found")
    by_class: dict[str, list[str]] = {}
    for im in read_image_folder(root):
        by_class.setdefault(im.label, []).append(str(im.path))
    wanted = [c.strip() for c in spec["classes"].split(",") if c.strip()]
    if wanted:
        missing = sorted(set(wanted) - set(by_class))
        if missing:
            raise EmptyDatasetError(f"{root}: class folders not found: {', '.join(missing)}")
    classes = sorted(wanted or by_class)
    items = []
    for label in classes:
        files = sorted(by_class[label], key=os.path.basename)
        if spec["max_per_class"] > 0:
            files = files[:spec["max_per_class"]]
        items += [{"path": p, "captions": [], "label": label,
                   "image_id": os.path.basename(p)} for p in files]
    return items


def _count_manifest_items(path: str) -> list[dict[str, Any]]:
    """Counting manifest lines grouped by image: {"path", "counts": {category: count}}."""
    from remoteclip_jax.evaluate.counting import read_count_manifest

    by_image: dict[str, dict[str, int]] = {}
    for item in read_count_manifest(path):
        by_image.setdefault(item.image, {})[item.category] = item.count
    return [{"path": image, "captions": [], "counts": counts, "image_id": os.path.basename(image)}
            for image, counts in by_image.items()]


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
    its file name). Construction scans the tar headers once and records byte offsets; reading
    seeks straight to the members, so shards are never unpacked. Captions are parsed by the
    webdataset reader (`readers.webdataset.sample_captions`), so conversion and training read a
    sample alike. Samples without an image or a caption are left out and counted in
    ``self.incomplete``.

    Raises:
        RecordFormatError: naming a shard that is missing, compressed or not a tar file.
        EmptyDatasetError: when no complete sample is found.
    """

    def __init__(self, path: str | os.PathLike | Sequence[str | os.PathLike]):
        self._files = _expand_paths(path, ".tar")
        # Per sample: (file index, key, {extension: (offset, size)}).
        self._samples: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
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
                has_image = any(ext.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS for ext in members)
                has_text = any(ext.rsplit(".", 1)[-1] in ("txt", "json") for ext in members)
                if not (has_image and has_text):
                    self.incomplete += 1
                    continue
                self._samples.append((file_index, key, members))
        if not self._samples:
            raise EmptyDatasetError(f"{', '.join(self._files) or path}: no image+caption samples")

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from remoteclip_jax.data.readers.webdataset import sample_parts

        file_index, key, members = self._samples[index]
        file = self._files[file_index]
        parts = {}
        with open(file, "rb") as f:
            for ext, (offset, size) in members.items():
                f.seek(offset)
                parts[ext] = f.read(size)
        image_ext, captions = sample_parts(key, parts, file)
        item = {"image": parts[image_ext], "captions": captions, "image_id": key,
                "_key": f"{file}:{key}"}
        meta = next((parts[e] for e in parts if e.rsplit(".", 1)[-1] == "json"), None)
        if meta is not None:  # optional class label and object counts beside the captions
            import json

            meta = json.loads(meta)
            if isinstance(meta, dict):
                item.update({k: meta[k] for k in ("label", "counts") if k in meta})
        return item


def _synthetic(spec: dict[str, Any]):
    from remoteclip_jax.data.synthetic import SyntheticSource, MaterializedScenes

    if spec["max_categories"] or spec["spell_counts"]:
        return MaterializedScenes(spec["num_images"], spec["image_size"], spec["seed"],
                                  max_categories=spec["max_categories"],
                                  spell_counts=spec["spell_counts"])
    return SyntheticSource(spec["num_images"], spec["image_size"], spec["seed"])


def _excluded(items: list[dict[str, Any]], exclude: str, name: str) -> list[dict[str, Any]]:
    from remoteclip_jax.data.dedup import load_exclusions, normalize_path

    drop = load_exclusions(exclude)
    kept = [it for it in items if normalize_path(it["path"]) not in drop]
    if not kept:
        raise EmptyDatasetError(f"{name}: every image is listed in the exclusion list {exclude}")
    return kept


def build_source(spec: dict[str, Any], where: str = "source"):
    """The random-access source a spec describes (see the module docstring).

    Raises:
        SourceSpecError: a malformed spec (see `normalize_spec`).
        EmptyDatasetError, RecordFormatError, AnnotationError: the data itself is missing,
            malformed or empty; each message names the file.
    """
    spec = normalize_spec(spec, where)
    kind, name = spec["kind"], source_name(spec)
    if spec["path"] and kind not in ("webdataset", "geotiff") and not os.path.exists(spec["path"]):
        raise EmptyDatasetError(f"{spec['path']}: not found ({where}); put the {kind} data there "
                                f"or point {where}.path at it")
    if kind == "synthetic":
        return _synthetic(spec)
    if kind == "records":
        if spec["exclude"]:
            raise SourceSpecError(f"{where}.exclude: record shards cannot drop images by path; "
                                  "apply the exclusion list when converting (or use the caption file)")
        return RecordSource(spec["path"], split=spec["split"] or None)
    if kind == "geotiff":
        from remoteclip_jax.geo.source import SceneTileSource

        paths = _expand_paths(spec["path"], ".tif")
        return SceneTileSource(paths, spec["tile"], spec["stride"] or None, spec["bands"] or None,
                               spec["scale"] or None, units=spec["units"],
                               nodata_max_fraction=spec["nodata_max_fraction"])
    if kind == "webdataset":
        if spec["exclude"]:
            raise SourceSpecError(f"{where}.exclude: not supported for webdataset shards")
        return WebDatasetSource(spec["path"])
    if kind == "image_folder":
        items = _image_folder_items(spec)
    elif kind == "count_manifest":
        items = _count_manifest_items(spec["path"])
    else:
        items = _read_caption_file(kind, spec)
    if spec["exclude"]:
        items = _excluded(items, spec["exclude"], name)
    if spec["skip_missing"]:
        items = [it for it in items if "image" in it or os.path.isfile(it["path"])]
    return ListSource(items, name + (f" (split {spec['split']!r})" if spec["split"] else ""))
