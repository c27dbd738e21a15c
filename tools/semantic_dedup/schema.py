"""semantic_dedup request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tools.contract import SelectionResult, ToolMetrics, ToolRequest, ToolSpec
from tools.corpus import CorpusArg
from tools.refs import ArtifactOrPath

KeepRule = Literal["farthest_from_centroid", "closest_to_centroid", "longest", "first", "random"]
Compare = Literal["kept", "earlier"]


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


class SemanticDedupMetrics(ToolMetrics):
    threshold: float = 0.0
    eps: float = Field(0.0, description="SemDeDup's eps = 1 - threshold")
    n_clusters: int = 0
    keep: str = ""
    compare: str = ""
    model: str | None = Field(None, description="the embedding model, when recorded")
    embeddings: str = Field("", description="where the pool vectors came from")
    removed: int = 0
    removal_rate: float = 0.0
    removal_rate_by_domain: dict[str, float] = Field(default_factory=dict)
    removed_by_domain: dict[str, int] = Field(default_factory=dict)
    largest_cluster: int = 0
    singleton_clusters: int = 0
    similarity_min: float | None = Field(None, description="lowest similarity of a removed document to its duplicate")


class SemanticDedupResult(SemanticDedupMetrics, SelectionResult):
    """The kept documents as a selection; the removed ones are the 'rejected' artifact."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {}


SPEC = ToolSpec(
    name="semantic_dedup",
    conformance="tools.semantic_dedup.schema:conformance_case",
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
