"""Simple mixtures users compare against: uniform, proportional, temperature with an epochs cap.

Temperature sampling: p_i proportional to (n_i / sum n)^(1/T); T=1 is proportional to size, T -> inf
is uniform (RegMix smooths its prior with T=2). The epochs cap (UniMax-style, Chung et al. 2023)
bounds domain i at ``max_epochs * n_i / total`` of the budget; the excess is handed to the domains
below their cap in proportion to their tempered weight, repeatedly (water-filling), so the result
sums to one whenever the budget fits under the caps at all.
"""

from __future__ import annotations

import numpy as np


def uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def proportional(sizes: np.ndarray) -> np.ndarray:
    s = np.asarray(sizes, dtype=np.float64)
    if s.sum() <= 0:
        raise ValueError("domain sizes must have a positive sum")
    return s / s.sum()


def temperature(sizes: np.ndarray, T: float = 1.0) -> np.ndarray:
    if T <= 0:
        raise ValueError("temperature must be positive")
    p = proportional(sizes)
    q = np.where(p > 0, p ** (1.0 / T), 0.0)
    return q / q.sum()


def cap_by_epochs(weights: np.ndarray, sizes: np.ndarray, total: float, max_epochs: float | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Water-fill ``weights`` under caps ``max_epochs * size / total``; returns (weights, capped mask).

    Raises ValueError when even every domain at its cap cannot fill ``total`` tokens.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    sizes = np.asarray(sizes, dtype=np.float64)
    if max_epochs is None:
        return w / w.sum(), np.zeros(w.size, dtype=bool)
    cap = max_epochs * sizes / total
    if cap.sum() < 1.0 - 1e-12:
        raise ValueError(f"{total:.3g} tokens need more than {max_epochs:g} epochs of the data "
                         f"({sizes.sum():.3g} tokens)")
    fixed = np.zeros(w.size, dtype=bool)
    w = w / w.sum()
    for _ in range(w.size + 1):
        over = (w > cap + 1e-12) & ~fixed
        if not over.any():
            break
        fixed |= over
        w[fixed] = cap[fixed]
        rest = 1.0 - w[fixed].sum()
        free = ~fixed
        base = np.where(free, np.asarray(weights, dtype=np.float64), 0.0)
        if base.sum() <= 0:  # the remaining domains had zero weight: spread by their room
            base = np.where(free, cap, 0.0)
        w[free] = rest * base[free] / base[free].sum()
    return w, fixed
