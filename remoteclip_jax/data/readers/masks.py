"""Semantic segmentation masks (class-index or RGB-palette PNGs) read as boxes via Mask-to-Box.

Built-in class tables:

* `loveda`: LoveDA's index PNGs, 0 no-data, 1 background, 2 building, 3 road, 4 water, 5 barren,
  6 forest, 7 agricultural.
* `potsdam`, `vaihingen`: ISPRS labels. Index PNGs as mmsegmentation's converters write them
  (0 boundary, 1 impervious surfaces, 2 building, 3 low vegetation, 4 tree, 5 car, 6 clutter)
  and the ISPRS RGB colours (white impervious surfaces, blue building, cyan low vegetation,
  green tree, yellow car, red clutter, black boundary).
* `isaid`: iSAID semantic masks, 0 background and the 15 DOTA object classes, with the RGB
  palette of the iSAID devkit.

Boundary, background, clutter and impervious surfaces get no boxes by default (M2B's ignore list).
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from remoteclip_jax.files import as_path
from remoteclip_jax.data import m2b
from remoteclip_jax.data.readers._paths import IMAGE_EXTENSIONS, file_test, find_image, first_dir
from remoteclip_jax.data.readers.errors import AnnotationError, OnError, report
from remoteclip_jax.data.types import AnnotatedImage


@dataclasses.dataclass(frozen=True)
class ClassTable:
    """What the values of a dataset's masks mean.

    Attributes:
        dataset: dataset name (selects class-name normalisation).
        names: class index -> raw class name.
        palette: RGB colour -> class index, for masks stored as colour images (empty: the
            dataset's masks are class-index images only).
    """
    dataset: str
    names: Mapping[int, str]
    palette: Mapping[tuple[int, int, int], int] = dataclasses.field(default_factory=dict)


_ISPRS_NAMES = {0: "boundary", 1: "impervious_surfaces", 2: "building", 3: "low_vegetation",
                4: "tree", 5: "car", 6: "clutter"}
_ISPRS_PALETTE = {(0, 0, 0): 0, (255, 255, 255): 1, (0, 0, 255): 2, (0, 255, 255): 3,
                  (0, 255, 0): 4, (255, 255, 0): 5, (255, 0, 0): 6}
_ISAID_NAMES = ("background", "ship", "storage_tank", "baseball_diamond", "tennis_court",
                "basketball_court", "Ground_Track_Field", "Bridge", "Large_Vehicle",
                "Small_Vehicle", "Helicopter", "Swimming_pool", "Roundabout",
                "Soccer_ball_field", "plane", "Harbor")
_ISAID_COLOURS = ((0, 0, 0), (0, 0, 63), (0, 63, 63), (0, 63, 0), (0, 63, 127), (0, 63, 191),
                  (0, 63, 255), (0, 127, 63), (0, 127, 127), (0, 0, 127), (0, 0, 191),
                  (0, 0, 255), (0, 191, 127), (0, 127, 191), (0, 127, 255), (0, 100, 155))

CLASS_TABLES: dict[str, ClassTable] = {
    "loveda": ClassTable("loveda", {0: "no_data", 1: "background", 2: "building", 3: "road",
                                    4: "water", 5: "barren", 6: "forest", 7: "agricultural"}),
    "potsdam": ClassTable("potsdam", _ISPRS_NAMES, _ISPRS_PALETTE),
    "vaihingen": ClassTable("vaihingen", _ISPRS_NAMES, _ISPRS_PALETTE),
    "isaid": ClassTable("isaid", dict(enumerate(_ISAID_NAMES)),
                        {c: i for i, c in enumerate(_ISAID_COLOURS)}),
}


def load_class_table(spec: str | os.PathLike | ClassTable) -> ClassTable:
    """A built-in table by name, or one read from a JSON file.

    The JSON holds `{"dataset": "...", "classes": {"0": "background", "1": "building", ...},
    "palette": {"1": [0, 0, 255], ...}}` (palette optional, keyed by class index).
    """
    if isinstance(spec, ClassTable):
        return spec
    if str(spec).lower() in CLASS_TABLES:
        return CLASS_TABLES[str(spec).lower()]
    path = as_path(spec)
    if not path.is_file():
        raise AnnotationError(path, None, f"unknown class table (built-in: "
                                          f"{sorted(CLASS_TABLES)}; or a JSON file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = {int(k): str(v) for k, v in data["classes"].items()}
        palette = {tuple(int(c) for c in rgb): int(k) for k, rgb in data.get("palette", {}).items()}
        if any(len(rgb) != 3 for rgb in palette):
            raise ValueError("palette colours must be [r, g, b]")
    except json.JSONDecodeError as e:
        raise AnnotationError(path, e.lineno, f"invalid JSON ({e.msg})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise AnnotationError(path, None, f"bad class table ({e!r}); expected "
                                          "{'classes': {index: name}, 'palette': {...}}") from None
    return ClassTable(str(data.get("dataset", path.stem)), names, palette)


def load_mask(path: str | os.PathLike, table: ClassTable) -> np.ndarray:
    """Reads a mask PNG as an (H, W) int32 array of class indices.

    Grey, 16-bit and palette-mode ('P', whose pixel values are the indices) images are taken as
    class indices. RGB images are mapped through `table.palette`.

    Raises:
        AnnotationError: unreadable image, or an RGB mask with a colour not in the palette.
    """
    path = as_path(path)
    try:
        with path.open("rb") as f, Image.open(f) as im:  # a local file or a bucket's
            im.load()
            mode = im.mode
            array = np.asarray(im.convert("RGB") if mode in ("RGBA", "LA") else im)
    except Exception as e:  # PIL raises many unrelated types for broken files.
        raise AnnotationError(path, None, f"unreadable mask ({type(e).__name__}: {e})") from None
    if array.ndim == 2:
        return array.astype(np.int32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise AnnotationError(path, None, f"unsupported mask shape {array.shape}")
    if not table.palette:
        raise AnnotationError(path, None, f"colour mask, but the '{table.dataset}' class table "
                                          "has no palette")
    packed = (array[..., 0].astype(np.int32) << 16) | (array[..., 1].astype(np.int32) << 8) \
        | array[..., 2].astype(np.int32)
    colours, inverse = np.unique(packed, return_inverse=True)
    lookup = np.empty(len(colours), np.int32)
    for i, colour in enumerate(colours):
        rgb = (int(colour) >> 16, (int(colour) >> 8) & 255, int(colour) & 255)
        if rgb not in table.palette:
            y, x = np.argwhere(packed == colour)[0]
            raise AnnotationError(path, None, f"colour {rgb} at pixel (x={x}, y={y}) is not in "
                                              f"the '{table.dataset}' palette")
        lookup[i] = table.palette[rgb]
    return lookup[inverse].reshape(packed.shape)


def iter_masks(mask_dir: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
               table: str | os.PathLike | ClassTable = "loveda",
               min_area: int = m2b.DEFAULT_MIN_AREA, ignore: Sequence[str] = m2b.DEFAULT_IGNORE,
               mask_suffix: str = "", image_suffix: str = "", source: str = "",
               on_error: OnError | None = None) -> Iterator[AnnotatedImage]:
    """Yields one AnnotatedImage per mask, with boxes from Mask-to-Box (lazily: masks are big).

    Args:
        mask_dir: directory of mask images (`ann_dir/`, `masks_png/`, ...).
        image_dir: the matching images, same stem (default: the first of `img_dir/`,
            `images_png/`, `images/`, `img/` next to `mask_dir`).
        table: built-in table name (`loveda`, `potsdam`, `vaihingen`, `isaid`), a JSON file, or a
            ClassTable.
        min_area: M2B's minimum component size in pixels.
        ignore: class names that get no boxes.
        mask_suffix / image_suffix: how file stems differ: the image of mask `<id><mask_suffix>`
            is `<id><image_suffix>` (iSAID: "_instance_color_RGB" / ""; ISPRS Potsdam:
            "_label" / "_RGB"). Default: same stem.
        source: dataset name for provenance (default: the table's dataset).
        on_error: None raises on a bad mask; a callable receives the error and the mask is
            skipped.
    """
    mask_dir = as_path(mask_dir)
    if not mask_dir.is_dir():
        raise AnnotationError(mask_dir, None, "not a directory of mask images")
    table = load_class_table(table)
    if image_dir is None:
        image_dir = first_dir(mask_dir.parent / name for name in
                              ("img_dir", "images_png", "images", "img")) or mask_dir
    image_dir = as_path(image_dir)
    is_file = file_test(image_dir)  # one listing of the folder in a bucket
    for mask_path in sorted(p for p in mask_dir.iterdir()
                            if p.suffix.lower() in IMAGE_EXTENSIONS):
        try:
            mask = load_mask(mask_path, table)
            boxes = m2b.mask_to_boxes(mask, table.names, min_area=min_area, ignore=ignore,
                                      dataset=table.dataset)
        except ValueError as e:  # AnnotationError is a ValueError; M2B raises ValueError.
            report(e if isinstance(e, AnnotationError) else AnnotationError(mask_path, None,
                                                                            str(e)), on_error)
            continue
        stem = mask_path.stem
        if mask_suffix and stem.endswith(mask_suffix):
            stem = stem[:-len(mask_suffix)]
        image_path = find_image(image_dir, stem + image_suffix, is_file) \
            or image_dir / (stem + image_suffix + mask_path.suffix)
        height, width = mask.shape
        yield AnnotatedImage(path=str(image_path), width=width, height=height, boxes=boxes,
                             source=source or table.dataset, image_id=stem)


def read_masks(mask_dir: str | os.PathLike, image_dir: str | os.PathLike | None = None,
               **kwargs) -> list[AnnotatedImage]:
    """All of `iter_masks` as a list (same arguments)."""
    return list(iter_masks(mask_dir, image_dir, **kwargs))
