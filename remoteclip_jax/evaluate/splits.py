"""The RemoteCLIP paper's split for datasets without an official test split: per class, the first
80% of the files train and the rest test. The same split serves zero-shot, few-shot and probes.

The train count per class is ``floor(0.8 * n)``, as ITRA's ``data_split``
(ChenDelong1999/ITRA branch test, ``itra/data/classification_datasets.py`` lines 366-374:
``int(len * 0.8)``). Which files come first is set by ``order``:

* ``"sorted"`` (default): plain lexicographic on the file name (``airport_10.jpg`` <
  ``airport_2.jpg``), reproducible everywhere.
* ``"listing"``: the order the class folder lists its files in, as ITRA does (``glob.glob`` on the
  folder, not sorted, line 367). That order is whatever the file system returns, so the
  reference split itself differs between machines; this option reproduces it on the machine where
  it runs.
"""
from __future__ import annotations

import collections
import math
import os
from typing import Sequence

import numpy as np

from remoteclip_jax.errors import DataError, check_choice


SPLIT_ORDERS = ("sorted", "listing")
# The keys of the classification tasks (zeroshot and the probes) that split a labelled dataset.
SPLIT_KEYS = {
    "train_fraction": 0.8,     # share of each class (by file name) that goes to train
    # the order files are split in: "sorted" (by name) | "listing" (the file system's order, as
    # ITRA's glob gives it: not reproducible across machines).
    "split_order": "sorted",
}


def _listing_positions(paths: Sequence[str]) -> dict[str, int]:
    """Position of each path in its folder's directory listing."""
    positions, listed = {}, {}
    for p in paths:
        folder = os.path.dirname(p)
        if folder not in listed:
            try:
                listed[folder] = {name: i for i, name in enumerate(os.listdir(folder or "."))}
            except OSError as e:
                raise DataError(f"{folder}: split order 'listing' needs the folder on disk ({e})") from None
        positions[p] = listed[folder].get(os.path.basename(p), len(listed[folder]))
    return positions


def paper_split(paths: Sequence[str], labels: Sequence, train_fraction: float = 0.8,
                order: str = "sorted"):
    """Indices of the train and test parts of a labelled image list.

    Args:
        paths: image paths.
        labels: class of each image (any hashable).
        train_fraction: share of each class that goes to train (the first ones in ``order``).
        order: "sorted" (by file name) or "listing" (the folder's listing order, ITRA's).

    Returns:
        (train_idx, test_idx): sorted int arrays into ``paths``.
    """
    check_choice("split order", order, SPLIT_ORDERS)
    by_class = collections.defaultdict(list)
    for i, lab in enumerate(labels):
        by_class[lab].append(i)
    if order == "listing":
        pos = _listing_positions(paths)
        key = lambda i: (pos[paths[i]], paths[i])                      # noqa: E731
    else:
        key = lambda i: (os.path.basename(paths[i]), paths[i])         # noqa: E731
    train, test = [], []
    for idx in by_class.values():
        idx = sorted(idx, key=key)
        n_train = math.floor(train_fraction * len(idx) + 1e-9)
        train += idx[:n_train]
        test += idx[n_train:]
    return np.array(sorted(train), np.int64), np.array(sorted(test), np.int64)


def labelled_split(entry, ds) -> dict:
    """A labelled dataset's classes (sorted), label indices and the paper's train/test split.

    Raises:
        DataError: an item without a class label.
    """
    if not all(ds.labels):
        raise DataError(f"{ds.name}: {ds.keys[ds.labels.index('')]} has no "
                        "class label (use an image_folder source, or records/caption files whose "
                        "items carry a label)")
    classes = sorted(set(ds.labels))
    labels = np.asarray([classes.index(label) for label in ds.labels])
    train, test = paper_split(ds.keys, labels, entry["train_fraction"], order=entry["split_order"])
    return {"classes": classes, "labels": labels, "train": train, "test": test}
