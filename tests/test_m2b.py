"""Mask-to-Box: component splitting, 8-connectivity, min-area filter, ignore classes.

The reference is a brute-force breadth-first flood fill written here, independent of the
scipy labelling the module uses.
"""
import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from remoteclip_jax.data.m2b import mask_to_boxes
from remoteclip_jax.data.types import Box

TABLE = {0: "background", 1: "building", 2: "car", 3: "clutter"}


def _flood_fill_boxes(mask, classes, min_area):
    """(class, x0, y0, x1, y1) per 8-connected component, found by breadth-first search."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    for y in range(h):
        for x in range(w):
            if seen[y, x] or mask[y, x] not in classes:
                continue
            value, queue, pixels = mask[y, x], collections.deque([(y, x)]), []
            seen[y, x] = True
            while queue:
                cy, cx = queue.popleft()
                pixels.append((cy, cx))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and not seen[ny, nx] \
                                and mask[ny, nx] == value:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
            if len(pixels) >= min_area:
                ys, xs = zip(*pixels)
                found.append((int(value), min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    return sorted(found)


def _as_tuples(boxes, table=TABLE):
    index = {v: k for k, v in table.items()}
    return sorted((index[b.category], int(b.x0), int(b.y0), int(b.x1), int(b.y1)) for b in boxes)


def test_two_separate_blobs_give_two_boxes_and_background_none():
    mask = np.zeros((10, 12), np.uint8)
    mask[1:3, 1:4] = 1      # 6 px
    mask[6:9, 7:11] = 1     # 12 px
    boxes = mask_to_boxes(mask, TABLE, min_area=1)
    assert boxes == [Box("building", 1, 1, 4, 3, ann_id="1:0", region=True),
                     Box("building", 7, 6, 11, 9, ann_id="1:1", region=True)]


def test_diagonal_touch_joins_components_8_connectivity():
    mask = np.zeros((6, 6), np.uint8)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = 2
    assert _as_tuples(mask_to_boxes(mask, TABLE, min_area=1)) == [(2, 1, 1, 4, 4)]


def test_ring_with_hole_is_one_component():
    mask = np.zeros((7, 7), np.uint8)
    mask[1:6, 1:6] = 1
    mask[3, 3] = 2          # a car inside a building: the building still is one region
    boxes = _as_tuples(mask_to_boxes(mask, TABLE, min_area=1))
    assert boxes == [(1, 1, 1, 6, 6), (2, 3, 3, 4, 4)]


def test_min_area_counts_pixels_of_the_component():
    mask = np.zeros((10, 10), np.uint8)
    mask[0:3, 0:3] = 2      # 9 px
    mask[5:9, 5:9] = 2      # 16 px
    assert _as_tuples(mask_to_boxes(mask, TABLE, min_area=10)) == [(2, 5, 5, 9, 9)]
    assert len(mask_to_boxes(mask, TABLE, min_area=9)) == 2
    assert mask_to_boxes(mask, TABLE, min_area=17) == []


def test_ignored_classes_give_no_boxes_unless_asked():
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 3          # clutter
    assert mask_to_boxes(mask, TABLE, min_area=1) == []
    kept = mask_to_boxes(mask, TABLE, min_area=1, ignore=())
    assert _as_tuples(kept) == [(0, 0, 0, 4, 4), (3, 0, 0, 1, 1)]


def test_potsdam_impervious_surfaces_ignored_by_name():
    table = ["impervious_surfaces", "building"]
    mask = np.array([[0, 0], [1, 1]], np.int32)
    assert [b.category for b in mask_to_boxes(mask, table, min_area=1, dataset="potsdam")] \
        == ["building"]


def test_unknown_index_is_an_error_unless_not_strict():
    mask = np.full((3, 3), 9, np.uint8)
    with pytest.raises(ValueError, match=r"\[9\]"):
        mask_to_boxes(mask, TABLE)
    assert mask_to_boxes(mask, TABLE, strict=False) == []
    with pytest.raises(ValueError, match="2-D integer"):
        mask_to_boxes(np.zeros((3, 3, 3), np.uint8), TABLE)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 14)),
                  elements=st.integers(0, 3)),
       st.integers(1, 6))
def test_matches_flood_fill_reference(mask, min_area):
    boxes = mask_to_boxes(mask, TABLE, min_area=min_area, ignore=("background",))
    assert _as_tuples(boxes) == _flood_fill_boxes(mask, {1, 2, 3}, min_area)


def test_real_potsdam_mask_matches_flood_fill(shared_data):
    from PIL import Image
    from remoteclip_jax.data.readers import masks

    mask = np.array(Image.open(
        shared_data / "segmentation/potsdam/ann_dir/2_10_0_0_512_512.png"))[::4, ::4]
    table = masks.CLASS_TABLES["potsdam"].names
    boxes = mask_to_boxes(mask, table, min_area=20)
    kept = {i for i, n in table.items() if n in ("building", "low_vegetation", "tree", "car")}
    assert _as_tuples(boxes, table) == _flood_fill_boxes(mask, kept, 20)
    assert {b.category for b in boxes} >= {"car", "building"}
