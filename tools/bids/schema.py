"""BIDS request, result and spec (pydantic only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tools.contract import SelectionResult, ToolMetrics, ToolRequest, ToolSpec
from tools.corpus import CorpusArg
from tools.refs import ArtifactOrPath


class BIDSRequest(ToolRequest):
    influence: ArtifactOrPath = Field(
        description="the N x M influence matrix (N training rows x M validation instances): an 'influence' "
        "artifact id, a .npy file (rows in corpus order), or a .parquet file (optional 'id' column, one "
        "numeric column per validation instance)"
    )
    val_tasks: list[str] | None = Field(
        None,
        description="task label of every validation column, in column order; read from the influence "
        "artifact when omitted",
    )
    k: int | None = Field(None, ge=1, description="number of training rows to select")
    fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="budget as a share of the N rows (the paper uses 0.05/0.10/0.15)"
    )
    corpus: CorpusArg | None = Field(
        None,
        description="the training pool the rows come from: selection ids are its ids (and domains), else "
        "the matrix's own ids or row numbers as strings",
    )
    method: Literal["bids", "task_max", "instance_max", "sum"] = Field(
        "bids",
        description="'bids': iterative balanced selection; 'task_max': LESS (mean over a task's columns, "
        "max over tasks, top-k); 'instance_max': max over columns; 'sum': sum over columns",
    )
    mode: Literal["instance", "task"] = Field(
        "instance",
        description="BIDS step: 'instance' = best row for the most under-served validation instance "
        "(paper's Algorithm 1); 'task' = lowest task-mean AID task, then its most influential row",
    )
    task_agg: Literal["mean", "max"] = Field("mean", description="task-level influence in mode='task'")
    normalize: bool = Field(
        True, description="z-score each validation column over the pool first (BIDS; LESS does not)"
    )
    unequal_ratio: float = Field(
        2.0, ge=1.0, description="warn when the largest task has more than this many times the columns of "
        "the smallest (BIDS assumes equal counts)"
    )

    @model_validator(mode="after")
    def _one_budget(self) -> BIDSRequest:
        if (self.k is None) == (self.fraction is None):
            raise ValueError("give exactly one of k (rows) or fraction (share of the pool)")
        return self


class BIDSMetrics(ToolMetrics):
    method: str = ""
    mode: str = Field("", description="the BIDS step: 'instance' or 'task' (method='bids')")
    normalize: bool = True
    val_columns: int = Field(0, description="validation columns of the influence matrix")
    influence: str = Field("", description="the influence artifact id or file the matrix came from")
    tasks: list[str] = Field(default_factory=list)
    task_columns: dict[str, int] = Field(default_factory=dict, description="validation columns per task")
    task_share: dict[str, float] = Field(
        default_factory=dict, description="share of the selection owned by each task (its best task-mean z)"
    )
    task_mean_influence: dict[str, float] = Field(
        default_factory=dict, description="per task: mean normalised influence of the selection"
    )
    influence_spread: float = Field(0.0, description="max - min of task_mean_influence")
    baseline_share: dict[str, float] = Field(default_factory=dict, description="task_share of one-shot task-max")
    baseline_mean_influence: dict[str, float] = Field(default_factory=dict)
    baseline_spread: float = 0.0
    dropped_columns: list[int] = Field(default_factory=list, description="zero-variance columns left out")
    warnings: list[str] = Field(default_factory=list)


class BIDSResult(BIDSMetrics, SelectionResult):
    """The selection of k rows, with its per-task description against one-shot task-max."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict[str, Any]:
    """A 3-task influence matrix keyed by the fixture corpus's ids (each domain helps its own task)."""
    import random

    rows = [json.loads(line) for line in Path(corpus).read_text().splitlines() if line.strip()]
    domains = sorted({r.get("domain", "x") for r in rows})
    rng = random.Random(0)
    data: dict[str, list] = {"id": [r["id"] for r in rows]}
    tasks = []
    for d in domains:
        for c in range(3):
            data[f"{d}_{c}"] = [rng.gauss(0, 1) + (1.5 if r.get("domain") == d else 0.0) for r in rows]
            tasks.append(d)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "influence.parquet"
    pq.write_table(pa.table(data), path)
    return {"influence": str(path), "val_tasks": tasks, "k": 9}


SPEC = ToolSpec(
    name="bids",
    version="1",
    description="BIDS (Dai et al. 2025): balanced influence-based selection. From an N x M influence matrix "
    "(LESS gradients) with a task per validation column, z-score columns and iteratively add the row most "
    "helpful to the most under-served instance, so every capability improves; task-max (LESS), "
    "instance-max and sum baselines.",
    request_model=BIDSRequest,
    result_model=BIDSResult,
    family="selection",
    deterministic=True,
    consumes=("influence",),
    produces=("selection", "plot"),
    conformance="tools.bids.schema:conformance_case",
    examples=(
        "choose 15% of the instruction data so coding, math and reading all improve",
        "balanced selection from the influence matrix across my validation tasks",
        "select 5000 training examples with BIDS from influence.npy",
        "pick data that helps every capability, not just the one with the largest influence scores",
        "run BIDS on the influence artifact with a 10% budget",
        "LESS task-max selection of the top 5% from the gradient influence matrix",
        "the influence scores are dominated by one task; rebalance the selection",
        "select instruction-tuning data balanced over MMLU, BBH and TyDiQA influence",
        "compare BIDS against task-max on my influence matrix",
        "choose 10% of the pool that lifts both code and math validation sets evenly",
        "instance-max baseline on the normalised influence matrix, k=2000",
        "task-level BIDS: always serve the weakest task first",
    ),
)
