"""Linear probe, k-NN and few-shot against scikit-learn references; the paper's 80/20 split."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from remoteclip_jax.evaluate.probes import (carve_validation, fewshot, knn_classify, knn_scores,
                                           linear_probe, sample_shots)
from remoteclip_jax.evaluate.splits import paper_split


def _blobs(n_per_class=30, c=5, e=16, noise=1.2, seed=0):
    """Gaussian classes around fixed centres (same centres for every seed)."""
    centers = np.random.default_rng(123).normal(size=(c, e))
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n_per_class)
    x = centers[y] + noise * rng.normal(size=(len(y), e))
    return x, y


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_matches_sklearn_weighted_cosine():
    x, y = _blobs(seed=1)
    tx, ty = _blobs(n_per_class=10, seed=2)
    T = 0.07
    ref = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1.0 - d) / T)).fit(x, y)
    got = knn_classify(x, y, tx, ty, num_classes=5, k=20, temperature=T)
    np.testing.assert_array_equal(got["pred"], ref.predict(tx))
    # Vote totals equal a direct float64 computation.
    s = _unit(tx) @ _unit(x).T
    want = np.zeros((len(tx), 5))
    for i in range(len(tx)):
        nn = np.argsort(-s[i])[:20]
        for j in nn:
            want[i, y[j]] += np.exp(s[i, j] / T)
    np.testing.assert_allclose(knn_scores(x, y, tx, 5, 20, T), want, rtol=1e-5)


def test_knn_hand_computed():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = np.array([0, 0, 1])
    # One neighbour: the nearest decides; with k=3 and a huge T every neighbour weighs ~1.
    assert knn_classify(train, labels, [[0.1, 1.0]], [1], 2, k=1)["top1"] == 100.0
    assert knn_classify(train, labels, [[0.1, 1.0]], [1], 2, k=3, temperature=1e6)["top1"] == 0.0


def test_linear_probe_equals_sklearn_at_chosen_C():
    x, y = _blobs(seed=3)
    tx, ty = _blobs(n_per_class=10, seed=4)
    got = linear_probe(x, y, tx, ty, Cs=(0.01, 1.0, 100.0), seed=0)
    # Reference: the same selection written out with sklearn directly.
    fit, val = carve_validation(y, 0.2, 0)
    xs, txs = _unit(x), _unit(tx)
    scores = {C: LogisticRegression(C=C, max_iter=1000).fit(xs[fit], y[fit]).score(xs[val], y[val])
              for C in (0.01, 1.0, 100.0)}
    best = max(scores, key=lambda c: (scores[c], -c))
    assert got["C"] == best
    ref = LogisticRegression(C=best, max_iter=1000).fit(xs, y)
    assert got["top1"] == pytest.approx(100 * ref.score(txs, ty))
    assert 50 < got["top1"] <= 100


def test_linear_probe_never_looks_at_test_labels():
    x, y = _blobs(seed=5)
    tx, ty = _blobs(n_per_class=10, seed=6)
    a = linear_probe(x, y, tx, ty, Cs=(0.01, 1.0, 100.0))
    b = linear_probe(x, y, tx, np.random.default_rng(0).permutation(ty), Cs=(0.01, 1.0, 100.0))
    assert a["C"] == b["C"] and a["val_top1"] == b["val_top1"]
    np.testing.assert_array_equal(a["pred"], b["pred"])


def test_carve_validation_is_per_class_and_disjoint():
    y = np.array([0] * 10 + [1] * 5 + [2])
    fit, val = carve_validation(y, 0.2, 0)
    assert not set(fit) & set(val) and len(fit) + len(val) == len(y)
    assert np.bincount(y[val], minlength=3).tolist() == [2, 1, 0]


def test_fewshot_episodes_match_sklearn_and_are_seeded():
    x, y = _blobs(seed=7)
    tx, ty = _blobs(n_per_class=10, seed=8)
    res = fewshot(x, y, tx, ty, shots=(1, 4), episodes=3, C=1.0, seed=0)
    assert set(res) == {1, 4} and len(res[4]["episodes"]) == 3
    idx = sample_shots(y, 4, 0 + 1000 * 4 + 2)
    assert np.bincount(y[idx]).tolist() == [4] * 5
    ref = LogisticRegression(C=1.0, max_iter=1000).fit(_unit(x)[idx], y[idx])
    assert res[4]["episodes"][2] == pytest.approx(100 * ref.score(_unit(tx), ty))
    assert res[4]["mean"] == pytest.approx(np.mean(res[4]["episodes"]))
    assert res[4]["std"] == pytest.approx(np.std(res[4]["episodes"]))
    assert fewshot(x, y, tx, ty, shots=(1, 4), episodes=3, seed=0) == res


def test_paper_split_sorts_by_filename_per_class():
    paths = [f"/d/{c}/{c}_{i}.jpg" for c in ("b", "a") for i in range(1, 11)]
    labels = [p.split("/")[2] for p in paths]
    train, test = paper_split(paths, labels)
    # Lexicographic: x_1, x_10, x_2, ..., x_9 -> the last two are x_8, x_9.
    assert sorted(paths[i].rsplit("/", 1)[1] for i in test) == ["a_8.jpg", "a_9.jpg", "b_8.jpg", "b_9.jpg"]
    assert len(train) == 16


def test_listing_order_split_matches_itras_glob_split(tmp_path):
    import glob
    import os
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for c in ("b", "a"):
        os.makedirs(tmp_path / c)
        for i in rng.permutation(13):
            (tmp_path / c / f"{c}_{i}.jpg").write_bytes(b"")
            paths.append(str(tmp_path / c / f"{c}_{i}.jpg"))
            labels.append(c)
    # ITRA classification_datasets.py lines 366-374: glob per sorted folder, first int(0.8 n) train.
    want_train, want_test = [], []
    for folder in sorted(glob.glob(os.path.join(tmp_path, "*"))):
        files = glob.glob(os.path.join(folder, "*"))
        stop = int(len(files) * 0.8)
        want_train += files[:stop]
        want_test += files[stop:]
    train, test = paper_split(paths, labels, order="listing")
    assert sorted(paths[i] for i in train) == sorted(want_train)
    assert sorted(paths[i] for i in test) == sorted(want_test)
