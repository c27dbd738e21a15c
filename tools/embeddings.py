"""Pool vectors, once: a corpus's embeddings aligned to its ids, from an artifact, a file, or computed.

```
from tools.embeddings import pool_vectors, text_vectors
pool = pool_vectors(request.corpus, ctx, embeddings=request.embeddings, model=request.model)
pool.ids, pool.domains, pool.vectors          # row i of vectors is document ids[i]
q = text_vectors(["proof by induction"], ctx, model=pool.model)
```

Where the vectors come from (``embeddings``):

- an embedding artifact id: the embed tool's (``data.npy`` + ``ids.parquet``) or any ``embeddings``
  artifact holding an array and, optionally, an ``id`` table;
- a ``.npy`` path: one row per corpus document, in corpus order;
- nothing: the embed tool runs on the corpus (cached by content, so a repeat computes nothing).

One policy for documents without a vector: ``missing="error"`` (default) refuses with the count and a
few ids; ``missing="skip"`` leaves them out; either way :attr:`PoolVectors.missing` counts them
(``skipped`` has them as ``no_embedding`` for the run's row counts). One model-identity check: the
label recorded with the vectors (:func:`model_of`) must equal the requested ``model``, and two vector
sets compared with each other must share a label (:func:`check_same_model`). Non-finite rows are
refused naming their ids; with ``normalize=True`` rows are L2-normalised and zero rows refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tools.corpus import CorpusSpec, ReadStats, as_corpus, read_batches
from tools.errors import BadInput, field_error
from tools.models import model_label
from tools.refs import Ref, resolve_input
from tools.vectorstore import check_vectors

Missing = Literal["error", "skip"]

__all__ = [
    "PoolVectors",
    "StoredVectors",
    "check_same_model",
    "check_vectors",
    "load_vectors",
    "model_of",
    "normalize_rows",
    "pool_vectors",
    "text_vectors",
]


@dataclass
class PoolVectors:
    """The pool's ids and domains with their vectors (row i = ids[i]), and where the vectors came from."""

    ids: list[str]
    domains: list[str]
    vectors: np.ndarray
    model: str | None
    source: str
    missing: int = 0
    """Corpus documents that had no vector (left out under ``missing="skip"``)."""
    missing_ids: list[str] = field(default_factory=list)
    """The first few of them."""
    lengths: np.ndarray | None = None
    """Characters per document, when asked for."""
    stats: ReadStats = field(default_factory=ReadStats)

    @property
    def skipped(self) -> dict[str, int]:
        return {"no_embedding": self.missing} if self.missing else {}


@dataclass
class StoredVectors:
    """A stored matrix with its row ids (None: rows follow the corpus order) and model label."""

    ids: list[str] | None
    matrix: np.ndarray
    model: str | None
    source: str


# ------------------------------------------------------------------------------- model identity


def model_of(manifest: dict[str, Any]) -> str | None:
    """The model label recorded with a set of vectors, or None.

    Looks in the manifest, then its metrics, then its request; in each, an explicit ``model_label``
    before ``model`` (the label is the normalised name). Aliases of the default model collapse.
    """
    for place in (manifest, manifest.get("metrics") or {}, manifest.get("request") or {}):
        for key in ("model_label", "model"):
            if isinstance(place.get(key), str):
                return model_label(place[key])
    return None


def check_same_model(a: str | None, b: str | None, *, where: str, what: str = "the two embedding sets") -> None:
    """Refuse comparing vectors of two different models (unknown labels pass)."""
    if a and b and model_label(a) != model_label(b):
        raise BadInput(
            f"{what} come from different models ({b!r} and {a!r}); distances between them mean nothing",
            where=where, hint="embed both with the same model",
        )


# ---------------------------------------------------------------------------------- row checks


def normalize_rows(x: np.ndarray, ids: list[str] | None, where: str) -> np.ndarray:
    """Finite, L2-normalised float32 rows; zero rows are refused with their ids (cosine is undefined)."""
    x = check_vectors(x, ids, where)
    norms = np.linalg.norm(x, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        names = [ids[i] for i in zero[:10]] if ids is not None else zero[:10].tolist()
        raise BadInput(f"must be non-zero vectors (cosine is undefined); {zero.size} zero rows: {names}", where=where)
    return x / norms[:, None].astype(np.float32)


# -------------------------------------------------------------------------------------- loading


def _where(ctx: Any, name: str) -> str:
    return f"{getattr(ctx, 'tool', '') or 'embeddings'}.{name}"


def load_vectors(ref: str, ctx: Any, *, field: str = "embeddings") -> StoredVectors:
    """The matrix an embeddings reference names (artifact id or ``.npy`` path), memory-mapped."""
    where = _where(ctx, field)
    target = resolve_input(ref, ctx, field=where, ref=Ref("artifact_or_path"))
    if isinstance(target, Path):
        if target.is_dir() or target.suffix.lower() != ".npy":
            raise BadInput(f"must be an embeddings artifact id or a .npy file; got {ref!r}", where=where)
        return StoredVectors(None, np.load(target, mmap_mode="r"), None, str(ref))
    art = target
    if art.kind != "embeddings":
        raise field_error(where.split(".")[0], field, "an embeddings artifact", f"{art.id} ({art.kind})")
    if (art.path / "ids.parquet").exists():
        from tools.embed.store import load_embeddings

        ids, mat, manifest = load_embeddings(art.id, ctx)
        return StoredVectors(list(ids), mat, model_of(manifest), art.id)
    mat = art.array()
    try:
        ids = art.table(["id"]).column("id").to_pylist()
    except (OSError, KeyError, ValueError):  # no id table: rows follow the corpus order
        ids = None
    return StoredVectors(ids, mat, model_of(art.manifest), art.id)


def _read_pool(corpus: CorpusSpec, ctx: Any, lengths: bool) -> tuple[list[str], list[str], np.ndarray | None, ReadStats]:
    stats = ReadStats()
    ids: list[str] = []
    doms: list[str] = []
    lens: list[int] = []
    cols = ("id", "domain", "text") if lengths else ("id", "domain")
    for batch in read_batches(corpus, cols, allowed_roots=getattr(ctx, "data_roots", None), stats=stats):
        ids += batch.column("id").to_pylist()
        doms += batch.column("domain").to_pylist()
        if lengths:
            lens += [len(s or "") for s in batch.column("text").to_pylist()]
    return ids, doms, (np.asarray(lens, dtype=np.int64) if lengths else None), stats


def compute_embeddings(corpus: CorpusSpec, ctx: Any, *, model: str | None = None, vector_store: bool = False) -> str:
    """Run the embed tool on ``corpus`` (cached by content) and return the artifact id."""
    from tools import embed  # type: ignore[attr-defined]

    res = embed.run({"corpus": corpus.model_dump(mode="json"), "model": model, "vector_store": vector_store}, ctx)
    return res.artifacts["embeddings"]


def pool_vectors(
    corpus: CorpusSpec | str | dict,
    ctx: Any,
    *,
    embeddings: str | None = None,
    model: str | None = None,
    missing: Missing = "error",
    normalize: bool = True,
    field: str = "embeddings",
    lengths: bool = False,
    vector_store: bool = False,
) -> PoolVectors:
    """The corpus's vectors aligned to its ids (see the module docstring for sources and policies).

    ``field`` names the request field in errors (``<tool>.<field>``). ``lengths=True`` also reads each
    document's length in characters; ``vector_store=True`` lets a computed run fill the vector store.
    """
    spec = as_corpus(corpus)
    where = _where(ctx, field)
    computed = embeddings is None
    source = compute_embeddings(spec, ctx, model=model, vector_store=vector_store) if computed else embeddings
    ids, doms, lens, stats = _read_pool(spec, ctx, lengths)
    stored = load_vectors(source, ctx, field=field)
    label = stored.model or (model_label(model) if computed else None)
    if model is not None and stored.model is not None and model_label(model) != stored.model:
        raise BadInput(f"the embeddings come from {stored.model!r} but model={model!r} was asked for",
                       where=_where(ctx, "model"), hint="leave model unset to use the embeddings' model, or re-embed")
    mat = stored.matrix
    if mat.ndim != 2:
        raise BadInput(f"must be a 2-d matrix (rows, dim); got shape {mat.shape}", where=where)
    n_missing = 0
    missing_ids: list[str] = []
    if stored.ids is None:
        if len(mat) != len(ids):
            raise BadInput(f"must have one row per corpus document ({len(ids)} rows); got {len(mat)} rows in "
                           f"{source}", where=where)
    elif stored.ids != ids:
        pos = {d: i for i, d in enumerate(stored.ids)}
        keep = [i for i, d in enumerate(ids) if d in pos]
        n_missing = len(ids) - len(keep)
        if n_missing:
            missing_ids = [d for d in ids if d not in pos][:20]
            if missing == "error" or not keep:
                raise BadInput(
                    f"must hold a vector for every corpus document; {n_missing} of {len(ids)} ids have none "
                    f"in {source}, e.g. {missing_ids[:3]}", where=where,
                    hint="embed this corpus (leave embeddings unset)" if keep else None)
        rows = np.fromiter((pos[ids[i]] for i in keep), dtype=np.int64, count=len(keep))
        mat = np.asarray(mat)[rows]
        if n_missing:
            ids = [ids[i] for i in keep]
            doms = [doms[i] for i in keep]
            lens = lens[keep] if lens is not None else None
    vectors = normalize_rows(mat, ids, where) if normalize else check_vectors(mat, ids, where)
    return PoolVectors(ids, doms, vectors, label, str(source), n_missing, missing_ids, lens, stats)


def text_vectors(texts: list[str], ctx: Any, *, model: str | None = None, normalize: bool = True) -> np.ndarray:
    """Vectors of a few texts (queries, target sets) with the project's encoder, float32 (n, d)."""
    from tools.embed import encode_texts

    out = np.asarray(encode_texts(list(texts), model=model, device=getattr(ctx, "device", "auto"),
                                  normalize=normalize), dtype=np.float32)
    return normalize_rows(out, None, _where(ctx, "query")) if normalize else out
