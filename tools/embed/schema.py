"""The embed tool's request, metrics, result and spec (pydantic only; nothing heavy is imported here)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tools.contract import ToolMetrics, ToolRequest, ToolResult, ToolSpec
from tools.corpus import CorpusArg
from tools.refs import ModelRef


class EmbedRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the documents to embed")
    model: ModelRef | None = Field(
        None,
        description="sentence-transformers model name or local path; None = all-MiniLM-L6-v2 (bundled, offline)",
    )
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch",
        description="'torch' (CPU or GPU); 'onnx' (CPU, ONNX Runtime fp32, fused); 'onnx-int8' (CPU, int8 "
        "weights: ~2.5x faster, cosine ~0.99 to fp32)",
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto",
        description="torch compute precision: auto = fp16/bf16 on a GPU, bf16 on CPUs with native bf16, else fp32",
    )
    device: str | None = Field(None, description="'cpu', 'cuda', 'cuda:1'; None = the context's device")
    unpadded: bool = Field(
        False, description="CUDA only: FlashAttention-2 variable-length attention (needs flash-attn)"
    )
    dtype: Literal["float32", "float16"] = Field("float32", description="storage dtype of the matrix")
    normalize: bool = Field(True, description="L2-normalise the vectors (cosine = inner product)")
    batch_tokens: int | None = Field(
        None, ge=16, description="padded tokens per batch; None = 16384 on CPU, 65536 on GPU"
    )
    cache: bool = Field(True, description="reuse and extend the content-hash cache of vectors")
    vector_store: bool = Field(True, description="also upsert the vectors into the workspace's chroma store")


class EmbedMetrics(ToolMetrics):
    """The embedding run's evidence: written into the artifact manifest and carried by the result."""

    model: str = ""
    dim: int = 0
    backend: str = ""
    precision: str = ""
    device: str = ""
    embedded: int = Field(0, description="rows in the matrix (= corpus rows)")
    computed: int = Field(0, description="texts run through the model in this call")
    reused: int = Field(0, description="rows whose vector came from the cache or a repeated text")
    truncated: int = Field(0, description="texts cut at the model's token limit")
    empty: int = Field(0, description="empty or whitespace-only texts")
    docs_per_s: float = 0.0
    tokens_mean: float = Field(0.0, description="mean tokens per text (after truncation)")
    padding_overhead: float = Field(0.0, description="padded tokens per real token, minus 1")
    batches: int = Field(0, description="model batches run")
    engine: str = Field("", description="'local' or 'ray'")
    workers: int = Field(1, description="model replicas (Ray actors; 1 locally)")


class EmbedResult(EmbedMetrics, ToolResult):
    """The embedding artifact, and the vector-store collection holding the same vectors."""

    collection: str | None = Field(None, description="vector-store collection holding these vectors")


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {"vector_store": False}


SPEC = ToolSpec(
    name="embed",
    conformance="tools.embed.schema:conformance_case",
    description="Embed a corpus with a sentence-transformers model (default all-MiniLM-L6-v2) on GPU or CPU: "
    "a memory-mapped embedding artifact in corpus order, cached by content, plus the vector store.",
    engines=("local", "ray"),
    request_model=EmbedRequest,
    result_model=EmbedResult,
    family="index",
    gpu="optional",
    effects=frozenset({"read_data", "write_workspace", "gpu"}),
    consumes=(),
    produces=("embeddings",),
    examples=(
        "embed the pool",
        "compute sentence embeddings for data/pool.jsonl",
        "embed my corpus with all-MiniLM-L6-v2 on the GPU",
        "build the vector index for this dataset",
    ),
)
