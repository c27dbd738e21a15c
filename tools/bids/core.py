"""BIDS: balanced influence-based data selection (Dai, Zhang, Ma, Peng; EMNLP Findings 2025).

Input is an influence matrix ``A`` (N training rows x M validation instances, as LESS computes it)
and a task label per column. Steps (algorithms.md 3.2(b)):

1. Column z-score: each validation instance's influence over the pool gets mean 0, std 1 (ddof=1),
   so a task whose gradients happen to be large cannot dominate; zero-variance columns are dropped.
2. Iterative selection: with AID(S)_j = mean_{i in S} Z_ij (zero for S empty), add the unselected
   row maximising u_i = max_j (Z_ij - AID_j); ties go to the lowest row index.
3. Task-level variant: pick the task t* with the lowest task-mean AID, then the row with the highest
   task-level influence on t* (mean or max over its columns).
4. Baselines: task-max (LESS: mean over a task's columns, max over tasks), instance-max, sum; top-k.

The naive loop costs O(budget x N x M). The fast loop gives the same selection bit for bit: since
max_i max_j (Z_ij - AID_j) = max_j (best unselected Z_.j - AID_j), each step only needs the best
unselected row of every column. Those come from per-column candidate lists sorted by (value desc,
row asc), truncated to budget + 1 rows (at most budget rows are ever selected), with a pointer per
column that skips selected rows. A step is O(M) vector work plus the pointer moves. Both loops share
:func:`_aid` and the float64 running sums, and tie-breaking walks the same float64 differences, so
they agree exactly, ties included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Method = Literal["bids", "task_max", "instance_max", "sum"]
Mode = Literal["instance", "task"]
TaskAgg = Literal["mean", "max"]

_ROW_CHUNK = 8192  # rows per block in the naive loop and the normalisation passes
_COL_BLOCK = 64  # columns per block when building candidate lists


@dataclass
class Normalized:
    """Column z-scores ``Z`` (float32, kept columns only) and what was dropped."""

    Z: np.ndarray
    kept: np.ndarray  # column indices of A kept in Z
    dropped: np.ndarray  # zero-variance column indices
    mean: np.ndarray
    std: np.ndarray


@dataclass
class Selection:
    """Rows in pick order (baselines: score order) with the score each had when picked."""

    indices: np.ndarray
    scores: np.ndarray
    method: str
    meta: dict = field(default_factory=dict)


def zscore_columns(A: np.ndarray, *, rel_tol: float = 1e-6) -> Normalized:
    """Z-score every column over the rows (ddof=1), in row blocks so memory stays ~2 x A.

    A column is dropped when its std is 0 or below ``rel_tol`` x |mean| (float32 quantisation noise).
    """
    N, M = A.shape
    if N < 2:
        raise ValueError("column standardisation needs at least 2 rows")
    s = np.zeros(M, dtype=np.float64)
    for lo in range(0, N, _ROW_CHUNK):
        s += A[lo : lo + _ROW_CHUNK].sum(axis=0, dtype=np.float64)
    mean = s / N
    ss = np.zeros(M, dtype=np.float64)
    buf = np.empty((min(N, _ROW_CHUNK), M), dtype=np.float64)
    for lo in range(0, N, _ROW_CHUNK):
        d = buf[: min(_ROW_CHUNK, N - lo)]
        np.subtract(A[lo : lo + _ROW_CHUNK], mean, out=d)
        ss += np.einsum("ij,ij->j", d, d)
    std = np.sqrt(ss / (N - 1))
    keep = (std > 0) & (std > rel_tol * np.abs(mean)) & np.isfinite(std)
    kept = np.flatnonzero(keep)
    Z = np.empty((N, kept.size), dtype=np.float32)
    mk, sk = mean[kept], std[kept]
    cols = slice(None) if kept.size == M else kept
    for lo in range(0, N, _ROW_CHUNK):
        d = buf[: min(_ROW_CHUNK, N - lo), : kept.size]
        np.subtract(A[lo : lo + _ROW_CHUNK, cols], mk, out=d)
        np.divide(d, sk, out=d)
        Z[lo : lo + _ROW_CHUNK] = d
    return Normalized(Z=Z, kept=kept, dropped=np.flatnonzero(~keep), mean=mean, std=std)


def task_codes(labels: np.ndarray | list) -> tuple[list[str], np.ndarray]:
    """Sorted task names and the task index of every column."""
    lab = np.asarray([str(x) for x in labels], dtype=object)
    names = sorted(set(lab.tolist()))
    pos = {n: i for i, n in enumerate(names)}
    return names, np.asarray([pos[x] for x in lab], dtype=np.intp)


def task_influence(Z: np.ndarray, codes: np.ndarray, n_tasks: int, agg: TaskAgg = "mean") -> np.ndarray:
    """N x T task-level influence: mean (or max) over each task's columns, float64."""
    out = np.empty((Z.shape[0], n_tasks), dtype=np.float64)
    for t in range(n_tasks):
        cols = np.flatnonzero(codes == t)
        for lo in range(0, Z.shape[0], _ROW_CHUNK):
            blk = Z[lo : lo + _ROW_CHUNK, cols]
            out[lo : lo + _ROW_CHUNK, t] = (blk.mean(axis=1, dtype=np.float64) if agg == "mean"
                                            else blk.max(axis=1).astype(np.float64))
    return out


# -- shared arithmetic of both loops ---------------------------------------------------------------


def _aid(sums: np.ndarray, t: int) -> np.ndarray:
    """Average Influence Distribution of the t rows selected so far (zero before the first pick)."""
    return sums / t if t else np.zeros_like(sums)


def _task_aid(aid: np.ndarray, codes: np.ndarray, n_tasks: int) -> np.ndarray:
    return np.bincount(codes, weights=aid, minlength=n_tasks) / np.bincount(codes, minlength=n_tasks)


def _check_budget(N: int, budget: int) -> None:
    if not 1 <= budget <= N:
        raise ValueError(f"budget must be in [1, {N}]; got {budget}")


# -- instance-level BIDS -------------------------------------------------------------------------


def bids_naive(Z: np.ndarray, budget: int) -> Selection:
    """Reference loop, O(budget x N x M): recompute every utility at every step."""
    N, M = Z.shape
    _check_budget(N, budget)
    selected = np.zeros(N, dtype=bool)
    sums = np.zeros(M, dtype=np.float64)
    u = np.empty(N, dtype=np.float64)
    picks = np.empty(budget, dtype=np.intp)
    util = np.empty(budget, dtype=np.float64)
    for t in range(budget):
        aid = _aid(sums, t)
        for lo in range(0, N, _ROW_CHUNK):
            u[lo : lo + _ROW_CHUNK] = (Z[lo : lo + _ROW_CHUNK] - aid).max(axis=1)
        u[selected] = -np.inf
        i = int(np.argmax(u))
        picks[t], util[t] = i, u[i]
        selected[i] = True
        sums += Z[i]
    return Selection(picks, util, "bids", {"mode": "instance", "loop": "naive", "aid": _aid(sums, budget)})


def _desc_keys(v: np.ndarray, row: np.ndarray) -> np.ndarray:
    """int64 keys whose ascending order is (value desc, row asc): -orderbits(value) << 32 | row."""
    b = (v.astype(np.float32) + np.float32(0)).view(np.int32)  # + 0 turns -0.0 into +0.0 (equal floats)
    s = (b ^ ((b >> 31) & 0x7FFFFFFF)).astype(np.int64)  # monotone in the float value
    return ((-s) << 32) | row.astype(np.int64)


def _key_values(keys: np.ndarray) -> np.ndarray:
    s = (-(keys >> 32)).astype(np.int32)
    return (s ^ ((s >> 31) & 0x7FFFFFFF)).view(np.float32)


def _thresholds(Z: np.ndarray, L: int) -> np.ndarray:
    """Per column a value with (very likely) at least L entries >= it, from a row sample.

    Only a speed-up: columns where the guess holds fewer than L entries are partitioned exactly.
    """
    N, M = Z.shape
    s = min(N, max(2048, 64 * (N // L + 1)))
    if s >= N // 2:
        return np.full(M, -np.inf, dtype=np.float32)
    sample = np.sort(Z[np.sort(np.random.default_rng(0).choice(N, s, replace=False))], axis=0)
    q = L / N
    r = int(min(s - 1, s * q * 1.1 + 4 * np.sqrt(s * q) + 2))  # rank from the top, with margin
    return sample[s - 1 - r]


def _top_lists(Z: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column the L best rows in (value desc, row asc) order: (M, L) int32 rows and float32 values
    (exactly Z's values; the loop widens them to float64 as the naive loop does).

    Candidates are the entries at or above a sampled threshold; one int64 key per candidate orders
    by value, then row, so partition + sort of the keys gives exactly the top L, ties at the cut
    going to the lowest rows.
    """
    N, M = Z.shape
    rows = np.empty((M, L), dtype=np.int32 if N < 2**31 else np.int64)
    vals = np.empty((M, L), dtype=np.float32)
    thr = _thresholds(Z, L) if L < N else None
    for c0 in range(0, M, _COL_BLOCK):
        blk = np.ascontiguousarray(Z[:, c0 : c0 + _COL_BLOCK].T, dtype=np.float32)  # (B, N)
        for b in range(blk.shape[0]):
            col = blk[b]
            if thr is None:
                idx = np.arange(N)
            else:
                idx = np.flatnonzero(col >= thr[c0 + b])
                if idx.size < L:  # the sampled guess was too high: all rows
                    idx = np.arange(N)
            keys = _desc_keys(col[idx], idx)
            if keys.size > L:
                keys = np.partition(keys, L - 1)[:L]
            keys.sort()
            rows[c0 + b] = keys & 0xFFFFFFFF
            vals[c0 + b] = _key_values(keys)
    return rows, vals


def bids_fast(Z: np.ndarray, budget: int) -> Selection:
    """Same selection as :func:`bids_naive`; O(N x M) set-up, then O(M) per step."""
    N, M = Z.shape
    _check_budget(N, budget)
    L = min(N, budget + 1)
    rows, vals = _top_lists(Z, L)
    ptr = np.zeros(M, dtype=np.intp)
    top_row = rows[:, 0].astype(np.intp)
    top_val = vals[:, 0].astype(np.float64)
    selected = np.zeros(N, dtype=bool)
    sums = np.zeros(M, dtype=np.float64)
    picks = np.empty(budget, dtype=np.intp)
    util = np.empty(budget, dtype=np.float64)
    fallbacks = 0
    for t in range(budget):
        aid = _aid(sums, t)
        gap = top_val - aid
        V = gap.max()
        best = N
        for j in np.flatnonzero(gap == V):  # every row whose utility equals V, lowest wins
            a = aid[j]
            k = int(ptr[j])
            while k < L:
                r = int(rows[j, k])
                if not selected[r]:
                    if np.float64(vals[j, k]) - a != V:
                        break
                    if r < best:
                        best = r
                k += 1
            else:
                if L < N:  # the tie run passes the truncated list: scan the whole column
                    fallbacks += 1
                    hit = np.flatnonzero((Z[:, j].astype(np.float64) - a == V) & ~selected)
                    best = min(best, int(hit[0]))
        i = int(best)
        picks[t], util[t] = i, V
        selected[i] = True
        sums += Z[i]
        if t == budget - 1:
            break
        hit = np.flatnonzero(top_row == i)
        while hit.size:  # move those columns' pointers past selected rows
            ptr[hit] += 1
            top_row[hit] = rows[hit, ptr[hit]]
            top_val[hit] = vals[hit, ptr[hit]]
            hit = hit[selected[top_row[hit]]]
    meta = {"mode": "instance", "loop": "fast", "aid": _aid(sums, budget), "fallback_scans": fallbacks}
    return Selection(picks, util, "bids", meta)


# -- task-level BIDS -----------------------------------------------------------------------------


def bids_task_naive(Z: np.ndarray, codes: np.ndarray, budget: int, agg: TaskAgg = "mean",
                    task_inf: np.ndarray | None = None) -> Selection:
    """Task-level variant, reference loop: lowest task-mean AID first, then its most influential row."""
    N, M = Z.shape
    _check_budget(N, budget)
    T = int(codes.max()) + 1
    TI = task_influence(Z, codes, T, agg) if task_inf is None else task_inf
    selected = np.zeros(N, dtype=bool)
    sums = np.zeros(M, dtype=np.float64)
    picks = np.empty(budget, dtype=np.intp)
    util = np.empty(budget, dtype=np.float64)
    for t in range(budget):
        tstar = int(np.argmin(_task_aid(_aid(sums, t), codes, T)))
        c = TI[:, tstar].copy()
        c[selected] = -np.inf
        i = int(np.argmax(c))
        picks[t], util[t] = i, c[i]
        selected[i] = True
        sums += Z[i]
    return Selection(picks, util, "bids", {"mode": "task", "loop": "naive", "aid": _aid(sums, budget)})


def bids_task_fast(Z: np.ndarray, codes: np.ndarray, budget: int, agg: TaskAgg = "mean",
                   task_inf: np.ndarray | None = None) -> Selection:
    """Task-level variant with one sorted list and pointer per task; same picks as the naive loop."""
    N, M = Z.shape
    _check_budget(N, budget)
    T = int(codes.max()) + 1
    TI = task_influence(Z, codes, T, agg) if task_inf is None else task_inf
    order = [np.argsort(-TI[:, t], kind="stable") for t in range(T)]
    ptr = [0] * T
    selected = np.zeros(N, dtype=bool)
    sums = np.zeros(M, dtype=np.float64)
    picks = np.empty(budget, dtype=np.intp)
    util = np.empty(budget, dtype=np.float64)
    for t in range(budget):
        tstar = int(np.argmin(_task_aid(_aid(sums, t), codes, T)))
        o, k = order[tstar], ptr[tstar]
        while selected[o[k]]:
            k += 1
        ptr[tstar] = k
        i = int(o[k])
        picks[t], util[t] = i, TI[i, tstar]
        selected[i] = True
        sums += Z[i]
    return Selection(picks, util, "bids", {"mode": "task", "loop": "fast", "aid": _aid(sums, budget)})


# -- one-shot baselines --------------------------------------------------------------------------


def baseline_scores(Z: np.ndarray, how: Method, codes: np.ndarray | None = None) -> np.ndarray:
    """One score per row: task_max (LESS), instance_max or sum over the columns."""
    if how == "task_max":
        if codes is None:
            raise ValueError("task_max needs a task per column")
        return task_influence(Z, codes, int(codes.max()) + 1, "mean").max(axis=1)
    out = np.empty(Z.shape[0], dtype=np.float64)
    for lo in range(0, Z.shape[0], _ROW_CHUNK):
        blk = Z[lo : lo + _ROW_CHUNK]
        if how == "instance_max":
            out[lo : lo + _ROW_CHUNK] = blk.max(axis=1)
        elif how == "sum":
            out[lo : lo + _ROW_CHUNK] = blk.sum(axis=1, dtype=np.float64)
        else:
            raise ValueError(f"unknown baseline {how!r}")
    return out


def top_k(scores: np.ndarray, k: int, method: str) -> Selection:
    """The k highest scores, ties to the lowest row index."""
    _check_budget(scores.size, k)
    idx = np.argsort(-scores, kind="stable")[:k]
    return Selection(idx, scores[idx], method)


# -- the whole method ---------------------------------------------------------------------------


def select(A: np.ndarray, budget: int, *, method: Method = "bids", codes: np.ndarray | None = None,
           normalize: bool = True, mode: Mode = "instance", task_agg: TaskAgg = "mean",
           loop: Literal["fast", "naive"] = "fast", norm: Normalized | None = None) -> Selection:
    """Normalise (optionally), then run BIDS or a baseline. ``codes``: task index per column of A."""
    kept = np.arange(A.shape[1])
    Z = A
    if normalize:
        norm = zscore_columns(A) if norm is None else norm
        Z, kept = norm.Z, norm.kept
        if kept.size == 0:
            raise ValueError("every column has zero variance; nothing to select on")
    zc = None if codes is None else np.asarray(codes)[kept]
    if method == "bids":
        if mode == "task":
            if zc is None:
                raise ValueError("mode='task' needs a task per column")
            _, zc = np.unique(zc, return_inverse=True)  # tasks left after dropping columns
            fn = bids_task_fast if loop == "fast" else bids_task_naive
            sel = fn(Z, zc, budget, task_agg)
        else:
            sel = (bids_fast if loop == "fast" else bids_naive)(Z, budget)
    else:
        if method == "task_max" and zc is not None:
            _, zc = np.unique(zc, return_inverse=True)
        sel = top_k(baseline_scores(Z, method, zc), budget, method)
    sel.meta.update(normalize=normalize, kept=kept)
    return sel


def task_report(Z: np.ndarray, codes: np.ndarray, n_tasks: int, indices: np.ndarray,
                task_inf: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per task: share of the picks it owns, and the mean (and std over its columns) of the picks' Z.

    A pick "belongs" to the task on which its task-mean normalised influence is highest, so BIDS and
    the baselines are described by one rule on the same normalised matrix.
    """
    TI = task_influence(Z, codes, n_tasks, "mean") if task_inf is None else task_inf
    owner = TI[indices].argmax(axis=1)
    share = np.bincount(owner, minlength=n_tasks) / max(len(indices), 1)
    col_mean = Z[indices].mean(axis=0, dtype=np.float64) if len(indices) else np.zeros(Z.shape[1])
    cnt = np.bincount(codes, minlength=n_tasks)
    tmean = np.bincount(codes, weights=col_mean, minlength=n_tasks) / np.maximum(cnt, 1)
    tsq = np.bincount(codes, weights=col_mean**2, minlength=n_tasks) / np.maximum(cnt, 1)
    tstd = np.sqrt(np.maximum(tsq - tmean**2, 0.0))
    return {"share": share, "mean_influence": tmean, "column_std": tstd, "owner": owner}
