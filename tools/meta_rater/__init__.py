"""meta_rater: learn how to weight K quality scores from proxy runs, then select by the learned score.

``run`` joins the scores artifacts to the pool on id, normalises each signal, and runs the Meta-rater
loop of :mod:`tools.meta_rater.core`: R random weight vectors, each selecting the top documents up to
the proxy's token share, a proxy trained on them and scored on the validation texts, a regressor from
weights to loss, a RegMix search. The learned weights score every document; the selection keeps the
best by that score. Two more proxy runs, on the learned selection and on a random one of the same
tokens, say whether the weighting helps.

Proxy runs are cached in the workspace (``cache/meta_rater``) keyed by the proxy settings, the
validation set and the selected ids, so a rerun (or a crash in the middle) reuses every finished run
and two weight vectors that select the same documents share one run. Rows are processed in id order,
so results do not depend on the pool's row order. Documents with empty text and documents without a
scores row are skipped and counted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import ReadStats, read_batches
from tools.errors import BadInput, field_error
from tools.meta_rater import core
from tools.meta_rater.proxies import ProxyRunner
from tools.meta_rater.schema import SPEC, MetaRaterMetrics, MetaRaterRequest, MetaRaterResult
from tools.selection import format_domain_counts, record_selection, selection_table

__all__ = ["SPEC", "MetaRaterMetrics", "MetaRaterRequest", "MetaRaterResult", "run", "core"]


# ------------------------------------------------------------------------------------ inputs


def read_score_tables(refs: Any, ctx: ToolContext, tool: str, field: str = "scores") -> Any:
    """Score tables (artifact ids or Parquet/CSV/JSONL paths) joined on ``id``; numeric columns only."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from tools.artifacts import Artifact
    from tools.refs import resolve_input

    refs = refs if isinstance(refs, list) else [refs]
    if not refs:
        raise field_error(tool, field, "at least one scores artifact or file", refs)
    joined = None
    for i, ref in enumerate(refs):
        where = f"{tool}.{field}" + (f"[{i}]" if len(refs) > 1 else "")
        res = resolve_input(ref, ctx, field=where)
        t = res.table() if isinstance(res, Artifact) else _read_table_file(Path(res), where)
        if "id" not in t.column_names:
            raise BadInput(f"has no 'id' column (columns: {', '.join(t.column_names[:12])})", where=where)
        t = t.set_column(t.column_names.index("id"), "id", pc.cast(t.column("id"), pa.string()))
        if pc.count_distinct(t.column("id")).as_py() != t.num_rows:
            raise BadInput("has repeated ids; one row per document is needed", where=where)
        keep = ["id"] + [c for c in t.column_names if c != "id" and (
            pa.types.is_integer(t.schema.field(c).type) or pa.types.is_floating(t.schema.field(c).type)
            or pa.types.is_boolean(t.schema.field(c).type))]
        t = t.select(keep)
        if joined is None:
            joined = t
            continue
        clash = [c for c in t.column_names[1:] if c in joined.column_names]
        if clash:
            t = t.rename_columns(["id"] + [f"{c}_{i}" if c in clash else c for c in t.column_names[1:]])
        joined = joined.join(t, "id", join_type="full outer", coalesce_keys=True)
    return joined


def _read_table_file(path: Path, where: str) -> Any:
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet" or path.is_dir():
            return pq.read_table(path)
        if path.suffix in (".csv", ".tsv"):
            return pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter="\t" if path.suffix == ".tsv"
                                                                         else ","))
        if path.suffix in (".jsonl", ".json"):
            return pjson.read_json(path)
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's fault
        raise BadInput(f"cannot read {path}: {e}", where=where) from None
    raise BadInput(f"must be a scores artifact id or a .parquet/.csv/.jsonl file; got {path}", where=where)


def _hash_rank(ids: list[str], seed: int) -> np.ndarray:
    """A seeded pseudo-random order of ids that does not depend on their row order."""
    h = [int.from_bytes(hashlib.blake2b(f"{seed}\x00{i}".encode(), digest_size=8).digest(), "little") for i in ids]
    return np.argsort(np.asarray(h, dtype=np.uint64), kind="stable")


@dataclass
class _Pool:
    """The usable pool in id order: documents with text and a scores row (``score_rows``: their row there)."""

    ids: list[str]
    texts: list[str]
    domains: list[str | None]
    score_rows: np.ndarray
    tokens: np.ndarray
    rows_in: int
    skipped: dict[str, int]


def _read_pool(request: MetaRaterRequest, ctx: ToolContext, scores: Any) -> _Pool:
    """Join the pool to the scores on id; drop empty texts and unscored documents (counted); id order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stats = ReadStats()
    ids, texts, domains = [], [], []
    for b in read_batches(request.corpus, ("id", "text", "domain"), allowed_roots=ctx.data_roots, stats=stats):
        ids += b.column("id").to_pylist()
        texts += b.column("text").to_pylist()
        domains += b.column("domain").to_pylist()
    skipped: dict[str, int] = dict(stats.skipped)
    n_read = len(ids)
    text_arr = pa.array(texts, pa.string())
    empty = np.asarray(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text_arr)), 0).fill_null(True))
    pos = np.asarray(pc.index_in(pa.array(ids, pa.string()), value_set=scores.column("id")).fill_null(-1))
    if empty.any():
        skipped["meta_rater_empty_text"] = int(empty.sum())
    no_scores = (pos < 0) & ~empty
    if no_scores.any():
        skipped["meta_rater_no_scores"] = int(no_scores.sum())
    keep = np.flatnonzero(~empty & (pos >= 0))
    if keep.size < 10:
        raise BadInput(f"only {keep.size} of {n_read} documents have text and a scores row (empty text: "
                       f"{int(empty.sum())}, no scores row: {int(no_scores.sum())}); Meta-rater needs at least 10",
                       where="meta_rater.scores")
    keep = keep[np.argsort(np.asarray([ids[i] for i in keep], dtype=object), kind="stable")]
    texts = [texts[i] for i in keep]
    tokens = np.asarray(pc.binary_length(pc.cast(pa.array(texts, pa.string()), pa.binary())), dtype=np.float64)
    return _Pool([ids[i] for i in keep], texts, [domains[i] for i in keep], pos[keep], tokens,
                 n_read + sum(stats.skipped.values()), skipped)


@dataclass
class _Signals:
    """The signals to weight: raw values ``X`` (all requested columns), normalised ``Xn`` (used ones only)."""

    names: list[str]
    X: np.ndarray
    use: list[int]
    Xn: np.ndarray
    dropped: dict[str, str]
    oracle: np.ndarray | None


def _signals(request: MetaRaterRequest, scores: Any, rows: np.ndarray) -> _Signals:
    """The requested numeric columns, normalised; all-missing and constant ones dropped (at least 2 left)."""
    import pyarrow as pa

    numeric = [c for c in scores.column_names if c != "id"]
    if request.columns is not None:
        missing = [c for c in request.columns if c not in numeric]
        if missing:
            raise field_error("meta_rater", "columns", f"numeric columns of the scores ({', '.join(numeric[:20])})",
                              missing)
        cols = list(dict.fromkeys(request.columns))
    else:
        cols = numeric
    oracle = None
    if request.proxy == "oracle":
        if request.oracle_column not in numeric:
            raise field_error("meta_rater", "oracle_column", f"a numeric column of the scores ({', '.join(numeric)})",
                              request.oracle_column)
        oracle = np.asarray(scores.column(request.oracle_column).to_numpy(zero_copy_only=False),
                            dtype=np.float64)[rows]
        cols = [c for c in cols if c != request.oracle_column]
    X = np.stack([np.asarray(scores.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False),
                             dtype=np.float64)[rows] for c in cols], axis=1) if cols else np.zeros((len(rows), 0))
    dropped: dict[str, str] = {}
    all_nan = ~np.isfinite(X).any(0) if cols else np.zeros(0, bool)
    Xn, constant = core.normalize_scores(X, request.normalization)
    for j, c in enumerate(cols):
        if all_nan[j]:
            dropped[c] = "no values"
        elif constant[j]:
            dropped[c] = "zero variance"
    use = [j for j, c in enumerate(cols) if c not in dropped]
    if len(use) < 2:
        raise BadInput(
            f"needs at least 2 signals that vary across documents; got {len(use)} usable of {len(cols)}"
            + (f" (dropped: {', '.join(f'{c}: {why}' for c, why in dropped.items())})" if dropped else "")
            + " - with one signal there is nothing to weight: select by it directly",
            where="meta_rater.scores" if request.columns is None else "meta_rater.columns",
        )
    return _Signals([cols[j] for j in use], X, use, Xn[:, use], dropped, oracle)


@dataclass
class _Validation:
    texts: list[str]
    key: str  # identifies the validation set in the proxy cache
    candidates: np.ndarray  # pool rows the proxies may train on (the held-out rows are not)
    label: str


def _validation(request: MetaRaterRequest, ctx: ToolContext, pool: _Pool) -> _Validation:
    """The validation set's texts (a seeded sample), else a seeded held-out share of the pool."""
    from tools.corpus import read_table

    n = len(pool.ids)
    if request.validation is not None:
        tt = read_table(request.validation, ("id", "text"), allowed_roots=ctx.data_roots)
        t_ids = tt.column("id").to_pylist()
        t_texts = tt.column("text").to_pylist()
        ok = [i for i, t in enumerate(t_texts) if t and t.strip()]
        if not ok:
            raise BadInput("the validation set has no non-empty texts", where="meta_rater.validation")
        order = _hash_rank([t_ids[i] for i in ok], request.seed)[: request.max_validation_docs]
        val_texts = [t_texts[ok[i]] for i in order]
        val_key = hashlib.blake2b("\x00".join(val_texts).encode(), digest_size=16).hexdigest()
        return _Validation(val_texts, val_key, np.arange(n), f"validation set of {len(val_texts)} texts")
    n_hold = max(5, int(round(request.holdout * n)))
    if n - n_hold < 5:
        raise BadInput(f"the pool has {n} usable documents: too few to hold out {n_hold} for validation",
                       where="meta_rater.corpus")
    order = _hash_rank(pool.ids, request.seed)
    hold = np.sort(order[:n_hold])
    val_idx = np.sort(order[: min(n_hold, request.max_validation_docs)])
    val_key = hashlib.blake2b("\x00".join(pool.ids[i] for i in val_idx).encode(), digest_size=16).hexdigest()
    mask = np.ones(n, bool)
    mask[hold] = False
    return _Validation([pool.texts[i] for i in val_idx], val_key, np.flatnonzero(mask),
                       f"{len(val_idx)} held-out pool documents")


@dataclass
class _Learned:
    fit: core.MetaRaterFit
    weights: np.ndarray
    source: str
    search_loss: float
    learned_loss: float
    random_loss: float
    n_proxies: int
    reused: int


def _learn_weights(request: MetaRaterRequest, ctx: ToolContext, pool: _Pool, sig: _Signals,
                   val: _Validation) -> _Learned:
    """The Meta-rater loop on the candidates (proxy runs, regressor, RegMix search), then the two check
    runs: the learned selection and a random one of the same tokens. A measured run that beat the
    searched weights gives the weights instead."""
    cand = val.candidates
    runner = ProxyRunner(request, ctx, [pool.texts[i] for i in cand], [pool.ids[i] for i in cand], val.texts,
                         val.key, None if sig.oracle is None else sig.oracle[cand])
    Xc, tok_c = sig.Xn[cand], pool.tokens[cand]
    n = len(pool.ids)
    share = request.proxy_fraction or (request.fraction if request.k is None else min(1.0, request.k / n))
    budget = share * tok_c.sum()
    n_proxies = request.n_proxies or int(min(256, max(32, 4 * len(sig.names))))
    with ctx.progress("meta_rater: proxy runs", total=n_proxies + 2, unit="runs") as bar:
        def run_proxy(_w: np.ndarray, idx: np.ndarray) -> float:
            loss = runner(idx)
            bar.update(1)
            return loss

        def run_batch(selections: list[np.ndarray]) -> list[float]:
            losses = runner.many(selections)
            bar.update(len(selections))
            return losses

        fit = core.metarater_fit(Xc, tok_c, budget, run_proxy, run_batch=run_batch, n_proxies=n_proxies,
                                 refine_fraction=request.refine_fraction, regressor=request.regressor,
                                 n_search=request.n_search, top_k=request.top_k, seed=request.seed)
        learned_idx = core.select_top(Xc @ fit.weights, tok_c, budget)
        learned_loss = runner(learned_idx)
        bar.update(1)
        perm = np.random.default_rng([request.seed, 7]).permutation(cand.size)
        r_n = int(np.searchsorted(np.cumsum(tok_c[perm]), tok_c[learned_idx].sum())) + 1
        random_loss = runner(perm[: min(r_n, cand.size)])
        bar.update(1)
    search_loss = learned_loss
    w, source = fit.weights, "search"
    best = int(np.argmin(fit.proxy_loss))
    if fit.proxy_loss[best] < learned_loss:
        w, source, learned_loss = fit.proxy_weights[best], "best_run", float(fit.proxy_loss[best])
    return _Learned(fit, w, source, search_loss, learned_loss, random_loss, n_proxies, runner.reused)


def _select(request: MetaRaterRequest, final: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The best documents by the learned score: k of them, or up to the token fraction (row order)."""
    n = final.size
    if request.k is not None:
        if request.k > n:
            raise field_error("meta_rater", "k", f"at most the {n} usable documents", request.k)
        picks = np.lexsort((np.arange(n), -final))[: request.k]
    else:
        picks = core.select_top(final, tokens, request.fraction * tokens.sum())
    return np.sort(picks)


def _write_tables(ctx: ToolContext, request: MetaRaterRequest, pool: _Pool, sig: _Signals, learned: _Learned,
                  final: np.ndarray, weights: dict[str, float]) -> dict[str, str]:
    """The scores (score and percentile per document), the proxy runs, the extremes and the plots."""
    import pyarrow as pa

    from tools.meta_rater import plots

    ids, n, fit, names = pool.ids, len(pool.ids), learned.fit, sig.names
    raw = {nm: sig.X[:, sig.use[j]] for j, nm in enumerate(names)}
    order_all = np.lexsort((np.arange(n), -final))
    rank_pct = np.empty(n)
    rank_pct[order_all] = 1.0 - np.arange(n) / max(n - 1, 1)
    with ctx.artifact("scores", "meta_rater", metrics={"weights": weights, "normalization": request.normalization},
                      rows=RowCounts(rows_in=n, rows_out=n)) as wr:
        wr.table(pa.table({"id": pa.array(ids, pa.string()), "meta_rater_score": pa.array(final),
                           "meta_rater_percentile": pa.array(rank_pct)}))
    out = {"scores": wr.id}

    refine = fit.diagnostics["refine_runs"]
    run_tbl = {f"w_{nm}": fit.proxy_weights[:, j] for j, nm in enumerate(names)}
    run_tbl.update(loss=fit.proxy_loss, predicted_oof=fit.fit.oof_pred,
                   round=np.r_[np.zeros(learned.n_proxies - refine, np.int32), np.ones(refine, np.int32)])
    with ctx.artifact("table", "proxy_runs", metrics={"spearman": fit.fit.spearman, "regressor": fit.fit.name}) as wr:
        wr.table(pa.table(run_tbl))
    out["proxy_runs"] = wr.id
    ext_n = min(10, n // 2)
    ext = np.r_[order_all[:ext_n], order_all[n - ext_n:][::-1]]
    with ctx.artifact("table", "extremes", metrics={"note": "top- and bottom-rated document ids"}) as wr:
        wr.table(pa.table({"position": ["top"] * ext_n + ["bottom"] * ext_n,
                           "id": [ids[i] for i in ext], "meta_rater_score": final[ext],
                           **{nm: v[ext] for nm, v in raw.items()}}))
    out["extremes"] = wr.id

    for label, fig in (
        ("weights", plots.weights_bar(names, learned.weights)),
        ("fit", plots.fit_scatter(fit.proxy_loss, fit.fit.oof_pred, fit.fit.spearman, fit.fit.name)),
        ("histograms", plots.histograms({"meta_rater_score": final, **raw})),
    ):
        with ctx.artifact("plot", f"plot_{label}") as wr:
            wr.figure(fig)
        plots.close(fig)
        out[f"plot_{label}"] = wr.id
    return out


def _summary(request: MetaRaterRequest, m: MetaRaterMetrics, n: int, k: int, skipped: dict[str, int],
             counts: dict[str, int]) -> str:
    loss_word = "loss" if request.proxy != "oracle" else "oracle loss (-quality)"
    sp = float("nan") if m.spearman is None else m.spearman
    return (
        f"Meta-rater learned weights for {len(m.weights)} signals from {m.n_proxies} {request.proxy} proxy runs "
        f"({m.validation}): top {', '.join(f'{t} {m.weights[t]:.2f}' for t in m.top_signals)}. Regressor "
        f"{m.regressor}, out-of-fold Spearman {sp:.2f}."
        + (" The best measured run beat the searched weights and is used." if m.weights_source == "best_run" else "")
        + f" Proxy {loss_word} on the learned selection {m.learned_loss:.4g} vs random "
        f"{m.random_loss:.4g}. Selected {k} of {n} documents ({m.selected_tokens / m.pool_tokens:.0%} of "
        f"tokens)."
        + (f" Dropped: {', '.join(f'{c} ({why})' for c, why in m.dropped_signals.items())}." if m.dropped_signals
           else "")
        + (f" Skipped: {', '.join(f'{k} {v}' for k, v in skipped.items())}." if skipped else "")
        + (f" Domains: {format_domain_counts(counts, 4)}." if counts else "")
    )


# ------------------------------------------------------------------------------------ run


@SPEC.implement
def run(request: MetaRaterRequest, ctx: ToolContext) -> MetaRaterResult:
    scores = read_score_tables(request.scores, ctx, "meta_rater")
    pool = _read_pool(request, ctx, scores)
    sig = _signals(request, scores, pool.score_rows)
    val = _validation(request, ctx, pool)
    learned = _learn_weights(request, ctx, pool, sig, val)

    final = sig.Xn @ learned.weights  # every document's learned score
    picks = _select(request, final, pool.tokens)
    weights = {nm: float(learned.weights[j]) for j, nm in enumerate(sig.names)}
    fit = learned.fit.fit
    metrics = MetaRaterMetrics(
        weights=weights, top_signals=[nm for nm, _ in sorted(weights.items(), key=lambda kv: -kv[1])[:3]],
        dropped_signals=sig.dropped, regressor=fit.name,
        spearman=None if np.isnan(fit.spearman) else float(fit.spearman), regressor_candidates=fit.candidates,
        proxy=request.proxy, proxy_tokens=request.proxy_tokens, n_proxies=learned.n_proxies,
        weights_source=learned.source, search_loss=learned.search_loss, learned_loss=learned.learned_loss,
        random_loss=learned.random_loss, best_proxy_loss=float(learned.fit.proxy_loss.min()),
        validation=val.label, selected_tokens=float(pool.tokens[picks].sum()), pool_tokens=float(pool.tokens.sum()),
    )
    artifacts = _write_tables(ctx, request, pool, sig, learned, final, weights)

    rows = RowCounts(rows_in=pool.rows_in, rows_out=int(picks.size), skipped=pool.skipped)
    table = selection_table([pool.ids[i] for i in picks], weight=np.ones(picks.size), score=final[picks],
                            domain=[pool.domains[i] for i in picks])
    sel = record_selection(ctx, table, request.corpus, pool_domains=pool.domains,
                           metrics=metrics.manifest(scores=artifacts["scores"]), rows=rows)
    n = len(pool.ids)
    return MetaRaterResult.of(
        metrics, summary=_summary(request, metrics, n, int(picks.size), pool.skipped, sel.domain_counts),
        artifacts={"selection": sel.id, **artifacts}, rows=rows, k=int(picks.size), pool_size=n,
        domain_counts=sel.domain_counts, pool_domain_share=sel.pool_share, proxy_runs_reused=learned.reused,
        score_columns=["meta_rater_score", "meta_rater_percentile"],
    )
