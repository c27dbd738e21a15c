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
given artifact are left out and counted as ``no_embedding``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from tools.contract import RowCounts, SelectionResult, ToolContext, ToolRequest, ToolSpec
from tools.corpus import CorpusArg, CorpusSpec, ReadStats, read_batches
from tools.embeddings import PoolVectors, normalize_rows, pool_vectors, text_vectors
from tools.errors import BadInput
from tools.refs import ArtifactOrPath
from tools.selection import format_domain_counts, record_selection, selection_table

# ------------------------------------------------------------------------------------- schema


class NeighborsRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the pool to search")
    query: str | None = Field(None, description="a text: find the pool documents nearest to it")
    doc_id: str | None = Field(None, description="a pool document id: find the documents nearest to it")
    target: CorpusArg | None = Field(None, description="a target set: find the pool documents nearest to it")
    target_mode: Literal["centroid", "union"] = Field(
        "centroid",
        description="target sets: 'centroid' = nearest to the mean target vector; 'union' = nearest to any "
        "single target document (highest cosine to one of them)",
    )
    k: int = Field(10, ge=1, le=100_000, description="number of neighbours to return")
    domains: list[str] | None = Field(None, description="only return documents from these domains")
    exclude_query_docs: bool = Field(
        True, description="leave out the query document (doc_id) or pool documents whose id is a target id"
    )
    embeddings: ArtifactOrPath | None = Field(
        None,
        description="pool embeddings: an embedding artifact id, or a .npy path whose rows follow the corpus "
        "order; computed with the embed tool (cached) when omitted",
    )
    model: str | None = Field(
        None, description="sentence-transformers model for the query/target (and the pool when computed); "
        "None = the pool embeddings' model, else all-MiniLM-L6-v2",
    )
    backend: Literal["knn", "chroma"] = Field(
        "knn", description="'knn': faiss/NumPy (exact below 50k vectors); 'chroma': the vector store (HNSW)"
    )
    index: Literal["auto", "flat", "ivf", "hnsw", "numpy"] = Field(
        "auto", description="k-NN index kind for backend='knn' (auto = exact flat below 50k vectors, else IVF)"
    )

    @model_validator(mode="after")
    def _one_query(self) -> NeighborsRequest:
        given = [n for n in ("query", "doc_id", "target") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of query, doc_id, target; got {given or 'none'}")
        if self.query is not None and not self.query.strip():
            raise ValueError("query must be a non-empty text")
        return self


class NeighborHit(BaseModel):
    id: str
    score: float
    domain: str


class NeighborsResult(SelectionResult):
    query_kind: Literal["query", "doc_id", "target"] = "query"
    target_mode: str | None = None
    model: str = ""
    backend: str = ""
    top: list[NeighborHit] = Field(default_factory=list, description="the best few hits (ids, not text)")


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {"query": "integer prime equation", "k": 5}


SPEC = ToolSpec(
    name="neighbors",
    conformance="tools.neighbors:conformance_case",
    description="Find the pool documents most similar (cosine of sentence embeddings) to a text, to a "
    "document id, or to a target set (its centroid, or any of its documents), optionally only in some "
    "domains. Writes a selection of ids with scores; the summary lists top ids, never document text.",
    request_model=NeighborsRequest,
    result_model=NeighborsResult,
    family="selection",
    gpu="optional",
    effects=frozenset({"read_data", "write_workspace", "gpu"}),
    examples=(
        "show me documents similar to doc-000123",
        "find the 20 documents closest to 'proof by induction on prime numbers'",
        "which pool documents are nearest to my target set?",
        "nearest neighbours of this text in the code domain",
        "find examples like this one",
    ),
)

# ---------------------------------------------------------------------------------------- core


def rank_union(scores: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-query k-NN lists: each pool row's best score and the query giving it, top ``k``.

    ``scores``/``idx``: (m, k') from a search (``-1`` = no hit). Returns (rows, best scores, query row),
    ordered by score descending, then row. Exact for the top ``k`` when each list holds ``k'`` >= ``k``
    hits: a row missing from its best query's list is beaten by ``k'`` rows at least as close.
    """
    m, kk = idx.shape
    flat_i = idx.ravel()
    flat_s = scores.ravel().astype(np.float64)
    flat_q = np.repeat(np.arange(m), kk)
    ok = flat_i >= 0
    flat_i, flat_s, flat_q = flat_i[ok], flat_s[ok], flat_q[ok]
    order = np.lexsort((flat_q, -flat_s, flat_i))  # per row: best score first
    flat_i, flat_s, flat_q = flat_i[order], flat_s[order], flat_q[order]
    first = np.ones(len(flat_i), dtype=bool)
    first[1:] = flat_i[1:] != flat_i[:-1]
    rows, best, qrow = flat_i[first], flat_s[first], flat_q[first]
    top = np.lexsort((rows, -best))[:k]
    return rows[top], best[top], qrow[top]


def _search_knn(vectors: np.ndarray, queries: np.ndarray, k: int, kind: str, device: str) -> tuple[np.ndarray, np.ndarray]:
    from tools.knn import build_index

    dev = device if device.startswith("cuda") else "cpu"
    index = build_index(vectors, metric="ip", kind=kind, device=dev)  # type: ignore[arg-type]
    return index.search(queries, k)


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


# ----------------------------------------------------------------------------------------- run


@SPEC.implement
def run(request: NeighborsRequest, ctx: ToolContext) -> NeighborsResult:
    tool = SPEC.name
    pool = pool_vectors(request.corpus, ctx, embeddings=request.embeddings, model=request.model, missing="skip",
                        vector_store=request.backend == "chroma")
    model = request.model if request.model is not None else pool.model
    n = len(pool.ids)
    doms = np.asarray(pool.domains, dtype=object)
    if request.domains:
        wanted = set(request.domains)
        cand = np.flatnonzero(np.fromiter((d in wanted for d in pool.domains), dtype=bool, count=n))
        if cand.size == 0:
            present = format_domain_counts(dict(Counter(pool.domains).most_common()))
            raise BadInput(f"no pool documents in domains {sorted(wanted)}; the pool has: {present}",
                           where=f"{tool}.domains")
    else:
        cand = np.arange(n)

    exclude: set[int] = set()
    target_ids: list[str] = []
    if request.doc_id is not None:
        kind = "doc_id"
        row_of = {d: i for i, d in enumerate(pool.ids)}
        if request.doc_id not in row_of:
            near = [d for d in pool.ids if request.doc_id in d][:3]
            raise BadInput(
                f"no document with id {request.doc_id!r} in the pool ({n} documents)", where=f"{tool}.doc_id",
                hint=f"similar ids: {near}" if near else None,
            )
        qrow = row_of[request.doc_id]
        queries = pool.vectors[qrow : qrow + 1]
        if request.exclude_query_docs:
            exclude.add(qrow)
    elif request.query is not None:
        kind = "query"
        queries = text_vectors([request.query], ctx, model=model)
    else:
        kind = "target"
        tstats = ReadStats()
        texts: list[str] = []
        for batch in read_batches(request.target, ("id", "text"), allowed_roots=ctx.data_roots, stats=tstats):
            target_ids += batch.column("id").to_pylist()
            texts += ["" if t is None else t for t in batch.column("text").to_pylist()]
        tv = normalize_rows(text_vectors(texts, ctx, model=model, normalize=False), target_ids, f"{tool}.target")
        if request.target_mode == "centroid":
            c = tv.mean(axis=0)
            norm = float(np.linalg.norm(c))
            if norm < 1e-6:
                raise BadInput("the target vectors cancel out (centroid of norm ~0); use target_mode='union'",
                               where=f"{tool}.target")
            queries = (c / norm)[None, :].astype(np.float32)
        else:
            queries = tv
        if request.exclude_query_docs:
            tset = set(target_ids)
            exclude = {i for i, d in enumerate(pool.ids) if d in tset}
    if queries.shape[1] != pool.vectors.shape[1]:
        raise BadInput(
            f"the {kind} vectors have dimension {queries.shape[1]} but the pool's have {pool.vectors.shape[1]}",
            where=f"{tool}.embeddings", hint="embed the pool and the query with the same model (pass model=)",
        )
    n_excl_cand = len(exclude & set(cand.tolist())) if exclude else 0
    available = len(cand) - n_excl_cand
    if request.k > available:
        raise BadInput(
            f"must be at most the number of candidate documents {available}"
            + (f" (domains {request.domains})" if request.domains else "") + f"; got {request.k}",
            where=f"{tool}.k",
        )
    k_search = min(request.k + n_excl_cand, len(cand))

    collection = None
    if request.backend == "chroma":
        scores, idx, collection = _search_chroma(ctx, request.corpus, pool, cand, queries, k_search,
                                                 request.domains)
    else:
        scores, idx = _search_knn(pool.vectors[cand], queries, k_search, request.index, ctx.resolve_device())
    # idx holds positions in cand; drop excluded rows, merge per-target lists
    rows_of = np.where(idx >= 0, cand[np.maximum(idx, 0)], -1)
    if exclude:
        ex = np.fromiter(exclude, dtype=np.int64)
        rows_of = np.where(np.isin(rows_of, ex), -1, rows_of)
    rows, best, qbest = rank_union(scores, rows_of, request.k)
    if len(rows) < request.k:  # an approximate index (IVF/HNSW) reached too few points
        raise BadInput(f"the {request.backend}/{request.index} index returned only {len(rows)} of {request.k} "
                       "neighbours", where=f"{tool}.index", hint="use index='flat' for exact search")

    hit_ids = [pool.ids[i] for i in rows]
    hit_doms = [str(doms[i]) for i in rows]
    table = selection_table(hit_ids, score=best, domain=hit_doms)
    import pyarrow as pa

    table = table.append_column("rank", pa.array(np.arange(1, len(rows) + 1), type=pa.int32()))
    if kind == "target" and request.target_mode == "union":
        table = table.append_column("nearest_target", pa.array([target_ids[q] for q in qbest], type=pa.string()))
    counts = dict(Counter(hit_doms).most_common())
    what = {"query": "the query text", "doc_id": f"document {request.doc_id}",
            "target": f"the target set ({len(target_ids)} documents, {request.target_mode})"}[kind]
    search = f"chroma HNSW ({collection})" if collection else f"k-NN {request.index}"
    metrics = {
        "query_kind": kind, "target_mode": request.target_mode if kind == "target" else None,
        "model": model or pool.model, "backend": request.backend, "search": search,
        "candidates": int(available), "domain_counts": counts,
        "score_min": float(best.min()), "score_max": float(best.max()), "score_mean": float(best.mean()),
        "embeddings": pool.source,
    }
    rows_c = RowCounts(rows_in=n + sum(pool.skipped.values()), rows_out=len(rows),
                       skipped={**dict(pool.stats.skipped), **pool.skipped})
    sel_id = record_selection(ctx, table, request.corpus, pool_domains=pool.domains, metrics=metrics, rows=rows_c).id
    top = [NeighborHit(id=i, score=round(float(s), 4), domain=d)
           for i, s, d in zip(hit_ids[:5], best[:5], hit_doms[:5], strict=True)]
    quoted = ", ".join(f"{h.id} [{h.domain}] {h.score:.3f}" for h in top)
    summary = (
        f"{len(rows)} pool documents nearest to {what} by cosine ({model or pool.model or 'given embeddings'}, "
        f"{search}, {available} candidates"
        + (f" in {', '.join(request.domains)}" if request.domains else "")
        + f"). Top: {quoted}. Scores {best.min():.3f}-{best.max():.3f}. "
        f"Domains: {format_domain_counts(counts)}. Selection {sel_id}."
    )
    return NeighborsResult(
        summary=summary, artifacts={"selection": sel_id}, rows=rows_c, k=len(rows), pool_size=n,
        domain_counts=counts, query_kind=kind, target_mode=request.target_mode if kind == "target" else None,
        model=str(model or pool.model or ""), backend=request.backend, top=top,
    )
