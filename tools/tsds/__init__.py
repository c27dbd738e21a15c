"""tsds: task-specific data selection by optimal transport with a KDE diversity term (Liu et al. 2024).

Target (query) embeddings and pool embeddings -> sampling probabilities over the pool (the solution
of the linear program in ``core``'s docstring) -> a selection of k documents drawn from them.

Notebook use::

    from tools import tsds
    res = tsds.run(corpus="pool.jsonl", target="target.jsonl", k=1000)       # embeddings on demand
    out = tsds.tsds_probabilities(query_matrix, pool_matrix, alpha=0.5)     # any matrices
    idx, counts = tsds.draw(out.probs, 1000, seed=0)
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import count_rows
from tools.embeddings import check_same_model, check_vectors, load_vectors, pool_vectors
from tools.errors import field_error
from tools.metrics import ot_distance
from tools.selection import pool_shares, record_selection, selection_table
from tools.tsds.core import (
    DEFAULTS,
    Density,
    TsdsOutput,
    draw,
    effective_sample_size,
    kde_density,
    keep_most_target_like,
    objective,
    target_log_odds,
    transport_probabilities,
    tsds_probabilities,
)
from tools.tsds.schema import SPEC, TsdsMetrics, TsdsRequest, TsdsResult

__all__ = [
    "DEFAULTS",
    "Density",
    "SPEC",
    "TsdsOutput",
    "TsdsRequest",
    "TsdsResult",
    "draw",
    "effective_sample_size",
    "kde_density",
    "keep_most_target_like",
    "objective",
    "ot_distance",
    "run",
    "target_log_odds",
    "transport_probabilities",
    "tsds_probabilities",
]

TOOL = "tsds"


# ------------------------------------------------------------------------------- embeddings


def _target_vectors(request: TsdsRequest, ctx: ToolContext) -> tuple[np.ndarray, str | None]:
    """The target's vectors: aligned to the target corpus when one is given, else the matrix as stored."""
    if request.target is not None:
        tgt = pool_vectors(request.target, ctx, embeddings=request.target_embeddings, model=request.model,
                           normalize=False, field="target_embeddings")
        return tgt.vectors, tgt.model
    assert request.target_embeddings is not None
    stored = load_vectors(request.target_embeddings, ctx, field="target_embeddings")
    return check_vectors(stored.matrix, None, f"{TOOL}.target_embeddings"), stored.model


def check_matrix(field: str, x: np.ndarray) -> None:
    """NaN/inf or an all-identical matrix cannot be transported: refuse with the field's name."""
    if x.shape[1] == 0:
        raise field_error(TOOL, field, "embeddings with at least one dimension", f"shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise field_error(TOOL, field, "finite numbers", f"NaN or inf in {int(bad.sum())} rows, e.g. row {int(np.argmax(bad))}")
    if len(x) > 1 and float(np.ptp(x, axis=0).max()) == 0.0:
        raise field_error(TOOL, field, "embeddings that vary across rows", "zero variance (all rows identical)")


# -------------------------------------------------------------------------------------- run


@SPEC.implement
def run(request: TsdsRequest, ctx: ToolContext) -> TsdsResult:
    if request.target is None and request.target_embeddings is None:
        raise field_error(TOOL, "target", "a target corpus or target_embeddings", None)
    n_pool, n_target = count_rows(request.corpus), count_rows(request.target) if request.target else 0
    if n_target > n_pool:  # before anything is embedded
        raise field_error(TOOL, "target", f"no larger than the pool ({n_pool} documents)", f"{n_target} target examples")
    pool = pool_vectors(request.corpus, ctx, embeddings=request.embeddings, model=request.model, normalize=False)
    ids, doms, stats, xb, pool_label = pool.ids, pool.domains, pool.stats, pool.vectors, pool.model
    n = len(ids)
    xq, q_label = _target_vectors(request, ctx)
    m = len(xq)
    if xq.shape[1] != xb.shape[1]:
        raise field_error(TOOL, "target_embeddings", f"dimension {xb.shape[1]} like the pool's", f"shape {xq.shape}")
    check_same_model(pool_label, q_label, where=f"{TOOL}.target_embeddings",
                     what="the target embeddings and the pool's")
    if m > n:
        raise field_error(TOOL, "target", f"no larger than the pool ({n} documents)", f"{m} target examples")
    check_matrix("embeddings", xb)
    check_matrix("target_embeddings", xq)

    with contextlib.ExitStack() as stack:
        bars: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = stack.enter_context(ctx.progress(f"tsds {stage}", total=total, unit="docs"))
            bars[stage].update(done - bars[stage].n)

        out = tsds_probabilities(
            xq, xb, alpha=request.alpha, C=request.C, sigma=request.sigma, max_K=request.max_K,
            kde_K=request.kde_K, index=request.index, nprobe=request.nprobe, cap_by_pool=request.cap_by_pool,
            seed=request.seed, device=ctx.resolve_device(), progress=progress,
            calibrate=request.calibrate, shrink=request.shrink, k=request.k,
            evidence=request.evidence,
        )
    p = out.probs
    support = int(np.count_nonzero(p))
    if not request.replace and request.k > support:
        raise field_error(TOOL, "k", f"at most the {support} documents with non-zero probability when replace=false", request.k)
    by_id = np.argsort(np.asarray(ids, dtype=object), kind="stable")  # draw in id order: row order is no input
    idx, counts = draw(p, request.k, replace=request.replace, seed=request.seed, order=by_id)

    # evidence for the summary
    ot_sel, ot_rand, ot_pts = _ot_evidence(xq, xb, idx, counts, request)
    mass: Counter = Counter()
    for dom, pi in zip(doms, p, strict=True):
        mass[dom] += pi
    pool_share = pool_shares(doms)
    domain_mass = {d: float(mass[d]) for d, _ in mass.most_common()}
    sel_doms = [doms[i] for i in idx]
    ess = effective_sample_size(p)
    used = out.neighbours_used

    metrics = TsdsMetrics(
        target_size=m, alpha=request.alpha, C=out.C, sigma=out.sigma, shrink=out.shrink, calibrate=request.calibrate,
        effective_neighbours=float(out.effective_neighbours.mean()), calibration_steps=out.calibration_steps,
        evidence_support=out.evidence_support,
        K=out.K, kde_K=out.kde_K, level=out.level, effective_sample_size=ess, support=support, distinct=len(idx),
        neighbours_mean=float(used.mean()), neighbours_max=int(used.max()), truncated_queries=out.truncated,
        union_size=out.union_size, index_kind=out.index_kind, domain_mass=domain_mass, pool_domain_share=pool_share,
        ot_distance=ot_sel, ot_distance_random=ot_rand, ot_points=ot_pts, embedding_model=pool_label,
    )
    manifest = metrics.manifest(timings=out.timings)
    rows = RowCounts(rows_in=n, rows_out=len(idx), skipped=dict(stats.skipped))
    with ctx.artifact("scores", metrics=manifest, rows=RowCounts(rows_in=n, rows_out=n)) as w:
        w.table(selection_table(ids, score=p, domain=doms).rename_columns(["id", "tsds_prob", "domain"]))
    scores_id = w.id
    table = selection_table(
        [ids[i] for i in idx], weight=counts.astype(np.float64), score=p[idx], domain=sel_doms
    )
    sel = record_selection(ctx, table, request.corpus, pool_domains=doms, metrics=manifest, rows=rows)
    sel_id = sel.id

    top = sorted(domain_mass, key=lambda d: -domain_mass[d])[:4]
    dom_txt = ", ".join(f"{d} {domain_mass[d]:.2f} (pool {pool_share[d]:.2f})" for d in top)
    ot_txt = (
        f" OT distance to target {ot_sel:.3f} vs {ot_rand:.3f} for a random sample"
        + (f" ({ot_pts} points, subsampled)" if ot_pts < max(m, len(idx)) else "")
        + "."
        if ot_sel is not None
        else ""
    )
    summary = (
        f"TSDS drew {request.k} from {n} docs for {m} targets "
        f"({'with' if request.replace else 'without'} replacement; alpha {request.alpha:g}, "
        f"{'calibrated' if request.calibrate == 'auto' else 'paper'} C {out.C:.3g}, sigma {out.sigma:.3g}, "
        f"shrink {out.shrink:.2f}, K {out.K}): {len(idx)} distinct, support {support}, ESS {ess:.0f}. "
        f"Mass per target spread over {out.effective_neighbours.mean():.1f} effective candidates (k/M "
        f"{request.k / m:.1f}; neighbours used mean {used.mean():.1f}, max {int(used.max())})"
        + (f"; the {request.k} most probable of {out.evidence_support} kept after weighting by the target "
           f"density ratio"
           if out.evidence_support > request.k else "")
        + (f"; {out.truncated} targets hit K (more neighbours: max_K, cap_by_pool=false)" if out.truncated else "")
        + f".{ot_txt} Mass: {dom_txt}. Selection {sel_id}, scores {scores_id}."
    )
    return TsdsResult.of(metrics, summary=summary, artifacts={"selection": sel_id, "scores": scores_id}, rows=rows,
                         k=request.k, pool_size=n, domain_counts=sel.domain_counts)


def _ot_evidence(
    xq: np.ndarray, xb: np.ndarray, idx: np.ndarray, counts: np.ndarray, request: TsdsRequest
) -> tuple[float | None, float | None, int]:
    """W1 target -> selection, and target -> a uniform random sample of the same size, on <= cap points."""
    try:
        import ot  # noqa: F401
    except ImportError:
        return None, None, 0
    rng = np.random.default_rng(request.seed)
    cap = request.ot_max_points
    q = xq if len(xq) <= cap else xq[np.sort(rng.choice(len(xq), cap, replace=False))]
    # the selection as a measure: draw counts as weights; subsample by drawing cap points from it
    if len(idx) > cap:  # an empirical measure of cap draws from the selection's weights
        pick, w = np.unique(rng.choice(len(idx), size=cap, replace=True, p=counts / counts.sum()), return_counts=True)
        sel, w = xb[idx[pick]], w.astype(np.float64)
    else:
        sel, w = xb[idx], counts.astype(np.float64)
    size = min(len(xb), max(len(sel), 1))
    rand = xb[np.sort(rng.choice(len(xb), size=size, replace=False))]
    return ot_distance(q, sel, weights=w), ot_distance(q, rand), max(len(q), len(sel))
