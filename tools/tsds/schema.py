"""TSDS request, result and spec (pydantic only; nothing heavy is imported here)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tools.contract import SelectionResult, ToolMetrics, ToolRequest, ToolSpec
from tools.corpus import CorpusArg
from tools.refs import ArtifactOrPath


class TsdsRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the candidate pool to select from")
    target: CorpusArg | None = Field(
        None, description="the target (query) examples the selection should resemble; optional when "
        "target_embeddings is given"
    )
    k: int = Field(description="number of documents to draw from the TSDS probabilities", ge=1)
    embeddings: ArtifactOrPath | None = Field(
        None,
        description="pool embeddings: an embed artifact id, or a .npy path whose rows follow the corpus "
        "order; computed with `model` when omitted",
    )
    target_embeddings: ArtifactOrPath | None = Field(
        None, description="target embeddings (artifact id or .npy path); computed with `model` when omitted"
    )
    model: str | None = Field(
        None, description="sentence-transformers model for embeddings computed on demand (default MiniLM)"
    )
    alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="trade-off: 1 = pure alignment (each target's nearest neighbour), "
        "lower = more diverse; paper default 0.5"
    )
    calibrate: Literal["auto", "paper"] = Field(
        "auto", description="'auto': C, sigma and shrink left unset are taken from the data (the "
        "targets' neighbour distances, so unit-norm and unnormalised vectors behave alike; C raised "
        "until k documents get mass); 'paper': the paper's constants C=5, sigma=0.75, shrink=0"
    )
    C: float | None = Field(
        None, gt=0.0, description="distance scale of the transport cost; unset: calibrated ('auto': "
        "ceil(k/M) x the median gap between a target's nearest and ceil(k/M)-th neighbour) or the "
        "paper's 5 ('paper', meant for embeddings of norm about 5)"
    )
    sigma: float | None = Field(
        None, ge=0.0, description="KDE kernel radius in embedding distance; 0 turns the density term off "
        "(KNN-Uniform); unset: a quarter of the median target-to-nearest-document distance ('auto') "
        "or the paper's 0.75"
    )
    shrink: float | None = Field(
        None, ge=0.0, le=1.0, description="weight of the target centre in each target example before "
        "transport (0 = the paper; 1 = every target at the centroid); unset: 'auto' uses W/(W+B), the "
        "targets' within spread over their spread about the pool mean, 'paper' uses 0"
    )
    evidence: bool | None = Field(
        None, description="true: solve for 4k candidates, weight them by the target density ratio of a "
        "target-vs-pool logistic discriminator and keep the k most probable; unset: on with 'auto', off "
        "with 'paper'"
    )
    max_K: int = Field(5000, ge=2, description="neighbours prefetched per target example; paper default 5000")
    kde_K: int = Field(1000, ge=1, description="neighbours used for the density estimate; paper default 1000")
    cap_by_pool: bool = Field(
        True, description="cap max_K and kde_K at pool size / 10, as the reference does"
    )
    index: Literal["auto", "flat", "ivf"] = Field(
        "auto", description="kNN index: 'flat' exact, 'ivf' the reference's IVF-Flat; 'auto' searches "
        "exactly whenever that is cheaper than building an IVF index (few targets or < 50k candidates)"
    )
    nprobe: int = Field(10, ge=1, description="IVF lists probed per query; reference default 10")
    replace: bool = Field(
        False, description="false: k distinct documents (Gumbel top-k on the probabilities); true: the "
        "reference's multinomial draw with replacement (fewer distinct documents, repeats as weights)"
    )
    ot_max_points: int = Field(
        1000, ge=10, description="subsample target and selection to at most this many points for the "
        "OT distance in the summary"
    )
    seed: int = Field(0, description="random seed for the IVF training, the draw and the OT subsample")


class TsdsMetrics(ToolMetrics):
    target_size: int = 0
    alpha: float = Field(0.0, description="the alignment/diversity trade-off used")
    calibration_steps: int = Field(0, description="times C was raised until k documents got mass")
    union_size: int = Field(0, description="distinct candidates in the targets' neighbour lists")
    distinct: int = Field(0, description="distinct documents in the selection")
    effective_sample_size: float = Field(0.0, description="1 / sum p^2 over the pool probabilities")
    support: int = Field(0, description="documents with non-zero probability")
    level: float = Field(0.0, description="the optimal water level s of the LP")
    neighbours_mean: float = Field(0.0, description="candidates receiving mass per target example, mean")
    neighbours_max: int = 0
    truncated_queries: int = Field(0, description="target examples that used all K prefetched neighbours")
    K: int = 0
    kde_K: int = 0
    index_kind: str = Field("", description="pool search and KDE index used, e.g. 'flat+kde-ivf'")
    domain_mass: dict[str, float] = Field(default_factory=dict, description="probability mass per domain")
    pool_domain_share: dict[str, float] = Field(default_factory=dict)
    ot_distance: float | None = Field(None, description="W1 between target and selection embeddings")
    ot_distance_random: float | None = Field(
        None, description="the same for a uniform random sample of the pool of the same size (baseline)"
    )
    ot_points: int = Field(0, description="points per side used for the OT distance (after subsampling)")
    embedding_model: str | None = None
    C: float = Field(0.0, description="the distance scale used")
    sigma: float = Field(0.0, description="the KDE radius used")
    shrink: float = Field(0.0, description="the weight of the target centre used")
    calibrate: str = ""
    evidence_support: int = Field(
        0, description="candidates with mass before the target-likeness step kept k of them (0: no step)"
    )
    effective_neighbours: float = Field(
        0.0, description="effective candidates per target example, mean of 1 / sum_i (M gamma_ji)^2"
    )


class TsdsResult(TsdsMetrics, SelectionResult):
    """The k drawn documents as a selection, the pool probabilities as scores, and the LP's evidence."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """A small CPU run over the conformance corpus, with a 5-document target written into tmp_path."""
    import json

    target = tmp_path / "tsds-target.jsonl"
    target.write_text("".join(json.dumps({"text": f"integer prime equation proof number {i} " * (i + 2)}) + "\n"
                              for i in range(5)))
    return {"k": 10, "target": str(target)}


SPEC = ToolSpec(
    name="tsds",
    conformance="tools.tsds.schema:conformance_case",
    description="Task-specific data selection (TSDS, Liu et al. 2024): pick pool documents whose "
    "embedding distribution matches a target set by optimal transport, with a kernel-density term "
    "that spreads mass away from near-duplicates. Needs a target set; returns sampling "
    "probabilities (scores) and a selection of k documents.",
    request_model=TsdsRequest,
    result_model=TsdsResult,
    family="selection",
    needs_target=True,
    gpu="optional",
    deterministic=True,
    version="2",
    examples=(
        "select 1000 documents from the pool that look like my target examples",
        "find training data similar to these math problems using embeddings",
        "task-specific selection with optimal transport for target.jsonl",
        "pick 5000 examples matching my task distribution but avoid near-duplicates",
        "run TSDS with alpha 0.9 to select data aligned with the target set",
        "choose documents close to my validation examples in embedding space",
        "TSDS with the paper's constants C=5 and sigma 0.75",
        "embedding-based selection of 300 distinct documents like my prompts",
        "optimal-transport data selection towards a few hundred target questions",
        "select diverse but on-task documents for these code examples",
    ),
)
