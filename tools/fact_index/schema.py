"""fact_index request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tools.contract import ToolMetrics, ToolRequest, ToolResult, ToolSpec
from tools.refs import ArtifactOrPath, CorpusRef


class FactIndexRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the training documents to index for fact tracing")
    embeddings: ArtifactOrPath | None = Field(
        None,
        description="corpus embeddings: an embedding artifact id, or a .npy path whose rows follow the corpus "
        "order; computed with the embed tool (cached) when omitted",
    )
    model: str | None = Field(None, description="sentence-transformers model when embeddings are computed")
    max_leaf: int = Field(100, ge=2, le=100_000, description="most documents per leaf cluster (FASTTRACK: 100)")
    branching: int = Field(
        10, ge=2, le=1024,
        description="most children per split; a node of n documents gets min(branching, ceil(n/max_leaf))",
    )
    niter: int = Field(20, ge=1, le=300, description="k-means iterations per split")
    label_terms: int = Field(20, ge=1, le=200, description="c-TF-IDF keywords kept per cluster")
    llm_labels: Literal["auto", "off"] = Field(
        "auto", description="'auto': also label leaf clusters with the tool LLM when one is configured; 'off'"
    )
    label_sample: int = Field(20, ge=1, le=200, description="documents per cluster shown to the LLM labeller")
    llm_label_max_clusters: int = Field(
        1000, ge=0, description="most leaf clusters labelled by the LLM (one call each; the largest first)"
    )
    seed: int = Field(0, description="k-means seed (and the LLM labeller's member sample)")


class FactIndexMetrics(ToolMetrics):
    n_docs: int = 0
    n_nodes: int = 0
    n_leaves: int = 0
    depth: int = 0
    max_leaf: int = 0
    branching: int = Field(0, description="most children per split")
    leaf_size_min: int = 0
    leaf_size_median: float = 0.0
    leaf_size_max: int = 0
    splits: dict[str, int] = Field(default_factory=dict, description="internal nodes by split kind")
    labelled_by: list[str] = Field(default_factory=list, description="'ctfidf' always, 'llm' when used")
    llm_calls: int = Field(0, description="LLM calls of the cluster labeller")
    llm_label_failures: int = Field(0, description="leaves whose LLM answer failed strict parsing")
    model: str | None = Field(None, description="the embedding model of the vectors")
    embeddings: str | None = Field(None, description="where the vectors came from (artifact id or path)")


class FactIndexResult(FactIndexMetrics, ToolResult):
    """The index artifact and the shape of its tree."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus (45 documents)."""
    return {"corpus": str(corpus), "max_leaf": 10, "llm_labels": "off"}


SPEC = ToolSpec(
    name="fact_index",
    version="1",
    description="Build a fact-tracing index (FASTTRACK): recursive k-means over document embeddings until "
    "every leaf holds at most max_leaf (100) documents, each cluster labelled by c-TF-IDF keywords and, "
    "with an LLM configured, by the LLM. Used by trace_fact.",
    request_model=FactIndexRequest,
    result_model=FactIndexResult,
    family="index",
    gpu="optional",
    effects=frozenset({"read_data", "write_workspace", "gpu", "llm_calls"}),
    llm="optional",
    consumes=("embeddings",),
    produces=("index",),
    conformance="tools.fact_index.schema:conformance_case",
    examples=(
        "build an index for fact tracing",
        "index the training corpus so I can trace facts back to documents",
        "cluster the pool recursively into leaves of at most 100 documents",
        "prepare the FASTTRACK cluster index for data/wiki.jsonl",
        "build the hierarchical k-means index with keyword labels",
        "make a fact index of my pretraining shard with max_leaf 50",
        "label clusters of my corpus with keywords for fact lookup",
        "set up fact tracing over this dataset",
        "create a cluster tree of the documents for attribution",
        "build the semantic index FASTTRACK needs before tracing",
        "index these documents by topic clusters with keywords",
    ),
)
