"""DSIR request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tools.contract import SelectionResult, ToolMetrics, ToolRequest, ToolSpec
from tools.corpus import CorpusArg


class DSIRRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the raw pool to select from")
    target: CorpusArg | list[CorpusArg] = Field(
        description="the target set: one corpus, or a list of corpora (one target model for their "
        "union, or one per corpus with separate_targets=true)"
    )
    k: int = Field(description="number of documents to select", ge=1)
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the Gumbel noise (np.random.RandomState(seed))")
    ngrams: int = Field(2, ge=1, le=5, description="n-gram order: 2 = unigrams + bigrams (paper/reference: 2)")
    num_buckets: int = Field(10_000, ge=2, le=1 << 24, description="hash buckets (paper/reference: 10000)")
    hash: Literal["fast", "sha256"] = Field(
        "fast",
        description="'fast': cached 64-bit token hashes combined with vectorised arithmetic; 'sha256': the "
        "reference's bucket ids (parity mode, slower)",
    )
    min_example_length: int | Literal["auto"] = Field(
        "auto", description="documents shorter than this many words are not eligible; 'auto' = the "
        "reference's 100, or the target's own 5th-percentile length when that is shorter (short "
        "targets: questions, prompts, instructions); 100 = the reference"
    )
    length_model: Literal["auto", "on", "off"] = Field(
        "auto", description="add log p_target(length) / p_pool(length) to the log weight (kernel "
        "densities of log length; the n-gram sum alone favours long documents); 'auto' = on except "
        "with target_prior='none' (the reference estimator has no length term)"
    )
    num_tokens_to_fit: int | Literal["auto", "all"] = Field(
        "auto",
        description="n-gram counts used to fit the raw model: 'auto' = 100000 x num_buckets (reference), "
        "'all', or a number; the raw pool is read in order until the budget is passed",
    )
    target_prior: float | Literal["auto", "none"] = Field(
        "auto",
        description="Dirichlet prior strength (pseudo-counts) pulling the target model towards the raw "
        "model: 'auto' = empirical Bayes (leave-one-document-out likelihood of the target); 'none' = the "
        "reference (only a 1e-8 floor, which lets n-grams unseen in a small target dominate)",
    )
    target_laplace_smoothing: float = Field(
        0.0, ge=0.0, description="pseudo-count added to every target bucket (reference option; default 0)"
    )
    length_normalize: bool = Field(
        False,
        description="rank by log weight per n-gram instead of the total (removes DSIR's preference for "
        "long documents; off in the paper)",
    )
    top_k: bool = Field(False, description="deterministic top-k by weight instead of Gumbel top-k sampling")
    separate_targets: bool = Field(
        False, description="one target model per target corpus, each getting its share of k (reference option)"
    )
    target_proportions: list[float] | None = Field(
        None,
        description="shares of k per target with separate_targets; default: each target's share of n-gram counts",
    )


class DSIRMetrics(ToolMetrics):
    """The selection's evidence: written into the selection manifest and carried by the result."""

    eligible: int = Field(0, description="documents at or above the length floor")
    min_example_length: int = Field(0, description="the length floor used (words)")
    length_model: bool = Field(False, description="whether the length term was part of the log weight")
    filtered_share: float = Field(0.0, description="share of the pool below the length floor")
    filtered_top_share: float = Field(
        0.0, description="share of the k documents the weights rank highest (whole pool) that the floor removes"
    )
    kl_reduction: float = Field(0.0, description="KL reduction of the selection on the hashed n-grams (nats)")
    kl_target_raw: float = Field(0.0, description="mean KL(target || raw pool) (nats)")
    target_prior: list[float | None] = Field(default_factory=list, description="Dirichlet prior strength per target")
    target_docs: list[int] = Field(default_factory=list, description="documents read per target")
    target_proportions: list[float] = Field(default_factory=list, description="share of k per target")
    picks_per_target: list[int] = Field(default_factory=list, description="selected documents per target")
    raw_fit_ngrams: int = Field(0, description="n-gram counts the raw model was fitted on")
    score_columns: list[str] = Field(default_factory=list, description="columns of the scores artifact")


class DSIRResult(DSIRMetrics, SelectionResult):
    """The k resampled documents as a selection, every pool document's log weight as scores."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """A small CPU run over the conformance corpus, with a 5-document target written into tmp_path."""
    import json

    target = tmp_path / "dsir-target.jsonl"
    target.write_text("".join(json.dumps({"text": f"integer prime equation proof number {i} " * (i + 2)}) + "\n"
                              for i in range(5)))
    return {"k": 10, "min_example_length": 1, "target": str(target)}


SPEC = ToolSpec(
    name="dsir",
    conformance="tools.dsir.schema:conformance_case",
    version="1",
    description="DSIR importance resampling (Xie et al.): select k documents from a pool whose hashed "
    "unigram/bigram statistics match a target set; writes the selection and per-document log "
    "importance weights, and reports the KL reduction.",
    engines=("local", "ray"),
    request_model=DSIRRequest,
    result_model=DSIRResult,
    family="selection",
    needs_target=True,
    deterministic=True,
    examples=(
        "pick 1000 documents that look like my target set",
        "select 20k examples similar to the math target with DSIR",
        "importance resampling of the pool towards target.jsonl",
        "choose data matching the n-gram distribution of my task examples",
        "select training data like these GSM8K questions",
        "resample the crawl towards two targets, 70% code and 30% math",
        "find 500 pool documents resembling these short instructions",
        "DSIR selection for my QA questions, keep short documents eligible",
        "n-gram importance weights of the pool for a code-prompt target",
        "reproduce the reference DSIR package with sha256 hashing and a 100-word floor",
    ),
)
