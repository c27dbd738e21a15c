"""semantic_dedup: SemDeDup (Abbas et al. 2023), the peer of NeMo Curator's semantic deduplication.

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

Artifacts: ``selection`` (kept ids, ``weight`` 1, ``domain``, ``cluster``) and ``rejected`` (``id``,
``duplicate_of``, ``similarity``, ``cluster``, ``domain``, ``representative`` = the kept document
reached by following ``duplicate_of``; equal to ``duplicate_of`` under ``compare="kept"``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tools.contract import RowCounts, SelectionResult, ToolContext, ToolRequest, ToolSpec
from tools.corpus import CorpusArg
from tools.errors import field_error
from tools.refs import ArtifactOrPath
from tools.selection import record_selection, selection_table

KeepRule = Literal["farthest_from_centroid", "closest_to_centroid", "longest", "first", "random"]
Compare = Literal["kept", "earlier"]
BLOCK = 2048

# ------------------------------------------------------------------------------------- schema


class SemanticDedupRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the pool to deduplicate")
    embeddings: ArtifactOrPath | None = Field(
        None,
        description="pool embeddings: an embedding artifact id, or a .npy path whose rows follow the corpus "
        "order; computed with the embed tool (cached) when omitted",
    )
    model: str | None = Field(None, description="sentence-transformers model when embeddings are computed")
    threshold: float = Field(
        0.95, gt=0.0, le=1.0,
        description="cosine similarity above which a document is a duplicate (SemDeDup eps = 1 - threshold)",
    )
    n_clusters: int | None = Field(
        None, ge=1, description="k-means clusters; None = round(sqrt(N)); 1 = compare every pair"
    )
    keep: KeepRule = Field(
        "farthest_from_centroid",
        description="which member of a duplicate group survives: farthest_from_centroid (SemDeDup/NeMo "
        "'hard', default), closest_to_centroid ('easy'), longest, first (corpus order), random (seeded)",
    )
    compare: Compare = Field(
        "kept",
        description="'kept': a document is removed if it is too similar to a kept one; 'earlier': to any "
        "earlier one in keep order (NeMo/SemDeDup's exact rule, removes more along chains)",
    )
    niter: int = Field(20, ge=1, le=300, description="k-means iterations")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="k-means and keep='random' seed (faiss takes a C int)")


class SemanticDedupResult(SelectionResult):
    removed: int = 0
    removal_rate: float = 0.0
    removal_rate_by_domain: dict[str, float] = Field(default_factory=dict)
    n_clusters: int = 0
    threshold: float = 0.0
    keep: str = ""
    compare: str = ""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {}


SPEC = ToolSpec(
    name="semantic_dedup",
    conformance="tools.semantic_dedup:conformance_case",
    description="Remove near-duplicate documents by meaning (SemDeDup): k-means on sentence embeddings, "
    "then inside each cluster drop documents whose cosine similarity to a kept one exceeds a threshold "
    "(default 0.95), keeping a representative chosen by a stated rule. Writes the kept selection and a "
    "'rejected' list of removed ids with the id each duplicates.",
    request_model=SemanticDedupRequest,
    result_model=SemanticDedupResult,
    family="selection",
    gpu="optional",
    effects=frozenset({"read_data", "write_workspace", "gpu"}),
    examples=(
        "remove semantic near-duplicates from the pool",
        "deduplicate my corpus by embedding similarity with threshold 0.9",
        "run SemDeDup on data/pool.jsonl",
        "find documents that say the same thing and keep one of each",
    ),
)

# --------------------------------------------------------------------------------------- core


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
    """SemDeDup over normalised rows ``x`` (n, d); see the module docstring for each step."""
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


# ---------------------------------------------------------------------------------------- run


@SPEC.implement
def run(request: SemanticDedupRequest, ctx: ToolContext) -> SemanticDedupResult:
    import pyarrow as pa

    from tools.embeddings import pool_vectors

    tool = SPEC.name
    pool = pool_vectors(request.corpus, ctx, embeddings=request.embeddings, model=request.model, missing="skip",
                        lengths=request.keep == "longest")
    n = len(pool.ids)
    if request.n_clusters is not None and request.n_clusters > n:
        raise field_error(tool, "n_clusters", f"at most the number of documents ({n})", request.n_clusters)
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
    total = Counter(doms.tolist())
    gone = Counter(doms[rem].tolist())
    by_domain = {d: gone.get(d, 0) / total[d] for d, _ in total.most_common()}
    sizes = np.bincount(out.assign, minlength=out.n_clusters)
    metrics = {
        "threshold": request.threshold, "eps": round(1.0 - request.threshold, 10), "n_clusters": out.n_clusters,
        "keep": request.keep, "compare": request.compare, "model": pool.model, "embeddings": pool.source,
        "removed": int(len(rem)), "removal_rate": len(rem) / n if n else 0.0,
        "removal_rate_by_domain": by_domain, "removed_by_domain": dict(gone),
        "largest_cluster": int(sizes.max()), "singleton_clusters": int((sizes == 1).sum()),
        "similarity_min": float(out.similarity[rem].min()) if len(rem) else None,
    }
    rows = RowCounts(rows_in=n + sum(pool.skipped.values()), rows_out=len(kept),
                     skipped={**dict(pool.stats.skipped), **pool.skipped, "semantic_duplicate": int(len(rem))})
    rec = record_selection(ctx, sel, request.corpus, pool_domains=dict(total), metrics=metrics, rows=rows)
    sel_id, counts = rec.id, rec.domain_counts
    with ctx.artifact("rejected", "rejected", metrics=metrics, rows=rows,
                      extra={"corpus": request.corpus.model_dump(mode="json")}) as w:
        w.table(rejected)
    worst = sorted(by_domain.items(), key=lambda t: -t[1])[:6]
    rates = ", ".join(f"{d} {r:.1%} ({gone.get(d, 0)}/{total[d]})" for d, r in worst)
    summary = (
        f"SemDeDup removed {len(rem)} of {n} documents ({len(rem) / n:.1%}) as near-duplicates: cosine > "
        f"{request.threshold} within {out.n_clusters} k-means clusters, keeping the {request.keep.replace('_', ' ')} "
        f"member (compared with {'kept' if request.compare == 'kept' else 'all earlier'} members). "
        f"Removal by domain: {rates}. Kept {len(kept)}: selection {sel_id}; removed ids with duplicate_of: {w.id}."
    )
    return SemanticDedupResult(
        summary=summary, artifacts={"selection": sel_id, "rejected": w.id}, rows=rows, k=len(kept), pool_size=n,
        domain_counts=counts, removed=int(len(rem)), removal_rate=len(rem) / n if n else 0.0,
        removal_rate_by_domain=by_domain, n_clusters=out.n_clusters, threshold=request.threshold,
        keep=request.keep, compare=request.compare,
    )
