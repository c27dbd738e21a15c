"""tools.vectorstore: collection names, batched upserts, queries and filters, embedded and served chroma."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import free_port
from tools import vectorstore as vs
from tools.errors import BadInput, ResourceUnavailable

pytest.importorskip("chromadb")

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(
    "model",
    [
        "sentence-transformers/all-MiniLM-L6-v2",
        "/home/me/models/my model (v2)/checkpoint..final/",
        "BAAI/bge-m3",
        "ü" * 300,
        "x",
        "/" + "deep/" * 200 + "model",
    ],
)
def test_collection_names_are_valid_for_chroma(model):
    name = vs.collection_name("0123456789abcdef", model)
    assert NAME_RE.match(name) and ".." not in name and 3 <= len(name) <= 512
    assert name == vs.collection_name("0123456789abcdef", model)  # stable
    assert name != vs.collection_name("0123456789abcdee", model)  # one per corpus


def test_one_collection_per_model_even_when_slugs_collide():
    a = vs.collection_name("fp", "org/model:v1")
    b = vs.collection_name("fp", "org/model/v1")
    assert a != b


def test_upsert_batches_at_max_batch_size_and_queries_back(ctx, monkeypatch):
    from chromadb.api.client import Client
    from chromadb.api.models.Collection import Collection

    monkeypatch.setattr(Client, "get_max_batch_size", lambda self: 7)
    calls: list[int] = []
    real = Collection.upsert

    def spy(self, *, ids, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(len(ids))
        return real(self, ids=ids, **kw)

    monkeypatch.setattr(Collection, "upsert", spy)
    x = unit_rows(40, 12)
    ids = [f"doc-{i:03d}" for i in range(40)]
    metas = [{"domain": "math" if i % 3 == 0 else "code", "source": None} for i in range(40)]
    name = vs.collection_name("fp-batches", "m")
    assert vs.upsert(ctx, name, ids, x, metas) == 40
    assert calls == [7, 7, 7, 7, 7, 5]
    assert (ctx.workspace.root / "chroma").is_dir()  # the embedded store lives in the workspace
    assert vs.count(ctx, name) == 40

    got, scores, got_meta = vs.query(ctx, name, x, k=1)
    assert [r[0] for r in got] == ids  # every vector finds itself
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)
    assert got_meta[0][0] == {"domain": "math"}  # None values dropped

    # a domain filter: only math documents come back, and they are the exact best math matches
    got, scores, got_meta = vs.query(ctx, name, x[1:3], k=5, where={"domain": {"$in": ["math"]}})
    math_rows = [i for i in range(40) if i % 3 == 0]
    for q, row in zip((1, 2), got, strict=True):
        assert all(r.startswith("doc-") and int(r[4:]) % 3 == 0 for r in row)
        exact = sorted(math_rows, key=lambda i: -float(x[i] @ x[q]))[:5]
        assert [int(r[4:]) for r in row] == exact
    assert all(m["domain"] == "math" for row in got_meta for m in row)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first

    # upsert is idempotent by id: a second write replaces, it does not duplicate
    vs.upsert(ctx, name, ids[:5], x[:5], None)
    assert vs.count(ctx, name) == 40


def test_bad_vectors_are_refused_with_their_ids_before_anything_is_written(ctx):
    x = unit_rows(10, 4)
    x[3, 1] = np.nan
    x[7, 0] = np.inf
    name = vs.collection_name("fp-bad", "m")
    with pytest.raises(BadInput, match=r"doc-3.*doc-7"):
        vs.upsert(ctx, name, [f"doc-{i}" for i in range(10)], x)
    assert vs.count(ctx, name) == 0
    good = unit_rows(10, 4)
    vs.upsert(ctx, name, [f"doc-{i}" for i in range(10)], good)
    with pytest.raises(BadInput, match="dimension 4"):
        vs.upsert(ctx, name, ["other"], unit_rows(1, 5))
    with pytest.raises(BadInput, match="dimension 4"):
        vs.query(ctx, name, unit_rows(1, 5), k=1)
    with pytest.raises(BadInput, match="at most the collection's size 10"):
        vs.query(ctx, name, good[:1], k=11)
    with pytest.raises(BadInput, match="matching the filter"):
        vs.query(ctx, name, good[:1], k=2, where={"domain": "nowhere"})
    with pytest.raises(BadInput, match="one row per id"):
        vs.upsert(ctx, name, ["a", "b"], unit_rows(3, 4))
    with pytest.raises(BadInput, match="unique"):
        vs.upsert(ctx, name, ["a", "a"], unit_rows(2, 4))
    with pytest.raises(BadInput, match="no collection"):
        vs.query(ctx, vs.collection_name("fp-none", "m"), good[:1], k=1)
    with pytest.raises(BadInput, match="3-512 characters"):
        vs.get_collection(ctx, "a/b")


def test_unreachable_server_is_resource_unavailable(ctx, monkeypatch):
    monkeypatch.setenv(vs.ENV_URL, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ResourceUnavailable, match="cannot reach the chroma server") as err:
        vs.open_store(ctx)
    assert "chroma run" in str(err.value)
    monkeypatch.setenv(vs.ENV_URL, "ftp://nowhere")
    with pytest.raises(BadInput, match="CURATE_CHROMA_URL"):
        vs.open_store(ctx)


@pytest.mark.slow
def test_real_chroma_server(ctx, monkeypatch, chroma_server):
    url, proc = chroma_server.url, chroma_server.proc
    monkeypatch.setenv(vs.ENV_URL, url)
    client = vs.open_store(ctx)
    assert type(client).__name__ != "PersistentClient" and client.heartbeat()
    max_batch = client.get_max_batch_size()
    n = max_batch + 500  # more than one real max batch
    x = unit_rows(n, 16, seed=3)
    ids = [f"d{i}" for i in range(n)]
    metas = [{"domain": ["math", "code", "web"][i % 3]} for i in range(n)]
    name = vs.collection_name("fp-served", "sentence-transformers/all-MiniLM-L6-v2")
    assert vs.upsert(ctx, name, ids, x, metas) == n
    assert vs.count(ctx, name) == n
    assert not (ctx.workspace.root / "chroma").exists()  # nothing embedded when a server is configured
    q = np.arange(0, n, 997)
    got, scores, _ = vs.query(ctx, name, x[q], k=3, where={"domain": {"$in": ["math", "web"]}})
    for qi, row in zip(q, got, strict=True):
        assert all(int(r[1:]) % 3 in (0, 2) for r in row)
        if qi % 3 in (0, 2):
            assert row[0] == f"d{qi}"
    # a second store handle sees the same data (one server, many clients)
    other = ctx.model_copy(update={"workspace_dir": ctx.workspace_dir.parent / "other-ws"})
    assert vs.count(other, name) == n
    proc.terminate()
    proc.wait(timeout=20)
    with pytest.raises(ResourceUnavailable):
        vs.query(ctx, name, x[:1], k=1)


@pytest.mark.slow
def test_embed_tool_fills_the_store_and_neighbors_reads_it(ctx, tiny_corpus):
    """The embed tool upserts through this module (artifact id form); neighbors' chroma backend reuses
    that collection and agrees with exact k-NN."""
    embed = pytest.importorskip("tools.embed")
    from tools import neighbors

    res = embed.run({"corpus": str(tiny_corpus), "vector_store": True}, ctx)
    name = res.collection
    assert name and vs.count(ctx, name) == 36
    ids, mat, _ = embed.load_embeddings(res.artifacts["embeddings"], ctx)
    got, scores, metas = vs.query(ctx, name, np.asarray(mat[:2], dtype=np.float32), k=4,
                                  where={"domain": {"$in": ["code"]}})
    assert all(m["domain"] == "code" for row in metas for m in row)
    args = {"corpus": str(tiny_corpus), "doc_id": "math-3", "k": 5, "embeddings": res.artifacts["embeddings"]}
    a = neighbors.run({**args, "backend": "chroma"}, ctx)
    b = neighbors.run({**args, "backend": "knn"}, ctx)
    assert a.top and {h.id for h in a.top} == {h.id for h in b.top}
    assert vs.count(ctx, name) == 36  # reused, not re-upserted under another name
