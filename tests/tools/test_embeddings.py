"""Pool vectors, once: alignment by id, one missing-id policy, one model-identity check."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import write_jsonl
from tools.contract import ToolContext
from tools.embeddings import check_same_model, load_vectors, model_of, pool_vectors
from tools.errors import BadInput


@pytest.fixture
def setup(tmp_path):
    rows = [{"id": f"d{i}", "text": f"text {i}", **({"domain": "a"} if i % 2 else {})} for i in range(6)]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    x = np.arange(6 * 3, dtype=np.float32).reshape(6, 3) + 1.0
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, tool="probe")
    return corpus, x, ctx


def _artifact(ctx, ids, mat, model="all-MiniLM-L6-v2"):
    with ctx.artifact("embeddings", f"e{len(ids)}{model}", metrics={"model": model}) as w:
        w.array(mat)
        w.table(pa.table({"id": ids}))
    return w.id


def test_aligned_by_id_and_domains_filled(setup):
    corpus, x, ctx = setup
    ids = [f"d{i}" for i in range(6)]
    art = _artifact(ctx, ids[::-1], x[::-1].copy())
    pool = pool_vectors(corpus, ctx, embeddings=art, normalize=False)
    assert pool.ids == ids and np.array_equal(pool.vectors, x)
    assert pool.domains == ["(none)", "a", "(none)", "a", "(none)", "a"]
    assert pool.model == "sentence-transformers/all-MiniLM-L6-v2" and pool.source == art and pool.missing == 0
    unit = pool_vectors(corpus, ctx, embeddings=art)
    np.testing.assert_allclose(np.linalg.norm(unit.vectors, axis=1), 1.0, rtol=1e-6)


def test_one_missing_policy_counted_either_way(setup):
    corpus, x, ctx = setup
    art = _artifact(ctx, ["d0", "d2", "d3", "d5"], x[[0, 2, 3, 5]])
    with pytest.raises(BadInput, match=r"probe.embeddings: must hold a vector for every corpus document; 2 of 6"):
        pool_vectors(corpus, ctx, embeddings=art)
    pool = pool_vectors(corpus, ctx, embeddings=art, missing="skip", normalize=False)
    assert pool.ids == ["d0", "d2", "d3", "d5"] and pool.missing == 2 and pool.missing_ids == ["d1", "d4"]
    assert np.array_equal(pool.vectors, x[[0, 2, 3, 5]]) and pool.skipped == {"no_embedding": 2}
    none = _artifact(ctx, ["zz"], x[:1])
    with pytest.raises(BadInput, match="6 of 6"):
        pool_vectors(corpus, ctx, embeddings=none, missing="skip")


def test_npy_rows_follow_corpus_order(setup, tmp_path):
    corpus, x, ctx = setup
    np.save(tmp_path / "x.npy", x)
    pool = pool_vectors(corpus, ctx, embeddings=str(tmp_path / "x.npy"), normalize=False, field="pool_emb")
    assert np.array_equal(pool.vectors, x) and pool.model is None
    np.save(tmp_path / "short.npy", x[:4])
    with pytest.raises(BadInput, match=r"probe.pool_emb: must have one row per corpus document \(6 rows\)"):
        pool_vectors(corpus, ctx, embeddings=str(tmp_path / "short.npy"), field="pool_emb")
    (tmp_path / "x.safetensors").write_bytes(b"\0" * 8)
    with pytest.raises(BadInput, match="a .npy file"):
        pool_vectors(corpus, ctx, embeddings=str(tmp_path / "x.safetensors"))
    bad = x.copy()
    bad[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(BadInput, match=r"NaN or inf in 1 of 6 rows: \['d4'\]"):
        pool_vectors(corpus, ctx, embeddings=str(tmp_path / "nan.npy"))
    zero = x.copy()
    zero[2] = 0
    np.save(tmp_path / "zero.npy", zero)
    with pytest.raises(BadInput, match=r"zero rows: \['d2'\]"):
        pool_vectors(corpus, ctx, embeddings=str(tmp_path / "zero.npy"))
    assert pool_vectors(corpus, ctx, embeddings=str(tmp_path / "zero.npy"), normalize=False).vectors[2].sum() == 0


def test_model_identity(setup):
    corpus, x, ctx = setup
    art = _artifact(ctx, [f"d{i}" for i in range(6)], x, model="intfloat/e5-small")
    with pytest.raises(BadInput, match="probe.model"):
        pool_vectors(corpus, ctx, embeddings=art, model="all-MiniLM-L6-v2")
    assert pool_vectors(corpus, ctx, embeddings=art, model="intfloat/e5-small").model == "intfloat/e5-small"
    with pytest.raises(BadInput, match="different models"):
        check_same_model("intfloat/e5-small", "default", where="t.target_embeddings")
    check_same_model("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", where="x")  # aliases agree
    check_same_model(None, "intfloat/e5-small", where="x")  # unknown passes
    # one order of keys: an explicit label wins over the model name, the manifest over its metrics
    assert model_of({"model": "a", "model_label": "b"}) == "b"
    assert model_of({"metrics": {"model": "m"}, "request": {"model": "r"}}) == "m"
    assert model_of({}) is None


def test_kind_is_checked(setup):
    corpus, x, ctx = setup
    with ctx.artifact("table", "t") as w:
        w.array(x)
    with pytest.raises(BadInput, match="an embeddings artifact"):
        load_vectors(w.id, ctx)
