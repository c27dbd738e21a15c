"""semantic_dedup: SemDeDup (Abbas et al. 2023), the peer of NeMo Curator's semantic deduplication.

Pool vectors (normalised) in id order -> ``core.semdedup`` (k-means, keep order, in-cluster
dedup; the steps and defaults are in :mod:`tools.semantic_dedup.core`) -> the kept selection and
the rejected list.

Artifacts: ``selection`` (kept ids, ``weight`` 1, ``domain``, ``cluster``) and ``rejected`` (``id``,
``duplicate_of``, ``similarity``, ``cluster``, ``domain``, ``representative`` = the kept document
reached by following ``duplicate_of``; equal to ``duplicate_of`` under ``compare="kept"``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.errors import field_error
from tools.selection import record_selection, selection_table
from tools.semantic_dedup.core import (
    BLOCK,
    ClusterDedup,
    DedupOutput,
    cluster,
    dedup_ordered,
    default_n_clusters,
    keep_order,
    semdedup,
)
from tools.semantic_dedup.schema import (
    SPEC,
    Compare,
    KeepRule,
    SemanticDedupMetrics,
    SemanticDedupRequest,
    SemanticDedupResult,
)

__all__ = ["BLOCK", "SPEC", "ClusterDedup", "Compare", "DedupOutput", "KeepRule", "SemanticDedupMetrics",
           "SemanticDedupRequest", "SemanticDedupResult", "cluster", "dedup_ordered", "default_n_clusters",
           "keep_order", "run", "semdedup"]


def _tables(out: DedupOutput, ids: np.ndarray, doms: np.ndarray, kept: np.ndarray, rem: np.ndarray):  # noqa: ANN202
    """The kept selection (with each row's cluster) and the rejected list (with what each duplicates)."""
    import pyarrow as pa

    sel = selection_table(ids[kept].tolist(), weight=np.ones(len(kept)), domain=doms[kept].tolist())
    sel = sel.append_column("cluster", pa.array(out.assign[kept], type=pa.int64()))
    rejected = pa.table({
        "id": pa.array(ids[rem].tolist(), type=pa.string()),
        "duplicate_of": pa.array(ids[out.duplicate_of[rem]].tolist(), type=pa.string()),
        "similarity": pa.array(out.similarity[rem].astype(np.float64)),
        "cluster": pa.array(out.assign[rem], type=pa.int64()),
        "domain": pa.array(doms[rem].tolist(), type=pa.string()),
        "representative": pa.array(ids[out.representative[rem]].tolist(), type=pa.string()),
    })
    return sel, rejected


@SPEC.implement
def run(request: SemanticDedupRequest, ctx: ToolContext) -> SemanticDedupResult:
    from tools.embeddings import pool_vectors

    pool = pool_vectors(request.corpus, ctx, embeddings=request.embeddings, model=request.model, missing="skip",
                        lengths=request.keep == "longest")
    n = len(pool.ids)
    if request.n_clusters is not None and request.n_clusters > n:
        raise field_error(SPEC.name, "n_clusters", f"at most the number of documents ({n})", request.n_clusters)
    # rows in id order: clusters, tie-breaks and results do not depend on the corpus' row order
    perm = np.asarray(sorted(range(n), key=pool.ids.__getitem__), dtype=np.int64)
    with ctx.progress("semantic dedup", total=n, unit="docs") as bar:
        out = semdedup(pool.vectors[perm], threshold=request.threshold, n_clusters=request.n_clusters,
                       keep=request.keep, compare=request.compare,
                       lengths=pool.lengths[perm] if pool.lengths is not None else None, positions=perm,
                       niter=request.niter, seed=request.seed, progress=bar)
    ids = np.asarray(pool.ids, dtype=object)[perm]
    doms = np.asarray(pool.domains, dtype=object)[perm]
    kept = np.flatnonzero(~out.removed)
    rem = np.flatnonzero(out.removed)
    if len(rem):  # most similar first
        rem = rem[np.lexsort((rem, -out.similarity[rem]))]
    sel, rejected = _tables(out, ids, doms, kept, rem)

    total = Counter(doms.tolist())
    gone = Counter(doms[rem].tolist())
    sizes = np.bincount(out.assign, minlength=out.n_clusters)
    metrics = SemanticDedupMetrics(
        threshold=request.threshold, eps=round(1.0 - request.threshold, 10), n_clusters=out.n_clusters,
        keep=request.keep, compare=request.compare, model=pool.model, embeddings=pool.source,
        removed=int(len(rem)), removal_rate=len(rem) / n if n else 0.0,
        removal_rate_by_domain={d: gone.get(d, 0) / total[d] for d, _ in total.most_common()},
        removed_by_domain=dict(gone), largest_cluster=int(sizes.max()), singleton_clusters=int((sizes == 1).sum()),
        similarity_min=float(out.similarity[rem].min()) if len(rem) else None,
    )
    rows = RowCounts(rows_in=n + sum(pool.skipped.values()), rows_out=len(kept),
                     skipped={**dict(pool.stats.skipped), **pool.skipped, "semantic_duplicate": int(len(rem))})
    rec = record_selection(ctx, sel, request.corpus, pool_domains=dict(total), metrics=metrics.manifest(), rows=rows)
    with ctx.artifact("rejected", "rejected", metrics=metrics.manifest(), rows=rows,
                      extra={"corpus": request.corpus.model_dump(mode="json")}) as w:
        w.table(rejected)
    worst = sorted(metrics.removal_rate_by_domain.items(), key=lambda t: -t[1])[:6]
    rates = ", ".join(f"{d} {r:.1%} ({gone.get(d, 0)}/{total[d]})" for d, r in worst)
    summary = (
        f"SemDeDup removed {len(rem)} of {n} documents ({len(rem) / n:.1%}) as near-duplicates: cosine > "
        f"{request.threshold} within {out.n_clusters} k-means clusters, keeping the {request.keep.replace('_', ' ')} "
        f"member (compared with {'kept' if request.compare == 'kept' else 'all earlier'} members). "
        f"Removal by domain: {rates}. Kept {len(kept)}: selection {rec.id}; removed ids with duplicate_of: {w.id}."
    )
    return SemanticDedupResult.of(metrics, summary=summary, artifacts={"selection": rec.id, "rejected": w.id},
                                  rows=rows, k=len(kept), pool_size=n, domain_counts=rec.domain_counts)
