"""neighbors: exact rankings against a brute-force oracle, target modes, filters, backends, bad input."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import write_jsonl
from tools import neighbors
from tools.errors import BadInput

DIM = 24


def fake_vec(text: str) -> np.ndarray:
    """A deterministic stand-in encoder: hashed words, so tests need no model."""
    v = np.zeros(DIM, dtype=np.float64)
    for w in text.lower().split():
        h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        v[h % DIM] += 1.0 if (h >> 20) & 1 else -1.0
    v[0] += 0.5
    return v


@pytest.fixture
def fake_encoder(monkeypatch):  # noqa: ANN001, ANN201
    calls: list[int] = []

    def text_vectors(texts, ctx, *, model=None, normalize=True):  # noqa: ANN001, ANN202
        calls.append(len(texts))
        x = np.array([fake_vec(t) for t in texts], dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x

    monkeypatch.setattr(neighbors, "text_vectors", text_vectors)
    return calls


@pytest.fixture
def pool(tmp_path):  # noqa: ANN001, ANN201
    """40 documents in 3 domains with their own vectors in a .npy (rows in corpus order)."""
    rng = np.random.default_rng(7)
    rows, vecs = [], []
    for i in range(40):
        d = ["math", "code", "web"][i % 3]
        text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"], size=6))
        rows.append({"id": f"p{i:02d}", "text": text, "domain": d})
        vecs.append(fake_vec(text))
    path = write_jsonl(tmp_path / "pool.jsonl", rows)
    x = np.array(vecs) + 0.05 * rng.standard_normal((40, DIM))  # jitter: no tied scores
    x = (x * rng.uniform(0.5, 3.0, size=(40, 1))).astype(np.float32)  # rows not unit length
    np.save(tmp_path / "pool.npy", x)
    return path, tmp_path / "pool.npy", rows, x


def cosine_rank(x: np.ndarray, q: np.ndarray, allowed: list[int]) -> list[tuple[int, float]]:
    """Oracle: cosine of every allowed row in float64, sorted by score then row."""
    xn = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    qn = q.astype(np.float64) / np.linalg.norm(q)
    s = xn @ qn
    return sorted(((i, float(s[i])) for i in allowed), key=lambda t: (-t[1], t[0]))


def selection(ctx, res):  # noqa: ANN001, ANN201
    return pq.read_table(ctx.workspace.get(res.artifacts["selection"]).path / "data.parquet").to_pylist()


def test_doc_id_neighbours_equal_brute_force_with_domain_filter(ctx, pool, fake_encoder):
    path, npy, rows, x = pool
    res = neighbors.run({"corpus": str(path), "doc_id": "p04", "k": 6, "domains": ["math", "web"],
                         "embeddings": str(npy)}, ctx)
    allowed = [i for i, r in enumerate(rows) if r["domain"] in ("math", "web") and i != 4]
    want = cosine_rank(x, x[4], allowed)[:6]
    got = selection(ctx, res)
    assert [g["id"] for g in got] == [rows[i]["id"] for i, _ in want]
    np.testing.assert_allclose([g["score"] for g in got], [s for _, s in want], atol=1e-5)
    assert {g["domain"] for g in got} <= {"math", "web"}
    assert [g["rank"] for g in got] == list(range(1, 7))
    assert res.query_kind == "doc_id" and res.k == 6 and fake_encoder == []  # the doc's own vector is used
    # the summary quotes ids, scores and domains, never document text
    assert got[0]["id"] in res.summary and rows[want[0][0]]["text"] not in res.summary
    assert all(r["text"] not in res.summary for r in rows)


def test_query_text_and_exclusion(ctx, pool, fake_encoder):
    path, npy, rows, x = pool
    res = neighbors.run({"corpus": str(path), "query": "alpha beta gamma", "k": 5, "embeddings": str(npy)}, ctx)
    want = cosine_rank(x, fake_vec("alpha beta gamma").astype(np.float32), list(range(40)))[:5]
    assert [g["id"] for g in selection(ctx, res)] == [rows[i]["id"] for i, _ in want]
    assert fake_encoder == [1]
    # doc_id with exclude_query_docs=False finds the document itself first
    res = neighbors.run({"corpus": str(path), "doc_id": "p11", "k": 1, "exclude_query_docs": False,
                         "embeddings": str(npy)}, ctx)
    assert selection(ctx, res)[0]["id"] == "p11"


def test_target_centroid_and_union_modes(ctx, pool, fake_encoder, tmp_path):
    path, npy, rows, x = pool
    targets = [{"id": "t0", "text": "alpha alpha alpha"}, {"id": "t1", "text": "theta eta zeta"},
               {"id": "p03", "text": "gamma delta"}]  # p03 is also a pool id: excluded by default
    tpath = write_jsonl(tmp_path / "target.jsonl", targets)
    tv = np.array([fake_vec(t["text"]) for t in targets])
    tvn = tv / np.linalg.norm(tv, axis=1, keepdims=True)
    allowed = [i for i in range(40) if rows[i]["id"] != "p03"]

    res = neighbors.run({"corpus": str(path), "target": str(tpath), "k": 7, "embeddings": str(npy)}, ctx)
    want = cosine_rank(x, tvn.mean(0), allowed)[:7]
    got = selection(ctx, res)
    assert [g["id"] for g in got] == [rows[i]["id"] for i, _ in want]
    assert res.target_mode == "centroid" and "centroid" in res.summary

    res = neighbors.run({"corpus": str(path), "target": str(tpath), "k": 7, "target_mode": "union",
                         "embeddings": str(npy)}, ctx)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn.astype(np.float64) @ tvn.T  # (40, 3)
    best = sorted(((i, s[i].max(), int(s[i].argmax())) for i in allowed), key=lambda t: (-t[1], t[0]))[:7]
    got = selection(ctx, res)
    assert [g["id"] for g in got] == [rows[i]["id"] for i, _, _ in best]
    np.testing.assert_allclose([g["score"] for g in got], [b for _, b, _ in best], atol=1e-5)
    assert [g["nearest_target"] for g in got] == [targets[t]["id"] for _, _, t in best]


def test_rank_union_is_exact_for_top_k():
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((200, 8)).astype(np.float32)
    xq = rng.standard_normal((9, 8)).astype(np.float32)
    from tools.knn import exact_search

    k = 15
    s, i = exact_search(xb, xq, k)
    rows, best, q = neighbors.rank_union(s, i, k)
    full = (xq.astype(np.float64) @ xb.T.astype(np.float64)).max(0)
    want = sorted(range(200), key=lambda r: (-full[r], r))[:k]
    assert rows.tolist() == want
    np.testing.assert_allclose(best, full[want], rtol=1e-5)


def test_chroma_backend_agrees_with_exact(ctx, pool, fake_encoder):
    pytest.importorskip("chromadb")
    path, npy, rows, x = pool
    args = {"corpus": str(path), "doc_id": "p10", "k": 5, "domains": ["code"], "embeddings": str(npy)}
    exact = selection(ctx, neighbors.run({**args, "backend": "knn"}, ctx))
    served = selection(ctx, neighbors.run({**args, "backend": "chroma"}, ctx))
    assert [g["id"] for g in served] == [g["id"] for g in exact]  # 13 vectors per domain: HNSW is exact here
    np.testing.assert_allclose([g["score"] for g in served], [g["score"] for g in exact], atol=1e-4)
    assert (ctx.workspace.root / "chroma").is_dir()


def test_bad_input(ctx, pool, fake_encoder, tmp_path):
    path, npy, rows, x = pool
    base = {"corpus": str(path), "embeddings": str(npy)}
    with pytest.raises(BadInput, match="exactly one of query, doc_id, target"):
        neighbors.run({**base, "query": "a", "doc_id": "p01"}, ctx)
    with pytest.raises(BadInput, match="exactly one"):
        neighbors.run(base, ctx)
    with pytest.raises(BadInput, match="no document with id 'nope'"):
        neighbors.run({**base, "doc_id": "nope"}, ctx)
    with pytest.raises(BadInput, match=r"neighbors.k: must be at most the number of candidate documents 12"):
        neighbors.run({**base, "doc_id": "p01", "k": 13, "domains": ["code"]}, ctx)  # 13 code docs minus itself
    assert neighbors.run({**base, "doc_id": "p01", "k": 12, "domains": ["code"]}, ctx).k == 12
    with pytest.raises(BadInput, match="at most the number of candidate documents 40"):
        neighbors.run({**base, "query": "alpha", "k": 41}, ctx)
    with pytest.raises(BadInput, match="no pool documents in domains"):
        neighbors.run({**base, "query": "alpha", "domains": ["poetry"]}, ctx)
    bad = x.copy()
    bad[5, 2] = np.nan
    bad[17] = np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(BadInput, match=r"NaN or inf in 2 of 40 rows: \['p05', 'p17'\]"):
        neighbors.run({"corpus": str(path), "embeddings": str(tmp_path / "bad.npy"), "query": "alpha"}, ctx)
    zero = x.copy()
    zero[9] = 0
    np.save(tmp_path / "zero.npy", zero)
    with pytest.raises(BadInput, match=r"zero rows: \['p09'\]"):
        neighbors.run({"corpus": str(path), "embeddings": str(tmp_path / "zero.npy"), "query": "alpha"}, ctx)
    np.save(tmp_path / "short.npy", x[:30])
    with pytest.raises(BadInput, match="one row per corpus document"):
        neighbors.run({"corpus": str(path), "embeddings": str(tmp_path / "short.npy"), "query": "alpha"}, ctx)
    np.save(tmp_path / "wide.npy", np.ones((40, DIM + 3), dtype=np.float32) + np.eye(40, DIM + 3))
    with pytest.raises(BadInput, match=f"dimension {DIM} but the pool's have {DIM + 3}"):
        neighbors.run({"corpus": str(path), "embeddings": str(tmp_path / "wide.npy"), "query": "alpha"}, ctx)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BadInput, match="no documents"):
        neighbors.run({"corpus": str(empty), "query": "alpha", "embeddings": str(npy)}, ctx)


@pytest.mark.slow
def test_real_model_end_to_end(ctx, tiny_corpus):
    """The default model through the embed tool (cached), a text query and a target set."""
    res = neighbors.run({"corpus": str(tiny_corpus), "query": "bake bread with butter and flour", "k": 5}, ctx)
    got = selection(ctx, res)
    assert {g["domain"] for g in got} == {"cooking"}
    assert res.model.endswith("all-MiniLM-L6-v2")
    target = tiny_corpus.parent / "t.jsonl"
    target.write_text(json.dumps({"id": "t", "text": "solve the quadratic equation for its integer roots"}) + "\n")
    res = neighbors.run({"corpus": str(tiny_corpus), "target": str(target), "k": 4}, ctx)
    assert {g["domain"] for g in selection(ctx, res)} == {"math"}
