"""Meta-rater core (Zhuang et al., ACL 2025): learn how to weight K quality scores from proxy runs.

Arrays in, arrays out; no pydantic, no tool context. The steps follow the paper's pseudo-code and
RegMix (Liu et al. 2024), which it follows for the regression and the search:

1. ``normalize_scores``: put the K scores on one scale, per column: percentile ranks (default; ties
   share their mean rank) or a robust z-score ((x - median) / (1.4826 MAD), clipped to +-3).
2. ``sample_weights``: R weight vectors on the simplex. As RegMix's sampler: each draw picks a
   concentration from 15 log-spaced values in [0.1, 5] and samples Dirichlet(concentration / K), so
   the draws range from nearly one-hot to nearly uniform.
3. For each w: ``select_top`` ranks documents by ``X @ w`` and takes the best until a token budget;
   a proxy LM trains on them and reports validation loss (the caller's ``run_proxy``).
4. ``fit_regressor``: LightGBM (RegMix's choice) or ridge from w to loss. The fit is checked by
   out-of-fold Spearman correlation (k-fold over the proxy runs); ``"auto"`` keeps whichever of the
   two has the better out-of-fold Spearman and uses ridge alone when there are fewer than 24 runs.
5. ``search``: draw many candidate w from the same sampler, predict their loss, and average the
   ``top_k`` with the lowest predicted loss (RegMix averages the top 128 of 100 000).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Normalization = Literal["rank", "robust_z"]
RegressorName = Literal["auto", "lightgbm", "ridge"]
MIN_LGBM_RUNS = 24


# ---------------------------------------------------------------------------------- normalization


def normalize_scores(X: np.ndarray, how: Normalization = "rank") -> tuple[np.ndarray, np.ndarray]:
    """Each column on one scale; also returns which columns are constant (their output is 0).

    NaNs (a score missing for a document) get the column's median scale value (0.5 rank, 0 z).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (documents x signals); got shape {X.shape}")
    n, k = X.shape
    out = np.zeros((n, k), dtype=np.float64)
    constant = np.zeros(k, dtype=bool)
    for j in range(k):
        col = X[:, j]
        ok = np.isfinite(col)
        vals = col[ok]
        if vals.size == 0 or np.ptp(vals) == 0:
            constant[j] = True
            continue
        if how == "rank":
            out[:, j] = 0.5
            out[ok, j] = _mean_ranks(vals) / vals.size
        elif how == "robust_z":
            med = np.median(vals)
            mad = 1.4826 * np.median(np.abs(vals - med))
            if mad == 0:  # more than half the values equal: fall back to the standard deviation
                mad = vals.std()
            out[ok, j] = np.clip((vals - med) / mad, -3.0, 3.0)
        else:
            raise ValueError(f"unknown normalization {how!r}")
    return out, constant


def _mean_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their mean rank (scipy.stats.rankdata 'average', without scipy)."""
    order = np.argsort(v, kind="stable")
    sv = v[order]
    starts = np.r_[0, np.flatnonzero(sv[1:] != sv[:-1]) + 1]
    ends = np.r_[starts[1:], sv.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1..ends
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


# ---------------------------------------------------------------------------------- weights


def sample_weights(k: int, n: int, rng: np.random.Generator, *, min_strength: float = 0.1,
                   max_strength: float = 5.0) -> np.ndarray:
    """``n`` weight vectors on the K-simplex, Dirichlet with a random concentration per draw (RegMix)."""
    strengths = np.logspace(np.log10(min_strength), np.log10(max_strength), 15)
    conc = rng.choice(strengths, size=n)
    # Dirichlet(a * 1/K) per row via normalised Gamma draws; a floor keeps every row finite
    g = rng.gamma(shape=np.repeat((conc / k)[:, None], k, axis=1), size=(n, k))
    g = np.maximum(g, 1e-300)
    return g / g.sum(1, keepdims=True)


# ---------------------------------------------------------------------------------- selection


def select_top(scores: np.ndarray, doc_tokens: np.ndarray, budget_tokens: float) -> np.ndarray:
    """Indices of the best documents by score until their tokens reach the budget (ties: lower index first)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(scores.size), -scores))
    cum = np.cumsum(np.asarray(doc_tokens, dtype=np.float64)[order])
    n = int(np.searchsorted(cum, budget_tokens, side="left")) + 1
    return order[: min(max(n, 1), scores.size)]


# ---------------------------------------------------------------------------------- regression


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra, rb = _mean_ranks(a), _mean_ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


class _Ridge:
    """Kernel ridge regression with an RBF kernel on the weights; width and penalty by leave-one-out.

    Selection quality is not linear in w (mixing signals can beat every corner of the simplex), and
    polynomial fits extrapolate wildly from tens of runs; an RBF fit reverts to the mean loss away from
    the runs, so the search stays where there is evidence.
    """

    def fit(self, W: np.ndarray, y: np.ndarray) -> _Ridge:
        self.W = np.asarray(W, np.float64)
        self.y0 = float(y.mean())
        yc = y - self.y0
        d2 = _sqdist(self.W, self.W)
        scale = np.median(d2[np.triu_indices(len(W), 1)]) if len(W) > 1 else 1.0
        best = None
        for g in (0.1, 0.3, 1.0, 3.0, 10.0):
            Kx = np.exp(-d2 * g / max(scale, 1e-12))
            evals, evecs = np.linalg.eigh(Kx)
            evals = np.maximum(evals, 0)
            proj = evecs.T @ yc
            for alpha in np.logspace(-4, 1, 16):
                shrink = evals / (evals + alpha)
                fitted = evecs @ (shrink * proj)
                h = (evecs**2 * shrink).sum(1)
                loo = np.mean(((yc - fitted) / np.maximum(1 - h, 1e-6)) ** 2)
                if best is None or loo < best[0]:
                    best = (loo, g, alpha, evecs @ (proj / (evals + alpha)))
        _, self.gamma, self.alpha, self.dual = best
        self.gamma /= max(scale, 1e-12)
        return self

    def predict(self, W: np.ndarray) -> np.ndarray:
        return np.exp(-_sqdist(np.asarray(W, np.float64), self.W) * self.gamma) @ self.dual + self.y0


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.maximum((A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T, 0.0)


class _LGBM:
    """LightGBM regressor with RegMix's settings scaled to tens of runs (small leaves, lr 0.05)."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, W: np.ndarray, y: np.ndarray) -> _LGBM:
        import lightgbm as lgb

        n = W.shape[0]
        params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 8,
                  "min_data_in_leaf": max(2, n // 16), "min_data_in_bin": 1, "feature_fraction": 1.0,
                  "bagging_fraction": 1.0, "lambda_l2": 1.0, "verbose": -1, "seed": self.seed,
                  "deterministic": True, "force_row_wise": True, "num_threads": 1}
        self.booster = lgb.train(params, lgb.Dataset(W, y, params={"verbose": -1}), num_boost_round=300)
        return self

    def predict(self, W: np.ndarray) -> np.ndarray:
        return self.booster.predict(W, num_threads=1)


def _make(name: str, seed: int) -> Any:
    return _LGBM(seed) if name == "lightgbm" else _Ridge()


@dataclass
class RegressorFit:
    name: str
    model: Any
    spearman: float  # out-of-fold over the proxy runs
    oof_pred: np.ndarray
    candidates: dict[str, float] = field(default_factory=dict)  # name -> out-of-fold Spearman

    def predict(self, W: np.ndarray) -> np.ndarray:
        return self.model.predict(W)


def _oof(name: str, W: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    n = W.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    pred = np.empty(n, dtype=np.float64)
    for f in range(folds):
        test = perm[f::folds]
        train = np.setdiff1d(perm, test)
        pred[test] = _make(name, seed).fit(W[train], y[train]).predict(W[test])
    return pred


def fit_regressor(W: np.ndarray, y: np.ndarray, *, kind: RegressorName = "auto", folds: int = 5,
                  seed: int = 0) -> RegressorFit:
    """Fit weights -> loss; the out-of-fold Spearman says how well the fit ranks unseen weights."""
    W, y = np.asarray(W, np.float64), np.asarray(y, np.float64)
    n = W.shape[0]
    if n < 6:
        raise ValueError(f"need at least 6 proxy runs to fit and check a regressor; got {n}")
    folds = min(folds, n // 2)
    names = ["ridge"] if kind == "ridge" or (kind == "auto" and n < MIN_LGBM_RUNS) else \
        ["lightgbm"] if kind == "lightgbm" else ["ridge", "lightgbm"]
    cands = {name: _oof(name, W, y, folds, seed) for name in names}
    scores = {name: spearman(p, y) for name, p in cands.items()}
    best = max(names, key=lambda nm: -np.inf if np.isnan(scores[nm]) else scores[nm])
    return RegressorFit(best, _make(best, seed).fit(W, y), scores[best], cands[best], scores)


def sample_around(center: np.ndarray, n: int, rng: np.random.Generator, *, strength: float = 50.0) -> np.ndarray:
    """``n`` weight vectors near ``center``: Dirichlet(1/K + strength * center)."""
    k = center.size
    g = rng.gamma(shape=np.repeat((1.0 / k + strength * center)[None, :], n, axis=0))
    g = np.maximum(g, 1e-300)
    return g / g.sum(1, keepdims=True)


def search(fit: RegressorFit, k: int, rng: np.random.Generator, *, n_search: int = 100_000,
           top_k: int = 128, center: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RegMix's simulation: the mean of the ``top_k`` candidate weights with the lowest predicted loss.

    With ``center``, half the candidates are drawn near it (the refinement round's neighbourhood).
    """
    cand = sample_weights(k, n_search, rng)
    if center is not None:
        cand[n_search // 2 :] = sample_around(center, n_search - n_search // 2, rng)
    pred = np.concatenate([fit.predict(cand[s : s + 20_000]) for s in range(0, n_search, 20_000)])
    best = np.argsort(pred, kind="stable")[: min(top_k, n_search)]
    w = cand[best].mean(0)
    return w / w.sum(), pred[best]


# ---------------------------------------------------------------------------------- the loop


@dataclass
class MetaRaterFit:
    weights: np.ndarray  # learned w*, on the simplex
    proxy_weights: np.ndarray  # (R, K) the sampled w_r
    proxy_loss: np.ndarray  # (R,) measured
    fit: RegressorFit
    predicted_best: float  # mean predicted loss of the averaged top-k
    diagnostics: dict[str, Any] = field(default_factory=dict)


def metarater_fit(
    Xn: np.ndarray,
    doc_tokens: np.ndarray,
    budget_tokens: float,
    run_proxy: Callable[[np.ndarray, np.ndarray], float],
    *,
    run_batch: Callable[[list[np.ndarray]], list[float]] | None = None,
    n_proxies: int = 64,
    refine_fraction: float = 0.25,
    regressor: RegressorName = "auto",
    n_search: int = 100_000,
    top_k: int = 128,
    seed: int = 0,
) -> MetaRaterFit:
    """The whole loop on normalised scores ``Xn`` (N x K); ``run_proxy(w, selected_idx) -> loss``
    (or ``run_batch([selected_idx, ...]) -> losses`` for a round at once).

    ``refine_fraction`` of the proxy runs (0 = the paper's single round) are spent in a second round
    drawn around the first round's w*, where the regressor's fit matters most; the final fit and
    search use every run.
    """
    rng = np.random.default_rng(seed)
    k = Xn.shape[1]
    n_refine = int(round(n_proxies * refine_fraction)) if n_proxies - int(round(n_proxies * refine_fraction)) >= 12 \
        else 0
    W = sample_weights(k, n_proxies - n_refine, rng)
    losses: list[float] = []

    def measure(batch: np.ndarray) -> None:
        picks = [select_top(Xn @ w, doc_tokens, budget_tokens) for w in batch]
        if run_batch is not None:  # e.g. proxies trained in parallel
            losses.extend(float(v) for v in run_batch(picks))
        else:
            losses.extend(float(run_proxy(w, idx)) for w, idx in zip(batch, picks, strict=True))

    measure(W)
    center = None
    if n_refine:
        first = fit_regressor(W, np.asarray(losses), kind=regressor, seed=seed)
        center, _ = search(first, k, rng, n_search=n_search, top_k=top_k)
        extra = sample_around(center, n_refine, rng)
        measure(extra)
        W = np.vstack([W, extra])
    y = np.asarray(losses)
    fit = fit_regressor(W, y, kind=regressor, seed=seed)
    w_star, pred = search(fit, k, rng, n_search=n_search, top_k=top_k, center=center)
    return MetaRaterFit(w_star, W, y, fit, float(pred.mean()),
                        {"oof_spearman": fit.spearman, "regressor": fit.name, "candidates": fit.candidates,
                         "refine_runs": n_refine})
