"""Evaluation figures (matplotlib, Agg backend): confusion matrices, the few-shot curve, the
RemoteCount top-k curve and metrics against WiSE-FT's alpha."""
from __future__ import annotations

import numpy as np

from remoteclip_jax.files import atomic_write


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _save_line_plot(plt, fig, ax, path, title):
    """Title, grid and legend of a line plot, then write it as PNG and free the figure."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, None) as tmp:  # makes the folder; a bucket gets one put
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_confusion(confusion, labels, path, title: str = ""):
    """Row-normalised confusion matrix (true rows, predicted columns) saved as PNG."""
    plt = _plt()
    conf = np.asarray(confusion, np.float64)
    rows = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    n = len(labels)
    size = max(4.0, 0.28 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_write(path, None) as tmp:  # makes the folder; a bucket gets one put
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_fewshot(curves: dict, path, title: str = "few-shot linear probe"):
    """One line per dataset: top-1 mean (± std band) against shots per class (log2 axis)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, res in sorted(curves.items()):
        ks = sorted(int(k) for k in res)
        mean = np.array([res[k]["mean"] for k in ks])
        std = np.array([res[k]["std"] for k in ks])
        ax.plot(ks, mean, marker="o", label=name)
        ax.fill_between(ks, mean - std, mean + std, alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("top-1 accuracy (%)")
    _save_line_plot(plt, fig, ax, path, title)


def plot_count_topk(curves: dict, path, title: str = "RemoteCount top-k accuracy"):
    """One line per model or dataset: top-k accuracy (%) against k = 1..10.

    Args:
        curves: {name: {k: accuracy %}} (``count_topk_curve`` or ``count_report``'s "topk_curve").
        path: PNG to write.
        title: figure title.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in sorted(curves.items()):
        ks = sorted(int(k) for k in curve)
        ax.plot(ks, [curve[k] if k in curve else curve[str(k)] for k in ks], marker="o", label=name)
    ax.set_xticks(range(1, 11))
    ax.set_xlabel("k (true count among the k best captions)")
    ax.set_ylabel("top-k accuracy (%)")
    ax.set_ylim(0, 100)
    _save_line_plot(plt, fig, ax, path, title)


def plot_against_alpha(curves: dict, path, title: str = "WiSE-FT"):
    """One line per metric: its value against the interpolation weight alpha (0 = zero-shot,
    1 = fine-tuned).

    Args:
        curves: {metric name: {alpha: value}}.
        path: PNG to write.
        title: figure title.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in sorted(curves.items()):
        alphas = sorted(curve)
        ax.plot(alphas, [curve[a] for a in alphas], marker="o", label=name)
    ax.set_xlabel("alpha (0 = zero-shot, 1 = fine-tuned)")
    ax.set_ylabel("metric (%)")
    _save_line_plot(plt, fig, ax, path, title)
