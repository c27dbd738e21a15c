"""TSDS core: NumPy on embedding matrices, no pydantic, no context; callable from notebooks and bench/.

The reference (ZifanL/TSDS ``tsds.py``) computes, with a heap over queries, the solution of

    minimize over gamma >= 0 (M x N):  (alpha/C) * sum_{j,i} gamma_ji * |q_j - x_i|_2
                                       + (1 - alpha) * M * max_{j,i} rho_i * gamma_ji
    subject to sum_i gamma_ji = 1/M for every query j;   p_i = sum_j gamma_ji

(``../shared/research/algorithms.md`` section 2(b)). At a level ``s`` every query sends
``1/(M s rho_i)`` to its neighbours in distance order until its ``1/M`` is used up, the last one taking
the remainder. The optimal ``s`` is the first heap key (a cumulative ``sum 1/rho`` of one query's
neighbours) at which ``(alpha/C) * sum_j cost_j >= (1 - alpha) * M``. Because every query's cost only
grows with its key, the heap's pop order is simply the sorted order of all keys, and the stopping key
is a ``searchsorted`` on the cumulative cost: :func:`transport_probabilities` does that in NumPy with
no Python loop over queries or neighbours.

Differences from the reference, on purpose:

- The reference initialises ``lastK`` to 0, so a query never popped before the stop puts
  ``1/(M s rho_0) > 1/M`` on its first neighbour and ``sum p > 1`` (seen at alpha=0.99, C=1,
  sigma=0.75). Here the allocation is the water-filling at level ``s`` itself, which is what a
  ``lastK = -1`` start gives: p is non-negative and sums to 1 always.
- Queries that get fewer than K valid neighbours from an approximate index (faiss id ``-1``) use only
  the ones they have; the reference would index with ``-1``.
- The KDE step sums the kernel over the points within ``sigma`` (it is zero beyond), keeping at most
  ``kde_K`` nearest, which equals the reference's ``kde_K``-NN search followed by the kernel, without
  materialising ``|U| x kde_K`` distances; the approximate variant probes IVF lists per list rather
  than per point so that it runs as dense matrix products (:func:`kde_density`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tools import knn

IndexKind = Literal["auto", "flat", "ivf", "numpy"]

DEFAULTS = {"alpha": 0.5, "C": 5.0, "sigma": 0.75, "max_K": 5000, "kde_K": 1000, "nprobe": 10}
"""The paper's/reference's defaults (``config.yaml``)."""



@dataclass
class TsdsOutput:
    """Probabilities over the pool and what produced them."""

    probs: np.ndarray  # (N,) float64, sums to 1
    level: float  # the optimal s
    neighbours_used: np.ndarray  # (M,) int: candidates receiving mass from each query
    truncated: int  # queries that used all K prefetched neighbours (K too small to be exact)
    K: int
    kde_K: int
    density: np.ndarray | None = None  # (M, K) rho per neighbour; NaN where not needed (None: sigma = 0)
    union_size: int = 0  # |U|, the neighbour union the KDE is computed over
    kde_evaluated: int = 0  # points of U whose density was needed (and computed)
    index_kind: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    C: float = 0.0  # the distance scale used (given, the paper's, or calibrated)
    sigma: float = 0.0  # the KDE radius used
    shrink: float = 0.0  # weight of the target centre in each target example (0: the paper)
    effective_neighbours: np.ndarray | None = None  # (M,) 1 / sum_i (M gamma_ji)^2 per target
    calibration_steps: int = 0  # x1.5 raises of C needed for k candidates with mass
    evidence_support: int = 0  # candidates the LP gave mass to before the evidence step (0: no step)


# -------------------------------------------------------------------------- closed-form LP


def transport_probabilities(
    dists: np.ndarray,
    ids: np.ndarray,
    n: int,
    *,
    alpha: float = 0.5,
    C: float = 5.0,
    density: np.ndarray | None = None,
) -> tuple[np.ndarray, float, np.ndarray, int]:
    """The LP's solution from each query's sorted neighbours.

    ``dists`` (M, K): L2 distances (not squared), ascending per row; ``ids`` (M, K) candidate indices
    in ``[0, n)``, ``-1`` for missing slots (at the end of a row); ``density`` (M, K): rho of each
    neighbour (``None`` = 1, the KNN-Uniform variant). Returns ``(p, s, used, truncated)``: p (n,)
    float64, the level s, the number of candidates each query sends mass to, and how many queries ran
    out of prefetched neighbours.
    """
    probs, s, used, truncated, _ = _transport(dists, ids, n, alpha=alpha, C=C, density=density)
    return probs, s, used, int(truncated.sum())


def _transport(
    dists: np.ndarray, ids: np.ndarray, n: int, *, alpha: float, C: float, density: np.ndarray | None
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`transport_probabilities` with the per-row truncation mask and the effective number of
    candidates per query, ``1 / sum_i (M gamma_ji)^2`` (the inverse Simpson index of its plan row)."""
    d = np.asarray(dists, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    m, k = d.shape
    if ids.shape != d.shape:
        raise ValueError(f"dists and ids must have the same shape; got {d.shape} and {ids.shape}")
    if m == 0 or k == 0:
        raise ValueError("need at least one query and one neighbour")
    valid = ids >= 0
    length = valid.sum(axis=1)
    if np.any(length == 0):
        raise ValueError(f"{int((length == 0).sum())} queries have no neighbour at all")
    if not np.all(valid == (np.arange(k)[None, :] < length[:, None])):
        raise ValueError("missing neighbours (-1) must be at the end of each row")
    inv = np.ones_like(d) if density is None else 1.0 / np.asarray(density, dtype=np.float64)
    inv = np.where(valid, inv, 0.0)
    d = np.where(valid, d, 0.0)
    c = np.cumsum(inv, axis=1)  # heap keys: c[j, k] = sum_{i<=k} 1/rho_{j,i}
    w = np.cumsum(d * inv, axis=1)
    # Event (j, k), k = 0..L_j-2: popping it raises query j's cost to
    # d[j,k+1] * c[j,k] - w[j,k] = sum_{i<=k} (d[j,k+1] - d[j,i]) / rho_{j,i}.
    if k >= 2:
        cost = d[:, 1:] * c[:, :-1] - w[:, :-1]
        delta = np.diff(cost, axis=1, prepend=0.0)
        has_event = np.arange(k - 1)[None, :] <= (length - 2)[:, None]
        keys = c[:, :-1][has_event]
        gains = delta[has_event]
    else:
        keys = gains = np.empty(0)
    if keys.size:
        order = np.argsort(keys, kind="stable")
        total = np.cumsum(gains[order])
        stop = np.flatnonzero(alpha / C * total >= (1.0 - alpha) * m)
        exhausted = stop.size == 0  # the heap ran dry: every row used all its neighbours
        s = float(keys[order[stop[0]] if stop.size else order[-1]])
    else:
        exhausted = True
        s = float(c[:, 0].max())
    # Water-filling at level s: neighbour i gets (min(c_i, s) - min(c_{i-1}, s)) / (M s); the last valid
    # neighbour takes whatever is left of 1/M (only more than its share when the row is truncated).
    capped = np.minimum(c, s)
    share = np.diff(capped, axis=1, prepend=0.0) / (m * s)
    last = length - 1
    rows = np.arange(m)
    share[~valid] = 0.0
    share[rows, last] = 0.0
    share[rows, last] = np.maximum(1.0 / m - share.sum(axis=1), 0.0)
    np.maximum(share, 0.0, out=share)
    probs = np.bincount(ids[valid], weights=share[valid], minlength=n)
    probs /= probs.sum()  # only rounding to undo: every row sums to 1/M by construction
    used = (share > 0).sum(axis=1)
    eff = 1.0 / np.maximum(np.sum((share * m) ** 2, axis=1), 1e-300)
    last_key = c[rows, np.maximum(length - 2, 0)]
    truncated = (length >= 2) & ((last_key <= s) if exhausted else (last_key < s))
    return probs, s, used, truncated, eff


def objective(dist_matrix: np.ndarray, gamma: np.ndarray, rho: np.ndarray, alpha: float, C: float) -> float:
    """The LP objective of a transport plan ``gamma`` (M, N) (for tests and reports)."""
    m = gamma.shape[0]
    return float(alpha / C * np.sum(gamma * dist_matrix) + (1 - alpha) * m * np.max(rho[None, :] * gamma))


# ------------------------------------------------------------------------------------- KDE


def kde_density(
    vectors: np.ndarray,
    *,
    sigma: float,
    kde_K: int,
    kind: IndexKind = "auto",
    nlist: int | None = None,
    nprobe: int = 10,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """rho_u = sum over u's ``kde_K`` nearest points v (u itself included) of max(0, 1 - |u-v|^2 / sigma^2).

    The un-normalised Epanechnikov profile of the reference, for every point of the set ``vectors``
    over the set itself; see :class:`Density` (which also evaluates any subset of the points).
    """
    dens = Density(vectors, sigma=sigma, kde_K=kde_K, kind=kind, nlist=nlist, nprobe=nprobe, seed=seed)
    return dens(np.arange(len(dens.xs)), on_batch=on_batch)


class Density:
    """The reference's KDE over a fixed point set, evaluated for any subset of its points.

    Only points within ``sigma`` contribute, so no k-NN lists are kept: squared distances are computed
    in blocks with one matrix product each and reduced at once (at most ``kde_K`` nearest per point).
    ``kind``: ``"flat"``/``"numpy"`` compare with every point (exact); ``"ivf"`` partitions the set
    with k-means into ``nlist`` lists (default ``int(sqrt(n)) // 2``, as the reference's IVF index)
    and compares the points of each list with those of the ``nprobe`` lists whose centroids are
    nearest to its centroid (the IVF probe decided per list instead of per point, so it runs as dense
    matrix products). ``"auto"``: exact below :data:`tools.knn.AUTO_IVF_MIN` points.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        sigma: float,
        kde_K: int,
        kind: IndexKind = "auto",
        nlist: int | None = None,
        nprobe: int = 10,
        seed: int = 0,
    ):
        self.xs = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(self.xs)
        self.r2 = float(sigma) ** 2
        self.kk = max(1, min(kde_K, n))
        if kind == "auto":
            kind = "flat" if n < knn.AUTO_IVF_MIN else "ivf"
        if kind == "ivf" and knn.faiss_available() and n > 1:
            members, self.probes, self.assign = _partition(self.xs, nlist or knn.default_nlist(n), nprobe, seed)
            # store the points list by list, so a list's candidates are contiguous slices (no gathers)
            perm = np.concatenate(members)
            self.xs = self.xs[perm]
            self.pos = np.empty(n, dtype=np.int64)
            self.pos[perm] = np.arange(n)
        else:
            members = [np.arange(n)]
            self.probes = np.zeros((1, 1), dtype=np.int64)
            self.assign = np.zeros(n, dtype=np.int64)
            self.pos = np.arange(n)
        self.sizes = np.array([len(m) for m in members], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])
        self.sq = np.einsum("ij,ij->i", self.xs, self.xs)

    def __call__(
        self, rows: np.ndarray, on_batch: Callable[[int], None] | None = None, workers: int | None = None
    ) -> np.ndarray:
        """rho of the points ``rows`` (indices into the set), in that order.

        Lists run in ``workers`` threads (default: the CPUs this process may use), each with
        single-threaded BLAS: the per-list products are small, and threaded BLAS on small products
        loses more to synchronisation than it gains (4x slower on a busy 2-core machine).
        """
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float64)
        lists = self.assign[rows]
        order = np.argsort(lists, kind="stable")
        bounds = np.searchsorted(lists[order], np.arange(len(self.sizes) + 1))
        todo = []
        for lst in range(len(self.sizes)):  # tasks: one list's points, at most one block each
            where = order[bounds[lst] : bounds[lst + 1]]
            step = max(1, _GEMM_BLOCK_FLOATS // max(int(self.sizes[self.probes[lst]].sum()), 1))
            todo += [(lst, where[lo : lo + step]) for lo in range(0, len(where), step)]
        if workers is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

        def one(task: tuple[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            lst, where = task
            return where, self._list_density(rows[where], lst)

        with _single_thread_blas():
            if workers > 1 and len(todo) > 1:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=workers) as pool:
                    results = pool.map(one, todo)
                    for where, rho in results:
                        out[where] = rho
                        if on_batch is not None:
                            on_batch(len(where))
            else:
                for task in todo:
                    where, rho = one(task)
                    out[where] = rho
                    if on_batch is not None:
                        on_batch(len(where))
        return out

    def _list_density(self, q_rows: np.ndarray, lst: int) -> np.ndarray:
        """rho of points ``q_rows`` (all in list ``lst``) against the points of the list's probes."""
        xs, sq, r2, kk = self.xs, self.sq, self.r2, self.kk
        qp = self.pos[q_rows]
        xq, sq_q = xs[qp], sq[qp]
        rho = np.zeros(len(qp), dtype=np.float64)
        counts = np.zeros(len(qp), dtype=np.int64)
        parts_r, parts_k = [], []
        for p in self.probes[lst]:
            if p < 0:
                continue
            lo, hi = self.starts[p], self.starts[p + 1]
            if hi == lo:
                continue
            sc = sq[lo:hi]
            ip = xq @ xs[lo:hi].T
            # |u - v|^2 < r2  <=>  ip > (|u|^2 + |v|^2 - r2) / 2: one scalar bound for the block
            # (tight for normalised embeddings) leaves few pairs to finish exactly
            r, c = np.nonzero(ip > (sq_q.min() + sc.min() - r2) / 2)
            d2 = np.maximum(sq_q[r] + sc[c] - 2.0 * ip[r, c], 0.0)
            keep = d2 < r2
            r, kern = r[keep], 1.0 - d2[keep] / r2
            rho += np.bincount(r, weights=kern, minlength=len(qp))
            counts += np.bincount(r, minlength=len(qp))
            parts_r.append(r)
            parts_k.append(kern)
        dense = np.flatnonzero(counts > kk)
        if dense.size:  # dense spots: only the kk nearest count
            r_all, k_all = np.concatenate(parts_r), np.concatenate(parts_k)
            for j in dense:
                rho[j] = np.sort(k_all[r_all == j])[::-1][:kk].sum(dtype=np.float64)
        return rho


@contextlib.contextmanager
def _single_thread_blas() -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


_GEMM_BLOCK_FLOATS = 8_000_000  # 32 MB of float32 distances per block


def _partition(
    xs: np.ndarray, nlist: int, nprobe: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """k-means lists of ``xs`` (10 rounds on a seeded sample of <= 128 points per list), per list the
    ``nprobe`` lists with the nearest centroids (itself first), and each point's list."""
    import faiss

    n, d = xs.shape
    nlist = max(1, min(nlist, n))
    rng = np.random.default_rng(seed)
    train = xs if n <= 128 * nlist else xs[np.sort(rng.choice(n, 128 * nlist, replace=False))]
    km = faiss.Kmeans(d, nlist, niter=10, seed=int(seed), max_points_per_centroid=128)
    km.train(np.ascontiguousarray(train))
    _, assign = km.index.search(xs, 1)
    assign = assign[:, 0]
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(nlist + 1))
    members = [order[bounds[i] : bounds[i + 1]] for i in range(nlist)]
    _, probes = km.index.search(km.centroids, min(nprobe, nlist))
    return members, probes, assign


# --------------------------------------------------------------------------------- pipeline

KDE_EXACT_MAX = 16_384
"""``index="auto"``: the KDE compares all pairs of the neighbour union up to this size, IVF lists beyond."""


def pool_index_kind(m: int, n: int) -> str:
    """``index="auto"`` for the pool: exact below :data:`tools.knn.AUTO_IVF_MIN` candidates, and also
    above it while the targets are few enough that one exact pass (m * n * d) costs less than training
    and filling an IVF index (k-means on 256 * nlist points, 25 rounds, plus assigning n points:
    about (64 * 25 + nlist) * n * d with nlist = sqrt(n) / 2); IVF otherwise."""
    if n < knn.AUTO_IVF_MIN:
        return "flat"
    return "flat" if m <= 64 * 25 + knn.default_nlist(n) else "ivf"



def effective_k(max_K: int, kde_K: int, n: int, cap_by_pool: bool) -> tuple[int, int]:
    """Neighbours prefetched per query and KDE neighbours: the reference caps both at N // 10."""
    cap = n // 10 if cap_by_pool else n
    return max(2, min(max_K, cap, n)) if n >= 2 else 1, max(1, min(kde_K, max(cap, 1), n))


def shrink_factor(query: np.ndarray, pool_mean: np.ndarray) -> float:
    """James-Stein-style weight pulling each target example towards the target's centre.

    A target example is a noisy draw around what the target has in common (its centre ``mu``): its
    own topic is noise for a selector asked for "documents like this set". The target's second moment
    about the pool mean splits into a within part ``W = mean |q - mu|^2`` and a between part
    ``B = |mu - mu_pool|^2``; ``W / (W + B)`` is the share of a target example's offset from the pool
    that is its own rather than the target's. Scale-free (a ratio of squared distances).
    """
    q = np.asarray(query, dtype=np.float64)
    mu = q.mean(axis=0)
    w = float(np.mean(np.sum((q - mu) ** 2, axis=1)))
    b = float(np.sum((mu - np.asarray(pool_mean, dtype=np.float64)) ** 2))
    return 0.0 if w + b <= 0 else w / (w + b)


def geometry_scale(dists: np.ndarray, ids: np.ndarray, k: int) -> tuple[float, float]:
    """``(C, sigma)`` from the observed target-to-neighbour distances (``dists`` sorted per row).

    With ``r = ceil(k / M)`` neighbours per target (each target's share of the budget), ``C = r *
    median_j (d_{j,r} - d_{j,0})``: the transport cost of spreading one target's mass over its first
    r neighbours when distances grow about linearly is ``r * (d_r - d_0) / 2``, so at ``alpha = 0.5``
    (stop where the mean cost reaches ``C * (1 - alpha) / alpha``) each target uses a neighbourhood of
    the order of its share, whatever the units of the embeddings. ``sigma = median_j d_{j,0} / 4``: a
    kernel radius well inside the typical target-to-nearest-document distance, so the density term
    spreads mass away from near-duplicates rather than out of the target's region.
    """
    m, kk = dists.shape
    length = (ids >= 0).sum(axis=1)
    r = int(min(max(1, -(-k // m)), kk - 1))
    rows = np.arange(m)
    far = dists[rows, np.minimum(r, length - 1)]
    gap = float(np.median(far - dists[:, 0]))
    near = float(np.median(dists[:, 0]))
    scale = float(np.median(far)) or 1.0  # every neighbour at the same distance: any positive scale
    return (r * gap if gap > 0 else r * scale * 1e-3), near / 4.0


EVIDENCE_CANDIDATES = 4.0
"""``calibrate="auto"``: the LP is solved for this many times k candidates, of which the evidence step
keeps the k most target-like (dev cases of bench/selection_quality.py: flat from 2x to 6x)."""
EVIDENCE_C = 0.1
"""Inverse L2 strength of the target-vs-pool logistic discriminator, on features scaled to unit RMS
norm (flat from 0.03 to 0.3 on the same dev cases; weaker regularisation overfits small targets)."""
EVIDENCE_POOL_SAMPLE = 50_000
"""Pool rows the discriminator is fitted on (a seeded sample beyond that; it scores every candidate)."""


def target_log_odds(
    query: np.ndarray, cand: np.ndarray, rows: np.ndarray, *, C: float = EVIDENCE_C,
    max_pool: int = EVIDENCE_POOL_SAMPLE, seed: int = 0,
) -> np.ndarray:
    """Log density ratio log p_target(x) / p_pool(x) of the candidates ``rows``, up to a constant.

    A class-balanced, L2-regularised logistic regression separating the target examples from the pool
    (the classifier route to the density ratio, the discriminative counterpart of DSIR's importance
    weights); its decision function estimates the log ratio. Features are divided by the pool's RMS
    norm so that the regularisation means the same for unit-norm and unnormalised embeddings.
    """
    from sklearn.linear_model import LogisticRegression

    xq = np.asarray(query, dtype=np.float32)
    xb = np.asarray(cand, dtype=np.float32)
    fit = xb
    if len(xb) > max_pool:
        fit = xb[np.sort(np.random.default_rng(seed).choice(len(xb), max_pool, replace=False))]
    scale = float(np.sqrt(np.mean(np.einsum("ij,ij->i", fit, fit, dtype=np.float64)))) or 1.0
    x = np.concatenate([xq, fit]) / scale
    y = np.r_[np.ones(len(xq)), np.zeros(len(fit))]
    w = np.r_[np.full(len(xq), len(fit) / len(xq)), np.ones(len(fit))]
    model = LogisticRegression(C=C, max_iter=1000).fit(x, y, sample_weight=w)
    return model.decision_function(xb[np.asarray(rows, dtype=np.int64)] / scale)


def keep_most_target_like(
    probs: np.ndarray, query: np.ndarray, cand: np.ndarray, k: int, *, seed: int = 0
) -> np.ndarray:
    """TSDS's ``probs`` weighted by the target density ratio and cut to its k most probable candidates.

    ``q_i = p_i * exp(z_i)`` over the support, with ``z`` the target log odds (:func:`target_log_odds`):
    importance weighting of the transport's distribution by ``p_target / p_pool``; the k largest ``q``
    are kept (renormalised) and the rest set to 0. A candidate that the LP favours (a target's own
    nearest neighbour at alpha near 1) stays in unless the discriminator finds it clearly off-target.
    Unchanged when the support has at most k candidates.
    """
    support = np.flatnonzero(probs > 0)
    if len(support) <= k:
        return probs
    score = np.log(probs[support]) + target_log_odds(query, cand, support, seed=seed)
    keep = np.argsort(-score, kind="stable")[:k]
    out = np.zeros_like(probs)
    out[support[keep]] = np.exp(score[keep] - score[keep].max())
    return out / out.sum()


def tsds_probabilities(
    query: np.ndarray,
    cand: np.ndarray,
    *,
    alpha: float = 0.5,
    C: float | None = 5.0,
    sigma: float | None = 0.75,
    max_K: int = 5000,
    kde_K: int = 1000,
    index: IndexKind = "auto",
    nprobe: int = 10,
    cap_by_pool: bool = True,
    seed: int = 0,
    device: str = "cpu",
    kde_prefix: int | None = 64,
    progress: Callable[[str, int, int], None] | None = None,
    calibrate: Literal["paper", "auto"] = "paper",
    shrink: float | None = None,
    k: int | None = None,
    evidence: bool | None = None,
) -> TsdsOutput:
    """End to end: kNN of each query in the pool, KDE of the neighbours, the LP's probabilities.

    ``query`` (M, d) and ``cand`` (N, d) float embeddings. ``index``: ``"flat"`` (exact), ``"ivf"``
    (the reference's IVF-Flat, ``nprobe`` lists) or ``"numpy"`` for both the pool search and the KDE;
    ``"auto"`` searches the pool exactly whenever that is cheaper than building an IVF index
    (:func:`pool_index_kind`) and computes the KDE exactly up to :data:`KDE_EXACT_MAX` points.
    ``cap_by_pool`` caps K and kde_K at N // 10 like the reference. ``kde_prefix``: densities are
    first computed for this many neighbours per target, more only where the solution needs them
    (``None``: all K up front; same result, slower).
    ``progress(stage, done, total)`` is called as the stages ("index", "search", "kde") advance.

    ``calibrate="paper"``: ``C``, ``sigma`` as given (``None`` = the paper's 5 and 0.75, meant for
    embeddings of norm about 5) and ``shrink`` 0. ``calibrate="auto"`` (needs ``k``, the budget): a
    ``None`` is taken from the data: ``shrink`` by :func:`shrink_factor`, ``C`` and ``sigma`` by
    :func:`geometry_scale` on the (shrunk) targets' neighbours, K is at least ``4 * ceil(k / M)``
    (the N // 10 cap can be smaller than that), and ``C`` is then raised (x1.5 a step)
    until at least ``k`` candidates get mass, so that k distinct documents can be drawn. Every target
    example is first moved to ``(1 - shrink) q + shrink * mean(q)``.

    ``evidence`` (unset: on with ``calibrate="auto"``, off with ``"paper"``; needs ``k``): the LP is
    calibrated for :data:`EVIDENCE_CANDIDATES` times k candidates, p is weighted by the target density
    ratio of a target-vs-pool discriminator and cut to its k most probable (:func:`keep_most_target_like`):
    the transport picks the targets' neighbourhood and spreads mass in it, the density ratio tells
    which of those neighbours belong to the target's distribution rather than merely lie near one
    target example (a neighbour from a confusable source).
    """
    xq = np.ascontiguousarray(query, dtype=np.float32)
    xb = np.ascontiguousarray(cand, dtype=np.float32)
    n = len(xb)
    if calibrate == "auto" and k is None:
        raise ValueError("calibrate='auto' needs k, the number of documents to select")
    if evidence is None:
        evidence = calibrate == "auto"
    if evidence and k is None:
        raise ValueError("evidence=True needs k, the number of documents to select")
    k_final = k
    if evidence:  # the LP calibrates for a candidate set several times the budget
        k = int(min(n, max(int(k), np.ceil(EVIDENCE_CANDIDATES * int(k)))))
    if shrink is None:
        shrink = shrink_factor(xq, xb.mean(axis=0, dtype=np.float64)) if calibrate == "auto" else 0.0
    if shrink > 0:
        xq = np.ascontiguousarray((1.0 - shrink) * xq + shrink * xq.mean(axis=0, dtype=np.float64), dtype=np.float32)
    K, KK = effective_k(max_K, kde_K, n, cap_by_pool)
    if calibrate == "auto":  # enough neighbours for k distinct documents even when the pool cap is small
        K = int(min(n, max(K, 4 * -(-int(k) // len(xq)))))
    t: dict[str, float] = {}

    def report(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    t0 = time.perf_counter()
    pool_kind = pool_index_kind(len(xq), n) if index == "auto" else index
    report("index", 0, 1)
    pool_index = knn.build_index(xb, metric="l2", kind=pool_kind, nprobe=nprobe, seed=seed, device=device)
    report("index", 1, 1)
    t["index_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report("search", 0, len(xq))
    d2, ids = pool_index.search(xq, K)
    del pool_index
    report("search", len(xq), len(xq))
    dists = np.sqrt(np.maximum(d2, 0.0, where=ids >= 0, out=np.zeros_like(d2)))
    t["search_s"] = time.perf_counter() - t0
    if calibrate == "auto":
        c_auto, s_auto = geometry_scale(dists, ids, int(k))
        C_val = c_auto if C is None else float(C)
        sigma = s_auto if sigma is None else float(sigma)
    else:
        C_val = DEFAULTS["C"] if C is None else float(C)
        sigma = DEFAULTS["sigma"] if sigma is None else float(sigma)
    density = None
    union = 0
    kde_kind = ""
    t["kde_s"] = t["probabilities_s"] = 0.0
    evaluated = 0
    if sigma > 0:
        # Density within U, the union of all prefetched neighbours (as the reference), but evaluated
        # lazily: rho is computed for each target's first `length` neighbours only, and a target's
        # prefix grows (x4) only while the solution still wants neighbours beyond it. The level s and
        # p only depend on neighbours whose heap keys lie below s, so the result is the same as with
        # every density computed up front (tested), at a fraction of the cost when K is large.
        t0 = time.perf_counter()
        valid = ids >= 0
        full_len = valid.sum(axis=1)
        uniq, inverse = np.unique(ids[valid], return_inverse=True)
        union = len(uniq)
        pos = np.full(ids.shape, -1, dtype=np.int64)
        pos[valid] = inverse
        kde_kind = ("flat" if union <= KDE_EXACT_MAX else "ivf") if index == "auto" else index
        dens = Density(xb[uniq], sigma=sigma, kde_K=KK, kind=kde_kind, nprobe=nprobe, seed=seed)
        t["kde_index_s"] = time.perf_counter() - t0
        rho_u = np.full(union, np.nan)  # shared by every solve below: densities are computed once
        done = [0]

        def tick(b: int) -> None:
            done[0] += b
            report("kde", done[0], union)

        cols = np.arange(ids.shape[1])[None, :]

        def solve(c_val: float) -> tuple:
            length = full_len.copy() if kde_prefix is None else np.minimum(full_len, max(2, kde_prefix))
            while True:
                prefix = cols < length[:, None]
                t0 = time.perf_counter()
                need = np.unique(pos[prefix])
                need = need[np.isnan(rho_u[need])]
                if need.size:
                    rho_u[need] = dens(need, on_batch=tick)
                t["kde_s"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                dn = np.where(prefix, rho_u[pos], np.nan)
                out = _transport(dists, np.where(prefix, ids, -1), n, alpha=alpha, C=c_val,
                                 density=np.where(prefix, dn, 1.0))
                t["probabilities_s"] += time.perf_counter() - t0
                grow = out[3] & (length < full_len)
                if not grow.any():
                    return (*out, dn)
                length[grow] = np.minimum(length[grow] * 4, full_len[grow])
    else:

        def solve(c_val: float) -> tuple:
            t0 = time.perf_counter()
            out = _transport(dists, ids, n, alpha=alpha, C=c_val, density=None)
            t["probabilities_s"] += time.perf_counter() - t0
            return (*out, None)

    probs, s, used, trunc, eff, density = solve(C_val)
    steps = 0
    if calibrate == "auto" and C is None:  # raise C until k candidates get mass (or K runs out)
        while np.count_nonzero(probs) < k and not trunc.all() and steps < 60:
            C_val *= 1.5
            steps += 1
            probs, s, used, trunc, eff, density = solve(C_val)
    if sigma > 0:
        evaluated = done[0]
        report("kde", union, union)
    evidence_support = 0
    if evidence:
        t0 = time.perf_counter()
        evidence_support = int(np.count_nonzero(probs))
        probs = keep_most_target_like(probs, query, xb, int(k_final), seed=seed)
        t["evidence_s"] = time.perf_counter() - t0
    truncated = int(trunc.sum())
    return TsdsOutput(
        probs=probs,
        level=s,
        neighbours_used=used,
        truncated=truncated,
        K=K,
        kde_K=KK,
        density=density,
        union_size=union,
        kde_evaluated=evaluated,
        index_kind=pool_kind + (f"+kde-{kde_kind}" if sigma > 0 else ""),
        timings=t,
        C=C_val,
        sigma=sigma,
        shrink=float(shrink),
        effective_neighbours=eff,
        calibration_steps=steps,
        evidence_support=evidence_support,
    )


def draw(
    probs: np.ndarray, k: int, *, replace: bool = True, seed: int = 0, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sample k candidates from ``probs``: ``(indices, counts)`` of the distinct candidates drawn.

    With replacement (the reference: a multinomial draw) counts can exceed 1; without replacement at
    most ``nnz(probs)`` candidates can be drawn (successive sampling, Gumbel top-k). ``order`` (a
    permutation, e.g. the argsort of the document ids) fixes the order the random stream walks the
    candidates in, so the draw does not depend on how the pool's rows happen to be ordered.
    """
    if order is not None:
        order = np.asarray(order, dtype=np.int64)
        idx, counts = draw(np.asarray(probs)[order], k, replace=replace, seed=seed)
        real = order[idx]
        srt = np.argsort(real, kind="stable")
        return real[srt], counts[srt]
    rng = np.random.default_rng(seed)
    p = np.asarray(probs, dtype=np.float64)
    if replace:
        counts = rng.multinomial(k, p / p.sum())
        idx = np.flatnonzero(counts)
        return idx, counts[idx]
    support = np.flatnonzero(p > 0)
    if k > len(support):
        raise ValueError(f"cannot draw {k} distinct candidates from a support of {len(support)}")
    keys = np.log(p[support]) + rng.gumbel(size=len(support))
    top = support[np.argpartition(-keys, k - 1)[:k]]
    top.sort()
    return top, np.ones(len(top), dtype=np.int64)


def effective_sample_size(probs: np.ndarray) -> float:
    """1 / sum p^2: how many equally weighted documents the distribution is worth."""
    p = np.asarray(probs, dtype=np.float64)
    return float(1.0 / np.sum(p * p))

