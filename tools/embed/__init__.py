"""embed: sentence-transformers embeddings of a corpus, cached by content, resumable, memory-mapped.

```
from tools import embed
vecs = embed.encode_texts(["a text", "another"])                 # (2, 384) float32, L2-normalised
res = embed.run(corpus="pool.jsonl")                              # the tool: artifact + vector store
ids, matrix, manifest = embed.load_embeddings(res.artifacts["embeddings"], ctx)
```

The embedding artifact holds ``data.npy`` (float16 or float32, memory-mappable; one row per corpus
row, in corpus order) and ``ids.parquet`` (``id``, ``domain``, ``tokens``, ``truncated``, ``empty``);
its manifest records the model label, dimension, dtype, backend and precision.

Vectors are cached per (model, backend, precision, sequence cap) and BLAKE2b hash of the text in the
workspace (``cache/embed/...``), so a second run over the same documents computes nothing and
corpora that share documents share work; shards are written atomically as chunks finish, so a run
killed with ``kill -9`` resumes with only the unfinished chunk to recompute. Empty texts are embedded
as the model embeds an empty string (so row order stays the corpus order) and counted; texts over the
model's token limit are truncated and counted; non-finite vectors are rejected with the row ids.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from tools.contract import ToolContext, ToolRequest, ToolResult, ToolSpec
from tools.corpus import CorpusArg

# ------------------------------------------------------------------------------------- schema


class EmbedRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the documents to embed")
    model: str | None = Field(
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


class EmbedResult(ToolResult):
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
    collection: str | None = Field(None, description="vector-store collection holding these vectors")


SPEC = ToolSpec(
    name="embed",
    description="Embed a corpus with a sentence-transformers model (default all-MiniLM-L6-v2) on GPU or CPU: "
    "a memory-mapped embedding artifact in corpus order, cached by content, plus the vector store.",
    request_model=EmbedRequest,
    result_model=EmbedResult,
    family="index",
    gpu="optional",
    effects=frozenset({"read_data", "write_workspace", "gpu"}),
    examples=(
        "embed the pool",
        "compute sentence embeddings for data/pool.jsonl",
        "embed my corpus with all-MiniLM-L6-v2 on the GPU",
        "build the vector index for this dataset",
    ),
)

# -------------------------------------------------------------------------------- public API


def encode_texts(
    texts: Sequence[str],
    *,
    model: str | None = None,
    device: str = "auto",
    batch_tokens: int | None = None,
    normalize: bool = True,
    dtype: str = "float32",
    progress: Any = None,
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch",
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto",
    unpadded: bool = False,
) -> np.ndarray:
    """Embeddings of ``texts`` as an (n, dim) array; a pure function (the model is cached in-process).

    Matches ``SentenceTransformer(model).encode(texts)`` (cosine >= 0.999 per row at fp32/bf16).
    ``unpadded=True`` (CUDA, needs ``flash-attn``): variable-length FlashAttention-2, so padding costs
    nothing. ``progress``: a callable ``(n_done_now)`` or an object with ``update(n)``. Raises
    :class:`~tools.errors.BadInput` naming the rows whose vectors are not finite.
    """
    from tools.embed.encoder import encode, get_encoder, l2_normalize
    from tools.errors import BadInput

    if isinstance(texts, str):
        raise BadInput("must be a list of strings, not one string", where="encode_texts.texts")
    texts = ["" if t is None else str(t) for t in texts]
    enc = get_encoder(model, device=device, backend=backend, precision=precision, unpadded=unpadded)
    out = encode(enc, texts, batch_tokens=batch_tokens, progress=progress)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        raise BadInput(
            f"the model produced NaN or infinite embeddings for {bad.size} of {len(texts)} texts "
            f"(rows {bad[:10].tolist()}{', ...' if bad.size > 10 else ''})",
            where=f"model {enc.label}",
            hint="check the model's weights or precision (try precision='fp32')",
        )
    if normalize:
        out = l2_normalize(out)
    return out.astype(dtype, copy=False)


def load_embeddings(ref: str | os.PathLike, ctx: ToolContext | None = None) -> tuple[list[str], np.ndarray, dict]:
    """(ids, matrix, manifest) of an embedding artifact (id or path); the matrix is memory-mapped."""
    from tools.embed.store import load_embeddings as _load

    return _load(ref, ctx)


def embed_corpus(corpus: Any, ctx: ToolContext | None = None, **request: Any) -> str:
    """Run the tool and return the embedding artifact id (cached runs return the same id)."""
    res = run({"corpus": corpus, **request}, ctx)
    return res.artifacts["embeddings"]


# --------------------------------------------------------------------------------------- tool


@SPEC.implement
def run(request: EmbedRequest, ctx: ToolContext) -> EmbedResult:
    from tools.embed.store import embed_tool

    return embed_tool(request, ctx)


__all__ = ["SPEC", "EmbedRequest", "EmbedResult", "embed_corpus", "encode_texts", "load_embeddings", "run"]
