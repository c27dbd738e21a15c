"""RegMix (Liu et al., 2024): data mixture as regression over small proxy runs.

1. Configs: draws from Dirichlet(prior_T * strength), prior_T the token shares tempered by
   ``temp`` (0.5), strength one of 15 log-spaced values in [0.1, 5]; draws where a domain exceeds
   ``max_usage`` epochs (weight > min(max_usage * prior_i, 1)) are rejected; weights below
   ``minimum`` zeroed, renormalised, rounded to multiples of ``minimum``; deduplicated; a seeded
   subset of ``n_configs`` kept. (The reference's sampler, sail-sg/regmix synthesize_mixture.py.)
2. Proxy runs: one small model per config, the target metric (a validation loss) recorded.
3. Regression: LightGBM (gbdt, 1000 rounds, learning rate 1e-2, seed 42, early stopping 3 rounds
   on a held-out split) from mixture to metric; Spearman on held-out runs is the fit quality.
4. Simulation: 100,000 mixtures from Dirichlet(untempered prior), predicted, and the mean of the
   ``top_k`` (128) lowest predicted losses is the proposal.

A user's own proxy-run tables (a mixtures table and a metrics table, CSV or Parquet, joined on an
index column; or one table with both) fit the same regression (:func:`read_runs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def sample_configs(prior: np.ndarray, n_configs: int = 512, *, temp: float = 0.5, min_strength: float = 0.1,
                   max_strength: float = 5.0, n_strengths: int = 15, max_usage: float = 15.0,
                   minimum: float = 2e-4, multiplier: int = 100, seed: int = 42) -> np.ndarray:
    """RegMix's mixture sampler; (n_configs, D), rows on the simplex."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    tempered = prior ** temp
    tempered /= tempered.sum()
    strengths = np.exp(np.linspace(np.log(min_strength), np.log(max_strength), n_strengths))
    cap = np.minimum(max_usage * prior, 1.0)
    alpha_floor = 1e-12
    seen: set[bytes] = set()
    kept: list[np.ndarray] = []
    draws = n_configs * multiplier
    for _ in range(draws):
        s = strengths[rng.integers(n_strengths)]
        w = rng.dirichlet(np.maximum(tempered * s, alpha_floor))
        if np.any(w > cap):
            continue
        w = np.where(w < minimum, 0.0, w)
        if w.sum() <= 0:
            continue
        units = np.round(w / w.sum() / minimum).astype(np.int64)
        units[np.argmax(units)] += int(round(1.0 / minimum)) - int(units.sum())  # exact sum, still multiples
        if units.min() < 0:
            continue
        w = units * minimum
        key = units.tobytes()
        if key not in seen:
            seen.add(key)
            kept.append(w)
    if not kept:
        raise ValueError("the sampler kept no configuration (max_usage too tight for this prior?)")
    arr = np.asarray(kept)
    if len(arr) > n_configs:
        arr = arr[rng.choice(len(arr), n_configs, replace=False)]
    return arr


@dataclass
class Fit:
    model: Any
    kind: str
    n_train: int
    spearman_val: float | None

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(X, dtype=np.float64)), dtype=np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def fit_regressor(X: np.ndarray, y: np.ndarray, *, kind: str = "lightgbm", seed: int = 42,
                  val_fraction: float = 0.0, num_iterations: int = 1000, learning_rate: float = 1e-2,
                  early_stopping: int = 3, min_data_in_leaf: int = 20) -> Fit:
    """LightGBM (RegMix's parameters) or ridge from mixtures X (N, D) to a metric y (N,).

    With ``val_fraction`` > 0 a seeded split holds out runs for early stopping and the fit's
    Spearman; otherwise all runs are used for ``num_iterations`` rounds.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.shape[0] != y.shape[0] or X.shape[0] < 4:
        raise ValueError(f"need at least 4 proxy runs with one metric each; got {X.shape[0]} and {y.shape[0]}")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(X.shape[0])
    n_val = int(round(val_fraction * X.shape[0])) if val_fraction > 0 else 0
    va, tr = idx[:n_val], idx[n_val:]
    if kind == "ridge":
        from sklearn.linear_model import RidgeCV

        model = RidgeCV(alphas=np.logspace(-6, 2, 17)).fit(X[tr], y[tr])
    elif kind == "lightgbm":
        import lightgbm as lgb

        params = {"boosting_type": "gbdt", "objective": "regression", "metric": ["l1", "l2"],
                  "learning_rate": learning_rate, "seed": seed, "verbose": -1, "num_threads": 1,
                  "deterministic": True, "force_col_wise": True,
                  "min_data_in_leaf": min_data_in_leaf}
        dtrain = lgb.Dataset(X[tr], y[tr])
        if n_val:
            dval = lgb.Dataset(X[va], y[va], reference=dtrain)
            model = lgb.train(params, dtrain, num_boost_round=num_iterations, valid_sets=[dval],
                              callbacks=[lgb.early_stopping(early_stopping, verbose=False)])
        else:
            model = lgb.train(params, dtrain, num_boost_round=num_iterations)
    else:
        raise ValueError(f"kind must be lightgbm or ridge; got {kind!r}")
    fit = Fit(model, kind, int(tr.size), None)
    if n_val >= 3:
        fit.spearman_val = spearman(fit.predict(X[va]), y[va])
    return fit


def simulate(fit: Fit, prior: np.ndarray, *, n_sim: int = 100_000, top_k: int = 128, seed: int = 42,
             maximize: bool = False) -> tuple[np.ndarray, float]:
    """Mean of the ``top_k`` best predicted mixtures among ``n_sim`` Dirichlet(prior) draws."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    cand = rng.dirichlet(np.maximum(prior, 1e-6), size=n_sim)
    pred = fit.predict(cand)
    order = np.argsort(-pred if maximize else pred)[: min(top_k, n_sim)]
    w = cand[order].mean(0)
    return w / w.sum(), float(pred[order].mean())


# ------------------------------------------------------------------- user-supplied proxy-run tables


def _read(path: Path) -> Any:
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    raise ValueError(f"{path}: a proxy-run table must be .csv, .tsv or .parquet")


def _strip(name: str, prefixes: tuple[str, ...], suffixes: tuple[str, ...]) -> str:
    for p in prefixes:
        if name.startswith(p):
            name = name[len(p):]
    for s in suffixes:
        if name.endswith(s):
            name = name[: -len(s)]
    return name


MIX_PREFIXES = ("train_", "weight_", "mix_")
METRIC_PREFIXES = ("metric/", "metric_")
METRIC_SUFFIXES = ("_val_loss", "_loss")


@dataclass
class Runs:
    domains: list[str]  # mixture columns (prefix stripped)
    X: np.ndarray  # (N, D) mixtures
    metrics: dict[str, np.ndarray]  # metric name (stripped) -> (N,)
    source: str


def read_runs(mixtures: str | Path, metrics: str | Path | None = None, *, index: str = "index") -> Runs:
    """Proxy runs from a mixtures table and a metrics table joined on ``index`` (or one table).

    Mixture columns are every column starting ``train_``/``weight_``/``mix_`` (or, in a two-table
    layout, every numeric column of the mixtures table but the index); metric columns start
    ``metric/``/``metric_`` or end ``_loss``. Errors name the file and the missing column.
    """
    mpath = Path(mixtures)
    if not mpath.exists():
        raise FileNotFoundError(f"{mpath}: no such file")
    mix = _read(mpath)
    if metrics is not None:
        lpath = Path(metrics)
        if not lpath.exists():
            raise FileNotFoundError(f"{lpath}: no such file")
        met = _read(lpath)
        for name, df, p in (("mixtures", mix, mpath), ("metrics", met, lpath)):
            if index not in df.columns:
                raise KeyError(f"{p}: the {name} table has no {index!r} column to join on "
                               f"(columns: {', '.join(map(str, df.columns[:8]))})")
        mix_cols = [c for c in mix.columns if c != index and str(c).startswith(MIX_PREFIXES)] or \
            [c for c in mix.columns if c != index and np.issubdtype(mix[c].dtype, np.number)]
        met_cols = [c for c in met.columns if c != index and np.issubdtype(met[c].dtype, np.number)]
        joined = mix[[index, *mix_cols]].merge(met[[index, *met_cols]], on=index, how="inner")
        if joined.empty:
            raise KeyError(f"{mpath} and {lpath}: no {index!r} value in common")
        src = f"{mpath} + {lpath}"
    else:
        joined = mix
        mix_cols = [c for c in mix.columns if str(c).startswith(MIX_PREFIXES)]
        met_cols = [c for c in mix.columns if str(c).startswith(METRIC_PREFIXES) or str(c).endswith("_loss")]
        src = str(mpath)
    if len(mix_cols) < 2:
        raise KeyError(f"{mpath}: needs at least two mixture columns (named train_<domain>, weight_<domain> "
                       f"or mix_<domain>); found {mix_cols}")
    if not met_cols:
        raise KeyError(f"{src}: no metric column (named metric/<name>, metric_<name> or <name>_loss)")
    X = joined[mix_cols].to_numpy(dtype=np.float64)
    if np.isnan(X).any():
        bad = [c for c in mix_cols if joined[c].isna().any()]
        raise ValueError(f"{mpath}: missing values in mixture columns {bad[:5]}")
    doms = [_strip(str(c), MIX_PREFIXES, ()) for c in mix_cols]
    mets = {_strip(str(c), METRIC_PREFIXES, METRIC_SUFFIXES): joined[c].to_numpy(dtype=np.float64)
            for c in met_cols}
    return Runs(doms, X, mets, src)


def metric_for(runs: Runs, name: str) -> np.ndarray:
    """A metric by name (exact, or a unique substring match: "pile_cc" finds "the_pile_pile_cc")."""
    if name in runs.metrics:
        return runs.metrics[name]
    hits = [k for k in runs.metrics if name in k]
    if len(hits) == 1:
        return runs.metrics[hits[0]]
    raise KeyError(f"{runs.source}: metric {name!r} {'is ambiguous: ' + ', '.join(hits) if hits else 'not found'}; "
                   f"metrics are {', '.join(list(runs.metrics)[:10])}")


def align(runs: Runs, domains: list[str]) -> np.ndarray:
    """The runs' mixtures with columns in ``domains`` order (unknown names raise)."""
    pos = {d: i for i, d in enumerate(runs.domains)}
    missing = [d for d in domains if d not in pos]
    if missing:
        raise KeyError(f"{runs.source}: no mixture column for {missing}; columns are {runs.domains[:10]}")
    return runs.X[:, [pos[d] for d in domains]]
