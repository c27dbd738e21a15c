"""SemDeDup over arrays (no I/O): the steps of the paper, as :func:`semdedup` runs them.

1. Embeddings (L2-normalised, so inner product = cosine) are clustered with spherical k-means (faiss,
   seeded; NumPy Lloyd iterations without faiss) into ``n_clusters`` clusters, default
   ``round(sqrt(N))`` (N documents; at most N). NeMo Curator's default is a fixed 1000; sqrt(N) gives
   the same order at a million documents and keeps the per-cluster pairwise work ~N^1.5 overall.
2. Inside each cluster, members are put in **keep-priority order** by ``keep``:
   ``farthest_from_centroid`` (default; NeMo's ``which_to_keep="hard"``: the member with the largest
   cosine distance to its centroid survives), ``closest_to_centroid`` (NeMo ``"easy"``), ``longest``
   (most characters), ``first`` (corpus order) or ``random`` (seeded). Ties go to the smaller id;
   the tool works on rows sorted by id, so results do not depend on the row order of the corpus.
3. A member is removed when its cosine similarity to an earlier member exceeds ``threshold``
   (default 0.95; SemDeDup writes this as ``eps = 1 - threshold``, NeMo's extraction default is
   eps 0.01, i.e. 0.99). ``compare="kept"`` (default) compares only with members that were kept, so
   every removed document has a kept ``duplicate_of`` above the threshold; ``compare="earlier"``
   compares with every earlier member, kept or not: exactly NeMo's/SemDeDup's rule (the column max of
   the upper-triangular similarity matrix), which removes more along chains A~B~C.

Duplicates that k-means puts in different clusters are not compared (as in SemDeDup). Pairwise
similarities are computed in blocks, so memory stays ~``block x block`` floats per cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tools.semantic_dedup.schema import Compare, KeepRule

BLOCK = 2048


def default_n_clusters(n: int) -> int:
    """``round(sqrt(N))``, at least 1 and at most N."""
    return max(1, min(n, round(math.sqrt(n))))


def _numpy_spherical_kmeans(x: np.ndarray, k: int, niter: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cent = x[np.sort(rng.choice(len(x), size=k, replace=False))].copy()
    for _ in range(niter):
        assign = np.argmax(x @ cent.T, axis=1)
        for c in range(k):
            members = x[assign == c]
            if len(members):
                cent[c] = members.sum(0)
            else:  # an empty cluster restarts at a random point
                cent[c] = x[rng.integers(len(x))]
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    return cent


def cluster(x: np.ndarray, n_clusters: int, *, niter: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means on normalised rows: ``(assignment int64 (n,), unit centroids (k, d))``.

    Each row goes to the centroid of highest cosine. ``n_clusters=1``: one cluster, centroid = the
    normalised mean.
    """
    n = len(x)
    if n_clusters == 1:
        c = x.mean(axis=0, dtype=np.float64)
        c = c / max(float(np.linalg.norm(c)), 1e-12)
        return np.zeros(n, dtype=np.int64), c[None, :].astype(np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    try:
        import faiss
    except ImportError:
        cent = _numpy_spherical_kmeans(x, n_clusters, niter, seed)
    else:
        km = faiss.Kmeans(x.shape[1], n_clusters, niter=niter, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1)
        km.train(x)
        cent = np.ascontiguousarray(km.centroids, dtype=np.float32)
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    assign = np.empty(n, dtype=np.int64)
    step = max(1, 16_000_000 // max(n_clusters, 1))
    for lo in range(0, n, step):
        assign[lo : lo + step] = np.argmax(x[lo : lo + step] @ cent.T, axis=1)
    return assign, cent


def keep_order(members: np.ndarray, keep: KeepRule, *, dist: np.ndarray | None = None,
               lengths: np.ndarray | None = None, positions: np.ndarray | None = None, seed: int = 0,
               cluster_id: int = 0) -> np.ndarray:
    """``members`` (row numbers, any order) in keep-priority order; ties by row number.

    ``keep="first"`` orders by ``positions`` (each row's place in the corpus; default the row number).
    """
    members = np.sort(members)
    if keep == "first":
        return members if positions is None else members[np.lexsort((members, positions[members]))]
    if keep == "random":
        rng = np.random.default_rng([seed, cluster_id])
        return members[rng.permutation(len(members))]
    if keep in ("farthest_from_centroid", "closest_to_centroid"):
        if dist is None:
            raise ValueError("centroid distances are needed for this keep rule")
        d = dist[members]
        key = -d if keep == "farthest_from_centroid" else d
    else:
        if lengths is None:
            raise ValueError("lengths are needed for keep='longest'")
        key = -lengths[members].astype(np.float64)
    return members[np.lexsort((members, key))]


@dataclass
class ClusterDedup:
    removed: np.ndarray  # bool (m,), in the given order
    dup_of: np.ndarray  # int64 (m,): position (in the given order) of the most similar compared member, -1
    similarity: np.ndarray  # float32 (m,): that similarity (nan where nothing was compared)


def dedup_ordered(x: np.ndarray, threshold: float, compare: Compare = "kept", block: int = BLOCK) -> ClusterDedup:
    """SemDeDup inside one cluster whose rows ``x`` are already in keep-priority order.

    Row j is removed when ``max_i x_i . x_j > threshold`` over earlier rows i < j (``compare="earlier"``)
    or over earlier rows that were kept (``compare="kept"``). Blocked: similarities to earlier blocks
    are a matrix product per block; within a block, only rows with an above-threshold earlier
    neighbour are resolved one by one.
    """
    m = len(x)
    removed = np.zeros(m, dtype=bool)
    dup_of = np.full(m, -1, dtype=np.int64)
    sim = np.full(m, np.nan, dtype=np.float32)
    if m < 2:
        return ClusterDedup(removed, dup_of, sim)
    for a in range(0, m, block):
        b = min(m, a + block)
        blk = x[a:b]
        nb = b - a
        best = np.full(nb, -np.inf, dtype=np.float32)
        arg = np.full(nb, -1, dtype=np.int64)
        if a > 0:  # earlier blocks, resolved already
            ref = np.arange(a) if compare == "earlier" else np.flatnonzero(~removed[:a])
            for lo in range(0, len(ref), block * 4):
                r = ref[lo : lo + block * 4]
                s = blk @ x[r].T  # (nb, len(r))
                j = np.argmax(s, axis=1)
                v = s[np.arange(nb), j]
                better = v > best
                best[better], arg[better] = v[better], r[j[better]]
        s_in = blk @ blk.T
        s_in[np.triu_indices(nb)] = -np.inf  # only earlier rows (i < j) count: row j, column i
        if compare == "earlier":
            j = np.argmax(s_in, axis=1)
            v = s_in[np.arange(nb), j]
            better = v > best
            best[better], arg[better] = v[better], a + j[better]
            removed[a:b] = best > threshold
        else:
            maybe = (s_in > threshold).any(axis=1)
            removed[a:b] = best > threshold
            for t in np.flatnonzero(maybe):  # in order: earlier rows of this block are final
                kept_prev = np.flatnonzero(~removed[a : a + t])
                if kept_prev.size:
                    v = s_in[t, kept_prev]
                    jj = int(np.argmax(v))
                    if v[jj] > best[t]:
                        best[t], arg[t] = v[jj], a + kept_prev[jj]
                removed[a + t] = best[t] > threshold
        fin = np.isfinite(best)
        sim[a:b][fin] = best[fin]
        dup_of[a:b] = arg
    return ClusterDedup(removed, dup_of, sim)


@dataclass
class DedupOutput:
    removed: np.ndarray  # bool (n,) by row
    duplicate_of: np.ndarray  # int64 (n,) row, -1 for kept rows
    similarity: np.ndarray  # float32 (n,), nan for kept rows
    representative: np.ndarray  # int64 (n,) kept row a removed row leads to, -1 for kept rows
    assign: np.ndarray  # int64 (n,) cluster per row
    n_clusters: int


def semdedup(
    x: np.ndarray,
    *,
    threshold: float = 0.95,
    n_clusters: int | None = None,
    keep: KeepRule = "farthest_from_centroid",
    compare: Compare = "kept",
    lengths: np.ndarray | None = None,
    positions: np.ndarray | None = None,
    niter: int = 20,
    seed: int = 0,
    progress: object | None = None,
) -> DedupOutput:
    """SemDeDup over normalised rows ``x`` (n, d); the module docstring gives each step."""
    n = len(x)
    k = default_n_clusters(n) if n_clusters is None else n_clusters
    assign, cent = cluster(x, k, niter=niter, seed=seed)
    dist = 1.0 - np.einsum("ij,ij->i", x, cent[assign])  # cosine distance to the own centroid
    removed = np.zeros(n, dtype=bool)
    dup = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan, dtype=np.float32)
    order_all = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order_all], np.arange(k + 1))
    for c in range(k):
        members = order_all[bounds[c] : bounds[c + 1]]
        if len(members) > 1:
            order = keep_order(members, keep, dist=dist, lengths=lengths, positions=positions, seed=seed,
                               cluster_id=c)
            res = dedup_ordered(x[order], threshold, compare)
            removed[order] = res.removed
            has = res.dup_of >= 0
            dup[order[has]] = order[res.dup_of[has]]
            sim[order] = res.similarity
        if progress is not None:
            progress.update(len(members))  # type: ignore[attr-defined]
    dup[~removed] = -1
    sim[~removed] = np.nan
    rep = np.where(removed, dup, -1)
    for _ in range(n):  # follow chains (compare="earlier") to a kept row; keep order makes them finite
        chained = rep >= 0
        chained[chained] = removed[rep[chained]]
        if not chained.any():
            break
        rep[chained] = rep[rep[chained]]
    return DedupOutput(removed, dup, sim, rep, assign, k)
