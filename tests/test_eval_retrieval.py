"""retrieval_metrics against a float64 numpy reference (sorting-based) and hand-computed cases."""
import numpy as np
import pytest

from remoteclip_jax.evaluate import retrieval_metrics


def _reference(img, txt, t2i, ties):
    """Sort every query's candidates (score descending; ties: wrong first if pessimistic) and
    take the position of the first right one. Written independently of retrieval.py."""
    img = np.asarray(img, np.float64)
    txt = np.asarray(txt, np.float64)
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    s = img @ txt.T
    t2i = np.asarray(t2i)

    def first_right(scores, right):
        tiebreak = right.astype(int) if ties == "pessimistic" else (~right).astype(int)
        order = np.lexsort((tiebreak, -scores))
        return int(np.flatnonzero(right[order])[0])

    i2t_ranks = [first_right(s[i], t2i == i) for i in range(len(img)) if np.any(t2i == i)]
    t2i_ranks = [first_right(s[:, j], np.arange(len(img)) == t2i[j]) for j in range(len(txt))]
    out = {}
    for k in (1, 5, 10):
        out[f"i2t_R@{k}"] = 100.0 * np.mean(np.array(i2t_ranks) < k)
    for k in (1, 5, 10):
        out[f"t2i_R@{k}"] = 100.0 * np.mean(np.array(t2i_ranks) < k)
    out["mean_recall"] = np.mean(list(out.values()))
    return out


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_retrieval_matches_float64_reference_random(ties):
    rng = np.random.default_rng(0)
    n_img, e = 40, 16
    counts = rng.integers(1, 7, size=n_img)          # 1..6 captions per image
    t2i = np.repeat(np.arange(n_img), counts)
    img = rng.normal(size=(n_img, e)).astype(np.float32)
    txt = (img[t2i] + 1.5 * rng.normal(size=(len(t2i), e))).astype(np.float32)
    got = retrieval_metrics(img, txt, t2i, ties=ties)
    want = _reference(img, txt, t2i, ties)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    assert 0 < got["t2i_R@1"] < 100  # the case is not degenerate


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_retrieval_ties_match_reference(ties):
    # Coarsely quantised features and duplicated captions across images produce many exact ties.
    rng = np.random.default_rng(1)
    n_img = 30
    img = rng.integers(-1, 2, size=(n_img, 3)).astype(np.float64)
    img[img.sum(1) == 0, 0] = 1.0
    t2i = np.repeat(np.arange(n_img), 3)
    txt = rng.integers(-1, 2, size=(len(t2i), 3)).astype(np.float64)
    txt[np.abs(txt).sum(1) == 0, 1] = 1.0
    txt[3:6] = txt[0:3]                                # image 1's captions duplicate image 0's
    got = retrieval_metrics(img, txt, t2i, ties=ties)
    want = _reference(img, txt, t2i, ties)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_tie_conventions_differ_on_a_collapsed_model():
    img = np.ones((4, 8))
    txt = np.ones((8, 8))
    t2i = np.repeat(np.arange(4), 2)
    pess = retrieval_metrics(img, txt, t2i)
    opt = retrieval_metrics(img, txt, t2i, ties="optimistic")
    assert pess["i2t_R@1"] == 0.0 and pess["t2i_R@1"] == 0.0
    assert opt["mean_recall"] == 100.0


def test_retrieval_hand_computed_case():
    # 2 images, 3 captions. Image 0 = e0, image 1 = e1.
    img = np.array([[1.0, 0.0], [0.0, 1.0]])
    txt = np.array([[0.2, 1.0],    # caption of image 0, but closer to image 1
                    [1.0, 0.1],    # caption of image 0
                    [1.0, 0.3]])   # caption of image 1, but closer to image 0
    t2i = np.array([0, 0, 1])
    m = retrieval_metrics(img, txt, t2i, ks=(1, 2))
    # i2t: image 0 ranks captions [1 (own), 2, 0] -> hit@1. image 1 ranks [0, 2 (own), 1] -> rank 1.
    assert m["i2t_R@1"] == 50.0 and m["i2t_R@2"] == 100.0
    # t2i: caption 0 -> image 1 first (miss@1), caption 1 -> image 0 (hit), caption 2 -> image 0 (miss).
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
    assert a == b
    assert a == pytest.approx(_reference(img, txt, t2i, "pessimistic"))


def test_retrieval_rejects_bad_indices():
    with pytest.raises(ValueError, match="text_to_image"):
        retrieval_metrics(np.ones((2, 3)), np.ones((3, 3)), [0, 1, 2])
