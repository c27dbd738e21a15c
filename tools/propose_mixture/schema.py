"""propose_mixture request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tools.contract import MixtureResult, ToolMetrics, ToolRequest, ToolSpec
from tools.refs import ArtifactOrPath, CorpusRef, InputPath

Method = Literal["agent", "regmix", "doremi", "temperature", "uniform", "proportional"]


class ProposeMixtureRequest(ToolRequest):
    corpus: CorpusRef = Field(description="the pool; its domain column defines the domains")
    domains: list[str] | None = Field(
        None, description="mix only these domains (default: every domain of the corpus)"
    )
    clusters: int | None = Field(
        None, ge=2, le=256,
        description="when the corpus has no domain column: k-means clusters of the embeddings as domains",
    )
    embeddings: ArtifactOrPath | None = Field(
        None, description="with clusters: an embeddings artifact or .npy (rows in corpus order) to cluster; "
        "default: embed the corpus"
    )
    target_domains: list[str] = Field(
        default_factory=list,
        description="the target field (e.g. ['math']) of continued pre-training; the rest is the source field",
    )
    source_domains: list[str] | None = Field(
        None, description="the source field to keep (default: every domain not in target_domains)"
    )
    method: Method = Field(
        "agent",
        description="'agent': Data Mixing Agent (offline CQL over random trajectories, re-weights every "
        "stage); 'regmix': regression over proxy runs; 'doremi': excess-loss reweighting; 'temperature': "
        "sizes^(1/T); 'uniform'; 'proportional'",
    )
    token_budget: int | None = Field(
        None, ge=1, description="tokens to train on over all stages (default: one pass over the mixed domains)"
    )
    stages: int = Field(1, ge=1, le=64, description="re-weighting stages; the budget is split evenly")
    temperature: float = Field(2.0, gt=0, le=1000, description="T of temperature sampling (T=1 proportional)")
    max_epochs: float | None = Field(
        4.0, gt=0, description="no domain is repeated more than this many times over all stages (null: no cap)"
    )
    caps: dict[str, float] = Field(default_factory=dict, description="per-domain maximum share (0..1)")
    floors: dict[str, float] = Field(default_factory=dict, description="per-domain minimum share (0..1)")
    bytes_per_token: float = Field(4.0, gt=0, description="tokens are estimated as UTF-8 bytes / this")
    proxy_runs: InputPath | None = Field(
        None, description="regmix: a table of proxy-run mixtures (CSV/Parquet; columns train_<domain>, "
        "optional metric/<name> columns)"
    )
    proxy_metrics: InputPath | None = Field(
        None, description="regmix: the matching table of metrics (joined on 'index')"
    )
    metric: str | None = Field(
        None, description="regmix: the metric to minimise (default: the mean of the metric columns)"
    )
    n_configs: int = Field(16, ge=4, le=4096, description="regmix without tables: proxy runs to train")
    proxy_tokens: int = Field(
        20_000, ge=256, description="bytes each proxy LM trains on per run/stage/round (CPU-sized default)"
    )
    proxy_model: Literal["transformer", "bigram"] = Field(
        "transformer", description="the proxy LM: a tiny byte-level transformer, or the closed-form byte bigram"
    )
    doremi_rounds: int = Field(8, ge=1, le=200, description="doremi: proxy rounds (weight updates)")
    env: Literal["simulator", "proxy_lm"] = Field(
        "simulator", description="agent: trajectories from the analytic simulator, or from proxy LM runs"
    )
    agent: ArtifactOrPath | None = Field(None, description="agent: a saved agent artifact to reuse (no training)")
    n_trajectories: int = Field(200, ge=2, le=10_000, description="agent: random trajectories to learn from")
    agent_steps: int = Field(2000, ge=10, le=200_000, description="agent: CQL gradient steps")
    seed: int = Field(0, description="seed of sampling, proxy runs and the agent")

    @model_validator(mode="after")
    def _fields(self) -> ProposeMixtureRequest:
        overlap = set(self.target_domains) & set(self.source_domains or [])
        if overlap:
            raise ValueError(f"domains {sorted(overlap)} are in both the source and the target field")
        if self.embeddings and not self.clusters:
            raise ValueError("embeddings are used only with clusters=k")
        if self.proxy_metrics and not self.proxy_runs:
            raise ValueError("proxy_metrics needs proxy_runs (the mixtures table)")
        return self


class ProposeMixtureMetrics(ToolMetrics):
    """What the mixture manifest and the result share (the manifest adds the stage count and the
    evidence's headline entries)."""

    method: str = ""
    token_budget: int = 0
    weights: dict[str, float] = Field(default_factory=dict, description="domain -> share of all stages' tokens")


class ProposeMixtureResult(ProposeMixtureMetrics, MixtureResult):
    """The per-stage plan in full: weights and tokens per stage, the pool, evidence and corrections."""

    domains: list[str] = Field(default_factory=list)
    stages: list[dict[str, float]] = Field(default_factory=list, description="domain -> weight, per stage")
    tokens: list[dict[str, int]] = Field(default_factory=list, description="domain -> tokens, per stage")
    pool_share: dict[str, float] = Field(default_factory=dict, description="each domain's share of the pool's tokens")
    pool_tokens: dict[str, int] = Field(default_factory=dict)
    source_domains: list[str] = Field(default_factory=list)
    target_domains: list[str] = Field(default_factory=list)
    expected_feedback: list[dict[str, float]] = Field(default_factory=list)
    evidence: dict[str, Any] = Field(default_factory=dict)
    corrections: list[str] = Field(default_factory=list, description="every change made to the method's weights")


def conformance_case(tmp_path: Path, corpus: Path) -> dict[str, Any]:
    """Temperature sampling over the fixture's three domains in two stages."""
    rows = [json.loads(line) for line in Path(corpus).read_text().splitlines() if line.strip()]
    domains = sorted({r.get("domain", "x") for r in rows})
    return {"corpus": str(corpus), "method": "temperature", "temperature": 2.0, "stages": 2,
            "target_domains": domains[:1], "token_budget": 400}


SPEC = ToolSpec(
    name="propose_mixture",
    version="1",
    description="Propose per-stage domain weights for (continued) pre-training: the Data Mixing Agent "
    "(offline RL), RegMix regression over proxy runs, DoReMi-style excess loss, temperature, uniform or "
    "proportional; tokens per domain within an epochs cap, expected feedback, evidence and plots.",
    request_model=ProposeMixtureRequest,
    result_model=ProposeMixtureResult,
    family="mixture",
    deterministic=True,
    consumes=(),
    produces=("mixture", "plot"),
    conformance="tools.propose_mixture.schema:conformance_case",
    examples=(
        "propose a mixture for continued pre-training on math that keeps general knowledge",
        "temperature-sample the domains with T=2",
        "what mix of web, code and math for a 10B-token run, by regression over proxy runs",
        "domain weights for 4 stages of continual pre-training on code without forgetting",
        "fit RegMix on my proxy-run tables runs.csv and losses.csv and propose the mixture",
        "DoReMi domain reweighting of the pool",
        "uniform mixture over the domains as a baseline",
        "mix the domains in proportion to their size, capped at 4 epochs",
        "use the data mixing agent to re-weight domains every stage for a 1B-token budget",
        "how much of each domain should the next training stage use",
        "propose a data mixture with UniMax-style epoch caps at temperature 3",
        "balance the target field against forgetting of the source field across 8 stages",
    ),
)
