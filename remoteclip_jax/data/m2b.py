"""Mask-to-Box (M2B): boxes from a segmentation mask, so that B2C can caption segmentation data.

RemoteCLIP (Sec. III) converts each class of a mask into contours and takes one bounding box per
contour. Outer border-following contours of a binary mask enclose exactly its 8-connected
components (holes do not split a region), so here each class's binary mask is split into
8-connected components and each component becomes one box. Components smaller than `min_area`
pixels are dropped as annotation noise, and "no object" classes (background, clutter, impervious
surfaces, boundaries) are not boxed by default.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from remoteclip_jax.data import classnames
from remoteclip_jax.data.types import Box

# Normalised class names that never become boxes by default.
DEFAULT_IGNORE = classnames.NON_OBJECT_CLASSES
# Default minimum component size in pixels: drops specks left by annotation tools, keeps a car
# at 10 cm GSD (~800 px) or a small building at 30 cm GSD (~150 px).
DEFAULT_MIN_AREA = 100
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _table_items(class_table: Mapping[int, str] | Sequence[str]) -> list[tuple[int, str]]:
    if isinstance(class_table, Mapping):
        return [(int(k), str(v)) for k, v in class_table.items()]
    return list(enumerate(map(str, class_table)))


def mask_to_boxes(mask: np.ndarray, class_table: Mapping[int, str] | Sequence[str], *,
                  min_area: int = DEFAULT_MIN_AREA, ignore: Sequence[str] = DEFAULT_IGNORE,
                  dataset: str = "", strict: bool = True) -> list[Box]:
    """One box per 8-connected component of each class in a class-index mask.

    Args:
        mask: (H, W) integer array of class indices.
        class_table: index -> raw class name, as a mapping or a sequence indexed from 0.
        min_area: components with fewer pixels are dropped.
        ignore: class names (compared after `normalize_class_name`) that get no boxes.
        dataset: dataset name for class-name normalisation.
        strict: raise when the mask holds an index missing from `class_table` (False: skip it).

    Returns:
        Boxes in pixel-edge coordinates (a component covering columns 3..5 has x0=3, x1=6),
        ordered by class index, then by the component's first pixel in row-major order.
        `ann_id` is "<class index>:<component number>" (numbered from 0 in that order), and
        `region` is True (B2C phrases regions as quantities of places, not object counts).

    Raises:
        ValueError: a mask that is not 2-D integer, or (strict) an index missing from the table.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must be a 2-D integer array, got {mask.dtype} {mask.shape}")
    table = dict(_table_items(class_table))
    present = np.unique(mask)
    unknown = [int(v) for v in present if int(v) not in table]
    if unknown and strict:
        raise ValueError(f"mask holds class indices {unknown} missing from the class table "
                         f"(known: {sorted(table)})")
    ignored = {classnames.normalize_class_name(name) for name in ignore}
    boxes = []
    for index in (int(v) for v in present):
        name = table.get(index)
        if name is None or classnames.normalize_class_name(name, dataset) in ignored:
            continue
        labels, count = ndimage.label(mask == index, structure=_EIGHT_CONNECTED)
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        # ndimage numbers components in row-major order of their first pixel.
        for number, region in enumerate(ndimage.find_objects(labels)):
            if region is None or areas[number + 1] < min_area:
                continue
            rows, cols = region
            boxes.append(Box(name, float(cols.start), float(rows.start), float(cols.stop),
                             float(rows.stop), ann_id=f"{index}:{number}", region=True))
    return boxes
