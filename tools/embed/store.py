"""The embed tool's I/O: stream the corpus, fill the cache, write the artifact, load it back."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import numpy as np
import pyarrow as pa

from tools.contract import RowCounts, ToolContext
from tools.corpus import ReadStats, count_rows, fingerprint, read_batches
from tools.embed.schema import EmbedMetrics, EmbedRequest, EmbedResult
from tools.errors import BadInput

READ_CHUNK_DOCS = 16384
"""Documents held in memory at once (texts of one chunk)."""
CPU_SHARD_DOCS = 1024
"""Documents per cache shard on the CPU: the most work a ``kill -9`` can lose (~20 s at MiniLM speed)."""
GPU_SHARD_DOCS = 16384


def cache_dir_name(label: str, key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label.rstrip("/").split("/")[-1])[:40] or "model"
    return f"embed/{slug}-{key}"


def _chunks(request: EmbedRequest, ctx: ToolContext, stats: ReadStats, size: int = READ_CHUNK_DOCS):  # noqa: ANN202
    ids: list[str] = []
    texts: list[str] = []
    doms: list[str | None] = []
    for batch in read_batches(request.corpus, ("id", "text", "domain"), allowed_roots=ctx.data_roots, stats=stats,
                              raw_domain=True):
        ids += batch.column("id").to_pylist()
        texts += batch.column("text").to_pylist()
        doms += batch.column("domain").to_pylist()
        while len(ids) >= size:
            yield ids[:size], texts[:size], doms[:size]
            ids, texts, doms = ids[size:], texts[size:], doms[size:]
    if ids:
        yield ids, texts, doms


def _chunk_vectors(enc: Any, cache: Any, texts: list[str], encode_fn: Any, bar: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Vectors and signed token counts (negative = truncated) for one chunk; repeated texts run once.

    ``encode_fn(texts, on_chunk, on_batch)`` computes the vectors (:func:`_local_encode`,
    :func:`_pool_encode`). Returns (vectors, lengths, texts computed). Finished shards go to the cache
    as they complete.
    """
    from tools.embed.cache import text_keys

    keys = text_keys(texts)
    first: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    todo = [i for k, i in first.items() if cache is None or k not in cache]
    vecs = np.empty((len(texts), enc.dim), dtype=np.float32)
    lens = np.zeros(len(texts), dtype=np.int32)
    done = 0
    if todo:
        todo_keys = [keys[i] for i in todo]
        new_vecs = np.empty((len(todo), enc.dim), dtype=np.float32)
        new_lens = np.zeros(len(todo), dtype=np.int32)

        def on_chunk(offset: int, mat: np.ndarray, tok: Any) -> None:
            signed = np.where(tok.truncated, -tok.lengths, tok.lengths).astype(np.int32)
            new_lens[offset : offset + len(mat)] = signed
            if cache is not None:
                ok = np.isfinite(mat).all(axis=1)
                ks = todo_keys[offset : offset + len(mat)]
                cache.put([k for k, good in zip(ks, ok, strict=True) if good], mat[ok], signed[ok])

        def on_batch(n: int) -> None:
            nonlocal done
            done += n
            bar.update(n)

        new_vecs[:] = encode_fn([texts[i] for i in todo], on_chunk, on_batch)
        local = {k: j for j, k in enumerate(todo_keys)}
        rest = []
        for i, k in enumerate(keys):
            j = local.get(k)
            if j is None:
                rest.append(i)
            else:
                vecs[i] = new_vecs[j]
                lens[i] = new_lens[j]
    else:
        rest = list(range(len(texts)))
    if rest:
        got_lens = np.zeros(len(rest), dtype=np.int32)
        vecs[rest] = cache.fetch([keys[i] for i in rest], lens=got_lens)
        lens[rest] = got_lens
    bar.update(len(texts) - done)
    return vecs, lens, len(todo)


def _local_encode(enc: Any, batch_tokens: int | None, shard_docs: int, enc_stats: Any) -> Any:
    """Encode in this process with the loaded encoder, ``shard_docs`` texts per cache shard."""
    from tools.embed.encoder import encode

    def run(texts: list[str], on_chunk: Any, on_batch: Any) -> np.ndarray:
        return encode(enc, texts, batch_tokens=batch_tokens, chunk_docs=shard_docs, progress=on_batch,
                      stats=enc_stats, on_chunk=on_chunk)

    return run


def _pool_encode(pool: Any, dim: int, shard_docs: int, enc_stats: Any) -> Any:
    """Encode on the pool's workers (Ray actors): pieces of at most ``shard_docs`` texts, spread over them.

    Each piece that comes back is one cache shard, as on the local engine.
    """
    from tools.embed.encoder import Tokenized

    def run(texts: list[str], on_chunk: Any, on_batch: Any) -> np.ndarray:
        size = max(1, min(shard_docs, -(-len(texts) // pool.workers)))
        out = np.empty((len(texts), dim), dtype=np.float32)
        offsets = range(0, len(texts), size)
        for lo, piece in zip(offsets, pool.map(texts[lo : lo + size] for lo in offsets), strict=True):
            n = len(piece.vecs)
            out[lo : lo + n] = piece.vecs
            enc_stats.docs += n
            enc_stats.tokens += piece.tokens
            enc_stats.padded_tokens += piece.padded_tokens
            enc_stats.truncated += int(piece.truncated.sum())
            enc_stats.batches += piece.batches
            on_chunk(lo, piece.vecs, Tokenized([], piece.lengths, piece.truncated))
            on_batch(n)
        return out

    return run


def embed_tool(request: EmbedRequest, ctx: ToolContext) -> EmbedResult:
    """Local engine: the model in this process. ``engine="ray"``: one model per Ray actor (a GPU each if any)."""
    from functools import partial

    from tools.embed.encoder import EncodeStats, get_encoder
    from tools.embed.worker import EncoderInfo, EncodeWorker
    from tools.engine import ModelPool

    enc_stats = EncodeStats()
    if ctx.engine != "ray":
        device = request.device or ctx.resolve_device()
        enc = get_encoder(request.model, device=device, backend=request.backend, precision=request.precision,
                          unpadded=request.unpadded)
        shard_docs = GPU_SHARD_DOCS if enc.device.startswith("cuda") else CPU_SHARD_DOCS
        return _embed(request, ctx, enc, _local_encode(enc, request.batch_tokens, shard_docs, enc_stats), enc_stats,
                      READ_CHUNK_DOCS)
    want_gpu = request.backend == "torch" and (request.device or "cuda").startswith("cuda")
    make = partial(EncodeWorker, model=request.model, backend=request.backend, precision=request.precision,
                   unpadded=request.unpadded, batch_tokens=request.batch_tokens)
    with ModelPool(make, ctx, gpu=want_gpu) as pool:
        info = EncoderInfo.of(pool.call(None))
        shard_docs = GPU_SHARD_DOCS if pool.uses_gpu else CPU_SHARD_DOCS
        return _embed(request, ctx, info, _pool_encode(pool, info.dim, shard_docs, enc_stats), enc_stats,
                      READ_CHUNK_DOCS * pool.workers, workers=pool.workers)


def _embed(request: EmbedRequest, ctx: ToolContext, enc: Any, encode_fn: Any, enc_stats: Any, chunk_docs: int,
           workers: int = 1) -> EmbedResult:
    from tools.embed.cache import EmbeddingCache
    from tools.embed.encoder import l2_normalize

    cache = None
    if request.cache:
        cache = EmbeddingCache(
            ctx.workspace.cache_dir(cache_dir_name(enc.label, enc.cache_key())),
            dim=enc.dim,
            info={"model": enc.label, "backend": enc.backend, "precision": enc.precision,
                  "max_seq_length": enc.max_seq_length},
        )
    stats = ReadStats()
    total = count_rows(request.corpus)
    out_dtype = np.dtype(request.dtype)
    all_ids: list[str] = []
    all_doms: list[str | None] = []
    tokens_col: list[np.ndarray] = []
    trunc_col: list[np.ndarray] = []
    empty_col: list[np.ndarray] = []
    bad_rows: list[str] = []
    computed = 0
    t0 = time.perf_counter()
    with ctx.artifact("embeddings", "embeddings") as writer, ctx.progress("embed", total=total, unit="docs") as bar:
        raw_path = writer.dir / ".rows.bin"
        with open(raw_path, "wb") as raw:
            for ids, texts, doms in _chunks(request, ctx, stats, chunk_docs):
                vecs, lens, n_new = _chunk_vectors(enc, cache, texts, encode_fn, bar)
                computed += n_new
                finite = np.isfinite(vecs).all(axis=1)
                if not finite.all():
                    bad_rows += [ids[i] for i in np.flatnonzero(~finite)]
                    continue
                if request.normalize:
                    vecs = l2_normalize(vecs)
                raw.write(np.ascontiguousarray(vecs, dtype=out_dtype).tobytes())
                all_ids += ids
                all_doms += doms
                tokens_col.append(np.abs(lens))
                trunc_col.append(lens < 0)
                empty_col.append(np.fromiter((not t.strip() for t in texts), dtype=bool, count=len(texts)))
        if bad_rows:
            raise BadInput(
                f"the model produced NaN or infinite embeddings for {len(bad_rows)} documents "
                f"(ids {bad_rows[:10]}{', ...' if len(bad_rows) > 10 else ''})",
                where=f"model {enc.label}",
                hint="check the model's weights or precision (try precision='fp32'); nothing was written",
            )
        n = len(all_ids)
        _finish_npy(raw_path, writer.path("data.npy"), (n, enc.dim), out_dtype)
        tokens = np.concatenate(tokens_col) if tokens_col else np.zeros(0, np.int32)
        truncated = np.concatenate(trunc_col) if trunc_col else np.zeros(0, bool)
        empty = np.concatenate(empty_col) if empty_col else np.zeros(0, bool)
        writer.table(
            pa.table({"id": pa.array(all_ids, pa.string()), "domain": pa.array(all_doms, pa.string()),
                      "tokens": tokens, "truncated": truncated, "empty": empty}),
            name="ids.parquet",
        )
        elapsed = time.perf_counter() - t0
        rate = n / elapsed if elapsed > 0 else 0.0
        metrics = EmbedMetrics(
            model=enc.label, dim=enc.dim, backend=enc.backend, precision=enc.precision, device=enc.device,
            embedded=n, computed=computed, reused=n - computed, truncated=int(truncated.sum()), empty=int(empty.sum()),
            docs_per_s=rate, tokens_mean=float(tokens.mean()) if n else 0.0,
            padding_overhead=(enc_stats.padded_tokens / enc_stats.tokens - 1.0) if enc_stats.tokens else 0.0,
            batches=enc_stats.batches, engine=ctx.engine, workers=workers,
        )
        writer.meta.update({
            "model": enc.label, "dim": enc.dim, "dtype": request.dtype, "normalized": request.normalize,
            "backend": enc.backend, "precision": enc.precision, "device": enc.device,
            "max_seq_length": enc.max_seq_length, "corpus": request.corpus.model_dump(mode="json"),
            "corpus_fingerprint": fingerprint(request.corpus),
            "metrics": metrics.manifest(rows=n, cached=n - computed),  # the names readers of older manifests use
            "rows": RowCounts(rows_in=n + sum(stats.skipped.values()), rows_out=n,
                              skipped=dict(stats.skipped)).model_dump(),
        })
    art_id = writer.id
    collection = None
    if request.vector_store and n:
        collection = _upsert_store(ctx, art_id, fingerprint(request.corpus), enc.label)
    rows = RowCounts(rows_in=n + sum(stats.skipped.values()), rows_out=n, skipped=dict(stats.skipped))
    summary = (
        f"Embedded {n} documents with {enc.label} ({enc.dim}-d, {enc.backend} {enc.precision} on {enc.device}"
        f"{f', {workers} Ray actors' if ctx.engine == 'ray' else ''}): "
        f"{computed} computed, {n - computed} from cache or repeated; {metrics.truncated} truncated at "
        f"{enc.max_seq_length} tokens, {metrics.empty} empty; {rate:.0f} docs/s. Artifact {art_id}"
        + (f"; vector-store collection {collection}." if collection else ".")
    )
    return EmbedResult.of(metrics, summary=summary, artifacts={"embeddings": art_id}, rows=rows, collection=collection)


def _upsert_store(ctx: ToolContext, art_id: str, corpus_fp: str, label: str) -> str:
    """Upsert the artifact into the (corpus, model) collection; repeated ids keep their first row."""
    from tools import vectorstore as vs

    name = vs.collection_name(corpus_fp, label)
    ids, matrix, manifest = load_embeddings(art_id, ctx)
    doms = load_rows(art_id, ctx).column("domain").to_pylist()
    meta = {"model": manifest.get("model"), "dim": manifest.get("dim"), "artifact": art_id}
    if len(set(ids)) == len(ids):
        vs.upsert(ctx, name, ids, matrix, [{"domain": d} for d in doms], collection_metadata=meta)
        return name
    first: dict[str, int] = {}
    for i, d in enumerate(ids):
        first.setdefault(d, i)
    rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    vs.upsert(ctx, name, list(first), np.asarray(matrix[rows]), [{"domain": doms[i]} for i in rows],
              collection_metadata={"model": label, "artifact": art_id})
    return name


def _finish_npy(raw_path: Any, dst: Any, shape: tuple[int, int], dtype: np.dtype) -> None:
    """Turn the raw row stream into a .npy (header + data) and drop the raw file."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with open(dst, "wb") as out, open(raw_path, "rb") as src:
        np.lib.format.write_array_header_1_0(out, header) if shape[0] < 2**31 else \
            np.lib.format.write_array_header_2_0(out, header)
        while block := src.read(16 << 20):
            out.write(block)
    os.remove(raw_path)


def load_embeddings(ref: str | os.PathLike, ctx: ToolContext | None = None) -> tuple[list[str], np.ndarray, dict]:
    """(ids, memory-mapped matrix, manifest) of an embedding artifact, by id or path."""
    import pyarrow.parquet as pq

    from tools.artifacts import Workspace

    ws = ctx.workspace if ctx is not None else Workspace()
    art = ws.get(ref)
    if art.kind != "embeddings":
        raise BadInput(f"{art.id} is a {art.kind} artifact, not embeddings", where="load_embeddings.ref")
    matrix = np.load(art.path / "data.npy", mmap_mode="r")
    ids_path = art.path / "ids.parquet"
    if ids_path.exists():
        ids = pq.read_table(ids_path, columns=["id"]).column("id").to_pylist()
    else:  # an embeddings artifact written by another tool: rows follow the table's ids if any
        ids = art.table(["id"]).column("id").to_pylist()
    if len(ids) != matrix.shape[0]:
        raise BadInput(f"{art.id}: {len(ids)} ids but {matrix.shape[0]} rows", where="load_embeddings")
    return ids, matrix, art.manifest


def load_rows(ref: str | os.PathLike, ctx: ToolContext | None = None) -> pa.Table:
    """The ``ids.parquet`` table of an embedding artifact (id, domain, tokens, truncated, empty)."""
    import pyarrow.parquet as pq

    from tools.artifacts import Workspace

    ws = ctx.workspace if ctx is not None else Workspace()
    return pq.read_table(ws.get(ref).path / "ids.parquet")
