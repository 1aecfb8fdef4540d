"""Image-caption datasets: Karpathy-style JSON, JSON Lines, and caption CSVs (ITRA/RemoteCLIP, RS5M).

Karpathy-style JSON is what RSICD, RSITMD, UCM-captions and Sydney-captions ship::

    {"dataset": "rsicd", "images": [{"filename": "airport_1.jpg", "filepath": "...",
     "split": "train", "sentences": [{"raw": "many planes are parked ..."}, ...]}, ...]}

Real files have quirks the readers keep or drop on purpose: RSITMD has blank sentences (dropped
by default: a blank caption is no query and no training text), RSICD repeats sentences (kept by
default: the retrieval protocol counts five captions per image, repeats included).
"""
from __future__ import annotations

import csv
import io
import json
import os
import pathlib
from typing import Any

from remoteclip_jax.data.readers._paths import file_test
from remoteclip_jax.files import as_path
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


def _resolve(root, filepath: str, filename: str, is_file) -> pathlib.Path:
    # Datasets disagree on where images live relative to the JSON: try the common layouts and
    # fall back to the first (the converter then reports the image as missing).
    candidates = [root / filepath / filename, root / "images" / filename, root / filename,
                  root.parent / filepath / filename]
    for candidate in candidates:
        if is_file(candidate):
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
    path = as_path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(path, None, "expected an object with an 'images' list "
                                          "(Karpathy-style caption JSON)")
    root = as_path(image_root) if image_root is not None else path.parent
    source = source or str(data.get("dataset", path.stem)).lower()
    is_file = file_test(root)
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
            path=str(_resolve(root, str(entry.get("filepath", "")), entry["filename"], is_file)),
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
    path = as_path(path)
    source = source or path.parent.name
    root = as_path(image_root) if image_root is not None else None
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


# ITRA's CSV defaults (ChenDelong1999/ITRA, branch test, itra/training/params.py: --csv-img-key
# "filepath", --csv-caption-key "title", --csv-separator "\t"), then GeoRSCLIP/RS5M's `filename`,
# then common spellings. Used when the caller names no column.
IMAGE_COLUMNS = ("filepath", "filename", "image", "image_path", "img", "path", "file")
CAPTION_COLUMNS = ("title", "caption", "captions", "sentence", "text", "raw")
# Separators tried when sniffing the header, in order of preference on a tie.
SEPARATORS = ("\t", ",", ";", "|")
_UTF8_BOM = b"\xef\xbb\xbf"


def decode_text(data: bytes, path: str | os.PathLike, encoding: str | None = None
                ) -> tuple[str, str]:
    """Decodes an annotation file's bytes: (text, encoding used).

    Without `encoding`, UTF-8 is tried first, as utf-8-sig when the file starts with a byte
    order mark (plain UTF-8 would keep U+FEFF glued to the first column name), then gb18030:
    RSICD's CSVs are GB18030 (ITRA's CsvDataset reads files named `rsicd` with that encoding).
    UTF-8 goes first because its multi-byte patterns are strict, so GB18030 bytes with Chinese
    text almost never pass as UTF-8, while most UTF-8 byte sequences are valid GB18030 (which
    would silently give mojibake the other way round). ASCII files decode the same either way.

    Raises:
        AnnotationError: the bytes are not text in any of these encodings (or in `encoding`).
    """
    if encoding is not None:
        candidates = [encoding]
    elif data.startswith(_UTF8_BOM):
        candidates = ["utf-8-sig"]
    else:
        candidates = ["utf-8", "gb18030"]
    for candidate in candidates:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError as e:
            error = e
        except LookupError:
            raise AnnotationError(path, None, f"unknown encoding {candidate!r}") from None
    line = data[:error.start].count(b"\n") + 1
    raise AnnotationError(path, line, f"not text in {' or '.join(candidates)} "
                                      f"({error.reason} at byte {error.start}); pass the "
                                      "file's encoding") from None


def sniff_separator(header: str) -> str:
    """The separator the header line uses most, outside quotes (tab wins a tie); "," if none."""
    counts = dict.fromkeys(SEPARATORS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(SEPARATORS, key=lambda sep: (counts[sep], -SEPARATORS.index(sep)))
    return best if counts[best] else ","


def _pick_column(header: list[str], wanted: str | None, candidates: tuple[str, ...], role: str,
                 path: pathlib.Path, option: str) -> int:
    names = (wanted,) if wanted else candidates
    lowered = [h.lower() for h in header]
    for name in names:
        if name in header:
            return header.index(name)
        if wanted is None and name in lowered:
            return lowered.index(name)
    looked_for = f"'{wanted}'" if wanted else "any of " + ", ".join(f"'{c}'" for c in candidates)
    raise AnnotationError(path, 1, f"header has no {role} column {looked_for} (columns found: "
                                   f"{', '.join(repr(h) for h in header) or 'none'}); name the "
                                   f"column with {option}")


def read_caption_csv(path: str | os.PathLike, split: str | None = None, *,
                     image_root: str | os.PathLike | None = None, source: str = "",
                     image_column: str | None = None, caption_column: str | None = None,
                     separator: str | None = None, encoding: str | None = None,
                     split_column: str = "split", drop_blank: bool = True,
                     dedupe: bool = False, on_error: OnError | None = None
                     ) -> list[AnnotatedImage]:
    """Reads an image-caption CSV: one caption per row, rows of one image merged.

    Covers RemoteCLIP's released files (`Ret-3_train.csv`, `Det-10.csv`, `Seg-4.csv`, test CSVs:
    ITRA's layout, TAB-separated `filepath` / `title`), GeoRSCLIP/RS5M's comma-separated
    `filename,title`, and RSICD's GB18030-encoded CSVs. Fields are quoted as the csv module
    expects (a quoted field may hold separators and newlines).

    Args:
        path: the CSV file.
        split: keep only rows whose `split_column` equals this; ignored when the file has no
            such column (RemoteCLIP's CSVs are one file per split).
        image_root: directory relative image paths are resolved against (default: the CSV's
            directory). Absolute paths are kept.
        source: dataset name for provenance (default: the CSV's stem).
        image_column: the image path column (default: the first of `IMAGE_COLUMNS` in the
            header, compared case-insensitively).
        caption_column: the caption column (default: the first of `CAPTION_COLUMNS`).
        separator: field separator (default: sniffed from the header, see `sniff_separator`).
        encoding: text encoding (default: detected, see `decode_text`).
        split_column: name of an optional split column.
        drop_blank, dedupe, on_error: as for `read_caption_json`.

    Returns:
        One AnnotatedImage per distinct image path, in order of first appearance, with every
        caption of its rows in file order; `image_id` is the path as written in the CSV.

    Raises:
        AnnotationError: undecodable bytes, a header without the needed columns (the message
            lists the columns found), or `path:line` for a row without an image path or caption.
    """
    path = as_path(path)
    root = as_path(image_root) if image_root is not None else path.parent
    source = source or path.stem
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AnnotationError(path, None, f"cannot read ({e.strerror or e})") from None
    text, _ = decode_text(data, path, encoding)
    if separator is None:
        separator = sniff_separator(text.split("\n", 1)[0])
    if len(separator) != 1:
        raise AnnotationError(path, None, f"separator must be one character, got {separator!r}")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    by_path: dict[str, AnnotatedImage] = {}
    try:
        header = [h.strip() for h in next(reader, [])]
        image_at = _pick_column(header, image_column, IMAGE_COLUMNS, "image", path,
                                "image_column (--csv-img-key)")
        caption_at = _pick_column(header, caption_column, CAPTION_COLUMNS, "caption", path,
                                  "caption_column (--csv-caption-key)")
        split_at = header.index(split_column) if split_column in header else None
        for row in reader:
            # line_num is the physical line just read, so quoted newlines keep numbers right.
            number = reader.line_num
            if not any(field.strip() for field in row):
                continue
            name = row[image_at].strip() if image_at < len(row) else ""
            caption = row[caption_at] if caption_at < len(row) else None
            if not name or caption is None:
                report(AnnotationError(path, number, f"row lacks an image path or a caption "
                                                     f"({len(row)} fields, header has "
                                                     f"{len(header)})"), on_error)
                continue
            row_split = row[split_at].strip() if split_at is not None and split_at < len(row) \
                else ""
            if split is not None and split_at is not None and row_split != split:
                continue
            image = by_path.get(name)
            if image is None:
                image = by_path[name] = AnnotatedImage(path=str(root / name), source=source,
                                                       image_id=name, split=row_split)
            image.captions.extend(_clean_captions([caption], drop_blank, False))
    except csv.Error as e:
        raise AnnotationError(path, reader.line_num, f"malformed CSV ({e})") from None
    if dedupe:
        for image in by_path.values():
            image.captions = _clean_captions(image.captions, drop_blank, True)
    return list(by_path.values())


CAPTION_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv")


def read_captions(path: str | os.PathLike, split: str | None = None, **kwargs
                  ) -> list[AnnotatedImage]:
    """Reads any caption file, chosen by extension: .json (Karpathy), .jsonl, .csv/.tsv.

    Keyword arguments go to the chosen reader (CSV: see `read_caption_csv`).
    """
    suffix = as_path(path).suffix.lower()
    if suffix == ".json":
        return read_caption_json(path, split, **kwargs)
    if suffix == ".jsonl":
        return read_caption_jsonl(path, split, **kwargs)
    if suffix in (".csv", ".tsv"):
        return read_caption_csv(path, split, **kwargs)
    raise AnnotationError(path, None, "unknown caption format (expected .json, .jsonl, .csv "
                                      "or .tsv)")
