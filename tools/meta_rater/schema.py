"""Meta-rater request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tools.contract import SelectionResult, ToolMetrics, ToolRequest, ToolSpec
from tools.refs import CorpusRef, artifact_of

ScoresRef = artifact_of("scores", or_path=True)


class MetaRaterRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the pool the scores describe (its text trains the proxies)")
    scores: ScoresRef | list[ScoresRef] = Field(
        description="scores artifact id(s) or Parquet file(s) with 'id' and one numeric column per signal "
        "(quality_signals, dsir, prrc_rate outputs); several are joined on id"
    )
    columns: list[str] | None = Field(None, description="signal columns to combine; default: every numeric column")
    validation: CorpusRef | None = Field(
        None, description="validation texts the proxies are scored on (the target domain); default: a held-out "
        "sample of the pool"
    )
    holdout: float = Field(0.05, gt=0, lt=0.5, description="share of the pool held out as validation when "
                           "no validation set is given (never selected for proxy training)")
    max_validation_docs: int = Field(400, ge=5, description="validation texts scored per proxy (a seeded sample)")
    fraction: float | None = Field(0.3, gt=0, le=1, description="final selection: this share of the pool's tokens")
    k: int | None = Field(None, ge=1, description="final selection: this many documents (overrides fraction)")
    proxy_fraction: float | None = Field(
        None, gt=0, le=1, description="share of the pool's tokens each proxy trains on; default: the selection's share"
    )
    n_proxies: int | None = Field(
        None, ge=8, le=4096, description="proxy runs R; default 4 per signal, at least 32 and at most 256 (paper: 256; "
        "RegMix: 512). Fewer runs than about 2 per signal rarely beat a random selection"
    )
    refine_fraction: float = Field(
        0.25, ge=0, lt=1, description="share of the runs drawn around the first round's best weights (0 = one round)"
    )
    proxy: Literal["transformer", "bigram", "oracle"] = Field(
        "transformer",
        description="'transformer': tiny byte-level LM trained on CPU; 'bigram': analytic byte-bigram LM (instant); "
        "'oracle': -mean of a known quality column (oracle_column) over the selection",
    )
    oracle_column: str | None = Field(None, description="with proxy='oracle': the column holding known quality")
    proxy_tokens: int = Field(100_000, ge=1_000, description="training tokens (bytes) per proxy run")
    proxy_width: int = Field(64, ge=16, le=2048, multiple_of=16,
                             description="transformer proxy: model width (heads of 16 dims)")
    proxy_layers: int = Field(2, ge=1, le=48, description="transformer proxy: layers (about 12 x width^2 "
                              "parameters each; go larger on a GPU)")
    normalization: Literal["rank", "robust_z"] = Field("rank", description="per-signal scale: percentile rank or "
                                                       "median/MAD z-score clipped to +-3")
    regressor: Literal["auto", "lightgbm", "ridge"] = Field(
        "auto", description="weights -> loss model: LightGBM (RegMix), RBF kernel ridge, or the better by "
        "out-of-fold Spearman ('auto'; ridge alone under 24 runs)"
    )
    n_search: int = Field(100_000, ge=1_000, le=2_000_000, description="candidate weights predicted (RegMix: 100k)")
    top_k: int = Field(128, ge=1, description="lowest-predicted candidates averaged into the learned weights")
    seed: int = Field(0, description="seed of the weight draws, proxies and the validation sample")

    @model_validator(mode="after")
    def _check(self) -> MetaRaterRequest:
        if self.proxy == "oracle" and not self.oracle_column:
            raise ValueError("proxy='oracle' needs oracle_column (the column with known quality)")
        if self.oracle_column and self.proxy != "oracle":
            raise ValueError("oracle_column is used only with proxy='oracle'")
        if self.k is None and self.fraction is None:
            raise ValueError("give k or fraction for the final selection")
        return self


class MetaRaterMetrics(ToolMetrics):
    """What the fit learned and how the learned selection compares (the selection's manifest and the result)."""

    weights: dict[str, float] = Field(default_factory=dict, description="learned weight per signal (sums to 1)")
    top_signals: list[str] = Field(default_factory=list)
    dropped_signals: dict[str, str] = Field(default_factory=dict, description="signal -> why it was not used")
    regressor: str = ""
    spearman: float | None = Field(None, description="out-of-fold Spearman of predicted vs measured proxy loss")
    regressor_candidates: dict[str, float] = Field(default_factory=dict)
    proxy: str = Field("", description="the proxy that measured each weighting: transformer, bigram or oracle")
    proxy_tokens: int = Field(0, description="training tokens (bytes) per proxy run")
    n_proxies: int = 0
    weights_source: str = Field("search", description="'search' (RegMix top-k mean) or 'best_run' (a measured "
                                "proxy run beat the searched weights, so its weights are used)")
    search_loss: float | None = Field(None, description="proxy loss of the searched weights' selection")
    learned_loss: float | None = Field(None, description="proxy loss after training on the learned selection")
    random_loss: float | None = Field(None, description="proxy loss after training on a random selection of the "
                                      "same tokens")
    best_proxy_loss: float | None = None
    validation: str = ""
    selected_tokens: float = Field(0.0, description="tokens (bytes) of the selected documents")
    pool_tokens: float = Field(0.0, description="tokens (bytes) of the usable pool")


class MetaRaterResult(MetaRaterMetrics, SelectionResult):
    """The learned signal weights, the selection they make and its proxy loss against a random selection."""

    pool_domain_share: dict[str, float] = Field(default_factory=dict, description="each domain's share of the pool")
    proxy_runs_reused: int = Field(0, description="proxy runs found in the workspace cache")
    score_columns: list[str] = Field(default_factory=list)


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """A quick run on the conformance corpus: two signals from the text itself, the bigram proxy."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in Path(corpus).read_text().splitlines() if line.strip()]
    ids = [r["id"] for r in rows]
    scores = pa.table({"id": ids, "length": [float(len(r["text"])) for r in rows],
                       "digits": [float(sum(c.isdigit() for c in r["text"])) for r in rows]})
    path = tmp_path / "signals.parquet"
    pq.write_table(scores, path)
    return {"scores": str(path), "proxy": "bigram", "n_proxies": 12, "n_search": 2000, "top_k": 16,
            "proxy_tokens": 2000, "holdout": 0.2, "fraction": 0.5}


SPEC = ToolSpec(
    name="meta_rater",
    version="2",  # 2: the validation set is the field `validation` (was `target`)
    description="Meta-rater (Zhuang et al. 2025): learn weights for K quality scores from proxy LM runs "
    "(random weights -> top documents -> tiny LM -> validation loss; LightGBM/ridge fit; RegMix search) and "
    "select the best documents by the weighted score; writes weights, scores, a selection and plots.",
    request_model=MetaRaterRequest,
    result_model=MetaRaterResult,
    family="selection",
    deterministic=True,
    cost="cpu",
    gpu="optional",
    consumes=("scores",),
    produces=("selection", "scores"),
    conformance="tools.meta_rater.schema:conformance_case",
    examples=(
        "learn how to weight our quality signals with proxy models and keep the best 30%",
        "combine the quality scores into one rating with Meta-rater",
        "which quality signals matter most? fit weights from proxy training runs",
        "train small proxy LMs to find the best mix of quality scores",
        "meta-rate the pool using the signals artifact and keep 20k documents",
        "select the top documents by learned combination of PRRC, DSIR and heuristic scores",
        "RegMix-style regression over quality-score weights",
        "find the weighting of the scores that lowers validation loss on our target",
        "keep the best half of the crawl by a learned quality score",
        "use proxy models to decide how much each quality signal should count",
        "learn a data-quality weighting against held-out text and select documents",
    ),
)
