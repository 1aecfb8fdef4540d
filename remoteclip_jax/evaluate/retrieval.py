"""Image-text retrieval recall, as the RemoteCLIP paper reports it (RSITMD, RSICD, UCM, Sydney).

Conventions (fixed here, tested against a float64 numpy reference in tests/test_eval_retrieval.py):

* Features are L2-normalised inside (open_clip's `x / max(|x|, 1e-12)`), similarity is the dot
  product, computed in float64 so exact ties stay exact ties.
* image->text R@k: an image counts when *any* of its captions is among the k captions it scores
  highest. text->image R@k: a caption counts when its own image is among the k highest images.
* Ties are **pessimistic** by default: a wrong item that scores *exactly equal* to the right one
  ranks ahead of it. rank = #{wrong items with score >= best right score}; a hit at k means
  rank < k. A collapsed model (all features equal) therefore scores ~0, not 100. Pass
  ``ties="optimistic"`` for rank = #{wrong items with score > best right score}.
* Images with no captions are distractors for text->image and are left out of image->text.
* Results are percentages; ``mean_recall`` is the mean of the six recalls.
"""
from __future__ import annotations

import numpy as np

KS = (1, 5, 10)
METRIC_NAMES = tuple(f"i2t_R@{k}" for k in KS) + tuple(f"t2i_R@{k}" for k in KS) + ("mean_recall",)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float64, with open_clip's 1e-12 floor on the norm."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def retrieval_ranks(image_features, text_features, text_to_image, ties: str = "pessimistic",
                    chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks of the right answer for every image query and every caption query.

    Args:
        image_features: (N_img, E) array, any scale.
        text_features: (N_txt, E) array, any scale.
        text_to_image: (N_txt,) ints, index of caption j's image.
        ties: "pessimistic" (ties with wrong items count against) or "optimistic".
        chunk: rows of the similarity matrix computed at once (bounds memory).

    Returns:
        (i2t_ranks, t2i_ranks): i2t_ranks has one entry per image that has at least one caption
        (images without captions are skipped), t2i_ranks one entry per caption.
    """
    if ties not in ("pessimistic", "optimistic"):
        raise ValueError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
    img = l2_normalize(image_features)
    txt = l2_normalize(text_features)
    t2i = np.asarray(text_to_image, dtype=np.int64).reshape(-1)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"features must be 2-D with equal widths, got {img.shape} and {txt.shape}")
    if t2i.shape[0] != txt.shape[0]:
        raise ValueError(f"text_to_image has {t2i.shape[0]} entries for {txt.shape[0]} captions")
    if t2i.size and (t2i.min() < 0 or t2i.max() >= img.shape[0]):
        raise ValueError(f"text_to_image must index images 0..{img.shape[0] - 1}")
    ahead = np.greater_equal if ties == "pessimistic" else np.greater
    n_img, n_txt = img.shape[0], txt.shape[0]
    has_caption = np.bincount(t2i, minlength=n_img) > 0

    # text -> image: column j of S = img @ txt.T; the right image is row t2i[j].
    t2i_ranks = np.empty(n_txt, dtype=np.int64)
    for s in range(0, n_txt, chunk):
        sims = txt[s:s + chunk] @ img.T                       # (c, N_img)
        right = t2i[s:s + chunk]
        true = sims[np.arange(len(right)), right][:, None]
        wrong = ahead(sims, true)
        wrong[np.arange(len(right)), right] = False
        t2i_ranks[s:s + chunk] = wrong.sum(axis=1)

    # image -> text: the best-scoring of the image's own captions against all other captions.
    i2t_ranks = []
    for s in range(0, n_img, chunk):
        sims = img[s:s + chunk] @ txt.T                       # (c, N_txt)
        rows = np.arange(s, min(s + chunk, n_img))
        own = t2i[None, :] == rows[:, None]                   # (c, N_txt)
        best = np.where(own, sims, -np.inf).max(axis=1, keepdims=True)
        wrong = ahead(sims, best) & ~own
        i2t_ranks.append(wrong.sum(axis=1)[has_caption[rows]])
    return np.concatenate(i2t_ranks) if i2t_ranks else np.zeros(0, np.int64), t2i_ranks


def retrieval_metrics(image_features, text_features, text_to_image, ties: str = "pessimistic",
                      ks=KS) -> dict[str, float]:
    """Recall@k in both directions and their mean, in percent.

    Args:
        image_features: (N_img, E) image embeddings (normalised inside).
        text_features: (N_txt, E) caption embeddings (normalised inside).
        text_to_image: (N_txt,) index of caption j's image; any number of captions per image.
        ties: tie convention, see the module docstring (default pessimistic).
        ks: recall cut-offs (default 1, 5, 10).

    Returns:
        {"i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mean_recall"}.
    """
    i2t, t2i = retrieval_ranks(image_features, text_features, text_to_image, ties=ties)
    if i2t.size == 0 or t2i.size == 0:
        raise ValueError("retrieval needs at least one image with a caption")
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float(100.0 * np.mean(i2t < k))
    for k in ks:
        out[f"t2i_R@{k}"] = float(100.0 * np.mean(t2i < k))
    out["mean_recall"] = float(np.mean([out[f"i2t_R@{k}"] for k in ks] + [out[f"t2i_R@{k}"] for k in ks]))
    return out
