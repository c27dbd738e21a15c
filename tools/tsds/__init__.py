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
import os
from collections import Counter
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import CorpusSpec, ReadStats, read_batches
from tools.errors import BadInput, ResourceUnavailable, field_error
from tools.metrics import ot_distance
from tools.selection import selection_table, write_selection
from tools.tsds.core import (
    DEFAULTS,
    Density,
    TsdsOutput,
    draw,
    effective_sample_size,
    kde_density,
    objective,
    transport_probabilities,
    tsds_probabilities,
)
from tools.tsds.schema import SPEC, TsdsRequest, TsdsResult

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
    "objective",
    "ot_distance",
    "run",
    "transport_probabilities",
    "tsds_probabilities",
]

TOOL = "tsds"


# ------------------------------------------------------------------------------- embeddings


def _read_ids(corpus: CorpusSpec, ctx: ToolContext) -> tuple[list[str], list[str], ReadStats]:
    stats = ReadStats()
    ids: list[str] = []
    doms: list[str] = []
    for batch in read_batches(corpus, ("id", "domain"), allowed_roots=ctx.data_roots, stats=stats):
        ids += batch.column("id").to_pylist()
        doms += ["(none)" if d is None else d for d in batch.column("domain").to_pylist()]
    return ids, doms, stats


def _label_of(manifest: dict[str, Any]) -> str | None:
    for place in (manifest, manifest.get("metrics") or {}, manifest.get("request") or {}):
        for key in ("model_label", "model"):
            if isinstance(place.get(key), str):
                from tools.models import model_label

                return model_label(place[key])
    return None


def _load_matrix(field: str, ref: str, ids: list[str] | None, ctx: ToolContext) -> tuple[np.ndarray, str | None]:
    """Embeddings for ``ids`` from an artifact (aligned by id) or a .npy file (rows in corpus order).

    ``ids=None`` (target embeddings without a target corpus): the matrix as stored.
    """
    if ref.endswith(".npy") and os.path.exists(ref):
        mat = np.load(ref, mmap_mode="r")
        label = None
        emb_ids = None
    else:
        art = ctx.workspace.get(ref)
        manifest = art.manifest
        if manifest.get("tool") == "embed":  # the embed tool's own layout
            from tools import embed as embed_mod  # type: ignore[attr-defined]

            emb_ids, mat, manifest = embed_mod.load_embeddings(ref, ctx)
        else:  # a generic artifact: an array plus, optionally, a table with the row ids
            mat = art.array()
            try:
                emb_ids = art.table(["id"]).column("id").to_pylist()
            except Exception:  # noqa: BLE001 - no id table: rows follow the corpus order
                emb_ids = None
        label = _label_of(manifest)
    if mat.ndim != 2:
        raise field_error(TOOL, field, "a 2-d matrix (rows, dim)", f"shape {mat.shape}")
    if ids is None:
        pass
    elif emb_ids is not None and list(emb_ids) != ids:
        pos = {d: i for i, d in enumerate(emb_ids)}
        missing = [d for d in ids if d not in pos]
        if missing:
            raise field_error(
                TOOL, field, f"embeddings for every document ({len(missing)} ids missing, e.g. {missing[:3]})", ref
            )
        mat = np.asarray(mat)[np.fromiter((pos[d] for d in ids), dtype=np.int64, count=len(ids))]
    elif len(mat) != len(ids):
        raise field_error(TOOL, field, f"one row per document ({len(ids)} rows)", f"{len(mat)} rows in {ref}")
    return np.ascontiguousarray(mat, dtype=np.float32), label


def _embed_on_demand(
    field: str, corpus: CorpusSpec, ids: list[str], model: str | None, ctx: ToolContext
) -> tuple[np.ndarray, str | None]:
    """Run the embed tool on ``corpus`` (cached by content, so a repeat computes nothing) and load it."""
    try:
        from tools import embed as embed_mod  # type: ignore[attr-defined]

        embed_corpus = embed_mod.embed_corpus
    except (ImportError, AttributeError) as e:
        raise ResourceUnavailable(
            f"{TOOL}.{field}: computing embeddings needs the embed tool", hint="pass precomputed embeddings"
        ) from e
    kwargs: dict[str, Any] = {"vector_store": False}
    if model is not None:
        kwargs["model"] = model
    art_id = embed_corpus(corpus.model_dump(mode="json"), ctx, **kwargs)
    return _load_matrix(field, art_id, ids, ctx)


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
    ids, doms, stats = _read_ids(request.corpus, ctx)
    n = len(ids)
    t_ids = _read_ids(request.target, ctx)[0] if request.target is not None else None
    if t_ids is not None and len(t_ids) > n:
        raise field_error(TOOL, "target", f"no larger than the pool ({n} documents)", f"{len(t_ids)} target examples")
    if request.embeddings is not None:
        xb, pool_label = _load_matrix("embeddings", request.embeddings, ids, ctx)
    else:
        xb, pool_label = _embed_on_demand("embeddings", request.corpus, ids, request.model, ctx)
    if request.target_embeddings is not None:
        xq, q_label = _load_matrix("target_embeddings", request.target_embeddings, t_ids, ctx)
    else:
        assert request.target is not None and t_ids is not None
        xq, q_label = _embed_on_demand("target_embeddings", request.target, t_ids, request.model, ctx)
    m = len(xq)
    if xq.ndim != 2 or xq.shape[1] != xb.shape[1]:
        raise field_error(TOOL, "target_embeddings", f"dimension {xb.shape[1]} like the pool's", f"shape {xq.shape}")
    if pool_label and q_label and pool_label != q_label:
        raise BadInput(
            f"target embeddings come from model {q_label!r} but the pool's from {pool_label!r}; "
            "distances between them mean nothing",
            where=f"{TOOL}.target_embeddings",
            hint="embed both with the same model",
        )
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
    share: Counter = Counter()
    for dom, pi in zip(doms, p, strict=True):
        share[dom] += 1
        mass[dom] += pi
    pool_share = {d: c / n for d, c in share.most_common()}
    domain_mass = {d: float(mass[d]) for d, _ in mass.most_common()}
    sel_doms = [doms[i] for i in idx]
    dcounts: Counter = Counter()
    for dom, c in zip(sel_doms, counts, strict=True):
        dcounts[dom] += int(c)
    ess = effective_sample_size(p)
    used = out.neighbours_used

    metrics = {
        "alpha": request.alpha, "C": request.C, "sigma": request.sigma, "K": out.K, "kde_K": out.kde_K,
        "level": out.level, "effective_sample_size": ess, "support": support, "distinct": len(idx),
        "neighbours_mean": float(used.mean()), "neighbours_max": int(used.max()),
        "truncated_queries": out.truncated, "union_size": out.union_size, "index_kind": out.index_kind,
        "domain_mass": domain_mass, "pool_domain_share": pool_share, "ot_distance": ot_sel,
        "ot_distance_random": ot_rand, "ot_points": ot_pts, "timings": out.timings,
        "embedding_model": pool_label,
    }
    rows = RowCounts(rows_in=n, rows_out=len(idx), skipped=dict(stats.skipped))
    with ctx.artifact("scores", metrics=metrics, rows=RowCounts(rows_in=n, rows_out=n)) as w:
        w.table(selection_table(ids, score=p, domain=doms).rename_columns(["id", "tsds_prob", "domain"]))
    scores_id = w.id
    table = selection_table(
        [ids[i] for i in idx], weight=counts.astype(np.float64), score=p[idx], domain=sel_doms
    )
    sel_id = write_selection(ctx, table, request.corpus, metrics=metrics, rows=rows)

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
        f"({'with' if request.replace else 'without'} replacement; alpha {request.alpha:g}, C {request.C:g}, "
        f"sigma {request.sigma:g}, K {out.K}): {len(idx)} distinct, support {support}, ESS {ess:.0f}. "
        f"Neighbours per target mean {used.mean():.1f}, max {int(used.max())}"
        + (f"; {out.truncated} targets hit K (more neighbours: max_K, cap_by_pool=false)" if out.truncated else "")
        + f".{ot_txt} Mass: {dom_txt}. Selection {sel_id}, scores {scores_id}."
    )
    return TsdsResult(
        summary=summary,
        artifacts={"selection": sel_id, "scores": scores_id},
        rows=rows,
        k=request.k,
        pool_size=n,
        domain_counts=dict(dcounts.most_common()),
        target_size=m,
        distinct=len(idx),
        effective_sample_size=ess,
        support=support,
        level=out.level,
        neighbours_mean=float(used.mean()),
        neighbours_max=int(used.max()),
        truncated_queries=out.truncated,
        K=out.K,
        kde_K=out.kde_K,
        index_kind=out.index_kind,
        domain_mass=domain_mass,
        pool_domain_share=pool_share,
        ot_distance=ot_sel,
        ot_distance_random=ot_rand,
        ot_points=ot_pts,
        embedding_model=pool_label,
    )


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
