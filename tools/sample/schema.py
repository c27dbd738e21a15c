"""sample request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tools.contract import SelectionResult, ToolMetrics, ToolRequest, ToolSpec
from tools.corpus import CorpusArg


class SampleRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the pool to sample from")
    k: int | None = Field(None, description="number of documents to sample", ge=1)
    fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="or this share of the pool (of the chosen domains): 0.05 = 5%"
    )
    mode: Literal["random", "stratified"] = Field(
        "random", description="'random': uniform without replacement; 'stratified': per-domain quotas"
    )
    allocation: Literal["proportional", "equal"] = Field(
        "proportional", description="stratified quotas: proportional to domain size, or equal per domain"
    )
    domains: list[str] | None = Field(None, description="only sample from these domains")
    seed: int = Field(0, description="random seed")

    @model_validator(mode="after")
    def _one_size(self) -> SampleRequest:
        if (self.k is None) == (self.fraction is None):
            raise ValueError("give exactly one of k (documents) or fraction (share of the pool)")
        return self


class SampleMetrics(ToolMetrics):
    mode: str = Field("", description="'random' or 'stratified'")


class SampleResult(SampleMetrics, SelectionResult):
    """A selection of k documents, with the sampling mode."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {"k": 10}


SPEC = ToolSpec(
    name="sample",
    conformance="tools.sample.schema:conformance_case",
    description="Draw a random or domain-stratified sample of k documents (or a share of the pool) with a "
    "seed: the baseline to compare every selector with.",
    request_model=SampleRequest,
    result_model=SampleResult,
    family="selection",
    deterministic=True,
    examples=(
        "take a random sample of 1000 documents",
        "give me a stratified sample of 500 documents balanced across domains",
        "randomly pick 2000 examples as a baseline",
        "sample 300 documents from each domain equally",
        "take 10% of the pool at random",
    ),
)
