"""The one registry of data sources: training, evaluation and every command name data through it.

A source spec is a dict with a ``kind`` and that kind's keys. On the command line a spec is one
word, ``KIND:PATH`` (``dota:DOTA_ROOT``, ``image_folder:AID``, ``captions:RSICD/dataset.json``),
or a bare path whose kind follows from what it is: a folder or a ``.txt``/``.lst`` list of image
paths is ``images``, a ``.json``/``.jsonl``/``.csv``/``.tsv`` file is ``captions``, an image file
is ``images`` (`parse_spec`). More keys of the kind follow a ``?``, as in a URL:
``RSICD/dataset.json?split=train&image_root=RSICD/images``. In a config, sources are named entries (`remoteclip_jax.config`).

What the registry gives for a spec:

* `build_source(spec)`: a random-access source, ``len(src)`` and ``src[i] -> dict`` with
  ``captions`` (list[str], may be empty), either ``image`` (encoded bytes or a uint8 array) or
  ``path`` (an image file), and where the data has them ``label``, ``image_id`` and ``counts``
  ({category: objects}); `item_metadata(src, i)` gives the same without reading the image.
  Training and evaluation read sources through the grain pipelines (`pipeline`).
* `read_annotated(spec)`: the data as `AnnotatedImage`s with their boxes, captions and labels,
  for the converter (`convert-data`), `dedup`, `classify` and `embed`.

Kinds and the keys each one reads (every key and its default: `SOURCE_DEFAULTS`):

    records        path, split               record shards from `remoteclip-jax convert-data`
    captions       path, split, image_root   any caption file, by extension (.json/.jsonl/.csv)
    caption_json, jsonl, csv                 one caption format each (csv: csv_*, encoding)
    webdataset     path                      uncompressed tar shards (dir, file or glob)
    image_folder   path, classes, max_per_class   <class>/<image> folders (AID, RESISC45, ...)
    images         path                      a folder (recursive), a .txt list, or one image
    count_manifest path                      counting JSONL: {"image", "category", "count"}
    synthetic      num_images, image_size, seed, max_categories, spell_counts   built-in scenes
    dota, dior, hrrsd, coco, visdrone, auair, carpk, hrsc, levir, rsod, stanford_drone
                   path, image_root          detection labels (the dataset's root folder or its
                                             label folder); items carry object ``counts``
    masks          path, image_root, table, min_area, mask_suffix, image_suffix   segmentation
    geotiff        (registered by `remoteclip_jax.geo.source`) chips tiled from GeoTIFF scenes
    tfds           path (TFDS name, e.g. eurosat/rgb), split, data_dir, image_key, label_key,
                   caption_key, id_key   a prepared TensorFlow Datasets dataset (`tfds_source`)

plus ``weight`` (training only: uses of each item per epoch), ``pairs`` (training only, kinds
with captions: "image" = an epoch is each image once, "caption" = each (image, caption) pair
once), ``exclude`` (a de-duplication exclusion list; items whose image path or id it lists are
dropped) and, for the kinds that list images in an annotation file, ``skip_missing`` (drop items
whose image file is absent). Another package adds a kind with `register_kind`.

numpy/PIL only: this runs inside grain workers, which must not import jax.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import urllib.parse
from typing import Any, Callable, Iterable, Sequence

from remoteclip_jax.data import readers
from remoteclip_jax.data.records import RecordSource
from remoteclip_jax.data.types import AnnotatedImage
from remoteclip_jax.errors import ConfigError, DataError
from remoteclip_jax.files import as_path

# Every key a source spec may hold, with its default; a spec in a config holds all of them.
SOURCE_DEFAULTS: dict[str, Any] = {
    "kind": "",           # one of SOURCE_KINDS
    "path": "",           # file, folder, glob: what the kind reads
    "split": "",          # "" = every item; else the caption file's / record set's split
    "image_root": "",     # folder images are in ("" = found next to the annotations)
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
    "table": "loveda",    # masks: class table (loveda, potsdam, vaihingen, isaid or a JSON file)
    "min_area": 0,        # masks: Mask-to-Box minimum component in pixels (0 = M2B's default)
    "mask_suffix": "",    # masks: stem suffix of mask files, e.g. _instance_color_RGB
    "image_suffix": "",   # masks: stem suffix of the matching images, e.g. _RGB
    "num_images": 1000,   # synthetic: scenes
    "image_size": 64,     # synthetic: scene side in pixels
    "seed": 0,            # synthetic: generator seed (different seeds, different scenes)
    "max_categories": 0,  # synthetic: keep scenes with at most this many categories (0 = all)
    "spell_counts": False,  # synthetic: "three cars" instead of "3 cars" in captions
}
_COMMON = {"kind", "weight", "exclude"}
PAIRS_CHOICES = ("image", "caption")


@dataclasses.dataclass(frozen=True)
class Kind:
    """A source kind: the spec keys it reads and how its data is read.

    Attributes:
        keys: spec keys it reads besides kind, weight and exclude.
        read: (spec, **reader options) -> AnnotatedImages, for kinds of annotated image files.
        build: (spec) -> random-access source, for kinds that are not a list of files.
        label_dir: (sub-folder, file suffix) where the labels sit below a dataset's root folder.
    """

    keys: frozenset
    read: Callable[..., Iterable[AnnotatedImage]] | None = None
    build: Callable[[dict], Any] | None = None
    label_dir: tuple[str, str] | None = None


KINDS: dict[str, Kind] = {}


def register_kind(name: str, keys: dict[str, Any], *, read=None, build=None, label_dir=None
                  ) -> None:
    """Adds source kind `name`; `keys` maps the keys it reads to their defaults (new ones join
    `SOURCE_DEFAULTS`, so every config entry has them)."""
    for key, default in keys.items():
        SOURCE_DEFAULTS.setdefault(key, default)
    KINDS[name] = Kind(frozenset(keys), read, build, label_dir)


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
        ConfigError: an unknown kind or key (with the nearest valid one), a file kind without
            a path, or a key set that the kind does not read.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a source must be a dict with a 'kind', got {spec!r}")
    unknown = sorted(set(spec) - set(SOURCE_DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}{nearest(unknown[0], SOURCE_DEFAULTS)}"
                          f" (source keys: {', '.join(SOURCE_DEFAULTS)})")
    full = {**SOURCE_DEFAULTS, **spec}
    kind = full["kind"]
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind={kind!r}: unknown source kind{nearest(str(kind), KINDS)}"
                          f" (kinds: {', '.join(KINDS)})")
    if "path" in KINDS[kind].keys and not full["path"]:
        raise ConfigError(f"{where}: kind {kind!r} needs a path; set {where}.path")
    if full["pairs"] not in PAIRS_CHOICES:
        raise ConfigError(f"{where}.pairs={full['pairs']!r}: must be one of {PAIRS_CHOICES} "
                          "(\"image\": each image once per epoch; \"caption\": each caption)")
    used = KINDS[kind].keys | _COMMON
    for key, default in SOURCE_DEFAULTS.items():
        if key not in used and full[key] != default:
            raise ConfigError(f"{where}.{key}={full[key]!r}: kind {kind!r} does not read "
                              f"{key!r} (it reads {', '.join(sorted(used - {'kind'}))})")
    return full


def parse_spec(text: str, **keys) -> dict[str, Any]:
    """The spec a command-line word names: ``KIND:PATH`` or a bare path (see the module docstring).

    Args:
        text: the word.
        **keys: more spec keys (e.g. split, image_root), set where the kind reads them.

    Raises:
        ConfigError: an unknown kind; DataError: a bare path that does not exist.
    """
    text, _, query = str(text).partition("?")
    if query:  # KIND:PATH?key=value&key=value: more spec keys
        options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        if not all(options.values()):
            raise ConfigError(f"{text}?{query}: give each option a value (?split=NAME&image_root=DIR)")
        keys = {**options, **keys}
    kind, sep, rest = text.partition(":")
    # "C:\..." is a path, not a kind; so is a URL (gs://bucket/...).
    if sep and not rest.startswith("//") and not os.path.exists(text) and len(kind) > 1:
        if kind not in KINDS:
            raise ConfigError(f"{text}: unknown source kind {kind!r}{nearest(kind, KINDS)} "
                              f"(kinds: {', '.join(KINDS)})")
        path = rest
    else:
        kind, path = "", str(text)
        if not as_path(path).exists():
            raise DataError(f"{path}: no such file or folder (expected a folder of images, an "
                            "image, a .txt list of image paths, a caption file or KIND:PATH)")
        suffix = os.path.splitext(path)[1].lower()
        kind = "captions" if as_path(path).is_file() and suffix in readers.CAPTION_SUFFIXES \
            else "images"
    unread = sorted(set(keys) - set(KINDS[kind].keys)) if query else []
    if unread:
        raise ConfigError(f"{text}?{query}: kind {kind!r} does not read {unread[0]!r}"
                          f"{nearest(unread[0], KINDS[kind].keys)} (it reads "
                          f"{', '.join(sorted(set(KINDS[kind].keys) - {'kind', 'path'}))})")
    return make_spec(kind, path, where=text, **keys)


def make_spec(kind: str, path: str, where: str = "source", **keys) -> dict[str, Any]:
    """A complete spec of `kind` over `path`, with those of `keys` the kind reads (None and ""
    are left at their defaults)."""
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown source kind {kind!r}{nearest(kind, KINDS)}")
    spec = {"kind": kind, "path": os.fspath(path)}
    spec.update({k: v for k, v in keys.items() if v not in (None, "") and k in KINDS[kind].keys})
    return normalize_spec(spec, where)


def source_name(spec: dict[str, Any]) -> str:
    """A short name for messages and stats: kind:path (kind:seed for synthetic scenes)."""
    if spec.get("kind") == "synthetic":
        return f"synthetic:seed={spec.get('seed', 0)}"
    return f"{spec.get('kind')}:{spec.get('path', '')}"


# --- sources -------------------------------------------------------------------------------------


class ListSource:
    """A random-access source over item dicts held in memory (what the file readers return).

    Raises:
        DataError: when there are no items.
    """

    def __init__(self, items: Sequence[dict[str, Any]], name: str):
        self._items = list(items)
        if not self._items:
            raise DataError(f"{name}: no images")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self._items[index])

    metadata = __getitem__


def item_metadata(source, index: int) -> dict[str, Any]:
    """Item `index` of `source` without its pixels decoded (captions, label, counts, path, id)."""
    read = getattr(source, "metadata", None)
    item = read(index) if read is not None else source[index]
    return {k: v for k, v in item.items() if k != "image"}


def _item(im: AnnotatedImage) -> dict[str, Any]:
    item = {"path": str(im.path), "captions": list(im.captions), "image_id": im.image_id,
            "label": im.label}
    if im.data:  # bytes read with the annotation (webdataset members)
        item["image"] = im.data
    if im.counts:
        item["counts"] = dict(im.counts)
    elif im.boxes:
        from remoteclip_jax.data.b2c import count_objects

        item["counts"] = count_objects(im.boxes, dataset=im.source)
    return item


def _excluded(items: list[dict[str, Any]], exclude: str, name: str) -> list[dict[str, Any]]:
    from remoteclip_jax.data.dedup import load_exclusions, normalize_path

    drop = load_exclusions(exclude)
    kept = [it for it in items if normalize_path(it["path"]) not in drop]
    if not kept:
        raise DataError(f"{name}: every image is listed in the exclusion list {exclude}")
    return kept


def build_source(spec: dict[str, Any], where: str = "source"):
    """The random-access source a spec describes (see the module docstring).

    Raises:
        ConfigError: a malformed spec (see `normalize_spec`).
        DataError: the data itself is missing, malformed or empty; each message names the file.
    """
    spec = normalize_spec(spec, where)
    kind, name = KINDS[spec["kind"]], source_name(spec)
    if spec["exclude"] and kind.build is not None:
        raise ConfigError(f"{where}.exclude: {spec['kind']} sources cannot drop images by path; "
                          "apply the exclusion list when converting (or use the caption file)")
    if kind.build is not None:
        return kind.build(spec)
    items = [_item(im) for im in read_annotated(spec, where=where)]
    if spec["exclude"]:
        items = _excluded(items, spec["exclude"], name)
    if spec["skip_missing"]:
        items = [it for it in items if "image" in it or as_path(it["path"]).is_file()]
    return ListSource(items, name + (f" (split {spec['split']!r})" if spec["split"] else ""))


def read_annotated(spec: dict[str, Any], where: str = "source", **options
                   ) -> Iterable[AnnotatedImage]:
    """The spec's data as `AnnotatedImage`s (a list, or an iterator for masks and webdataset).

    Args:
        spec: a source spec of a kind with a reader (not records, synthetic or geotiff).
        where: how messages name the spec.
        **options: reader options: ``on_error`` (skip bad annotations), ``source`` (provenance).

    Raises:
        ConfigError: a kind without a reader; DataError: missing or malformed data.
    """
    spec = normalize_spec(spec, where)
    kind = KINDS[spec["kind"]]
    if kind.read is None:
        raise ConfigError(f"{where}: {spec['kind']} sources hold no image files to read here; "
                          "use a kind of annotation files or images")
    path = spec["path"]
    if kind.label_dir is not None:
        path = _label_dir(path, spec["kind"], *kind.label_dir)
    elif path and "*" not in path and not as_path(path).exists():
        raise DataError(f"{path}: not found ({where}); put the {spec['kind']} data there or "
                        f"point {where}.path at it")
    return kind.read({**spec, "path": path}, **{k: v for k, v in options.items() if v})


def _label_dir(path: str, kind: str, sub: str, suffix: str) -> str:
    """The folder of label files, given it or the dataset's root folder (which holds `sub`)."""
    root = as_path(path)
    if not root.is_dir() or any(root.glob(f"*{suffix}")):
        return path
    if (root / sub).is_dir():
        return str(root / sub)
    raise DataError(f"{root}: no {sub}/*{suffix} under it and no *{suffix} in it; {kind}'s labels "
                    f"are in DATASET_ROOT/{sub} (pass the dataset's root or that folder)")


# --- the built-in kinds ---------------------------------------------------------------------------


def _captions(spec, **options):
    root = {"image_root": spec["image_root"]} if spec["image_root"] else {}
    split = spec["split"] or None
    if spec["kind"] == "csv":
        csv = {"separator": spec["csv_separator"], "image_column": spec["csv_image_key"],
               "caption_column": spec["csv_caption_key"], "encoding": spec["encoding"]}
        return readers.read_caption_csv(spec["path"], split, **root, **options,
                                        **{k: v for k, v in csv.items() if v})
    read = {"captions": readers.read_captions, "caption_json": readers.read_caption_json,
            "jsonl": readers.read_caption_jsonl}[spec["kind"]]
    return read(spec["path"], split, **root, **options)


def _image_folder(spec, **options):
    """Items of a <class>/<image> folder in class order, files by name (the paper's order)."""
    by_class: dict[str, list[AnnotatedImage]] = {}
    for im in readers.read_image_folder(spec["path"], **options):
        by_class.setdefault(im.label, []).append(im)
    wanted = [c.strip() for c in spec["classes"].split(",") if c.strip()]
    missing = sorted(set(wanted) - set(by_class))
    if missing:
        raise DataError(f"{spec['path']}: class folders not found: {', '.join(missing)}")
    out = []
    for label in sorted(wanted or by_class):
        files = sorted(by_class[label], key=lambda im: os.path.basename(im.path))
        out += files[:spec["max_per_class"]] if spec["max_per_class"] > 0 else files
    return [dataclasses.replace(im, image_id=os.path.basename(im.path)) for im in out]


def _count_manifest(spec, **_):
    """Counting manifest lines grouped by image: one AnnotatedImage with ``counts`` each."""
    from remoteclip_jax.data.readers.count_manifest import read_count_manifest

    by_image: dict[str, dict[str, int]] = {}
    for item in read_count_manifest(spec["path"]):
        by_image.setdefault(item.image, {})[item.category] = item.count
    return [AnnotatedImage(path=image, counts=counts, image_id=os.path.basename(image))
            for image, counts in by_image.items()]


def _masks(spec, **options):
    from remoteclip_jax.data import m2b

    return readers.iter_masks(spec["path"], spec["image_root"] or None, table=spec["table"],
                              min_area=spec["min_area"] or m2b.DEFAULT_MIN_AREA,
                              mask_suffix=spec["mask_suffix"], image_suffix=spec["image_suffix"],
                              **options)


def _synthetic(spec):
    from remoteclip_jax.data.synthetic import MaterializedScenes, SyntheticSource

    if spec["max_categories"] or spec["spell_counts"]:
        return MaterializedScenes(spec["num_images"], spec["image_size"], spec["seed"],
                                  max_categories=spec["max_categories"],
                                  spell_counts=spec["spell_counts"])
    return SyntheticSource(spec["num_images"], spec["image_size"], spec["seed"])


def _detection(reader, with_images: bool = True):
    def read(spec, **options):
        if with_images:
            return reader(spec["path"], spec["image_root"] or None, **options)
        return reader(spec["path"], **options)
    return read


_CAPTION_KEYS = {"path": "", "split": "", "image_root": "", "skip_missing": False, "pairs": "image"}
_DETECTION_KEYS = {"path": "", "image_root": "", "skip_missing": False}
register_kind("records", {"path": "", "split": "", "pairs": "image"},
              build=lambda spec: RecordSource(spec["path"], split=spec["split"] or None))
for _name in ("captions", "caption_json", "jsonl"):
    register_kind(_name, _CAPTION_KEYS, read=_captions)
register_kind("csv", {**_CAPTION_KEYS, "csv_separator": "", "csv_image_key": "",
                      "csv_caption_key": "", "encoding": ""}, read=_captions)
register_kind("webdataset", {"path": "", "pairs": "image"},
              read=lambda spec, **o: readers.iter_webdataset(spec["path"], **o),
              build=lambda spec: readers.WebDatasetSource(spec["path"]))
register_kind("image_folder", {"path": "", "classes": "", "max_per_class": 0}, read=_image_folder)
register_kind("images", {"path": ""}, read=lambda spec, **_: readers.read_images(spec["path"]))
register_kind("count_manifest", {"path": "", "skip_missing": False}, read=_count_manifest)
register_kind("synthetic", {"num_images": 1000, "image_size": 64, "seed": 0, "max_categories": 0,
                            "spell_counts": False, "pairs": "image"}, build=_synthetic)
# Detection formats; label_dir: where the labels sit below the dataset's root folder.
for _name, _reader, _labels in (
        ("dota", readers.read_dota, ("labelTxt", ".txt")),
        ("dior", readers.read_voc, ("Annotations/HBB", ".xml")),
        ("hrrsd", readers.read_voc, ("Annotations", ".xml")),
        ("coco", readers.read_coco, None), ("auair", readers.read_auair, None),
        ("visdrone", readers.read_visdrone, ("annotations", ".txt")),
        ("carpk", readers.read_carpk, ("Annotations", ".txt")),
        ("hrsc", readers.read_hrsc, ("Annotations", ".xml")),
        ("levir", readers.read_levir, None), ("stanford_drone", readers.read_stanford_drone, None)):
    register_kind(_name, _DETECTION_KEYS, read=_detection(_reader), label_dir=_labels)
register_kind("rsod", {"path": "", "skip_missing": False},
              read=_detection(readers.read_rsod, with_images=False))
register_kind("masks", {**_DETECTION_KEYS, "table": "loveda", "min_area": 0, "mask_suffix": "",
                        "image_suffix": ""}, read=_masks)


def _tfds(spec):
    from remoteclip_jax.data import tfds_source  # needs tensorflow-datasets only when used

    return tfds_source.build(spec)


# path is TFDS's name (NAME[/CONFIG][:VERSION]), so `tfds:eurosat/rgb` works as a command-line
# word; split "" = every split; data_dir "" = TFDS's default; the *_key are feature names.
register_kind("tfds", {"path": "", "split": "", "data_dir": "", "image_key": "image",
                       "label_key": "label", "caption_key": "", "id_key": "filename",
                       "pairs": "image"}, build=_tfds)
