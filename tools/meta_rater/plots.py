"""Figures a person reads next to a Meta-rater or quality-signals result (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _plt():  # noqa: ANN202 - matplotlib imported lazily
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def weights_bar(names: Sequence[str], weights: np.ndarray, title: str = "learned signal weights"):  # noqa: ANN201
    plt = _plt()
    order = np.argsort(-np.asarray(weights), kind="stable")
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    ax.barh([names[i] for i in order][::-1], np.asarray(weights)[order][::-1], color="#3b6ea5")
    ax.set_xlabel("weight (sums to 1)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def fit_scatter(measured: np.ndarray, predicted: np.ndarray, spearman: float, name: str):  # noqa: ANN201
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.scatter(measured, predicted, s=14, alpha=0.8)
    lo, hi = float(min(measured.min(), predicted.min())), float(max(measured.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
    ax.set_xlabel("measured proxy loss")
    ax.set_ylabel(f"predicted ({name}, out-of-fold)")
    ax.set_title(f"regressor fit: Spearman {spearman:.3f}")
    fig.tight_layout()
    return fig


def histograms(columns: dict[str, np.ndarray], bins: int = 40, title: str = "score histograms"):  # noqa: ANN201
    plt = _plt()
    names = list(columns)
    n = max(len(names), 1)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        v = np.asarray(columns[name], dtype=np.float64)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, color="#5a8f5a")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def close(fig) -> None:  # noqa: ANN001
    _plt().close(fig)
