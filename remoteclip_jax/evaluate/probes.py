"""Probes on frozen image features: linear (logistic regression), k-NN, few-shot.

* Linear probe: scikit-learn ``LogisticRegression`` (L-BFGS, multinomial) on L2-normalised
  features. The inverse regularisation ``C`` is picked from a grid by accuracy on a validation
  part carved from *train* (per class, seeded); test labels are never looked at until the final
  score. The chosen C is then refit on all of train.
* k-NN: cosine similarity, the k most similar train images vote with weight exp(sim / T)
  (RemoteCLIP's codebase and DINO use k=20, T=0.07); numpy, chunked over test images.
* Few-shot: the linear probe fitted on k images per class (k in 1, 2, 4, 8, 16, 32), several
  seeded episodes, reported as mean and std over episodes; C is fixed (default 1.0, sklearn's
  default: with so few labels there is no validation set to tune it on).

This is the clean protocol: no choice looks at test labels. RemoteCLIP's own evaluation code
(ITRA) picks the epoch or C on test accuracy; that protocol is in
`remoteclip_jax.evaluate.itra_probes`. Results say which: ``"protocol"`` and ``"selected_on"``.
"""
from __future__ import annotations

import warnings

import numpy as np

from remoteclip_jax.errors import DataError
from remoteclip_jax.evaluate import itra_probes
from remoteclip_jax.evaluate.splits import SPLIT_KEYS, SPLIT_ORDERS, labelled_split
from remoteclip_jax.evaluate.task import Task
from remoteclip_jax.prompts import l2_normalize

DEFAULT_CS = (0.1, 1.0, 10.0, 100.0, 1000.0)
DEFAULT_SHOTS = (1, 2, 4, 8, 16, 32)


def _logreg(C: float, max_iter: int, seed: int):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed)


def _fit(x, y, C, max_iter, seed):
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Few-shot sets have more classes than half their samples; sklearn then wonders aloud
        # whether y is a regression target.
        warnings.filterwarnings("ignore", message="The number of unique classes")
        return _logreg(C, max_iter, seed).fit(x, y)


def carve_validation(labels, val_fraction: float = 0.2, seed: int = 0):
    """Split train indices into (fit, val): per class, a seeded ``round(val_fraction * n)`` go to
    val, at least one when the class has two or more images, none when it has one."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    fit, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = 0 if len(idx) < 2 else max(1, int(round(val_fraction * len(idx))))
        val += idx[:n_val].tolist()
        fit += idx[n_val:].tolist()
    return np.array(sorted(fit), np.int64), np.array(sorted(val), np.int64)


def linear_probe(train_x, train_y, test_x, test_y, Cs=DEFAULT_CS, val_fraction: float = 0.2,
                 seed: int = 0, max_iter: int = 1000) -> dict:
    """Logistic-regression probe with C chosen on a validation split of train.

    Args:
        train_x, train_y: train features (N, E) and labels (N,).
        test_x, test_y: test features and labels.
        Cs: grid of inverse regularisation strengths.
        val_fraction: share of each train class held out to choose C.
        seed: seeds the validation carve and the solver.
        max_iter: L-BFGS iterations.

    Returns:
        {"top1": test accuracy %, "C": chosen C, "val_top1": {C: val accuracy %},
         "protocol": "clean", "selected_on": "validation" (or "none" when no validation split
         could be carved and the middle C was used), "pred": test predictions}.
    """
    train_x, test_x = l2_normalize(train_x), l2_normalize(test_x)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    fit_idx, val_idx = carve_validation(train_y, val_fraction, seed)
    val_scores = {}
    selected_on = "none"
    if len(val_idx) and len(np.unique(train_y[fit_idx])) > 1 and len(Cs) > 1:
        for C in Cs:
            clf = _fit(train_x[fit_idx], train_y[fit_idx], C, max_iter, seed)
            val_scores[float(C)] = float(100.0 * np.mean(clf.predict(train_x[val_idx]) == train_y[val_idx]))
        best_c = max(val_scores, key=lambda c: (val_scores[c], -c))   # ties -> stronger regularisation
        selected_on = "validation"
    else:
        best_c = float(Cs[len(Cs) // 2])
    clf = _fit(train_x, train_y, best_c, max_iter, seed)
    pred = clf.predict(test_x)
    return {"top1": float(100.0 * np.mean(pred == test_y)), "C": best_c, "val_top1": val_scores,
            "protocol": "clean", "selected_on": selected_on, "pred": pred}


def knn_scores(train_x, train_y, test_x, num_classes: int, k: int = 20, temperature: float = 0.07,
               chunk: int = 1024) -> np.ndarray:
    """Class vote totals (N_test, C): the k most cosine-similar train images vote exp(sim / T)."""
    train_x = l2_normalize(train_x).astype(np.float32)
    test_x = l2_normalize(test_x).astype(np.float32)
    train_y = np.asarray(train_y, np.int64)
    k = min(k, len(train_x))
    votes = np.zeros((len(test_x), num_classes), np.float64)
    for s in range(0, len(test_x), chunk):
        sims = test_x[s:s + chunk] @ train_x.T
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.exp(np.take_along_axis(sims, nn, axis=1).astype(np.float64) / temperature)
        rows = np.repeat(np.arange(len(nn)), k)
        np.add.at(votes[s:s + chunk], (rows, train_y[nn].ravel()), w.ravel())
    return votes


def knn_classify(train_x, train_y, test_x, test_y, num_classes: int, k: int = 20,
                 temperature: float = 0.07) -> dict:
    """Weighted k-NN accuracy: {"top1", "top5", "pred"} (top-k from the vote totals)."""
    from remoteclip_jax.evaluate.zeroshot import topk_correct
    votes = knn_scores(train_x, train_y, test_x, num_classes, k, temperature)
    test_y = np.asarray(test_y, np.int64)
    pred = votes.argmax(axis=1)
    return {"top1": float(100.0 * np.mean(pred == test_y)),
            "top5": float(100.0 * np.mean(topk_correct(votes, test_y, 5))), "pred": pred}


def sample_shots(labels, shots: int, seed: int) -> np.ndarray:
    """Seeded choice of ``shots`` train indices per class (all of a class when it has fewer)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out += rng.choice(idx, size=min(shots, len(idx)), replace=False).tolist()
    return np.array(sorted(out), np.int64)


def fewshot(train_x, train_y, test_x, test_y, shots=DEFAULT_SHOTS, episodes: int = 5, C: float = 1.0,
            seed: int = 0, max_iter: int = 1000) -> dict:
    """Few-shot linear probe over seeded episodes.

    Returns:
        {k: {"mean": %, "std": % (population std over episodes), "episodes": [%...],
             "protocol": "clean", "selected_on": "none" (C is fixed)}}.
    """
    train_x, test_x = l2_normalize(train_x), l2_normalize(test_x)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    out = {}
    for k in shots:
        accs = []
        for e in range(episodes):
            idx = sample_shots(train_y, k, seed + 1000 * k + e)
            if len(np.unique(train_y[idx])) < 2:
                raise ValueError("few-shot needs train images from at least two classes")
            clf = _fit(train_x[idx], train_y[idx], C, max_iter, seed)
            accs.append(float(100.0 * np.mean(clf.predict(test_x) == test_y)))
        out[int(k)] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "episodes": accs,
                       "protocol": "clean", "selected_on": "none"}
    return out


# --- the linear_probe, knn and fewshot tasks ----------------------------------------------------

# linear_probe/fewshot: "clean" (sklearn logistic regression, C chosen on a split of train) |
# "itra" (ITRA's SGD probe, which picks its best epoch on test accuracy: labelled so), with
# itra_mode "pytorch" | "sklearn" | "sklearn-search" and `epochs` of SGD (ITRA: 1000);
# sample_seed: validation split / episode sampling.
_PROTOCOL = {"protocol": "clean", "itra_mode": "pytorch", "epochs": 1000, "sample_seed": 0}
_PROTOCOL_CHOICES = {"protocol": ("clean", "itra"), "itra_mode": itra_probes.ITRA_MODES,
                     "split_order": SPLIT_ORDERS}


def _prepare(entry, ds, tokenize) -> dict:
    out = labelled_split(entry, ds)
    if not len(out["train"]) or not len(out["test"]):
        raise DataError(f"{ds.name}: the {entry['train_fraction']:.0%} split "
                        "leaves no train or no test images")
    return out


def _split(prep, feats):
    tr, te = prep["train"], prep["test"]
    return feats[tr], prep["labels"][tr], feats[te], prep["labels"][te]


def _linear_probe(ev, variables, entry, prep, feats):
    if entry["protocol"] == "itra":
        r = itra_probes.itra_linear_probe(*_split(prep, feats), mode=entry["itra_mode"],
                                          seed=entry["sample_seed"], epochs=entry["epochs"])
        metrics = {"top1": r["top1"]}
    else:
        r = linear_probe(*_split(prep, feats), Cs=tuple(entry["Cs"]),
                         val_fraction=entry["val_fraction"], seed=entry["sample_seed"])
        metrics = {"top1": r["top1"], "C": r["C"]}
    return metrics, {k: v for k, v in r.items() if k not in metrics}


def _knn(ev, variables, entry, prep, feats):
    r = knn_classify(*_split(prep, feats), len(prep["classes"]), entry["k"], entry["temperature"])
    return {"top1": r["top1"], "top5": r["top5"]}, {}


def _fewshot(ev, variables, entry, prep, feats):
    if entry["protocol"] == "itra":
        r = itra_probes.itra_fewshot(*_split(prep, feats), shots=tuple(entry["shots"]),
                                     episodes=entry["episodes"], mode=entry["itra_mode"],
                                     pool=entry["pool"], seed=entry["sample_seed"],
                                     epochs=entry["epochs"])
    else:
        r = fewshot(*_split(prep, feats), shots=tuple(entry["shots"]), episodes=entry["episodes"],
                    C=entry["C"], seed=entry["sample_seed"])
    m = {}
    for k, v in r.items():
        m[f"{k}shot_mean"], m[f"{k}shot_std"] = v["mean"], v["std"]
    return m, {"fewshot": {str(k): v for k, v in r.items()}, "protocol": entry["protocol"]}


TASKS = [
    # Cs: the C grid, chosen on val_fraction of train.
    Task("linear_probe", {"Cs": DEFAULT_CS, "val_fraction": 0.2, **_PROTOCOL, **SPLIT_KEYS},
         _prepare, _linear_probe, _PROTOCOL_CHOICES, prefix="linear_probe_"),
    # k neighbours vote with weight exp(similarity / temperature).
    Task("knn", {"k": 20, "temperature": 0.07, **SPLIT_KEYS}, _prepare, _knn,
         {"split_order": SPLIT_ORDERS}, prefix="knn_"),
    # shots: images per class, `episodes` per shot count, logistic-regression C; pool (itra):
    # "cumulative" (ITRA's code as written) | "per_class".
    Task("fewshot", {"shots": DEFAULT_SHOTS, "episodes": 5, "C": 1.0, "pool": "cumulative",
                     **_PROTOCOL, **SPLIT_KEYS}, _prepare, _fewshot,
         {**_PROTOCOL_CHOICES, "pool": itra_probes.ITRA_POOLS}, prefix="fewshot_"),
]
