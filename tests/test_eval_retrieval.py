"""retrieval_metrics against clip_benchmark's recall_at_k semantics (re-derived with torch.topk, and
with a stable lowest-index top-k for ties="index"), a float64 sorting reference, a Monte-Carlo over
random tie orders, RemoteCLIP's load order, and the real UCM captions."""
import collections
import hashlib
import json

import numpy as np
import pytest

from remoteclip_jax.evaluate import retrieval_metric_bounds, retrieval_metrics
from remoteclip_jax.evaluate.retrieval import reference_order, retrieval_report, tie_sensitive

KEYS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10")


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clip_benchmark_recalls(img, txt, t2i, ks=(1, 5, 10)):
    """clip_benchmark's evaluation, re-derived: ``recall_at_k`` (clip_benchmark/metrics/
    zeroshot_retrieval.py lines 95-116: torch.topk, one-hot, true positives / positives), then
    ``(recall > 0).float().mean() * 100`` per direction as RemoteCLIP's retrieval.py lines 170-177."""
    torch = pytest.importorskip("torch")
    img_t = torch.from_numpy(_unit(img))
    txt_t = torch.from_numpy(_unit(txt))
    scores = txt_t @ img_t.T                                    # (texts, images)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), torch.as_tensor(t2i)] = True

    def recall_at_k(s, pos, k):
        top = torch.topk(s, k, dim=1)[1]
        onehot = torch.nn.functional.one_hot(top, num_classes=s.shape[1])
        return (onehot * pos.view(s.shape[0], 1, s.shape[1])).sum(dim=(1, 2)) / pos.sum(dim=1)

    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = (recall_at_k(scores.T, positive.T, k) > 0).float().mean().item() * 100
    for k in ks:
        out[f"t2i_R@{k}"] = (recall_at_k(scores, positive, k) > 0).float().mean().item() * 100
    return out


def _sorting_reference(img, txt, t2i, ties):
    """Sort every query's candidates (score descending; on ties wrong items first if
    pessimistic, right first if optimistic), take the first right one. Independent of retrieval.py."""
    s = _unit(img) @ _unit(txt).T
    t2i = np.asarray(t2i)

    def first_right(scores, right):
        tiebreak = right.astype(int) if ties == "pessimistic" else (~right).astype(int)
        order = np.lexsort((tiebreak, -scores))
        return int(np.flatnonzero(right[order])[0])

    i2t_ranks = np.array([first_right(s[i], t2i == i) for i in range(len(img)) if np.any(t2i == i)])
    t2i_ranks = np.array([first_right(s[:, j], np.arange(len(img)) == t2i[j]) for j in range(len(txt))])
    out = {f"i2t_R@{k}": 100.0 * np.mean(i2t_ranks < k) for k in (1, 5, 10)}
    out.update({f"t2i_R@{k}": 100.0 * np.mean(t2i_ranks < k) for k in (1, 5, 10)})
    out["mean_recall"] = np.mean(list(out.values()))
    return out


def _monte_carlo(img, txt, t2i, trials, seed, ks=(1, 5, 10)):
    """Per-trial metrics with every tie broken by a fresh random permutation (lexsort on a random
    secondary key). Returns {metric: array over trials}."""
    rng = np.random.default_rng(seed)
    s = _unit(img) @ _unit(txt).T
    t2i = np.asarray(t2i)
    has = np.bincount(t2i, minlength=len(img)) > 0
    right_i2t = (t2i[None, :] == np.arange(len(img))[:, None])[has]
    s_i2t = s[has]
    right_t2i = np.arange(len(img))[None, :] == t2i[:, None]
    s_t2i = s.T
    out = collections.defaultdict(list)
    for _ in range(trials):
        for name, scores, right in (("i2t", s_i2t, right_i2t), ("t2i", s_t2i, right_t2i)):
            order = np.lexsort((rng.random(scores.shape), -scores), axis=-1)
            ranked = np.take_along_axis(right, order, axis=1)
            for k in ks:
                out[f"{name}_R@{k}"].append(100.0 * ranked[:, :k].any(axis=1).mean())
    return {k: np.array(v) for k, v in out.items()}


def _tied_case(seed=1):
    """Coarse features and duplicated captions across images: many exact ties."""
    rng = np.random.default_rng(seed)
    n_img = 30
    img = rng.integers(-1, 2, size=(n_img, 3)).astype(np.float64)
    img[img.sum(1) == 0, 0] = 1.0
    t2i = np.repeat(np.arange(n_img), 3)
    txt = rng.integers(-1, 2, size=(len(t2i), 3)).astype(np.float64)
    txt[np.abs(txt).sum(1) == 0, 1] = 1.0
    txt[3:6] = txt[0:3]                                # image 1's captions duplicate image 0's
    img[7] = img[6]                                    # two identical images
    return img, txt, t2i


def _tie_free_case(seed=0):
    rng = np.random.default_rng(seed)
    n_img, e = 40, 16
    t2i = np.repeat(np.arange(n_img), rng.integers(1, 7, size=n_img))   # 1..6 captions per image
    img = rng.normal(size=(n_img, e)).astype(np.float32)
    txt = (img[t2i] + 1.5 * rng.normal(size=(len(t2i), e))).astype(np.float32)
    return img, txt, t2i


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "expected"])
def test_all_rules_equal_clip_benchmark_on_tie_free_data(ties):
    img, txt, t2i = _tie_free_case()
    got = retrieval_metrics(img, txt, t2i, ties=ties)
    want = _clip_benchmark_recalls(img, txt, t2i)
    for key in KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-4), key
    assert got["mean_recall"] == pytest.approx(np.mean([want[k] for k in KEYS]), abs=1e-4)
    assert 0 < got["t2i_R@1"] < 100                    # the case is not degenerate


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_bound_rules_match_sorting_reference_on_tied_data(ties):
    img, txt, t2i = _tied_case()
    got = retrieval_metrics(img, txt, t2i, ties=ties)
    want = _sorting_reference(img, txt, t2i, ties)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_clip_benchmark_and_expected_lie_inside_the_bounds_on_tied_data():
    img, txt, t2i = _tied_case()
    bounds = retrieval_metric_bounds(img, txt, t2i)
    expected = retrieval_metrics(img, txt, t2i)
    topk = _clip_benchmark_recalls(img, txt, t2i)
    for key in KEYS:
        lo, hi = bounds[key]
        assert lo - 1e-9 <= topk[key] <= hi + 1e-9, key
        assert lo - 1e-9 <= expected[key] <= hi + 1e-9, key
    assert tie_sensitive(bounds)                       # the case has ties that matter


@pytest.mark.parametrize("seed", [1, 2])
def test_expected_rule_matches_monte_carlo_over_tie_orders(seed):
    img, txt, t2i = _tied_case(seed)
    exp = retrieval_metrics(img, txt, t2i, ties="expected")
    trials = 1500
    mc = _monte_carlo(img, txt, t2i, trials, seed=100 + seed)
    moved = 0
    for key in KEYS:
        se = mc[key].std(ddof=1) / np.sqrt(trials)
        assert abs(mc[key].mean() - exp[key]) <= 4.5 * se + 1e-9, (key, mc[key].mean(), exp[key], se)
        moved += se > 0
    assert moved >= 3                                  # ties really vary between trials


def test_expected_closed_form_hand_computed():
    # One image, 4 captions all scoring the same: 1 right (caption 0), 3 wrong.
    img = np.array([[1.0, 0.0]])
    txt = np.ones((4, 2))
    t2i = np.array([0, 0, 0, 0])
    # every caption is right -> always a hit
    assert retrieval_metrics(img, txt, t2i, ks=(1,))["i2t_R@1"] == 100.0
    # Two images with identical features, 2 captions each, all four captions identical:
    # image 0's query sees a tie group of w=2 wrong, m=2 right; P(hit@1) = 1 - 2/4 = 1/2.
    img = np.ones((2, 2))
    txt = np.ones((4, 2))
    t2i = np.array([0, 0, 1, 1])
    m = retrieval_metrics(img, txt, t2i, ks=(1, 2, 3))
    assert m["i2t_R@1"] == pytest.approx(50.0)
    # hit@2 fails only if both first places are wrong: 1 - (2/4)(1/3) = 5/6.
    assert m["i2t_R@2"] == pytest.approx(100 * 5 / 6)
    assert m["i2t_R@3"] == 100.0
    # t2i: each caption sees its image tied with one wrong image: 1/2 at k=1, 1 at k=2.
    assert m["t2i_R@1"] == pytest.approx(50.0) and m["t2i_R@2"] == 100.0


def test_collapsed_model_spans_the_whole_interval():
    img, txt, t2i = np.ones((4, 8)), np.ones((8, 8)), np.repeat(np.arange(4), 2)
    pess = retrieval_metrics(img, txt, t2i, ties="pessimistic")
    opt = retrieval_metrics(img, txt, t2i, ties="optimistic")
    exp = retrieval_metrics(img, txt, t2i)
    assert pess["i2t_R@1"] == 0.0 and pess["t2i_R@1"] == 0.0
    assert opt["mean_recall"] == 100.0
    assert exp["t2i_R@1"] == pytest.approx(25.0)       # 1 right image among 4 tied
    assert exp["i2t_R@1"] == pytest.approx(25.0)       # 2 right captions among 8 tied: 2/8


def test_retrieval_hand_computed_case():
    img = np.array([[1.0, 0.0], [0.0, 1.0]])
    txt = np.array([[0.2, 1.0],    # caption of image 0, but closer to image 1
                    [1.0, 0.1],    # caption of image 0
                    [1.0, 0.3]])   # caption of image 1, but closer to image 0
    t2i = np.array([0, 0, 1])
    m = retrieval_metrics(img, txt, t2i, ks=(1, 2))
    assert m["i2t_R@1"] == 50.0 and m["i2t_R@2"] == 100.0
    assert m["t2i_R@1"] == pytest.approx(100.0 / 3)
    assert m["t2i_R@2"] == 100.0
    assert m["mean_recall"] == pytest.approx(np.mean([50, 100, 100 / 3, 100]))


def test_retrieval_is_scale_invariant_and_skips_captionless_images():
    rng = np.random.default_rng(2)
    img = rng.normal(size=(5, 4))
    txt = rng.normal(size=(6, 4))
    t2i = np.array([0, 0, 1, 2, 2, 3])                 # image 4 has no caption: a distractor
    a = retrieval_metrics(img, txt, t2i)
    b = retrieval_metrics(img * 7.0, txt * 0.01, t2i)
    assert a == pytest.approx(b, abs=1e-12)
    assert a == pytest.approx(_sorting_reference(img, txt, t2i, "pessimistic"))


def test_report_carries_bounds_and_tie_counts():
    img, txt, t2i = _tied_case()
    metrics, details = retrieval_report(img, txt, t2i)
    assert metrics == retrieval_metrics(img, txt, t2i)
    assert details["ties"] == "expected"
    assert details["bounds"]["i2t_R@1"][0] <= metrics["i2t_R@1"] <= details["bounds"]["i2t_R@1"][1]
    assert details["tied_queries"]["t2i"] > 0 and details["num_captions"] == len(t2i)


def test_retrieval_rejects_bad_input():
    with pytest.raises(ValueError, match="text_to_image"):
        retrieval_metrics(np.ones((2, 3)), np.ones((3, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="ties"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 3)), [0, 1], ties="random")


def _hashed_bag_of_words(sentence, dim=512):
    """A deterministic caption embedding: md5-hashed word counts (identical text -> identical row)."""
    v = np.zeros(dim)
    for word in sentence.lower().replace(".", " ").split():
        v[int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    return v


def _ucm_test_oracle(shared_data):
    """UCM's test split: (images, captions, t2i, caption rows, "oracle" image rows that see their
    own captions: the sum of their rows, integer counts, so images with the same caption set get
    bit-identical rows in any caption order and tie exactly on every CPU)."""
    path = shared_data / "captions" / "ucm" / "dataset_ucm.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    images = [im for im in json.loads(path.read_text())["images"] if im["split"] == "test"]
    captions = [[s["raw"] for s in im["sentences"]] for im in images]
    t2i = np.repeat(np.arange(len(images)), [len(c) for c in captions])
    txt = np.stack([_hashed_bag_of_words(s) for c in captions for s in c])
    img = np.stack([txt[t2i == i].sum(0) for i in range(len(images))])
    return images, captions, t2i, txt, img


def test_ucm_repeated_captions_cap_the_pessimistic_rule(shared_data):
    images, captions, t2i, txt, img = _ucm_test_oracle(shared_data)
    # Independent count from the text: images whose whole caption set also belongs to another
    # test image get an identical embedding, so a wrong caption always ties their best one and
    # the pessimistic rule can never score them at R@1.
    sets = collections.Counter(tuple(sorted(c)) for c in captions)
    shared = sum(n for n in sets.values() if n > 1)
    cap = 100.0 * (len(images) - shared) / len(images)
    assert shared > len(images) // 2                   # UCM really repeats caption sets

    pess = retrieval_metrics(img, txt, t2i, ties="pessimistic")
    exp = retrieval_metrics(img, txt, t2i, ties="expected")
    opt = retrieval_metrics(img, txt, t2i, ties="optimistic")
    assert pess["i2t_R@1"] <= cap + 1e-9
    assert exp["i2t_R@1"] > cap + 5.0                  # the expected rule is not capped
    assert pess["i2t_R@1"] < exp["i2t_R@1"] < opt["i2t_R@1"]
    topk = _clip_benchmark_recalls(img, txt, t2i)
    assert pess["i2t_R@1"] - 1e-9 <= topk["i2t_R@1"] <= opt["i2t_R@1"] + 1e-9
    mc = _monte_carlo(img, txt, t2i, trials=200, seed=7, ks=(1,))["i2t_R@1"]
    assert abs(mc.mean() - exp["i2t_R@1"]) <= 4.5 * mc.std(ddof=1) / np.sqrt(len(mc)) + 1e-9


def test_caption_keys_make_repeated_captions_tie_despite_last_bit_noise():
    img, txt, t2i = _tie_free_case()
    txt = txt.astype(np.float64)
    first = np.flatnonzero(t2i == 0)[0]
    txt[first] = img[0]                                # image 0's best caption ...
    txt[t2i == 1] = txt[first]                         # ... repeated as all of image 1's captions
    keys = [tuple(row) for row in txt]                 # equal rows <-> equal "caption text"
    noisy = txt * (1 + 1e-12 * np.random.default_rng(0).normal(size=txt.shape))
    assert retrieval_metrics(img, noisy, t2i, caption_keys=keys) == pytest.approx(
        retrieval_metrics(img, txt, t2i), abs=1e-12)
    assert retrieval_metric_bounds(img, noisy, t2i, caption_keys=keys) == retrieval_metric_bounds(img, txt, t2i)
    assert tie_sensitive(retrieval_metric_bounds(img, txt, t2i))    # the repeats do tie


def _stable_recalls(img, txt, t2i, ks=(1, 5, 10)):
    """clip_benchmark's ``recall_at_k`` (zeroshot_retrieval.py lines 95-116) and RemoteCLIP's
    ``(recall > 0).mean() * 100`` (retrieval.py lines 170-177), re-derived in numpy with a stable
    top-k: among equal scores the lower index comes first."""
    # Equal rows scored once: a GEMM may give equal columns scores a last bit apart (another
    # kernel for the edge block), which would order exact ties by chance, CPU by CPU.
    txt_u, txt_of = np.unique(_unit(txt), axis=0, return_inverse=True)
    img_u, img_of = np.unique(_unit(img), axis=0, return_inverse=True)
    scores = (txt_u @ img_u.T)[txt_of.reshape(-1)][:, img_of.reshape(-1)]   # (texts, images)
    positive = np.zeros(scores.shape, bool)
    positive[np.arange(len(scores)), np.asarray(t2i)] = True

    def recall_at_k(s, pos, k):
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        true_positive = np.take_along_axis(pos, top, axis=1).sum(axis=1)
        return true_positive / pos.sum(axis=1)

    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = (recall_at_k(scores.T, positive.T, k) > 0).mean() * 100
    for k in ks:
        out[f"t2i_R@{k}"] = (recall_at_k(scores, positive, k) > 0).mean() * 100
    return out


def _exactly_tied_case(seed):
    """Unit features with entries +-0.5 (norm exactly 1, dot products exact in any summation
    order): only 16 distinct rows, so ties everywhere; captions of some images repeated."""
    rng = np.random.default_rng(seed)
    n_img = 40
    img = 0.5 * rng.choice([-1.0, 1.0], size=(n_img, 4))
    t2i = np.repeat(np.arange(n_img), rng.integers(1, 6, size=n_img))
    txt = 0.5 * rng.choice([-1.0, 1.0], size=(len(t2i), 4))
    txt[t2i == 1] = txt[t2i == 0][0]                   # image 1 reuses one of image 0's captions
    return img, txt, t2i


def _index_rule_is_a_stable_topk(img, txt, t2i) -> dict:
    """Asserts ties="index" gives recall@k of a stable lowest-index top-k; returns its metrics."""
    got = retrieval_metrics(img, txt, t2i, ties="index")
    want = _stable_recalls(img, txt, t2i)
    for key in KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    return got


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_rule_equals_recall_at_k_with_a_stable_topk(seed):
    img, txt, t2i = _exactly_tied_case(seed)
    got = _index_rule_is_a_stable_topk(img, txt, t2i)
    bounds = retrieval_metric_bounds(img, txt, t2i)
    assert all(bounds[k][0] - 1e-9 <= got[k] <= bounds[k][1] + 1e-9 for k in KEYS)
    # The order matters: reversing every list moves the numbers (so the test can fail).
    rev_img, rev_txt = img[::-1], txt[::-1]
    rev_t2i = (len(img) - 1 - t2i)[::-1]
    reversed_ = retrieval_metrics(rev_img, rev_txt, rev_t2i, ties="index")
    want = _stable_recalls(rev_img, rev_txt, rev_t2i)
    assert all(reversed_[k] == pytest.approx(want[k], abs=1e-9) for k in KEYS)
    assert any(abs(reversed_[k] - got[k]) > 1e-9 for k in KEYS)


def _json_dataset_order(images):
    """RemoteCLIP's JsonDataset (retrieval.py lines 80-102), re-derived: one row per test sentence
    in file order, then one row per unique file name (np.unique order) holding its captions."""
    rows = [(im["filename"], s["raw"]) for im in images for s in im["sentences"]]
    names = [r[0] for r in rows]
    unique, first = np.unique(names, return_index=True)
    if len(unique) == len(names):
        return names, [[r[1]] for r in rows]
    return ([names[i] for i in first],
            [[caption for name, caption in rows if name == names[i]] for i in first])


def test_reference_order_is_retrieval_pys_load_order():
    names = ["9.tif", "10.tif", "1.tif", "100.tif", "2.tif"]
    images = [{"filename": n, "sentences": [{"raw": f"{n} caption {j}"} for j in range(1 + i % 3)]}
              for i, n in enumerate(names)]
    t2i = np.repeat(np.arange(len(names)), [len(im["sentences"]) for im in images])
    captions = [s["raw"] for im in images for s in im["sentences"]]
    image_order, caption_order = reference_order(names, t2i)
    want_names, want_captions = _json_dataset_order(images)
    assert [names[i] for i in image_order] == want_names == ["1.tif", "10.tif", "100.tif", "2.tif", "9.tif"]
    assert [captions[j] for j in caption_order] == [c for caps in want_captions for c in caps]
    # One caption per image: JsonDataset keeps the file order.
    single = [{"filename": n, "sentences": [{"raw": n}]} for n in names]
    image_order, caption_order = reference_order(names, np.arange(len(names)))
    assert [names[i] for i in image_order] == _json_dataset_order(single)[0] == names
    assert list(caption_order) == list(range(len(names)))


def test_ucm_index_rule_in_the_reference_order(shared_data):
    images, _, t2i, txt, img = _ucm_test_oracle(shared_data)
    image_order, caption_order = reference_order([im["filename"] for im in images], t2i)
    rank = np.argsort(image_order)
    img_r, txt_r, t2i_r = img[image_order], txt[caption_order], rank[t2i[caption_order]]
    index = _index_rule_is_a_stable_topk(img_r, txt_r, t2i_r)
    bounds = retrieval_metric_bounds(img, txt, t2i)
    assert all(bounds[k][0] - 1e-9 <= index[k] <= bounds[k][1] + 1e-9 for k in KEYS)
    # The order is the reference's, not the file's: UCM's test images are not in name order.
    assert list(image_order) != sorted(image_order)
