"""Linear probe and few-shot as RemoteCLIP's evaluation code runs them (ITRA's protocol).

Facts from ChenDelong1999/ITRA, branch ``test`` (commit f8b26c9), ``itra/evaluation/linear_eval.py``
(LE) and ``itra/data/classification_datasets.py`` (CD), ``itra/training/params.py`` (PA):

* ``mode="pytorch"`` (ITRA's default, PA lines 400-404): a linear layer, weights N(0, 0.01), bias 0
  (LE lines 47-49), on the *raw* image features (no normalisation, LE lines 170-181); cross
  entropy, SGD with momentum 0.9 and weight decay 4e-5 on weights and bias, lr 0.8 annealed by a
  cosine over 1000 epochs to 0, stepped once per epoch, batches of 10000 in order without
  shuffling (LE lines 73-81 and 250-256). After every epoch the test accuracy is measured and the
  **best test accuracy over the epochs** is reported (LE lines 100-114): the epoch is chosen on the
  test set, so details say ``"selected_on": "test"``. The last epoch's accuracy is returned too.
  (LE line 250 reads ``mode == 'pytorch' or 'ImageNet'``, always true, so every mode other than
  the sklearn ones lands here, "pytorch-search" included.)
* ``mode="sklearn"`` (LE lines 222-227): ``LogisticRegression(random_state=0, C=3.16,
  max_iter=1000)``; C=3.16 is PA line 398's default (LE's per-dataset C table, lines 281-293,
  lists no remote-sensing dataset).
* ``mode="sklearn-search"`` (LE lines 229-248): fit C in (0.01, 0.1, 1, 2, 4, 8, 10, 16, 64, 100,
  1000) with max_iter=50, keep the C with the best **test** accuracy (first on ties), refit it
  with max_iter=1000 and report that test accuracy (``"selected_on": "test"``).
* Few-shot (LE lines 328-340, CD lines 358-382): five times, draw a new few-shot train set and run
  the linear probe; report the mean. The draw visits the class folders in sorted order and, per
  folder, adds ``random.sample(train_paths, k)`` where ``train_paths`` holds the train images of
  *every folder visited so far* (CD line 373), so later classes draw from a growing mixed pool and
  an image can be drawn twice: ``pool="cumulative"`` reproduces that as written, ``pool="per_class"``
  draws k images of each class (what the code seems meant to do). The published parser cannot
  reach this path (PA line 407 offers "1-shot", which CD line 364 splits on "_" and cannot parse),
  so which draw produced the paper's few-shot numbers is not knowable from the code.

Random draws use numpy's generator, not Python's ``random`` or torch's, so individual runs are not
bit-identical to ITRA's; the procedure is.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from remoteclip_jax.errors import check_choice

ITRA_MODES = ("pytorch", "sklearn", "sklearn-search")
ITRA_POOLS = ("cumulative", "per_class")
ITRA_SEARCH_CS = (1e-2, 1e-1, 1.0, 2.0, 4.0, 8.0, 10.0, 16.0, 64.0, 1e2, 1e3)   # LE line 232
ITRA_SKLEARN_C = 3.16                                                          # PA line 398
ITRA_SHOTS = (1, 2, 4, 8, 16)                                                  # PA line 407
ITRA_EPISODES = 5                                                              # LE line 330


def itra_init(num_features: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Initial (weights (C, E), bias (C,)) of ITRA's linear layer: N(0, 0.01) and zeros, float32."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 0.01, size=(num_classes, num_features)).astype(np.float32)
    return w, np.zeros(num_classes, np.float32)


def _accuracy(w, b, x, y) -> float:
    return float(100.0 * np.mean(np.argmax(x @ w.T + b, axis=1) == y))


def itra_sgd_train(train_x, train_y, test_x, test_y, epochs: int = 1000, lr: float = 0.8,
                   weight_decay: float = 4e-5, batch_size: int = 10000, momentum: float = 0.9,
                   init: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0):
    """ITRA's SGD logistic regression (float32), measuring test accuracy after every epoch.

    Args:
        train_x, train_y: train features (N, E), as given (ITRA does not normalise) and labels.
        test_x, test_y: test features and labels.
        epochs, lr, weight_decay, batch_size, momentum: ITRA's values by default (LE 250-256).
        init: initial (weights, bias); default ``itra_init(E, max(train_y) + 1, seed)``.
        seed: seeds the default initialisation.

    Returns:
        (weights (C, E), bias (C,), test accuracy % after each epoch (list of ``epochs`` floats)).
        C is ``max(train_y) + 1`` as in ITRA (LE line 77).
    """
    x = np.asarray(train_x, np.float32)
    y = np.asarray(train_y, np.int64)
    tx = np.asarray(test_x, np.float32)
    ty = np.asarray(test_y, np.int64)
    num_classes = int(y.max()) + 1
    w, b = init if init is not None else itra_init(x.shape[1], num_classes, seed)
    w, b = np.array(w, np.float32), np.array(b, np.float32)
    buf_w = buf_b = None
    curve = []
    for epoch in range(epochs):
        # CosineAnnealingLR(T_max=epochs, eta_min=0), stepped after each epoch.
        rate = np.float32(0.5 * lr * (1.0 + math.cos(math.pi * epoch / epochs)))
        for s in range(0, len(x), batch_size):
            xb, yb = x[s:s + batch_size], y[s:s + batch_size]
            logits = xb @ w.T + b
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1.0
            p /= np.float32(len(yb))                       # mean cross entropy
            g_w = p.T @ xb + np.float32(weight_decay) * w
            g_b = p.sum(axis=0) + np.float32(weight_decay) * b
            buf_w = g_w if buf_w is None else np.float32(momentum) * buf_w + g_w
            buf_b = g_b if buf_b is None else np.float32(momentum) * buf_b + g_b
            w = w - rate * buf_w
            b = b - rate * buf_b
        curve.append(_accuracy(w, b, tx, ty))
    return w, b, curve


def _sklearn_fit(x, y, C, max_iter):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The number of unique classes")
        return LogisticRegression(random_state=0, C=C, max_iter=max_iter).fit(x, y)


def itra_linear_probe(train_x, train_y, test_x, test_y, mode: str = "pytorch", seed: int = 0,
                      epochs: int = 1000, C: float = ITRA_SKLEARN_C, Cs=ITRA_SEARCH_CS) -> dict:
    """ITRA's linear probe in one of its three modes (see the module docstring).

    Args:
        train_x, train_y, test_x, test_y: features and labels; features are used as given.
        mode: "pytorch" (default, ITRA's), "sklearn" or "sklearn-search".
        seed: seeds the pytorch mode's initialisation.
        epochs: pytorch mode epochs (ITRA: 1000).
        C: sklearn mode's inverse regularisation (ITRA: 3.16).
        Cs: sklearn-search grid (ITRA's eleven values).

    Returns:
        {"top1": the accuracy ITRA reports (%), "protocol": "itra-<mode>",
         "selected_on": "test" (pytorch: epoch; sklearn-search: C) or "none" (sklearn), and
         per mode: pytorch "final_top1", "best_epoch" (1-based), "epochs"; sklearn "C";
         sklearn-search "C", "test_top1_by_C" {C: % with max_iter=50}}.
    """
    check_choice("linear_probe mode", mode, ITRA_MODES)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if mode == "pytorch":
        _, _, curve = itra_sgd_train(train_x, train_y, test_x, test_y, epochs=epochs, seed=seed)
        best = int(np.argmax(curve))                       # first epoch reaching the maximum
        return {"top1": float(max(0.0, curve[best])), "protocol": "itra-pytorch", "selected_on": "test",
                "final_top1": curve[-1], "best_epoch": best + 1, "epochs": epochs}
    x, tx = np.asarray(train_x), np.asarray(test_x)
    if mode == "sklearn":
        pred = _sklearn_fit(x, train_y, C, 1000).predict(tx)
        return {"top1": float(100.0 * np.mean(pred == test_y)), "protocol": "itra-sklearn",
                "selected_on": "none", "C": float(C)}
    by_c = {}
    for c in Cs:
        by_c[float(c)] = float(100.0 * np.mean(_sklearn_fit(x, train_y, c, 50).predict(tx) == test_y))
    best_c = max(by_c, key=lambda c: by_c[c])             # first C reaching the maximum
    pred = _sklearn_fit(x, train_y, best_c, 1000).predict(tx)
    return {"top1": float(100.0 * np.mean(pred == test_y)), "protocol": "itra-sklearn-search",
            "selected_on": "test", "C": best_c, "test_top1_by_C": by_c}


def itra_fewshot_indices(train_y, shots: int, rng: np.random.Generator, pool: str = "cumulative",
                         class_order=None) -> np.ndarray:
    """One few-shot draw of train indices as ITRA's ``data_split`` makes it (CD lines 366-374).

    Args:
        train_y: labels of the train images, each class's images in their train-split order.
        shots: k, images drawn per visited class.
        rng: numpy random generator.
        pool: "cumulative" (ITRA as written: class c draws from the train images of classes
            0..c) or "per_class" (class c draws from its own images).
        class_order: the order classes are visited (ITRA: sorted folder names); default
            ascending label, right when labels number the sorted folder names.

    Returns:
        Indices into ``train_y`` in draw order; "cumulative" may repeat an index.
    """
    check_choice("fewshot pool", pool, ITRA_POOLS)
    train_y = np.asarray(train_y)
    order = np.unique(train_y) if class_order is None else np.asarray(class_order)
    seen: list[int] = []
    out: list[int] = []
    for c in order:
        own = np.flatnonzero(train_y == c).tolist()
        seen += own
        source = seen if pool == "cumulative" else own
        if shots > len(source):
            raise ValueError(f"class {c}: cannot draw {shots} images from {len(source)}")
        out += [source[i] for i in rng.choice(len(source), size=shots, replace=False)]
    return np.array(out, np.int64)


def itra_fewshot(train_x, train_y, test_x, test_y, shots=ITRA_SHOTS, episodes: int = ITRA_EPISODES,
                 mode: str = "pytorch", pool: str = "cumulative", seed: int = 0,
                 epochs: int = 1000, class_order=None) -> dict:
    """ITRA's few-shot evaluation: ``episodes`` draws per k, the linear probe on each, the mean.

    Args:
        train_x, train_y: the train split's features and labels (the draws come from it).
        test_x, test_y: the whole test split.
        shots: the k values (ITRA's parser offers 1, 2, 4, 8, 16).
        episodes: draws per k (ITRA: 5).
        mode: linear probe mode, as for ``itra_linear_probe``.
        pool: "cumulative" (as written) or "per_class"; see ``itra_fewshot_indices``.
        seed: seeds the draws and the initialisations.
        epochs: pytorch mode epochs.
        class_order: see ``itra_fewshot_indices``.

    Returns:
        {k: {"mean": %, "std": % (population std over episodes), "episodes": [%...],
             "classes_drawn": [distinct classes in each draw], "selected_on": "test"|"none",
             "protocol": "itra-<mode>", "pool": pool}}.
    """
    rng = np.random.default_rng(seed)
    train_x, train_y = np.asarray(train_x), np.asarray(train_y)
    out = {}
    for k in shots:
        accs, drawn, selected = [], [], "none"
        for e in range(episodes):
            idx = itra_fewshot_indices(train_y, int(k), rng, pool, class_order)
            r = itra_linear_probe(train_x[idx], train_y[idx], test_x, test_y, mode=mode,
                                  seed=seed + 1000 * int(k) + e, epochs=epochs)
            accs.append(r["top1"])
            drawn.append(int(len(np.unique(train_y[idx]))))
            selected = r["selected_on"]
        out[int(k)] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "episodes": accs,
                       "classes_drawn": drawn, "selected_on": selected, "protocol": f"itra-{mode}",
                       "pool": pool}
    return out
