"""Exact top-k merging of per-query neighbour lists, and a k-NN search over arrays (no I/O)."""

from __future__ import annotations

import numpy as np


def rank_union(scores: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-query k-NN lists: each pool row's best score and the query giving it, top ``k``.

    ``scores``/``idx``: (m, k') from a search (``-1`` = no hit). Returns (rows, best scores, query row),
    ordered by score descending, then row. Exact for the top ``k`` when each list holds ``k'`` >= ``k``
    hits: a row missing from its best query's list is beaten by ``k'`` rows at least as close.
    """
    m, kk = idx.shape
    flat_i = idx.ravel()
    flat_s = scores.ravel().astype(np.float64)
    flat_q = np.repeat(np.arange(m), kk)
    ok = flat_i >= 0
    flat_i, flat_s, flat_q = flat_i[ok], flat_s[ok], flat_q[ok]
    order = np.lexsort((flat_q, -flat_s, flat_i))  # per row: best score first
    flat_i, flat_s, flat_q = flat_i[order], flat_s[order], flat_q[order]
    first = np.ones(len(flat_i), dtype=bool)
    first[1:] = flat_i[1:] != flat_i[:-1]
    rows, best, qrow = flat_i[first], flat_s[first], flat_q[first]
    top = np.lexsort((rows, -best))[:k]
    return rows[top], best[top], qrow[top]


def search_knn(vectors: np.ndarray, queries: np.ndarray, k: int, kind: str, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product k-NN of ``queries`` among ``vectors`` (unit rows: cosine): (scores, positions)."""
    from tools.knn import build_index

    dev = device if device.startswith("cuda") else "cpu"
    index = build_index(vectors, metric="ip", kind=kind, device=dev)  # type: ignore[arg-type]
    return index.search(queries, k)
