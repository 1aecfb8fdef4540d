"""ITRA's linear-probe and few-shot protocol against a torch re-run of its training loop
(itra/evaluation/linear_eval.py lines 71-114), scikit-learn, and a literal re-run of its few-shot
draw with Python's random.sample (itra/data/classification_datasets.py lines 366-374)."""
import random

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from remoteclip_jax.errors import UserError
from remoteclip_jax.evaluate.itra_probes import (ITRA_SEARCH_CS, itra_fewshot, itra_fewshot_indices,
                                                itra_init, itra_linear_probe, itra_sgd_train)


def _blobs(n_per_class=30, c=4, e=8, noise=1.5, seed=0):
    centers = np.random.default_rng(123).normal(size=(c, e)) * 2.0
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n_per_class)
    return (centers[y] + noise * rng.normal(size=(len(y), e))).astype(np.float32), y


def _torch_itra(train_x, train_y, test_x, test_y, init, epochs, lr, weight_decay, batch_size):
    """ITRA's logistic_regression_pytorch, re-written: nn.Linear with the given init, SGD momentum
    0.9, CosineAnnealingLR(epochs, 0), CrossEntropyLoss, unshuffled batches, test accuracy per epoch."""
    torch = pytest.importorskip("torch")
    x, y = torch.tensor(train_x), torch.tensor(train_y).long()
    tx, ty = torch.tensor(test_x), torch.tensor(test_y).long()
    layer = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(init[0]))
        layer.bias.copy_(torch.tensor(init[1]))
    opt = torch.optim.SGD(layer.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs, eta_min=0)
    loss_fn = torch.nn.CrossEntropyLoss()
    curve = []
    for _ in range(epochs):
        for s in range(0, len(x), batch_size):
            loss = loss_fn(layer(x[s:s + batch_size]), y[s:s + batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            curve.append(float((layer(tx).argmax(1) == ty).float().mean()) * 100)
        sched.step()
    return layer.weight.detach().numpy(), layer.bias.detach().numpy(), curve


def test_sgd_training_matches_torch_rerun_of_itra():
    x, y = _blobs(n_per_class=60, seed=1)
    tx, ty = _blobs(n_per_class=25, seed=2)
    init = itra_init(x.shape[1], 4, seed=3)
    args = dict(epochs=25, lr=0.8, weight_decay=4e-5, batch_size=100)   # 3 batches, the last partial
    w, b, curve = itra_sgd_train(x, y, tx, ty, init=init, **args)
    tw, tb, tcurve = _torch_itra(x, y, tx, ty, init, **args)
    np.testing.assert_allclose(w, tw, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(b, tb, rtol=2e-4, atol=2e-5)
    assert np.max(np.abs(np.array(curve) - np.array(tcurve))) <= 100 / len(ty) + 1e-9


def test_pytorch_mode_reports_best_epoch_on_test():
    x, y = _blobs(seed=1)
    tx, ty = _blobs(n_per_class=10, seed=2)
    r = itra_linear_probe(x, y, tx, ty, epochs=40)
    _, _, curve = itra_sgd_train(x, y, tx, ty, epochs=40, seed=0)
    assert r["selected_on"] == "test" and r["protocol"] == "itra-pytorch"
    assert r["top1"] == max(curve) and r["final_top1"] == curve[-1]
    assert curve[r["best_epoch"] - 1] == max(curve)


def test_sklearn_modes_follow_itra():
    x, y = _blobs(seed=4)
    tx, ty = _blobs(n_per_class=12, seed=5)
    r = itra_linear_probe(x, y, tx, ty, mode="sklearn")
    ref = LogisticRegression(random_state=0, C=3.16, max_iter=1000).fit(x, y)
    assert r["top1"] == pytest.approx(100 * np.mean(ref.predict(tx) == ty)) and r["selected_on"] == "none"

    r = itra_linear_probe(x, y, tx, ty, mode="sklearn-search")
    accs = []
    for C in (1e-2, 1e-1, 1, 2, 4, 8, 10, 16, 64, 1e2, 1e3):                 # linear_eval.py line 232
        fit = LogisticRegression(random_state=0, C=C, max_iter=50).fit(x, y)
        accs.append(100 * np.mean(fit.predict(tx) == ty))
    best = accs.index(max(accs))
    assert r["C"] == ITRA_SEARCH_CS[best] and r["selected_on"] == "test"
    refit = LogisticRegression(random_state=0, C=ITRA_SEARCH_CS[best], max_iter=1000).fit(x, y)
    assert r["top1"] == pytest.approx(100 * np.mean(refit.predict(tx) == ty))


def _itra_draw_class_frequencies(counts, shots, trials, seed):
    """ITRA's loop as written, with Python's random.sample on a cumulative list of labels:
    frequency of each class among the images drawn at each folder step."""
    rnd = random.Random(seed)
    freq = np.zeros((len(counts), len(counts)))
    for _ in range(trials):
        train_paths = []
        for c, n in enumerate(counts):
            train_paths.extend([c] * n)
            for drawn in rnd.sample(train_paths, shots):
                freq[c, drawn] += 1
    return freq / (trials * shots)


def test_cumulative_draw_matches_itras_random_sample_loop():
    counts = [6, 3, 9, 4]
    y = np.repeat(np.arange(4), counts)
    trials, shots = 3000, 2
    ref = _itra_draw_class_frequencies(counts, shots, trials, seed=0)
    rng = np.random.default_rng(0)
    ours = np.zeros((4, 4))
    for _ in range(trials):
        idx = itra_fewshot_indices(y, shots, rng, "cumulative").reshape(4, shots)
        for c in range(4):
            for i in idx[c]:
                ours[c, y[i]] += 1
    ours /= trials * shots
    # Both estimate the same multinomial; 5 standard errors of the difference.
    se = np.sqrt(2 * np.maximum(ref * (1 - ref), 1e-12) / (trials * shots))
    assert np.all(np.abs(ours - ref) <= 5 * se + 1e-12)
    assert ref[3, 0] > 0.2 and ours[3, 0] > 0.2       # the last class draws other classes


def test_per_class_draw_is_k_distinct_images_per_class():
    y = np.repeat(np.arange(5), 7)
    idx = itra_fewshot_indices(y, 3, np.random.default_rng(1), "per_class")
    assert len(set(idx.tolist())) == 15
    assert np.bincount(y[idx]).tolist() == [3] * 5


def test_itra_fewshot_labels_and_reports():
    x, y = _blobs(seed=6)
    tx, ty = _blobs(n_per_class=10, seed=7)
    r = itra_fewshot(x, y, tx, ty, shots=(1, 4), episodes=2, epochs=15)
    assert set(r) == {1, 4}
    for k in (1, 4):
        assert len(r[k]["episodes"]) == 2 and r[k]["selected_on"] == "test"
        assert r[k]["mean"] == pytest.approx(np.mean(r[k]["episodes"]))
    again = itra_fewshot(x, y, tx, ty, shots=(1, 4), episodes=2, epochs=15)
    assert again == r                                   # seeded
    with pytest.raises(UserError, match="pool"):
        itra_fewshot(x, y, tx, ty, pool="balanced")
