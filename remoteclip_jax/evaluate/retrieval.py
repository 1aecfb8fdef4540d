"""Image-text retrieval recall, as the RemoteCLIP paper reports it (RSITMD, RSICD, UCM, Sydney).

What is counted (the same as the reference evaluation: RemoteCLIP's ``retrieval.py``, 199 lines,
whose metrics are lines 158-182, calls clip_benchmark's ``recall_at_k``,
``clip_benchmark/metrics/zeroshot_retrieval.py`` lines 95-116, and keeps queries whose recall is
> 0; line 179 averages the six recalls):

* Features are L2-normalised (``x / max(|x|, 1e-12)``, as ``F.normalize``), the score is the dot
  product, computed here in float64.
* image->text R@k: an image counts when *any* of its captions is among the k captions it scores
  highest. text->image R@k: a caption counts when its image is among its k highest images.
* Results are percentages; ``mean_recall`` is the mean of the six recalls.
* Images with no captions are distractors for text->image and are left out of image->text (the
  reference never has such images: every image it loads comes with its captions).

Exactly tied scores. UCM and Sydney repeat the same caption for many images, so identical captions
give identical embeddings and exact ties are common there. The reference ranks with
``torch.topk``, whose documentation promises no order among tied values (and whose CUDA kernel is
not lowest-index-first in general: pytorch/pytorch#127196 shows ``[3, 2, 3, 2, 1, 1].topk(2)``
returning indices ``[2, 0]`` on CUDA). Four rules, selected with ``ties``:

* ``"index"``: a stable top-k, lowest index first among tied items (TensorFlow's ``top_k`` rule): a
  wrong item tied with the best right one ranks before it when its index is lower. With the items
  in the reference's load order (`reference_order`: images sorted by file name, as ``np.unique``
  sorts them in its ``JsonDataset.duplicate``, lines 88-102; each image's captions in file order)
  this is the ranking the reference's code gives under a stable top-k; the evaluator uses that
  order for ``ties: index``.
* ``"pessimistic"``: every wrong item tied with the best right one ranks before it.
* ``"optimistic"``: every right item ranks before the wrong items it ties with.
* ``"expected"`` (default): the exact expectation over uniformly random orders of each tie group:
  what a load order unrelated to the content gives on average. For a query with ``a`` wrong items
  strictly above its best right score and a tie group holding ``w`` wrong and ``m`` right items,
  set ``j = k - a``; the hit probability is 0 when ``j <= 0``, 1 when ``j > w``, otherwise
  ``1 - C(w, j) / C(w + m, j)`` (the chance that the first ``j`` places of the shuffled group are
  not all wrong).

Any one tie order reproduces a score between the pessimistic and the optimistic one;
``retrieval_metric_bounds`` returns that interval, so a results table can show when the rule
matters. Identical feature rows are scored once and shared, so identical embeddings always tie
exactly, whatever the matrix-product kernel does with row position. An encoder run in batches can
still give the same caption slightly different features in different batch positions (last-bit
float differences); pass ``caption_keys`` and captions with equal keys share one embedding, the
first one's. The evaluator keys captions on their token ids: the reference's captions that differ
only in case (it capitalises them, and the tokenizer lower-cases) are one text to the model.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from remoteclip_jax.errors import DataError, check_choice
from remoteclip_jax.evaluate.task import Task
from remoteclip_jax.prompts import l2_normalize

KS = (1, 5, 10)
TIE_RULES = ("pessimistic", "optimistic", "expected", "index")
SCORE_TIE_RULES = TIE_RULES[:3]  # "index" needs a reference load order: retrieval only


@dataclasses.dataclass(frozen=True)
class TieStats:
    """Where the best right answer of each query stands, ties kept apart.

    Attributes:
        ahead: wrong items scoring strictly more than the query's best right item.
        tied_wrong: wrong items scoring exactly as much as it.
        tied_right: right items scoring exactly as much as it (at least 1).
        tied_wrong_before: of ``tied_wrong``, those with a lower candidate index than the first
            tied right item (what a lowest-index-first top-k ranks before it); None when unknown.
    """
    ahead: np.ndarray
    tied_wrong: np.ndarray
    tied_right: np.ndarray
    tied_wrong_before: np.ndarray | None = None


def _check_ties(ties: str):
    check_choice("ties", ties, TIE_RULES)


def hit_probability(stats: TieStats, k: int, ties: str = "expected") -> np.ndarray:
    """Per query, the probability that a right item is within the top ``k``.

    Args:
        stats: the queries' ``TieStats``.
        k: cut-off (>= 1).
        ties: "pessimistic", "optimistic" or "index" (0/1 values) or "expected" (exact
            expectation over uniformly random orders of each tie group, see the module docstring).

    Returns:
        float64 array, one value in [0, 1] per query.
    """
    _check_ties(ties)
    a = np.asarray(stats.ahead, np.int64)
    w = np.asarray(stats.tied_wrong, np.int64)
    m = np.asarray(stats.tied_right, np.int64)
    if ties == "pessimistic":
        return (a + w < k).astype(np.float64)
    if ties == "optimistic":
        return (a < k).astype(np.float64)
    if ties == "index":
        if stats.tied_wrong_before is None:
            raise ValueError("ties='index' needs TieStats.tied_wrong_before")
        return (a + np.asarray(stats.tied_wrong_before, np.int64) < k).astype(np.float64)
    j = k - a                                   # places left for the tie group inside the top k
    # P(the first j of the shuffled group are all wrong) = prod_{i<j} (w - i) / (w + m - i).
    all_wrong = np.ones(a.shape, np.float64)
    for i in range(int(k)):
        use = (i < j) & (i < w)
        all_wrong = np.where(use, all_wrong * (w - i) / np.maximum(w + m - i, 1), all_wrong)
    p = 1.0 - all_wrong
    p = np.where(j > w, 1.0, p)                 # the group cannot fill the remaining places
    return np.where(j <= 0, 0.0, p)


def _validated(image_features, text_features, text_to_image):
    img = l2_normalize(image_features)
    txt = l2_normalize(text_features)
    t2i = np.asarray(text_to_image, dtype=np.int64).reshape(-1)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"features must be 2-D with equal widths, got {img.shape} and {txt.shape}")
    if t2i.shape[0] != txt.shape[0]:
        raise ValueError(f"text_to_image has {t2i.shape[0]} entries for {txt.shape[0]} captions")
    if t2i.size and (t2i.min() < 0 or t2i.max() >= img.shape[0]):
        raise ValueError(f"text_to_image must index images 0..{img.shape[0] - 1}")
    return img, txt, t2i


def _row_stats(sims: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, ...]:
    best = np.where(right, sims, -np.inf).max(axis=1, keepdims=True)
    above, equal = sims > best, sims == best
    tied_right, tied_wrong = equal & right, equal & ~right
    first_right = tied_right.argmax(axis=1)[:, None]
    before = np.arange(sims.shape[1])[None, :] < first_right
    return (above & ~right).sum(1), tied_wrong.sum(1), tied_right.sum(1), (tied_wrong & before).sum(1)


def tie_stats_from_scores(scores, right) -> TieStats:
    """`TieStats` of score rows (queries x candidates) given a same-shape bool mask of right
    candidates; every row needs at least one right candidate."""
    scores = np.asarray(scores)
    right = np.asarray(right, bool)
    if not right.any(axis=1).all():
        raise ValueError("every query needs at least one right candidate")
    return TieStats(*(np.asarray(x, np.int64) for x in _row_stats(scores, right)))


def reference_order(image_names, text_to_image) -> tuple[np.ndarray, np.ndarray]:
    """The order RemoteCLIP's ``retrieval.py`` holds images and captions in (for ``ties="index"``).

    Its ``JsonDataset`` reads one row per caption, in file order, then (``duplicate``, lines
    88-102, run when some image has several captions) keeps one row per image, in the order
    ``np.unique`` sorts the file names, with that image's captions in file order.

    Args:
        image_names: (N_img,) image file names, as the caption file's ``filename`` fields.
        text_to_image: (N_txt,) index of each caption's image; captions in file order.

    Returns:
        (image_order, caption_order): index arrays; ``features[image_order]`` and
        ``text_features[caption_order]`` are in the reference's order (the caption-to-image
        map becomes ``inverse(image_order)[text_to_image[caption_order]]``).
    """
    names = np.asarray([str(n) for n in image_names])
    t2i = np.asarray(text_to_image, np.int64).reshape(-1)
    rows = names[t2i]
    if len(np.unique(rows)) != len(rows):              # duplicate() regroups by sorted name
        image_order = np.argsort(names, kind="stable")
    else:                                             # one row per image: file order kept
        image_order = np.arange(len(names))
    rank = np.empty(len(names), np.int64)
    rank[image_order] = np.arange(len(names))
    return image_order, np.argsort(rank[t2i], kind="stable")


def share_rows(features, keys) -> np.ndarray:
    """``features`` with every row replaced by the row of the first entry holding the same key."""
    features = np.asarray(features)
    if keys is None:
        return features
    keys = list(keys)
    if len(keys) != len(features):
        raise ValueError(f"{len(keys)} keys for {len(features)} feature rows")
    first: dict = {}
    index = np.array([first.setdefault(k, i) for i, k in enumerate(keys)], np.int64)
    return features[index]


def tie_statistics(image_features, text_features, text_to_image, chunk: int = 1024,
                   caption_keys=None) -> tuple[TieStats, TieStats]:
    """Tie-aware standing of the right answer for every image query and every caption query.

    Args:
        image_features: (N_img, E) array, any scale.
        text_features: (N_txt, E) array, any scale.
        text_to_image: (N_txt,) ints, index of caption j's image.
        chunk: query rows scored at once (bounds memory).
        caption_keys: optional (N_txt,) hashables; captions with equal keys share one embedding.

    Returns:
        (i2t, t2i): ``TieStats`` with one entry per image that has a caption (in image order),
        and one per caption.
    """
    img, txt, t2i = _validated(image_features, share_rows(text_features, caption_keys), text_to_image)
    n_img, n_txt = img.shape[0], txt.shape[0]
    # Score each distinct row once, so equal features give bit-equal scores.
    img_u, img_of = np.unique(img, axis=0, return_inverse=True)
    txt_u, txt_of = np.unique(txt, axis=0, return_inverse=True)
    img_of, txt_of = img_of.reshape(-1), txt_of.reshape(-1)
    sims_u = img_u @ txt_u.T                                   # (U_img, U_txt)

    t2i_parts = []
    for s in range(0, n_txt, chunk):
        rows = np.arange(s, min(s + chunk, n_txt))
        sims = sims_u[:, txt_of[rows]].T[:, img_of]            # (c, N_img)
        right = np.arange(n_img)[None, :] == t2i[rows][:, None]
        t2i_parts.append(_row_stats(sims, right))

    has_caption = np.bincount(t2i, minlength=n_img) > 0
    i2t_parts = []
    for s in range(0, n_img, chunk):
        rows = np.arange(s, min(s + chunk, n_img))
        rows = rows[has_caption[rows]]
        sims = sims_u[img_of[rows]][:, txt_of]                 # (c, N_txt)
        right = t2i[None, :] == rows[:, None]
        i2t_parts.append(_row_stats(sims, right))

    def join(parts):
        if not parts:
            return TieStats(*(np.zeros(0, np.int64),) * 4)
        return TieStats(*(np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(4)))
    return join(i2t_parts), join(t2i_parts)


def _metrics_from_stats(i2t: TieStats, t2i: TieStats, ties: str, ks) -> dict[str, float]:
    if i2t.ahead.size == 0 or t2i.ahead.size == 0:
        raise ValueError("retrieval needs at least one image with a caption")
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float(100.0 * hit_probability(i2t, k, ties).mean())
    for k in ks:
        out[f"t2i_R@{k}"] = float(100.0 * hit_probability(t2i, k, ties).mean())
    out["mean_recall"] = float(np.mean([out[f"i2t_R@{k}"] for k in ks] + [out[f"t2i_R@{k}"] for k in ks]))
    return out


def retrieval_metrics(image_features, text_features, text_to_image, ties: str = "expected",
                      ks=KS, caption_keys=None) -> dict[str, float]:
    """Recall@k in both directions and their mean, in percent.

    Args:
        image_features: (N_img, E) image embeddings (normalised inside).
        text_features: (N_txt, E) caption embeddings (normalised inside).
        text_to_image: (N_txt,) index of caption j's image; any number of captions per image.
        ties: "expected" (default), "pessimistic", "optimistic" or "index" (a stable top-k,
            lowest index first, over the items in the order given); see the module docstring.
        ks: recall cut-offs (default 1, 5, 10).
        caption_keys: optional (N_txt,) keys, e.g. the captions' token ids: equal keys share
            the first one's embedding, so repeated captions tie exactly.

    Returns:
        {"i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mean_recall"}.
    """
    _check_ties(ties)
    i2t, t2i = tie_statistics(image_features, text_features, text_to_image, caption_keys=caption_keys)
    return _metrics_from_stats(i2t, t2i, ties, ks)


def retrieval_metric_bounds(image_features, text_features, text_to_image, ks=KS,
                            caption_keys=None) -> dict[str, tuple[float, float]]:
    """The interval every tie order lands in: {metric: (pessimistic, optimistic)}, in percent.
    Arguments as for ``retrieval_metrics``."""
    i2t, t2i = tie_statistics(image_features, text_features, text_to_image, caption_keys=caption_keys)
    lo = _metrics_from_stats(i2t, t2i, "pessimistic", ks)
    hi = _metrics_from_stats(i2t, t2i, "optimistic", ks)
    return {name: (lo[name], hi[name]) for name in lo}


def tie_sensitive(bounds: dict[str, tuple[float, float]], tolerance: float = 1e-9) -> list[str]:
    """Names of the metrics whose value depends on the tie rule (bounds differ)."""
    return [name for name, (lo, hi) in bounds.items() if hi - lo > tolerance]


def retrieval_report(image_features, text_features, text_to_image, ties: str = "expected",
                     ks=KS, caption_keys=None) -> tuple[dict[str, float], dict]:
    """Metrics under one tie rule plus what a results table needs to show tie sensitivity.

    Args:
        image_features, text_features, text_to_image, caption_keys: as for ``retrieval_metrics``.
        ties: rule for the returned metrics.
        ks: recall cut-offs.

    Returns:
        (metrics, details). ``metrics`` is ``retrieval_metrics``'s dict. ``details`` holds
        "ties" (the rule), "bounds" {metric: [pessimistic, optimistic]}, "tie_sensitive" (metrics
        whose bounds differ), "tied_queries" {"i2t": n, "t2i": n} (queries whose best right item
        ties a wrong one), "num_images", "num_captions".
    """
    _check_ties(ties)
    i2t, t2i = tie_statistics(image_features, text_features, text_to_image, caption_keys=caption_keys)
    metrics = _metrics_from_stats(i2t, t2i, ties, ks)
    lo = _metrics_from_stats(i2t, t2i, "pessimistic", ks)
    hi = _metrics_from_stats(i2t, t2i, "optimistic", ks)
    bounds = {name: (lo[name], hi[name]) for name in lo}
    details = {
        "ties": ties,
        "bounds": {name: [a, b] for name, (a, b) in bounds.items()},
        "tie_sensitive": tie_sensitive(bounds),
        "tied_queries": {"i2t": int(np.sum(i2t.tied_wrong > 0)), "t2i": int(np.sum(t2i.tied_wrong > 0))},
        "num_images": int(np.asarray(image_features).shape[0]),
        "num_captions": int(np.asarray(text_features).shape[0]),
    }
    return metrics, details


# --- the retrieval task ----------------------------------------------------------------------------

# "ties": how exactly tied scores rank (retrieval, zeroshot, count): "expected" (the mean over
# random tie orders; torch.topk, which the reference code uses, promises no tie order),
# "pessimistic" (a tied wrong item first), "optimistic", or (retrieval only) "index": lowest
# index first, images sorted by file name and captions in file order, as RemoteCLIP's
# retrieval.py loads them (`reference_order`).
TIES_KEY = {"ties": "expected"}


def _prepare(entry, ds, tokenize) -> dict:
    """What every evaluation of the entry reuses: tokens, the caption -> image index, the caption
    keys and, under ties "index", the reference's load order (computed once, not per run)."""
    captions, t2i = [], []
    for i, caps in enumerate(ds.captions):
        captions += caps
        t2i += [i] * len(caps)
    if not captions:
        raise DataError(f"{ds.name}: no captions to retrieve")
    tokens, t2i = tokenize(captions), np.asarray(t2i)
    # Captions with the same tokens (UCM and Sydney repeat many; case is lost in tokenising)
    # share one embedding, so they tie exactly.
    keys = [row.tobytes() for row in tokens]
    prep = {"tokens": tokens, "t2i": t2i, "keys": keys, "order": None}
    if entry["ties"] == "index":  # lowest index first: rank in the reference's load order
        image_order, caption_order = reference_order([os.path.basename(k) for k in ds.keys], t2i)
        prep.update(order=(image_order, caption_order),
                    t2i=np.argsort(image_order)[t2i[caption_order]],
                    keys=[keys[i] for i in caption_order])
    return prep


def _run(ev, variables, entry, prep, image_features):
    text = ev.text_features(variables, prep["tokens"])
    if prep["order"] is not None:
        image_order, caption_order = prep["order"]
        image_features, text = image_features[image_order], text[caption_order]
    return retrieval_report(image_features, text, prep["t2i"], ties=entry["ties"],
                            caption_keys=prep["keys"])


TASKS = [Task("retrieval", TIES_KEY, _prepare, _run, choices={"ties": TIE_RULES})]
