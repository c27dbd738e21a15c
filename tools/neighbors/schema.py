"""neighbors request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from tools.contract import SelectionResult, ToolMetrics, ToolRequest, ToolSpec
from tools.corpus import CorpusArg
from tools.refs import ArtifactOrPath


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


class NeighborsMetrics(ToolMetrics):
    query_kind: Literal["query", "doc_id", "target"] = "query"
    target_mode: str | None = None
    model: str = Field("", description="the embedding model of the query and the pool ('' = not recorded)")
    backend: str = ""
    search: str = Field("", description="the search used, e.g. 'k-NN auto' or 'chroma HNSW (collection)'")
    candidates: int = Field(0, description="pool documents that could be returned (domains, exclusions)")
    score_min: float = 0.0
    score_max: float = 0.0
    score_mean: float = 0.0
    embeddings: str = Field("", description="where the pool vectors came from")
    top: list[NeighborHit] = Field(default_factory=list, description="the best few hits (ids, not text)")


class NeighborsResult(NeighborsMetrics, SelectionResult):
    """The k nearest documents as a selection (ids, cosine scores, ranks)."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {"query": "integer prime equation", "k": 5}


SPEC = ToolSpec(
    name="neighbors",
    conformance="tools.neighbors.schema:conformance_case",
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
