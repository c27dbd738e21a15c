"""influence request, metrics, result and spec (pydantic only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tools.contract import ToolMetrics, ToolRequest, ToolResult, ToolSpec
from tools.corpus import CorpusArg
from tools.refs import ArtifactOrPath, ModelRef


class InfluenceRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the training pool (one matrix row per document, in corpus order)")
    validation: CorpusArg | None = Field(
        None, description="validation examples, each with a task label in `task_field` (one matrix column each)"
    )
    model: ModelRef | None = Field(
        None, description="Hugging Face causal LM: a local folder, a hub name already in the local cache, or a "
        "llama.cpp .gguf file (dequantized to float32; needs the gguf package)"
    )
    matrix: ArtifactOrPath | None = Field(
        None,
        description="an influence matrix computed elsewhere (.npy N x M, or .parquet with one column per "
        "validation instance); wrapped as an influence artifact instead of computing one",
    )
    val_tasks: list[str] | None = Field(
        None, description="with `matrix` and no `validation`: the task label of each column"
    )
    task_field: str = Field("task", description="validation field holding the task label")
    prompt_field: str | None = Field(
        None,
        description="field holding each row's prompt: the model reads prompt + text and the loss covers only "
        "the text (the response), as LESS masks prompt tokens; a prompt longer than max_length/2 keeps its "
        "last max_length/2 tokens; default: loss over all of text",
    )
    max_length: int = Field(512, ge=8, le=32768, description="tokens per example (LESS: 2048)")
    warmup_fraction: float = Field(
        0.05, gt=0.0, le=1.0, description="random share of the pool for the LoRA warm-up (LESS: 0.05)"
    )
    warmup_epochs: int = Field(4, ge=1, le=20, description="warm-up epochs = checkpoints (LESS: 4)")
    lr: float = Field(2e-5, gt=0.0, description="peak warm-up learning rate, linear schedule (LESS: 2e-5)")
    batch_size: int = Field(32, ge=1, description="rows per optimizer step in the warm-up (LESS: 32 via accumulation)")
    micro_batch: int = Field(8, ge=1, le=1024, description="rows per forward pass / per vmap call")
    lora_r: int = Field(8, ge=1, le=1024, description="LoRA rank (LESS: 128; smaller default for CPU)")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (LESS: 512, i.e. 4 x r)")
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="LoRA dropout during the warm-up (LESS: 0.1)")
    target_modules: list[str] | None = Field(
        None, description="modules to adapt; default: the model's q/k/v/o attention projections"
    )
    proj_dim: int = Field(8192, ge=8, le=65536, description="random projection dimension (LESS: 8192)")
    proj_seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the Rademacher projection (LESS: 0)")
    seed: int = Field(3, ge=0, le=2**32 - 1, description="seed of the warm-up subset and its shuffles (LESS data_seed: 3)")
    block_rows: int = Field(256, ge=1, description="rows per resumable feature block kept on disk")
    batched: bool = Field(True, description="per-example gradients with vmap (False: one backward per example)")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="'auto': bf16 autocast on a CUDA GPU that supports it, float32 otherwise"
    )

    @model_validator(mode="after")
    def _source(self) -> InfluenceRequest:
        if self.matrix is None:
            if self.model is None or self.validation is None:
                lacking = " and ".join(n for n in ("model", "validation") if getattr(self, n) is None)
                raise ValueError(f"give {lacking} (to compute the matrix; model: a causal LM by name or path) "
                                 "or matrix (computed elsewhere)")
        elif self.model is not None:
            raise ValueError("give either model (compute) or matrix (bring your own), not both")
        return self


class InfluenceMetrics(ToolMetrics):
    """The influence run's evidence: written into the artifact manifest and carried by the result."""

    n_train: int = 0
    n_val: int = 0
    tasks: dict[str, int] = Field(default_factory=dict, description="validation columns per task")
    source: str = Field("", description="the matrix wrapped (bring your own); empty when computed here")
    model: str = Field("", description="the causal LM the gradients come from")
    target_modules: list[str] = Field(default_factory=list, description="modules with LoRA adapters")
    warmup_rows: int = Field(0, description="training rows of the LoRA warm-up")
    checkpoints: int = 0
    checkpoint_weights: list[float] = Field(default_factory=list)
    mean_lrs: list[float] = Field(default_factory=list, description="mean learning rate of each warm-up epoch")
    lora_params: int = 0
    proj_dim: int = 0
    device: str = ""
    precision: str = ""
    batched: bool = True
    examples_per_s: float = 0.0
    blocks_computed: int = 0
    blocks_reused: int = 0
    warnings: list[str] = Field(default_factory=list)


class InfluenceResult(InfluenceMetrics, ToolResult):
    """The N x M influence artifact of the training rows on the task-labelled validation columns."""


def conformance_case(tmp_path: Path, corpus: Path) -> dict[str, Any]:
    """A tiny random Llama saved into tmp_path, and a 2-task validation set in the corpus's words."""
    from tools.influence.tiny import save_tiny_causal_lm

    rows = [json.loads(line) for line in Path(corpus).read_text().splitlines() if line.strip()]
    words = sorted({w for r in rows for w in r["text"].split()})
    model = save_tiny_causal_lm(tmp_path / "tiny-lm", words, hidden=32, layers=1, heads=2)
    val = [{"id": f"v{i}", "text": rows[i * 7]["text"], "task": "a" if i % 2 else "b"} for i in range(4)]
    vpath = tmp_path / "val.jsonl"
    vpath.write_text("".join(json.dumps(r) + "\n" for r in val))
    return {"model": str(model), "validation": str(vpath), "proj_dim": 64, "warmup_fraction": 0.2,
            "warmup_epochs": 2, "batch_size": 4, "max_length": 64, "lr": 1e-3}


SPEC = ToolSpec(
    name="influence",
    version="1",
    description="LESS gradient influence (Xia et al. 2024): LoRA warm-up of a Hugging Face causal LM, "
    "Adam-preconditioned per-example LoRA gradients (vmap), seeded Rademacher projection, cosine to each "
    "task-labelled validation example over lr-weighted checkpoints -> an N x M influence matrix for bids. "
    "Also wraps a matrix computed elsewhere.",
    engines=("local", "ray"),
    request_model=InfluenceRequest,
    result_model=InfluenceResult,
    family="other",
    cost="gpu",
    gpu="optional",
    effects=frozenset({"read_data", "write_workspace", "gpu"}),
    deterministic=True,
    consumes=(),
    produces=("influence",),
    conformance="tools.influence.schema:conformance_case",
    examples=(
        "compute LESS influence of the instruction pool on my validation tasks",
        "gradient features of the training data with a LoRA warm-up of pythia-410m",
        "build the influence matrix between train.jsonl and val.jsonl labelled by task",
        "which training examples most help my coding, math and reading validation sets",
        "choose 15% of the instruction data so coding, math and reading all improve",
        "LESS data selection features with random projection to 8192 dimensions",
        "per-example gradient influence scores for the pool with a small llama",
        "use my precomputed influence.npy from LESS as an influence artifact",
        "estimate how much each training document influences each validation example",
        "influence of the SFT data on MMLU, BBH and TyDiQA examples",
    ),
)
