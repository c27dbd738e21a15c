"""prrc_rate request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tools.contract import ScoresResult, ToolMetrics, ToolRequest, ToolSpec
from tools.refs import ArtifactOrPath, CorpusRef, ModelRef, artifact_of

Dimension = Literal["professionalism", "readability", "reasoning", "cleanliness"]


class PRRCRateRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the pool to rate")
    dimensions: list[Dimension] = Field(
        ["professionalism", "readability", "reasoning", "cleanliness"],
        min_length=1, description="PRRC dimensions to rate (Meta-rater: all four)",
    )
    sample_size: int = Field(200, ge=1, description="documents the LLM rates (a seeded sample); the distilled "
                             "rater scores the rest")
    ratings: ArtifactOrPath | None = Field(
        None, description="ratings to distil from instead of asking the LLM: a file or scores artifact with 'id' "
                          "and one column per dimension (grades 1-5)"
    )
    distill: bool = Field(True, description="train embeddings -> grade on the rated sample and score the whole pool")
    distill_model: Literal["auto", "ridge", "logistic", "encoder"] = Field(
        "auto", description="ridge regression or multinomial logistic (expected grade) on the embeddings, or "
        "'encoder': fine-tune the MiniLM encoder with a head per dimension (GPU-sized work; runs on the CPU when "
        "asked); 'auto' = encoder when the run's device is a GPU, else ridge")
    encoder_model: ModelRef | None = Field(None, description="sentence-transformers model the encoder rater "
                                           "fine-tunes; None = all-MiniLM-L6-v2 (bundled, offline)")
    encoder_epochs: int = Field(3, ge=1, le=50, description="fine-tuning epochs of the encoder rater")
    embeddings: artifact_of("embeddings", or_path=True) | None = Field(None, description="precomputed pool embeddings (artifact id or .npy)")
    max_chars: int = Field(6000, ge=200, description="characters of each document shown to the LLM")
    max_tokens: int = Field(300, ge=32, le=4096, description="answer tokens per rating")
    seed: int = Field(0, description="seed of the sample and the cross-validation folds")


class PRRCRatingMetrics(ToolMetrics):
    """What was rated (by the LLM or in the file supplied): the ratings artifact's manifest."""

    source: Literal["llm", "ratings"] = "llm"
    rated: dict[str, int] = Field(default_factory=dict, description="valid ratings per dimension")
    garbage: dict[str, int] = Field(default_factory=dict, description="answers rejected by the parser, per dimension")
    not_rated: dict[str, int] = Field(default_factory=dict, description="sample documents left unrated (budget)")
    mean_rating: dict[str, float] = Field(default_factory=dict)
    partial: bool = Field(False, description="the call budget ran out before the whole sample was rated")


class PRRCDistilMetrics(ToolMetrics):
    """How well the distilled rater reproduces the ratings: the scores artifact's manifest."""

    spearman: dict[str, float | None] = Field(default_factory=dict, description="out-of-fold, distilled vs rated")
    within_one: dict[str, float | None] = Field(default_factory=dict, description="share within one grade")
    distill_skipped: dict[str, str] = Field(default_factory=dict)
    distilled_with: str | None = Field(None, description="the rater that scored the pool: ridge, logistic or encoder")
    distill_device: str | None = Field(None, description="where the encoder rater was fine-tuned")


class PRRCRateMetrics(PRRCRatingMetrics, PRRCDistilMetrics):
    """The ratings and the distillation together (the result's metrics)."""


class PRRCRateResult(PRRCRateMetrics, ScoresResult):
    """PRRC ratings of a sample and, when distilled, scores for the whole pool."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Offline: distil from ratings written here (grades derived from the document's domain)."""
    import json

    rows = [json.loads(line) for line in Path(corpus).read_text().splitlines() if line.strip()]
    grade = {"math": 5, "code": 3, "food": 1}
    path = tmp_path / "ratings.jsonl"
    lines = [{"id": r["id"], "readability": max(1, grade.get(r.get("domain"), 3) - i % 2)} for i, r in enumerate(rows)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return {"ratings": str(path), "dimensions": ["readability"]}


SPEC = ToolSpec(
    name="prrc_rate",
    version="1",
    description="Rate documents on PRRC (professionalism, readability, reasoning, cleanliness; Meta-rater) with "
    "the configured LLM on a sample (additive 5-point prompts, strict JSON), then distil the ratings into an "
    "embedding ridge/logistic rater (or, on a GPU, a fine-tuned MiniLM encoder) that scores the whole pool; or distil from ratings you supply.",
    request_model=PRRCRateRequest,
    result_model=PRRCRateResult,
    family="scores",
    deterministic=True,
    cost="llm",
    gpu="optional",
    llm="optional",
    effects=frozenset({"read_data", "write_workspace", "llm_calls"}),
    consumes=(),
    produces=("scores",),
    engines=("local", "ray"),  # the LLM rating requests are engine tasks; distillation runs in the driver
    conformance="tools.prrc_rate.schema:conformance_case",
    examples=(
        "rate a sample on professionalism and readability with the LLM",
        "use the LLM to grade 500 documents on the four PRRC dimensions",
        "how clean is this data? rate cleanliness with the model",
        "score reasoning depth of the documents with an LLM judge",
        "LLM quality ratings on a sample, then a cheap rater for the whole pool",
        "distil these human ratings into a scorer for the rest of the corpus",
        "grade readability 1 to 5 for each document",
        "Meta-rater PRRC annotations for the crawl",
        "have the language model judge professionalism of 200 documents",
        "train a quality classifier from LLM grades and apply it to everything",
    ),
)
