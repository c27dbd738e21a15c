"""quality_signals request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tools.contract import ScoresResult, ToolMetrics, ToolRequest, ToolSpec
from tools.refs import CorpusRef, InputPath, artifact_of

HeuristicSignal = Literal[
    "char_count", "word_count", "mean_word_length", "unique_word_fraction", "unigram_entropy",
    "frac_words_no_alpha", "stop_word_fraction", "gopher_stop_words", "symbol_word_ratio_hash",
    "symbol_word_ratio_ellipsis", "line_count", "frac_lines_bullet", "frac_lines_ellipsis",
    "frac_lines_duplicated", "frac_chars_dup_lines", "frac_paragraphs_duplicated", "frac_chars_dup_paragraphs",
    "frac_chars_top_2gram", "frac_chars_top_3gram", "frac_chars_top_4gram", "frac_chars_dup_5gram",
    "frac_chars_dup_6gram", "frac_chars_dup_7gram", "frac_chars_dup_8gram", "frac_chars_dup_9gram",
    "frac_chars_dup_10gram",
]


class QualitySignalsRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the pool to score")
    signals: list[HeuristicSignal] | None = Field(
        None, description="heuristic (RedPajama-V2 / Gopher) columns to keep; default: all of them"
    )
    gopher_pass: bool = Field(True, description="add 'gopher_pass' (1 = passes every Gopher quality and "
                              "repetition rule, paper thresholds) and count the rules that fail")
    dsir_targets: list[CorpusRef] | None = Field(
        None, description="target corpora: one DSIR log importance weight per word column per target "
                          "('dsir_<name>'), computed by the dsir tool (e.g. books, Wikipedia, math as in Meta-rater)"
    )
    lm_reference: CorpusRef | None = Field(
        None, description="reference text (e.g. Wikipedia) to train a proxy LM on; adds 'lm_loss', each "
                          "document's loss per byte under it (lower = more like the reference)"
    )
    lm_kind: Literal["transformer", "bigram"] = Field("transformer", description="proxy LM for lm_reference")
    lm_tokens: int = Field(200_000, ge=1_000, description="training tokens (bytes) for the reference LM")
    causal_lm: InputPath | None = Field(
        None, description="folder of a local Hugging Face causal LM; adds 'causal_lm_nll' (mean token loss)"
    )
    causal_lm_max_tokens: int = Field(256, ge=8, le=4096, description="tokens per document scored by causal_lm")
    classifier_reference: CorpusRef | None = Field(
        None, description="reference documents of the quality wanted; adds 'embed_classifier', the probability "
                          "from a logistic regression on embeddings, reference vs. a random pool sample"
    )
    embeddings: artifact_of("embeddings", or_path=True) | None = Field(
        None, description="precomputed pool embeddings for classifier_reference (artifact id or .npy)"
    )
    classifier_negatives: int = Field(2000, ge=10, description="pool documents drawn as the classifier's negatives")
    seed: int = Field(0, description="seed of the negative sample and the reference LM")


class QualitySignalsMetrics(ToolMetrics):
    """The scores' evidence: written into the scores manifest and carried by the result."""

    documents: int = Field(0, description="documents scored (non-empty text)")
    gopher_fail_counts: dict[str, int] = Field(default_factory=dict, description="documents failing each rule")
    gopher_pass_fraction: float | None = Field(None, description="share passing every Gopher rule")
    signal_means: dict[str, float] = Field(default_factory=dict, description="mean of each column (NaN skipped)")
    classifier_cv_accuracy: float | None = Field(None, description="held-out accuracy of the embedding classifier")


class QualitySignalsResult(QualitySignalsMetrics, ScoresResult):
    """One scores table with a column per quality signal, and a histogram plot."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """The heuristic signals alone: CPU, no model, no extra input."""
    return {}


SPEC = ToolSpec(
    name="quality_signals",
    version="1",
    description="Score every document for quality: RedPajama-V2/Gopher text statistics (word counts, "
    "entropy, stop words, symbol ratios, bullet/ellipsis lines, duplicated lines and n-grams), optional DSIR "
    "weights against targets, LM loss under a reference LM and an embedding classifier; one scores table.",
    engines=("local", "ray"),
    request_model=QualitySignalsRequest,
    result_model=QualitySignalsResult,
    family="scores",
    deterministic=True,
    cost="cpu",
    gpu="optional",
    consumes=(),
    produces=("scores",),
    conformance="tools.quality_signals.schema:conformance_case",
    examples=(
        "score the crawl for quality",
        "compute quality signals for every document",
        "run the Gopher quality and repetition heuristics on the pool",
        "how many documents have too many duplicated lines or n-grams?",
        "RedPajama-style quality annotations for this dataset",
        "measure word count, mean word length, stop-word fraction and symbol ratios",
        "find boilerplate: bullet-heavy pages, ellipsis lines, repeated paragraphs",
        "add a perplexity score under an LM trained on Wikipedia",
        "score documents with a classifier trained to look like our reference set",
        "quality scores I can feed to Meta-rater",
        "which documents would the Gopher filter drop?",
        "annotate the pool with heuristic text-quality statistics",
    ),
)
