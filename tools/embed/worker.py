"""The embed tool's stateful worker: one loaded encoder that turns lists of texts into vectors.

:class:`tools.engine.ModelPool` builds it once per worker: in this process on the local engine, in
one Ray actor per GPU (``num_gpus=1``) or per CPU on ``engine="ray"``, so the model loads once per
actor however many pieces of the corpus it encodes. The driver keeps the reading, the cache and the
artifact, so a Ray run writes the very artifact a local run writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Piece:
    """What a worker returns for one list of texts: raw (unnormalised) vectors and token counts."""

    vecs: np.ndarray  # (n, dim) float32
    lengths: np.ndarray  # (n,) tokens after truncation
    truncated: np.ndarray  # (n,) bool
    tokens: int
    padded_tokens: int
    batches: int


class EncodeWorker:
    """``worker(None)`` -> the encoder's settings; ``worker(texts)`` -> a :class:`Piece`."""

    def __init__(self, device: str, *, model: str | None, backend: str, precision: str, unpadded: bool = False,
                 batch_tokens: int | None = None, chunk_docs: int | None = None):
        from tools.embed.encoder import get_encoder

        self.enc = get_encoder(model, device=device, backend=backend, precision=precision,  # type: ignore[arg-type]
                               unpadded=unpadded)
        self.batch_tokens = batch_tokens
        self.chunk_docs = chunk_docs

    def info(self) -> dict[str, Any]:
        e = self.enc
        return {"label": e.label, "dim": e.dim, "backend": e.backend, "precision": e.precision, "device": e.device,
                "max_seq_length": e.max_seq_length, "cache_key": e.cache_key()}

    def __call__(self, texts: list[str] | None) -> Any:
        from tools.embed.encoder import EncodeStats, encode

        if texts is None:
            return self.info()
        stats = EncodeStats()
        lengths = np.zeros(len(texts), dtype=np.int64)
        truncated = np.zeros(len(texts), dtype=bool)

        def on_chunk(offset: int, mat: np.ndarray, tok: Any) -> None:
            lengths[offset : offset + len(mat)] = tok.lengths
            truncated[offset : offset + len(mat)] = tok.truncated

        vecs = encode(self.enc, texts, batch_tokens=self.batch_tokens, chunk_docs=self.chunk_docs or len(texts) or 1,
                      stats=stats, on_chunk=on_chunk)
        return Piece(vecs, lengths, truncated, stats.tokens, stats.padded_tokens, stats.batches)


@dataclass
class EncoderInfo:
    """The settings of the encoder the workers hold (what the cache key and the manifest record)."""

    label: str
    dim: int
    backend: str
    precision: str
    device: str
    max_seq_length: int
    cache_key_: str

    def cache_key(self) -> str:
        return self.cache_key_

    @classmethod
    def of(cls, d: dict[str, Any]) -> EncoderInfo:
        return cls(d["label"], int(d["dim"]), d["backend"], d["precision"], d["device"], int(d["max_seq_length"]),
                   d["cache_key"])
