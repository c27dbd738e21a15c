"""trace_fact request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from tools.contract import ToolMetrics, ToolRequest, ToolResult, ToolSpec
from tools.refs import ArtifactOrPath, CorpusRef, InputPath, artifact_of

IndexRef = artifact_of("index")


class FactItem(BaseModel):
    """One fact: a statement, optionally with its triple (subject and object are what the offline verifier checks)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str | None = Field(None, description="fact id; default q<line number>")
    query: str = Field(description="the fact as a statement, e.g. 'Paul Mounsey was born in Scotland.'")
    subject: str | None = Field(None, description="the fact's subject; extracted from the statement when absent")
    relation: str | None = Field(None, description="the relation (informative)")
    object: str | None = Field(None, description="the fact's object; extracted from the statement when absent")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: object) -> object:
        return {"query": data} if isinstance(data, str) else data


class TraceFactRequest(ToolRequest):
    queries: list[FactItem] | InputPath = Field(
        validation_alias=AliasChoices("queries", "facts"),
        description="the facts: a list of statements or {id, query, subject?, relation?, object?} objects, or a "
        "JSONL file of such objects",
    )
    index: IndexRef | None = Field(  # type: ignore[valid-type]
        None, description="a fact_index artifact; built from corpus (cached) when omitted"
    )
    corpus: CorpusRef | None = Field(None, description="the training documents (needed when no index is given)")
    embeddings: ArtifactOrPath | None = Field(None, description="corpus embeddings for building the index")
    model: str | None = Field(None, description="sentence-transformers model for building the index")
    max_leaf: int = Field(100, ge=2, le=100_000, description="leaf size of an index built here (FASTTRACK: 100)")
    verifier: Literal["auto", "llm", "offline"] = Field(
        "auto",
        description="'llm': the tool LLM judges each candidate (strict yes/no JSON with the span); 'offline': the "
        "FALLBACK rule (subject and object both expressed); 'auto': llm when one is configured, else offline",
    )
    batch_size: int = Field(10, ge=1, le=100, description="(fact, document) pairs per LLM call; facts share batches")
    max_rounds: int = Field(2, ge=1, le=5, description="LLM rounds: items with an invalid answer are asked again")
    fuzzy_threshold: float = Field(80.0, ge=0.0, le=100.0, description="rapidfuzz ratio for a keyword-label match")
    max_keyword_clusters: int = Field(10, ge=0, le=1000, description="most leaves retrieved by keywords per fact")
    min_score_ratio: float = Field(
        0.5, ge=0.0, le=1.0, description="keyword leaves need this share of the fact's best leaf score"
    )
    max_keyword_share: float = Field(
        0.05, gt=0.0, le=1.0, description="keywords matching more than this share of leaves are ignored as generic"
    )
    centroid_top: int = Field(3, ge=0, le=1000, description="leaves retrieved by centroid similarity per fact")
    min_centroid_sim: float = Field(0.3, ge=-1.0, le=1.0, description="least cosine of a centroid-retrieved leaf")
    partial_names: bool = Field(True, description="offline verifier: a subject's last name alone counts")
    require_relation: bool = Field(
        False, description="offline verifier: also require a relation word of the statement in the document"
    )
    min_evidence_ratio: float = Field(
        0.8, ge=0.0, le=1.0, description="offline verifier: a candidate needs this share of the evidence score of "
        "the fact's best candidate (full names 1, fragments like a last name 0.6); 0 keeps every match",
    )
    last_resort: bool = Field(
        True, description="offline verifier: for a fact none of whose candidates names both subject and object, "
        "one distinctive word of the subject stands for it (instead of an empty set)",
    )
    seed: int = Field(0, description="seed of an index built here")

    @model_validator(mode="after")
    def _source(self) -> TraceFactRequest:
        if self.index is None and self.corpus is None:
            raise ValueError("give index (a fact_index artifact) or corpus (the index is then built first)")
        if isinstance(self.queries, list):
            if not self.queries:
                raise ValueError("queries must hold at least one fact")
            for i, q in enumerate(self.queries):
                if not q.query or not q.query.strip():
                    raise ValueError(f"queries[{i}] is an empty fact")
        return self


class FactSummary(BaseModel):
    id: str
    supporting: int = 0
    candidates: int = 0
    rejected: int = 0
    unverified: int = 0
    clusters: list[int] = Field(default_factory=list, description="candidate leaf node ids")
    why_empty: str | None = None


class TraceFactMetrics(ToolMetrics):
    facts: int = 0
    facts_supported: int = Field(0, description="facts with at least one supporting document")
    supporting_docs: int = 0
    candidate_docs: int = Field(0, description="(fact, document) pairs verified")
    verifier: str = Field("", description="'llm' or 'offline'")
    llm_calls: int = Field(0, description="LLM calls of the verifier")
    llm_budget: int | None = None
    index: str = Field("", description="the fact_index artifact traced against")
    facts_without_candidates: int = Field(0, description="facts for which no cluster was retrieved")
    batch_size: int = Field(0, description="(fact, document) pairs per LLM call")
    centroid: str = Field("", description="'used', or why centroid retrieval was skipped")


class TraceFactResult(TraceFactMetrics, ToolResult):
    """Per-fact supporting sets (traces and facts tables), with the verifier that decided them."""

    verifier_note: str = ""
    per_fact: list[FactSummary] = Field(default_factory=list, description="the first 50 facts")


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """A small CPU run over the conformance corpus: a queries file naming words of its documents."""
    rows = []
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
            if len(rows) >= 40:
                break
    facts = []
    for i, r in enumerate(rows[::10][:4]):
        words = [w for w in str(r.get("text", "")).split() if w.isalpha() and len(w) > 3]
        if len(words) >= 2:
            facts.append({"id": f"q{i}", "query": f"{words[0]} relates to {words[-1]}", "subject": words[0],
                          "object": words[-1]})
    if not facts:
        facts = [{"id": "q0", "query": "the document says something", "subject": "document", "object": "something"}]
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps(f) for f in facts) + "\n", encoding="utf-8")
    return {"queries": str(path), "corpus": str(corpus), "max_leaf": 10, "verifier": "offline"}


SPEC = ToolSpec(
    name="trace_fact",
    version="2",
    description="Fact tracing (FASTTRACK): for each fact, the training documents that support it, as a set: "
    "keyword + centroid retrieval of clusters from a fact_index, then batched verification of every candidate "
    "(the tool LLM, or an offline subject+object fallback). Spans, verdicts, rejected candidates and LLM calls.",
    request_model=TraceFactRequest,
    result_model=TraceFactResult,
    family="report",
    gpu="optional",
    effects=frozenset({"read_data", "write_workspace", "gpu", "llm_calls"}),
    cost="llm",
    llm="optional",
    consumes=("index",),
    produces=("traces",),
    conformance="tools.trace_fact.schema:conformance_case",
    examples=(
        "which documents say that Paul Mounsey was born in Scotland?",
        "trace these facts back to the training data",
        "find the training documents that support the fact that Paris is the capital of France",
        "which training examples teach the model that Iginio Tarchetti wrote in Italian?",
        "trace facts.jsonl against the pretraining corpus",
        "where in my corpus does it say that the Eiffel Tower is in Paris?",
        "find evidence documents for each of these statements",
        "run FASTTRACK fact tracing on these queries",
        "attribute the model's answer to supporting documents in the pool",
        "which documents support this claim, and which only mention it?",
        "check which training documents state that Rubens Barrichello is Brazilian",
        "fact tracing: list supporting documents with the supporting span",
    ),
)
