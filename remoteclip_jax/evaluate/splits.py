"""The RemoteCLIP paper's split for datasets without an official test split: per class, files
sorted by name, the first 80% train and the last 20% test. The same split serves zero-shot,
few-shot and probes.

Sorting is plain lexicographic on the file name (``airport_10.jpg`` < ``airport_2.jpg``), the
order ``sorted(os.listdir(...))`` gives; the train count per class is ``floor(0.8 * n)``.
"""
from __future__ import annotations

import collections
import math
import os
from typing import Sequence

import numpy as np


def paper_split(paths: Sequence[str], labels: Sequence, train_fraction: float = 0.8):
    """Indices of the train and test parts of a labelled image list.

    Args:
        paths: image paths (only the file name is used for ordering).
        labels: class of each image (any hashable).
        train_fraction: share of each class (by sorted name) that goes to train.

    Returns:
        (train_idx, test_idx): sorted int arrays into ``paths``.
    """
    by_class = collections.defaultdict(list)
    for i, lab in enumerate(labels):
        by_class[lab].append(i)
    train, test = [], []
    for idx in by_class.values():
        idx = sorted(idx, key=lambda i: (os.path.basename(paths[i]), paths[i]))
        n_train = math.floor(train_fraction * len(idx) + 1e-9)
        train += idx[:n_train]
        test += idx[n_train:]
    return np.array(sorted(train), np.int64), np.array(sorted(test), np.int64)


def select_split(paths, labels, split: str, train_fraction: float = 0.8) -> np.ndarray:
    """Indices for ``split`` in {"train", "test", "all"} under ``paper_split``."""
    if split == "all":
        return np.arange(len(paths))
    train, test = paper_split(paths, labels, train_fraction)
    if split == "train":
        return train
    if split == "test":
        return test
    raise ValueError(f"split must be train|test|all, got {split!r}")
