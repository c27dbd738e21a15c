"""The vector store: chromadb collections of precomputed embeddings, one per (corpus, model).

```
from tools import vectorstore as vs
name = vs.collection_name(corpus_fingerprint, "sentence-transformers/all-MiniLM-L6-v2")
vs.upsert(ctx, name, ids, embeddings, [{"domain": "math"}, ...])
ids, scores, metas = vs.query(ctx, name, query_vectors, k=10, where={"domain": {"$in": ["math"]}})
```

Where the store lives:

- by default an embedded ``chromadb.PersistentClient`` at ``<workspace>/chroma`` (or ``$CURATE_CHROMA_PATH``). It is thread-safe but
  **not process-safe** (chroma #961, #3792): two processes writing one directory can corrupt it.
- when ``CURATE_CHROMA_URL`` is set (``http://127.0.0.1:8000``), an ``HttpClient`` to a ``chroma run
  --path DIR --host 127.0.0.1 --port 8000`` server, the topology to use once the chat app, the agent
  and notebooks share a workspace. An unreachable server is a :class:`ResourceUnavailable` naming it.

Conventions (research/peers.md §3.4): vectors are always supplied (``embedding_function=None``, so
chroma never embeds or downloads a model); collections use cosine space (``configuration={"hnsw":
{"space": "cosine"}}``), so a query's score is ``1 - distance`` = cosine similarity; writes are
``upsert`` with stable ids, in batches of ``client.get_max_batch_size()`` (5461 with SQLite; a larger
call fails whole); metadata values that are ``None`` are dropped (an empty metadata dict is sent as
``None``, which chroma accepts). chroma is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from tools.errors import BadInput, ResourceUnavailable

if TYPE_CHECKING:  # pragma: no cover
    from tools.contract import ToolContext

ENV_URL = "CURATE_CHROMA_URL"
ENV_PATH = "CURATE_CHROMA_PATH"
"""The embedded store's folder when set (default ``<workspace>/chroma``); ignored when ENV_URL is set."""
SPACE = "cosine"
_NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")

__all__ = [
    "ENV_URL",
    "check_vectors",
    "collection_name",
    "delete_collection",
    "get_collection",
    "open_store",
    "query",
    "store_location",
    "upsert",
]


# ------------------------------------------------------------------------------------ clients


def store_location(ctx: ToolContext) -> str:
    """Where :func:`open_store` connects: the server URL, or the embedded store's directory."""
    url = os.environ.get(ENV_URL, "").strip()
    return url if url else str(_local_path(ctx))


def _local_path(ctx: ToolContext) -> Path:
    custom = os.environ.get(ENV_PATH, "").strip()
    return Path(custom).expanduser() if custom else ctx.workspace.root / "chroma"


def _import_chromadb() -> Any:
    try:
        import chromadb
    except ImportError as e:  # pragma: no cover - chromadb is a base dependency
        raise ResourceUnavailable(
            "the vector store needs the 'chromadb' package", hint="pip install chromadb"
        ) from e
    return chromadb


def open_store(ctx: ToolContext) -> Any:
    """A chromadb client: ``HttpClient`` when ``CURATE_CHROMA_URL`` is set, else a ``PersistentClient``
    at ``<workspace>/chroma``. Raises :class:`ResourceUnavailable` when the server cannot be reached."""
    chromadb = _import_chromadb()
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        path = _local_path(ctx)
        path.mkdir(parents=True, exist_ok=True)
        from chromadb.config import Settings

        return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadInput(f"must be a URL like http://127.0.0.1:8000; got {url!r}", where=ENV_URL)
    port = parsed.port or (443 if parsed.scheme == "https" else 8000)
    try:
        from chromadb.config import Settings

        client = chromadb.HttpClient(
            host=parsed.hostname,
            port=port,
            ssl=parsed.scheme == "https",
            settings=Settings(anonymized_telemetry=False),
        )
        client.heartbeat()
    except Exception as e:  # noqa: BLE001 - chromadb raises ValueError/ConnectionError/httpx errors
        raise ResourceUnavailable(
            f"cannot reach the chroma server at {url} ({type(e).__name__}: {e})",
            where=ENV_URL,
            hint=f"start one with: chroma run --path <dir> --host {parsed.hostname} --port {port}, "
            f"or unset {ENV_URL} to use the embedded store in the workspace",
        ) from e
    return client


def _unreachable(e: Exception) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(s in text for s in ("connect", "connection", "timeout", "timed out", "unreachable"))


def _call(ctx: ToolContext, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a chroma call; a lost server becomes ResourceUnavailable, not a raw httpx error."""
    try:
        return fn(*args, **kwargs)
    except (BadInput, ResourceUnavailable):
        raise
    except Exception as e:
        if os.environ.get(ENV_URL) and _unreachable(e):
            raise ResourceUnavailable(
                f"the chroma server at {store_location(ctx)} stopped answering during {what} ({e})",
                where=ENV_URL,
            ) from e
        raise


# ---------------------------------------------------------------------------------- collections


def _slug(text: str, limit: int) -> str:
    s = re.sub(r"[^a-zA-Z0-9._-]+", "-", text).strip("._-")
    s = re.sub(r"\.{2,}", ".", s)
    return s[:limit].strip("._-")


def collection_name(corpus_fingerprint: str, model_label: str) -> str:
    """One collection per (corpus, model): ``c-<fingerprint>-<model slug>-<hash>``.

    Valid for chroma (3-512 characters from ``[a-zA-Z0-9._-]``, alphanumeric at both ends, no
    ``..``); the trailing hash keeps two models whose slugs collide apart.
    """
    if not corpus_fingerprint or not model_label:
        raise BadInput("collection_name needs a corpus fingerprint and a model label")
    digest = hashlib.blake2b(f"{corpus_fingerprint}\x1f{model_label}".encode(), digest_size=4).hexdigest()
    fp = _slug(corpus_fingerprint, 32) or "corpus"
    model = _slug(model_label.rsplit("/", 1)[-1] if len(model_label) > 60 else model_label, 60) or "model"
    name = f"c-{fp}-{model}-{digest}"
    assert _NAME_OK.match(name) and ".." not in name, name
    return name


def _check_name(name: str) -> None:
    if not _NAME_OK.match(name) or ".." in name:
        raise BadInput(
            "must be 3-512 characters from [a-zA-Z0-9._-], alphanumeric at both ends, without '..'; "
            f"got {name!r}",
            where="vectorstore.collection",
        )


def get_collection(ctx: ToolContext, name: str, *, create: bool = False, metadata: dict | None = None,
                   client: Any = None) -> Any:
    """The named collection (cosine space, no embedding function); ``create=True`` makes it if missing."""
    _check_name(name)
    client = client or open_store(ctx)
    if create:
        meta = {k: v for k, v in (metadata or {}).items() if v is not None} or None
        return _call(
            ctx, "get_or_create_collection", client.get_or_create_collection,
            name=name, configuration={"hnsw": {"space": SPACE}}, metadata=meta, embedding_function=None,
        )
    try:
        return client.get_collection(name=name, embedding_function=None)
    except Exception as e:
        if type(e).__name__ in ("NotFoundError", "InvalidCollectionException") or "does not exist" in str(e):
            raise BadInput(
                f"no collection {name!r} in the vector store at {store_location(ctx)}",
                hint="run the embed tool on the corpus first (it fills the store)",
            ) from None
        raise


def delete_collection(ctx: ToolContext, name: str) -> bool:
    """Drop a collection; False when it did not exist."""
    client = open_store(ctx)
    try:
        client.delete_collection(name=name)
    except Exception as e:  # noqa: BLE001
        if "does not exist" in str(e) or type(e).__name__ == "NotFoundError":
            return False
        raise
    return True


# ------------------------------------------------------------------------------------- vectors


def check_vectors(x: Any, ids: Sequence[str] | None, where: str, dim: int | None = None) -> np.ndarray:
    """A finite float32 (n, d) matrix, or BadInput naming the offending row ids (or rows)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise BadInput(f"must be a 2-d matrix (rows, dim); got shape {x.shape}", where=where)
    if dim is not None and x.shape[1] != dim:
        raise BadInput(f"must have dimension {dim}; got {x.shape[1]}", where=where)
    if x.shape[1] == 0:
        raise BadInput("must have at least one dimension; got 0", where=where)
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        names = [ids[i] for i in bad[:10]] if ids is not None else bad[:10].tolist()
        more = f" and {bad.size - 10} more" if bad.size > 10 else ""
        raise BadInput(
            f"must be finite numbers; NaN or inf in {bad.size} of {len(x)} rows: {names}{more}", where=where
        )
    return x


def _clean_metadata(m: dict | None) -> dict | None:
    if not m:
        return None
    out: dict[str, Any] = {}
    for k, v in m.items():
        if v is None:
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if not isinstance(v, (str, int, float, bool)):
            v = str(v)
        out[str(k)] = v
    return out or None


def upsert(
    ctx: ToolContext,
    name: str,
    ids: Sequence[str],
    embeddings: Any = None,
    metadatas: Sequence[dict | None] | None = None,
    *,
    collection_metadata: dict | None = None,
) -> int:
    """Upsert precomputed vectors (with per-id metadata such as ``domain``) into collection ``name``.

    Batches of ``client.get_max_batch_size()`` with a progress bar; returns the number of vectors
    written. NaN/inf rows are refused with their ids before anything is written. (The store knows
    nothing of artifacts: the embed tool reads its own artifact and passes the arrays.)
    """
    if isinstance(ids, str):
        raise BadInput("must be a list of ids (pass the vectors, not an artifact id)", where="vectorstore.ids")
    ids = [str(i) for i in ids]
    if embeddings is None:
        raise BadInput("must be given (the store holds precomputed vectors only)", where="vectorstore.embeddings")
    n = len(ids)
    if len(set(ids)) != n:
        raise BadInput(f"must be unique; got {n - len(set(ids))} repeated ids", where="vectorstore.ids")
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] != n:
        raise BadInput(f"must have one row per id ({n}); got shape {x.shape}", where="vectorstore.embeddings")
    if metadatas is not None and len(metadatas) != n:
        raise BadInput(f"must have one entry per id ({n}); got {len(metadatas)}", where="vectorstore.metadatas")
    client = open_store(ctx)
    col = get_collection(
        ctx, name, create=True, client=client,
        metadata={"dim": int(x.shape[1]), **(collection_metadata or {})},
    )
    cdim = (col.metadata or {}).get("dim")
    if cdim is not None and int(cdim) != x.shape[1]:
        raise BadInput(
            f"must have the collection's dimension {cdim}; got {x.shape[1]}", where=f"vectorstore.{name}"
        )
    batch = int(_call(ctx, "get_max_batch_size", client.get_max_batch_size))
    written = 0
    with ctx.progress(f"vector store upsert ({name})", total=n, unit="vec") as bar:
        for lo in range(0, n, batch):
            hi = min(n, lo + batch)
            chunk = check_vectors(x[lo:hi], ids[lo:hi], "vectorstore.embeddings")
            metas = [_clean_metadata(m) for m in metadatas[lo:hi]] if metadatas is not None else None
            if metas is not None and all(m is None for m in metas):
                metas = None
            _call(ctx, "upsert", col.upsert, ids=ids[lo:hi], embeddings=chunk, metadatas=metas)
            written += hi - lo
            bar.update(hi - lo)
    return written


def count(ctx: ToolContext, name: str) -> int:
    """Vectors in a collection (0 when it does not exist)."""
    try:
        col = get_collection(ctx, name)
    except BadInput:
        return 0
    return int(_call(ctx, "count", col.count))


def query(
    ctx: ToolContext,
    name: str,
    vectors: Any,
    k: int,
    where: dict | None = None,
) -> tuple[list[list[str]], np.ndarray, list[list[dict]]]:
    """The ``k`` nearest stored vectors to each query row: ``(ids, scores, metadatas)``.

    ``scores`` is float32 (m, k) cosine similarity (``1 - distance`` in the collection's cosine space),
    best first; ``where`` is a chroma metadata filter such as ``{"domain": {"$in": ["math", "code"]}}``.
    Chroma's HNSW search is approximate. ``k`` larger than the collection (or than the documents the
    filter leaves) is a :class:`BadInput`.
    """
    if k < 1:
        raise BadInput(f"must be at least 1; got {k}", where="vectorstore.k")
    col = get_collection(ctx, name)
    q = check_vectors(np.atleast_2d(np.asarray(vectors)), None, "vectorstore.query")
    total = int(_call(ctx, "count", col.count))
    if k > total:
        raise BadInput(f"must be at most the collection's size {total}; got {k}", where="vectorstore.k")
    cdim = (col.metadata or {}).get("dim")
    if cdim is not None and int(cdim) != q.shape[1]:
        raise BadInput(f"must have the collection's dimension {cdim}; got {q.shape[1]}", where="vectorstore.query")
    res = _call(
        ctx, "query", col.query,
        query_embeddings=q, n_results=k, where=where or None, include=["distances", "metadatas"],
    )
    out_ids = [list(r) for r in res["ids"]]
    short = [len(r) for r in out_ids if len(r) < k]
    if short:
        raise BadInput(
            f"must be at most the number of documents matching the filter ({min(short)}); got {k}",
            where="vectorstore.k",
        )
    scores = 1.0 - np.asarray(res["distances"], dtype=np.float64)
    metas = [[m or {} for m in row] for row in (res.get("metadatas") or [[{}] * k for _ in out_ids])]
    return out_ids, scores.astype(np.float32), metas
