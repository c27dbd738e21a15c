"""Evaluation metrics shared by every selector (research notes, sections 1 and 7.5).

Plain functions over NumPy arrays, no tool context, so selectors, benchmarks and notebooks all
report the same numbers.

KL reduction (Xie et al., DSIR, section 4): on hashed n-gram features,

    KLred = mean over targets p of [ KL(p || q) - KL(p || p_sel) ]

where q is the feature distribution of the raw pool (what a random selection has in expectation)
and p_sel that of the selected documents. Positive means the selection is closer to the targets
than random data; the paper reports it correlates with downstream accuracy (r = 0.82). The
distributions get the reference's 1e-8 floor so the divergences stay finite. It is in nats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KL_EPS = 1e-8


def _normalise(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"expected a 1-d count vector, got shape {c.shape}")
    if (c < 0).any():
        raise ValueError("counts must be non-negative")
    total = c.sum()
    if total <= 0:
        raise ValueError("counts sum to zero: no features to compare")
    return c / total


def kl_divergence(p_counts: np.ndarray, r_counts: np.ndarray, eps: float = KL_EPS) -> float:
    """KL(p || r) in nats between two count vectors over the same buckets, with an ``eps`` floor."""
    p = _normalise(p_counts)
    r = _normalise(r_counts)
    if p.shape != r.shape:
        raise ValueError(f"count vectors differ in length: {p.shape} vs {r.shape}")
    nz = p > 0
    return float(np.sum(p[nz] * (np.log(p[nz] + eps) - np.log(r[nz] + eps))))


def kl_reduction(
    selected_counts: np.ndarray,
    raw_counts: np.ndarray,
    target_counts: np.ndarray | Sequence[np.ndarray],
    eps: float = KL_EPS,
) -> float:
    """Mean over targets of ``KL(target || raw) - KL(target || selected)`` (nats; higher is better).

    ``target_counts`` is one (B,) vector or several (a (T, B) array or a list).
    """
    tc = np.asarray(target_counts, dtype=np.float64)
    targets = [tc] if tc.ndim == 1 else list(tc)
    vals = [kl_divergence(t, raw_counts, eps) - kl_divergence(t, selected_counts, eps) for t in targets]
    return float(np.mean(vals))


def hashed_ngram_counts(
    texts: Sequence[str], *, ngrams: int = 2, num_buckets: int = 10_000, hash: str = "fast"
) -> np.ndarray:
    """Bucket counts of hashed unigrams..n-grams summed over ``texts`` (DSIR's feature space)."""
    from tools.dsir.core import FeatureConfig, featurize_texts

    cfg = FeatureConfig(ngrams=ngrams, num_buckets=num_buckets, hash=hash)  # type: ignore[arg-type]
    return featurize_texts(list(texts), cfg).counts(num_buckets)


def kl_reduction_texts(
    selected: Sequence[str],
    raw: Sequence[str],
    targets: Sequence[str] | Sequence[Sequence[str]],
    *,
    ngrams: int = 2,
    num_buckets: int = 10_000,
    hash: str = "fast",
) -> float:
    """KL reduction from texts: ``targets`` is one list of texts or a list of such lists."""
    groups = [targets] if targets and isinstance(targets[0], str) else list(targets)
    kw = {"ngrams": ngrams, "num_buckets": num_buckets, "hash": hash}
    sel = hashed_ngram_counts(selected, **kw)
    rawc = hashed_ngram_counts(raw, **kw)
    tcs = [hashed_ngram_counts(g, **kw) for g in groups]  # type: ignore[arg-type]
    return kl_reduction(sel, rawc, tcs)


def ot_distance(
    target_emb: np.ndarray,
    selected_emb: np.ndarray,
    weights: np.ndarray | None = None,
    method: str = "emd",
    reg: float | None = None,
) -> float:
    """OT distance (TSDS's alignment term, notes 7.5): W1 with Euclidean ground cost between the
    uniform measure on ``target_emb`` and ``selected_emb`` weighted by ``weights`` (uniform if None).

    ``method="emd"``: exact (POT's network simplex, ``ot.emd2``); ``"sinkhorn"``: entropic
    (``ot.sinkhorn2``), ``reg`` defaulting to 0.05 x the median pairwise distance. The cost matrix is
    n x m, so callers subsample large sets (and should say so).
    """
    import ot

    if method not in ("emd", "sinkhorn"):
        raise ValueError(f"method must be 'emd' or 'sinkhorn'; got {method!r}")
    a = np.full(len(target_emb), 1.0 / len(target_emb))
    if weights is None:
        b = np.full(len(selected_emb), 1.0 / len(selected_emb))
    else:
        b = np.asarray(weights, dtype=np.float64)
        b = b / b.sum()
    cost = ot.dist(np.asarray(target_emb, np.float64), np.asarray(selected_emb, np.float64), metric="euclidean")
    if method == "emd":
        return float(ot.emd2(a, b, cost, numItermax=1_000_000))
    r = reg if reg is not None else 0.05 * float(np.median(cost))
    return float(ot.sinkhorn2(a, b, cost, r))
