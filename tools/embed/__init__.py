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

from tools.contract import ToolContext
from tools.embed.schema import SPEC, EmbedMetrics, EmbedRequest, EmbedResult

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


__all__ = ["SPEC", "EmbedMetrics", "EmbedRequest", "EmbedResult", "embed_corpus", "encode_texts", "load_embeddings", "run"]
