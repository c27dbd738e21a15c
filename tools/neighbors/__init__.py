"""neighbors: the pool documents nearest to a text, to a document, or to a target set.

```
from tools import neighbors
neighbors.run(corpus="pool.jsonl", query="proofs about prime numbers", k=10)
neighbors.run(corpus="pool.jsonl", doc_id="doc-000123", k=20, domains=["math", "code"])
neighbors.run(corpus="pool.jsonl", target="target.jsonl", target_mode="union", k=100)
```

Scores are cosine similarities (vectors are L2-normalised first). The pool's vectors come from an
embedding artifact or ``.npy`` file when ``embeddings`` is given, else from the embed tool (cached by
content, so a second call embeds nothing). Search is exact or IVF k-NN through :mod:`tools.knn`, or
chroma's HNSW through :mod:`tools.vectorstore` with ``backend="chroma"``.

Target sets: ``target_mode="centroid"`` ranks pool documents by cosine to the normalised mean of the
target's normalised vectors; ``"union"`` ranks them by their highest cosine to any single target
document (the union of every target document's k nearest, re-ranked, which is exact for the top k).

The summary quotes ids, scores and domains only, never document text: text from the data must not
reach the LLM as if it were instructions.

Pool vectors come from :func:`tools.embeddings.pool_vectors` (documents without a vector in the
given artifact are left out and counted as ``no_embedding``). ``run`` reads as its steps: pool
vectors, candidates (domains), query vectors, search, merge (``core.rank_union``), selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import CorpusSpec, ReadStats, read_batches
from tools.embeddings import PoolVectors, normalize_rows, pool_vectors, text_vectors
from tools.errors import BadInput
from tools.neighbors.core import rank_union, search_knn
from tools.neighbors.schema import SPEC, NeighborHit, NeighborsMetrics, NeighborsRequest, NeighborsResult
from tools.selection import domain_counts, format_domain_counts, record_selection, selection_table

__all__ = ["SPEC", "NeighborHit", "NeighborsMetrics", "NeighborsRequest", "NeighborsResult", "rank_union", "run",
           "search_knn"]

TOOL = "neighbors"


def _candidates(request: NeighborsRequest, pool: PoolVectors) -> np.ndarray:
    """Pool rows that may be returned: those in ``request.domains``, else all."""
    n = len(pool.ids)
    if not request.domains:
        return np.arange(n)
    wanted = set(request.domains)
    cand = np.flatnonzero(np.fromiter((d in wanted for d in pool.domains), dtype=bool, count=n))
    if cand.size == 0:
        present = format_domain_counts(domain_counts(pool.domains))
        raise BadInput(f"no pool documents in domains {sorted(wanted)}; the pool has: {present}",
                       where=f"{TOOL}.domains")
    return cand


@dataclass
class _Query:
    kind: str  # "query", "doc_id" or "target"
    vectors: np.ndarray  # (m, d) unit rows
    exclude: set[int] = field(default_factory=set)  # pool rows never returned
    target_ids: list[str] = field(default_factory=list)


def _query(request: NeighborsRequest, ctx: ToolContext, pool: PoolVectors, model: str | None) -> _Query:
    """The query vectors: a pool document's, the text's, or the target set's (centroid or each)."""
    if request.doc_id is not None:
        row_of = {d: i for i, d in enumerate(pool.ids)}
        if request.doc_id not in row_of:
            near = [d for d in pool.ids if request.doc_id in d][:3]
            raise BadInput(
                f"no document with id {request.doc_id!r} in the pool ({len(pool.ids)} documents)",
                where=f"{TOOL}.doc_id", hint=f"similar ids: {near}" if near else None,
            )
        qrow = row_of[request.doc_id]
        return _Query("doc_id", pool.vectors[qrow : qrow + 1], {qrow} if request.exclude_query_docs else set())
    if request.query is not None:
        return _Query("query", text_vectors([request.query], ctx, model=model))
    target_ids: list[str] = []
    texts: list[str] = []
    for batch in read_batches(request.target, ("id", "text"), allowed_roots=ctx.data_roots, stats=ReadStats()):
        target_ids += batch.column("id").to_pylist()
        texts += ["" if t is None else t for t in batch.column("text").to_pylist()]
    tv = normalize_rows(text_vectors(texts, ctx, model=model, normalize=False), target_ids, f"{TOOL}.target")
    if request.target_mode == "centroid":
        c = tv.mean(axis=0)
        norm = float(np.linalg.norm(c))
        if norm < 1e-6:
            raise BadInput("the target vectors cancel out (centroid of norm ~0); use target_mode='union'",
                           where=f"{TOOL}.target")
        tv = (c / norm)[None, :].astype(np.float32)
    tset = set(target_ids)
    exclude = {i for i, d in enumerate(pool.ids) if d in tset} if request.exclude_query_docs else set()
    return _Query("target", tv, exclude, target_ids)


def _search_chroma(ctx: ToolContext, corpus: CorpusSpec, pool: PoolVectors, cand: np.ndarray, queries: np.ndarray,
                   k: int, domains: list[str] | None) -> tuple[np.ndarray, np.ndarray, str]:
    from tools import vectorstore as vs
    from tools.corpus import fingerprint

    name = vs.collection_name(fingerprint(corpus), pool.model or "unknown-model")
    if vs.count(ctx, name) != len(pool.ids):
        vs.upsert(ctx, name, pool.ids, pool.vectors, [{"domain": d} for d in pool.domains],
                  collection_metadata={"model": pool.model, "corpus": corpus.path})
    where = {"domain": {"$in": list(domains)}} if domains else None
    hit_ids, scores, _ = vs.query(ctx, name, queries, k, where=where)
    row_of = {d: i for i, d in enumerate(pool.ids)}
    pos_in_cand = np.full(len(pool.ids), -1, dtype=np.int64)
    pos_in_cand[cand] = np.arange(len(cand))
    idx = np.array([[pos_in_cand[row_of[h]] if h in row_of else -1 for h in r] for r in hit_ids], dtype=np.int64)
    return scores, idx, name


def _nearest(request: NeighborsRequest, ctx: ToolContext, pool: PoolVectors, cand: np.ndarray, q: _Query,
             k_search: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Search, drop excluded rows, merge per-query lists: (pool rows, scores, query row, search label)."""
    if request.backend == "chroma":
        scores, idx, collection = _search_chroma(ctx, request.corpus, pool, cand, q.vectors, k_search,
                                                 request.domains)
        search = f"chroma HNSW ({collection})"
    else:
        scores, idx = search_knn(pool.vectors[cand], q.vectors, k_search, request.index, ctx.resolve_device())
        search = f"k-NN {request.index}"
    rows_of = np.where(idx >= 0, cand[np.maximum(idx, 0)], -1)  # idx holds positions in cand
    if q.exclude:
        rows_of = np.where(np.isin(rows_of, np.fromiter(q.exclude, dtype=np.int64)), -1, rows_of)
    rows, best, qbest = rank_union(scores, rows_of, request.k)
    if len(rows) < request.k:  # an approximate index (IVF/HNSW) reached too few points
        raise BadInput(f"the {request.backend}/{request.index} index returned only {len(rows)} of {request.k} "
                       "neighbours", where=f"{TOOL}.index", hint="use index='flat' for exact search")
    return rows, best, qbest, search


@SPEC.implement
def run(request: NeighborsRequest, ctx: ToolContext) -> NeighborsResult:
    import pyarrow as pa

    pool = pool_vectors(request.corpus, ctx, embeddings=request.embeddings, model=request.model, missing="skip",
                        vector_store=request.backend == "chroma")
    model = request.model if request.model is not None else pool.model
    n = len(pool.ids)
    cand = _candidates(request, pool)
    q = _query(request, ctx, pool, model)
    if q.vectors.shape[1] != pool.vectors.shape[1]:
        raise BadInput(
            f"the {q.kind} vectors have dimension {q.vectors.shape[1]} but the pool's have {pool.vectors.shape[1]}",
            where=f"{TOOL}.embeddings", hint="embed the pool and the query with the same model (pass model=)",
        )
    n_excl_cand = len(q.exclude & set(cand.tolist())) if q.exclude else 0
    available = len(cand) - n_excl_cand
    if request.k > available:
        raise BadInput(
            f"must be at most the number of candidate documents {available}"
            + (f" (domains {request.domains})" if request.domains else "") + f"; got {request.k}",
            where=f"{TOOL}.k",
        )
    rows, best, qbest, search = _nearest(request, ctx, pool, cand, q, min(request.k + n_excl_cand, len(cand)))

    hit_ids = [pool.ids[i] for i in rows]
    hit_doms = [str(pool.domains[i]) for i in rows]
    table = selection_table(hit_ids, score=best, domain=hit_doms)
    table = table.append_column("rank", pa.array(np.arange(1, len(rows) + 1), type=pa.int32()))
    if q.kind == "target" and request.target_mode == "union":
        table = table.append_column("nearest_target", pa.array([q.target_ids[j] for j in qbest], type=pa.string()))
    metrics = NeighborsMetrics(
        query_kind=q.kind, target_mode=request.target_mode if q.kind == "target" else None,
        model=str(model or pool.model or ""), backend=request.backend, search=search, candidates=int(available),
        score_min=float(best.min()), score_max=float(best.max()), score_mean=float(best.mean()),
        embeddings=pool.source,
        top=[NeighborHit(id=i, score=round(float(s), 4), domain=d)
             for i, s, d in zip(hit_ids[:5], best[:5], hit_doms[:5], strict=True)],
    )
    rows_c = RowCounts(rows_in=n + sum(pool.skipped.values()), rows_out=len(rows),
                       skipped={**dict(pool.stats.skipped), **pool.skipped})
    sel = record_selection(ctx, table, request.corpus, pool_domains=pool.domains, metrics=metrics.manifest(),
                           rows=rows_c)
    what = {"query": "the query text", "doc_id": f"document {request.doc_id}",
            "target": f"the target set ({len(q.target_ids)} documents, {request.target_mode})"}[q.kind]
    quoted = ", ".join(f"{h.id} [{h.domain}] {h.score:.3f}" for h in metrics.top)
    summary = (
        f"{len(rows)} pool documents nearest to {what} by cosine ({metrics.model or 'given embeddings'}, "
        f"{search}, {available} candidates"
        + (f" in {', '.join(request.domains)}" if request.domains else "")
        + f"). Top: {quoted}. Scores {best.min():.3f}-{best.max():.3f}. "
        f"Domains: {format_domain_counts(sel.domain_counts)}. Selection {sel.id}."
    )
    return NeighborsResult.of(metrics, summary=summary, artifacts={"selection": sel.id}, rows=rows_c, k=len(rows),
                              pool_size=n, domain_counts=sel.domain_counts)
