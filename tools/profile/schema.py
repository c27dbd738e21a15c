"""profile request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tools.contract import ScoresResult, ToolMetrics, ToolRequest, ToolSpec
from tools.corpus import CorpusArg


class ProfileRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the pool to profile")
    tokenizer: Literal["default", "words"] = Field(
        "default",
        description="'default' counts tokens with the default embedding model's WordPiece tokenizer; "
        "'words' skips token counting",
    )
    max_rows: int | None = Field(None, ge=1, description="profile only the first N rows (None = all)")


class ProfileMetrics(ToolMetrics):
    rows_total: int = 0
    domains: dict[str, int] = Field(default_factory=dict)
    words: dict[str, float] = Field(default_factory=dict, description="length quantiles in words")
    tokens: dict[str, float] = Field(default_factory=dict, description="length quantiles in tokens")
    exact_duplicate_rate: float = 0.0
    empty_rows: int = 0
    garbled_rows: int = 0
    invalid_utf8_rows: int = 0
    duplicate_ids: int = 0


class ProfileResult(ProfileMetrics, ScoresResult):
    """The profile's numbers; the per-domain table and the histogram are artifacts."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {}


SPEC = ToolSpec(
    name="profile",
    conformance="tools.profile.schema:conformance_case",
    description="Profile a corpus: row count, documents per domain, length distributions in words and "
    "tokens, exact-duplicate rate, empty or garbled rows, with a histogram plot.",
    request_model=ProfileRequest,
    result_model=ProfileResult,
    family="report",
    engines=("local", "ray"),  # the per-batch counts go through tools.engine.map_batches
    examples=(
        "profile my dataset",
        "what is in this corpus?",
        "show me the domain breakdown and length distribution of the pool",
        "how many duplicates and empty documents are there",
        "give me statistics about data/pool.jsonl",
    ),
)
