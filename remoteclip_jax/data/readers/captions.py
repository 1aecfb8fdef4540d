"""Image-caption datasets: Karpathy-style JSON, JSON Lines, GeoRSCLIP-style `filename,title` CSV.

Karpathy-style JSON is what RSICD, RSITMD, UCM-captions and Sydney-captions ship::

    {"dataset": "rsicd", "images": [{"filename": "airport_1.jpg", "filepath": "...",
     "split": "train", "sentences": [{"raw": "many planes are parked ..."}, ...]}, ...]}

Real files have quirks the readers keep or drop on purpose: RSITMD has blank sentences (dropped
by default: a blank caption is no query and no training text), RSICD repeats sentences (kept by
default: the retrieval protocol counts five captions per image, repeats included).
"""
from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import Any

from remoteclip_jax.data.readers.errors import AnnotationError, OnError, report
from remoteclip_jax.data.types import AnnotatedImage


def _load_json(path: pathlib.Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AnnotationError(path, None, f"cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(path, None,
                              f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(path, e.lineno, f"invalid JSON ({e.msg}, column {e.colno})") from None


def _clean_captions(raw: list[Any], drop_blank: bool, dedupe: bool) -> list[str]:
    captions = []
    for text in raw:
        text = " ".join(str(text).split())
        if (drop_blank and not text) or (dedupe and text in captions):
            continue
        captions.append(text)
    return captions


def _resolve(root: pathlib.Path, filepath: str, filename: str) -> pathlib.Path:
    # Datasets disagree on where images live relative to the JSON: try the common layouts and
    # fall back to the first (the converter then reports the image as missing).
    candidates = [root / filepath / filename, root / "images" / filename, root / filename,
                  root.parent / filepath / filename]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def read_caption_json(path: str | os.PathLike, split: str | None = None, *,
                      image_root: str | os.PathLike | None = None, source: str = "",
                      drop_blank: bool = True, dedupe: bool = False,
                      on_error: OnError | None = None) -> list[AnnotatedImage]:
    """Reads a Karpathy-style caption JSON (RSICD, RSITMD, UCM-captions, Sydney-captions).

    Args:
        path: the JSON file.
        split: keep only images of this split ("train", "val", "test"); None keeps all.
        image_root: directory the images' `filepath/filename` are relative to (default: the
            JSON's directory; `images/` below it and its parent are also tried).
        source: dataset name for provenance (default: the file's "dataset" field, lower-cased).
        drop_blank: drop empty sentences (RSITMD has 20).
        dedupe: drop repeated sentences of an image (RSICD repeats some).
        on_error: None raises on a malformed entry; a callable receives the error and the entry
            is skipped.

    Returns:
        One AnnotatedImage per image with `captions`, `split`, `image_id` (the filename), and
        `label` when the entry has a class field (`aid_class` or `class`). Images whose
        sentences are all blank are kept with no captions.

    Raises:
        AnnotationError: unreadable or invalid JSON, no `images` list, or a malformed entry.
    """
    path = pathlib.Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(path, None, "expected an object with an 'images' list "
                                          "(Karpathy-style caption JSON)")
    root = pathlib.Path(image_root) if image_root is not None else path.parent
    source = source or str(data.get("dataset", path.stem)).lower()
    images = []
    for i, entry in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) \
                or not entry["filename"]:
            report(AnnotationError(path, None, f"{where}: missing 'filename'"), on_error)
            continue
        sentences = entry.get("sentences")
        if not isinstance(sentences, list) or not all(
                isinstance(s, dict) and isinstance(s.get("raw"), str) for s in sentences):
            report(AnnotationError(path, None, f"{where} ({entry['filename']}): 'sentences' must "
                                               "be a list of objects with a 'raw' string"),
                   on_error)
            continue
        entry_split = str(entry.get("split", ""))
        if split is not None and entry_split != split:
            continue
        images.append(AnnotatedImage(
            path=str(_resolve(root, str(entry.get("filepath", "")), entry["filename"])),
            captions=_clean_captions([s["raw"] for s in sentences], drop_blank, dedupe),
            split=entry_split, source=source, image_id=entry["filename"],
            label=str(entry.get("aid_class", entry.get("class", ""))),
        ))
    return images


def read_caption_jsonl(path: str | os.PathLike, split: str | None = None, *,
                       image_root: str | os.PathLike | None = None, source: str = "",
                       drop_blank: bool = True, dedupe: bool = False,
                       on_error: OnError | None = None) -> list[AnnotatedImage]:
    """Reads JSON Lines with one image per line: `{"image": path, "captions": [...], ...}`.

    This is the layout of `shared/data/rsicd_aid/*.jsonl`. Optional keys: `split`, `aid_class`
    or `label` (scene class), `rsicd_filename` or `id` (the image id; default: the image path).

    Args:
        path: the .jsonl file.
        split: keep only lines of this split; None keeps all.
        image_root: directory `image` paths are relative to (default: the file's directory, or
            its parent when the first image is found there).
        source: dataset name for provenance (default: the file's parent directory name).
        drop_blank, dedupe, on_error: as for `read_caption_json`.

    Returns:
        One AnnotatedImage per line.

    Raises:
        AnnotationError: `path:line: reason` for a line that is not a JSON object with an
            `image` string and a `captions` list of strings.
    """
    path = pathlib.Path(path)
    source = source or path.parent.name
    root = pathlib.Path(image_root) if image_root is not None else None
    images = []
    try:
        # Split on "\n" only, as editors number lines (a stray "\r" is no line break).
        lines = path.read_bytes().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(path, None, f"cannot read ({e})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            report(AnnotationError(path, number, f"invalid JSON ({e.msg}, column {e.colno})"),
                   on_error)
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) \
                or not isinstance(entry.get("captions"), list) \
                or not all(isinstance(c, str) for c in entry["captions"]):
            report(AnnotationError(path, number, "expected an object with an 'image' string and "
                                                 "a 'captions' list of strings"), on_error)
            continue
        if root is None:
            # The shared rsicd_aid files name images relative to the data root, one level up.
            up = path.parent.parent / entry["image"]
            root = path.parent.parent if up.is_file() else path.parent
        entry_split = str(entry.get("split", ""))
        if split is not None and entry_split != split:
            continue
        images.append(AnnotatedImage(
            path=str(root / entry["image"]),
            captions=_clean_captions(entry["captions"], drop_blank, dedupe),
            split=entry_split, source=source,
            image_id=str(entry.get("rsicd_filename", entry.get("id", entry["image"]))),
            label=str(entry.get("aid_class", entry.get("label", ""))),
        ))
    return images


def read_caption_csv(path: str | os.PathLike, *, image_root: str | os.PathLike | None = None,
                     source: str = "", filename_column: str = "filename",
                     caption_column: str = "title", drop_blank: bool = True,
                     dedupe: bool = False, on_error: OnError | None = None
                     ) -> list[AnnotatedImage]:
    """Reads a GeoRSCLIP/RS5M-style CSV with a header holding `filename` and `title` columns.

    Rows naming the same file are merged into one image with several captions, in file order.

    Args:
        path: the CSV file (UTF-8, comma-separated, quoted as the csv module expects).
        image_root: directory file names are relative to (default: the CSV's directory).
        source: dataset name for provenance (default: the CSV's stem).
        filename_column / caption_column: the column names.
        drop_blank, dedupe, on_error: as for `read_caption_json`.

    Returns:
        One AnnotatedImage per distinct file name.

    Raises:
        AnnotationError: a missing column in the header, or (`path:line`) a row without a file
            name or caption.
    """
    path = pathlib.Path(path)
    root = pathlib.Path(image_root) if image_root is not None else path.parent
    source = source or path.stem
    by_name: dict[str, AnnotatedImage] = {}
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise AnnotationError(path, None, f"cannot read ({e.strerror or e})") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
            for column in (filename_column, caption_column):
                if column not in header:
                    raise AnnotationError(path, 1, f"header {header} has no '{column}' column")
            for row in reader:
                # line_num is the physical line just read, which handles quoted newlines.
                number = reader.line_num
                name, caption = row.get(filename_column), row.get(caption_column)
                if not name or caption is None:
                    report(AnnotationError(path, number, "row lacks a file name or a caption"),
                           on_error)
                    continue
                image = by_name.get(name)
                if image is None:
                    image = by_name[name] = AnnotatedImage(path=str(root / name), source=source,
                                                           image_id=name)
                image.captions.extend(_clean_captions([caption], drop_blank, False))
        except (csv.Error, UnicodeDecodeError) as e:
            raise AnnotationError(path, reader.line_num, f"malformed CSV ({e})") from None
    if dedupe:
        for image in by_name.values():
            image.captions = _clean_captions(image.captions, drop_blank, True)
    return list(by_name.values())


def read_captions(path: str | os.PathLike, split: str | None = None, **kwargs
                  ) -> list[AnnotatedImage]:
    """Reads any caption file, chosen by extension: .json (Karpathy), .jsonl, .csv.

    Keyword arguments go to the chosen reader; `split` is ignored for CSV (it has none).
    """
    suffix = pathlib.Path(path).suffix.lower()
    if suffix == ".json":
        return read_caption_json(path, split, **kwargs)
    if suffix == ".jsonl":
        return read_caption_jsonl(path, split, **kwargs)
    if suffix == ".csv":
        return read_caption_csv(path, **kwargs)
    raise AnnotationError(path, None, "unknown caption format (expected .json, .jsonl or .csv)")
