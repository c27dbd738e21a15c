"""Points on the probability simplex: lattices (the agent's discrete actions), projection, checks."""

from __future__ import annotations

from itertools import combinations

import numpy as np


def lattice(dim: int, resolution: int) -> np.ndarray:
    """All points of the simplex whose coordinates are multiples of 1/resolution, (K, dim) float64.

    K = C(resolution + dim - 1, dim - 1) ("stars and bars"): 11 points for dim 2 and resolution 10.
    """
    if dim < 1 or resolution < 1:
        raise ValueError("dim and resolution must be positive")
    pts = []
    for bars in combinations(range(resolution + dim - 1), dim - 1):
        edges = (-1, *bars, resolution + dim - 1)
        pts.append([edges[i + 1] - edges[i] - 1 for i in range(dim)])
    return np.asarray(pts, dtype=np.float64) / resolution


def lattice_size(dim: int, resolution: int) -> int:
    from math import comb

    return comb(resolution + dim - 1, dim - 1)


def action_grid(dim: int, max_actions: int = 400) -> np.ndarray:
    """The finest simplex lattice with at most ``max_actions`` points (resolution >= 1)."""
    r = 1
    while lattice_size(dim, r + 1) <= max_actions and r < 100:
        r += 1
    return lattice(dim, r)


def normalize(w: np.ndarray) -> np.ndarray:
    """Clip negatives and rescale to sum one (rows, for a 2-D array)."""
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    s = w.sum(axis=-1, keepdims=True)
    if np.any(s <= 0):
        raise ValueError("weights must have a positive sum")
    return w / s


def nearest(points: np.ndarray, w: np.ndarray) -> int:
    """Index of the lattice point closest (L1) to ``w``."""
    return int(np.abs(points - np.asarray(w)[None, :]).sum(1).argmin())
