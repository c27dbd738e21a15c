"""Stand-in specs for wave-2 tools that are not registered yet (planner development only).

Only the routing-relevant parts: name, family, a one-line description, consumes/produces and a
request model with the argument names of DESIGN.md's vocabulary. No implementation: they are never
run. ``with_standins(specs)`` adds a stand-in only for a name the registry does not have, so the
real spec always wins once its tool lands. Scores measured with stand-ins are reported as such.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tools.contract import MixtureResult, ScoresResult, SelectionResult, ToolRequest, ToolResult, ToolSpec
from tools.refs import ArtifactOrPath, CorpusRef


class InfluenceRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the training pool")
    validation: CorpusRef = Field(description="validation set whose rows carry a task label")
    model: str = Field("EleutherAI/pythia-70m", description="HF causal LM (name or local path)")
    seed: int = 0


class BidsRequest(ToolRequest):
    influence: ArtifactOrPath = Field(description="N x M influence matrix: artifact id or .npy/.parquet path")
    val_tasks: ArtifactOrPath | None = Field(None, description="task label per validation column")
    k: int | None = Field(None, ge=1, description="documents to select")
    fraction: float | None = Field(None, gt=0, le=1, description="share of the pool to select")
    corpus: CorpusRef | None = Field(None, description="the pool (row ids)")
    method: Literal["bids", "task_max", "instance_max", "sum"] = "bids"


class QualitySignalsRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the documents to score")


class PrrcRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the documents to rate")
    dimensions: list[Literal["professionalism", "readability", "reasoning", "cleanliness"]] = Field(
        default_factory=lambda: ["professionalism", "readability", "reasoning", "cleanliness"])
    sample_size: int = Field(1000, ge=1, description="documents rated by the LLM before distillation")


class MetaRaterRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the pool")
    fraction: float | None = Field(None, gt=0, le=1, description="share of documents to keep")
    k: int | None = Field(None, ge=1, description="documents to keep")

    @model_validator(mode="after")
    def _size(self) -> MetaRaterRequest:
        if self.k is None and self.fraction is None:
            raise ValueError("give k or fraction")
        return self


class FactIndexRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the corpus to index")
    embeddings: ArtifactOrPath | None = Field(None, description="embeddings artifact or .npy")
    max_leaf: int = 100


class TraceFactRequest(ToolRequest):
    queries: list[str] = Field(description="the facts to trace")
    index: ArtifactOrPath | None = Field(None, description="a fact_index artifact")
    corpus: CorpusRef | None = Field(None, description="the corpus the index covers")


class ProposeMixtureRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the pool whose domains are mixed")
    method: Literal["data_mixing_agent", "regmix", "doremi", "temperature", "uniform", "proportional"] = (
        "data_mixing_agent")
    target: str | None = Field(None, description="target domain or field")
    temperature: float = 1.0
    stages: int = 1
    token_budget: int | None = None


def _spec(name: str, req: type[ToolRequest], res: type[ToolResult], family: str, desc: str,
          consumes: tuple[str, ...] = (), produces: tuple[str, ...] = ()) -> ToolSpec:
    return ToolSpec(name=name, description=desc, request_model=req, result_model=res, family=family,  # type: ignore[arg-type]
                    consumes=consumes, produces=produces)


STANDINS: tuple[ToolSpec, ...] = (
    _spec("influence", InfluenceRequest, ToolResult, "other",
          "LESS-style gradient influence of every training example on every validation example "
          "(LoRA warm-up, projected per-example gradients): an N x M influence matrix.", (), ("influence",)),
    _spec("bids", BidsRequest, SelectionResult, "selection",
          "BIDS balanced influence-based selection from an influence matrix, so every validation task "
          "improves; baselines task-max, instance-max, sum.", ("influence",), ("selection",)),
    _spec("quality_signals", QualitySignalsRequest, ScoresResult, "scores",
          "Per-document quality signals: Gopher/RedPajama heuristics, perplexity under a small LM, "
          "DSIR weights.", (), ("scores",)),
    _spec("prrc_rate", PrrcRequest, ScoresResult, "scores",
          "LLM ratings on professionalism, readability, reasoning and cleanliness (PRRC), distilled "
          "into a cheap rater that scores the whole pool.", (), ("scores",)),
    _spec("meta_rater", MetaRaterRequest, SelectionResult, "selection",
          "Meta-rater: combine quality scores with weights learned from proxy-model runs and keep the "
          "best documents.", ("scores",), ("selection", "scores")),
    _spec("fact_index", FactIndexRequest, ToolResult, "index",
          "Fact-tracing index: recursive k-means over embeddings with keyword-labelled clusters.",
          ("embeddings",), ("index",)),
    _spec("trace_fact", TraceFactRequest, ToolResult, "other",
          "FASTTRACK fact tracing: the documents that support each fact, verified.", ("index",), ("traces",)),
    _spec("propose_mixture", ProposeMixtureRequest, MixtureResult, "mixture",
          "Propose per-stage domain weights (Data Mixing Agent, RegMix, DoReMi, temperature) as a mixture "
          "proposal for review.", (), ("mixture", "proposal")),
)


def with_standins(specs: list[ToolSpec]) -> list[ToolSpec]:
    have = {s.name for s in specs}
    return [*specs, *(s for s in STANDINS if s.name not in have)]
