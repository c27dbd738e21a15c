"""embed: parity with stock sentence-transformers, the artifact, the content cache, resume, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, write_jsonl
from tools import embed
from tools.contract import ToolContext
from tools.errors import BadInput, ResourceUnavailable


def _docs(n: int, seed: int = 0, mu: float = 4.8, sigma: float = 0.8) -> list[str]:
    from tools.demo_data import DOMAINS, make_document

    rng = np.random.default_rng(seed)
    doms = list(DOMAINS)
    return [make_document(rng, doms[i % len(doms)], int(max(1, rng.lognormal(mu, sigma)))) for i in range(n)]


@pytest.fixture(scope="module")
def stock():
    from sentence_transformers import SentenceTransformer

    from tools.models import resolve_embedding_model

    return SentenceTransformer(resolve_embedding_model(None), device="cpu")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [*_docs(40), "hi", "x", "A short sentence.", "word " * 600]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_encode_texts_matches_stock_encode(stock, texts, precision):
    ref = stock.encode(texts, batch_size=32)
    got = embed.encode_texts(texts, device="cpu", precision=precision, batch_tokens=1024)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert _cos(got, ref).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_encode_texts_is_order_free_and_batch_free(texts):
    few = texts[::3]
    a = embed.encode_texts(few, device="cpu", precision="fp32", batch_tokens=512)
    b = embed.encode_texts(few[::-1], device="cpu", precision="fp32", batch_tokens=8192)[::-1]
    assert _cos(a, b).min() > 0.99999


def test_encode_texts_progress_dtype_and_empty_list(texts):
    seen: list[int] = []
    out = embed.encode_texts(texts[:5], device="cpu", dtype="float16", progress=seen.append)
    assert out.dtype == np.float16 and sum(seen) == 5
    assert embed.encode_texts([], device="cpu").shape == (0, 384)
    with pytest.raises(BadInput):
        embed.encode_texts("one string", device="cpu")


def test_token_budget_batches_cover_every_doc_once():
    from tools.embed.encoder import pad_batch, token_budget_batches

    lengths = np.array([5, 300, 17, 17, 256, 1, 40] * 30)
    batches = token_budget_batches(lengths, 512)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * lengths[b].max() <= 512
        assert lengths[b].min() >= 0.75 * lengths[b].max()  # no row is mostly padding
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


# ------------------------------------------------------------------------------------ the tool


def _corpus(tmp_path: Path, texts: list[str], name: str = "pool.jsonl", prefix: str = "d") -> Path:
    rows = [{"id": f"{prefix}{i:04d}", "text": t, "domain": ("a", "b")[i % 2]} for i, t in enumerate(texts)]
    return write_jsonl(tmp_path / name, rows)


def test_embed_tool_artifact_layout_and_parity(tmp_path, ctx, stock):
    docs = [*_docs(30, seed=3), "", "   ", "word " * 700, _docs(1, seed=3)[0]]  # an empty pair, a long one, a repeat
    path = _corpus(tmp_path, docs)
    res = embed.run({"corpus": str(path), "dtype": "float16"}, ctx)
    assert res.embedded == len(docs) and res.empty == 2 and res.truncated >= 2
    assert res.computed == len(docs) - 1  # the repeated text ran once
    ids, mat, manifest = embed.load_embeddings(res.artifacts["embeddings"], ctx)
    assert ids == [f"d{i:04d}" for i in range(len(docs))]
    assert isinstance(mat, np.memmap) and mat.dtype == np.float16 and mat.shape == (len(docs), 384)
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2" and manifest["dim"] == 384
    assert manifest["tool"] == "embed" and manifest["metrics"]["truncated"] == res.truncated
    ref = stock.encode(docs)
    assert _cos(np.asarray(mat, dtype=np.float32), ref).min() >= 0.99  # fp16 storage
    rows = __import__("tools.embed.store", fromlist=["load_rows"]).load_rows(res.artifacts["embeddings"], ctx)
    assert rows.column("empty").to_pylist()[30:32] == [True, True]
    assert rows.column("truncated").to_pylist()[32] is True
    # the vector store got the same rows, with domains
    from tools import vectorstore as vs

    assert res.collection and vs.count(ctx, res.collection) == len(docs)
    hit_ids, scores, metas = vs.query(ctx, res.collection, np.asarray(mat[:1], dtype=np.float32), k=1,
                                      where={"domain": "a"})
    assert hit_ids[0][0] == "d0000" and metas[0][0]["domain"] == "a" and scores[0][0] > 0.99


def test_second_run_computes_nothing_and_overlap_reuses(tmp_path, ctx):
    docs = _docs(24, seed=5, mu=3.5)
    p1 = _corpus(tmp_path, docs)
    r1 = embed.run({"corpus": str(p1), "vector_store": False}, ctx)
    assert r1.computed == 24
    fresh = ctx.model_copy(update={"use_cache": False})  # bypass the run record: only the vector cache
    r2 = embed.run({"corpus": str(p1), "vector_store": False}, fresh)
    assert r2.computed == 0 and r2.reused == 24 and not r2.cached  # computed nothing, not a run-record hit
    p2 = _corpus(tmp_path, docs[12:] + _docs(6, seed=6, mu=3.5), name="other.jsonl", prefix="o")
    r3 = embed.run({"corpus": str(p2), "vector_store": False}, fresh)
    assert r3.computed == 6 and r3.reused == 12
    _, m1, _ = embed.load_embeddings(r1.artifacts["embeddings"], ctx)
    _, m3, _ = embed.load_embeddings(r3.artifacts["embeddings"], ctx)
    np.testing.assert_array_equal(np.asarray(m1[12:]), np.asarray(m3[:12]))


def test_kill_9_resumes_with_only_unfinished_chunks(tmp_path):
    docs = _docs(160, seed=7, mu=2.5, sigma=0.3)
    path = _corpus(tmp_path, docs)
    ws = tmp_path / "ws"
    script = (
        "import sys; import tools.embed.store as s; s.CPU_SHARD_DOCS = 16\n"
        "from tools import embed; from tools.contract import ToolContext\n"
        f"embed.run({{'corpus': {str(path)!r}, 'vector_store': False, 'precision': 'fp32'}}, "
        f"ToolContext(workspace_dir={str(ws)!r}, show_progress=False))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if len(list(ws.glob("cache/embed/*/*.keys.npy"))) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    shards = list(ws.glob("cache/embed/*/*.keys.npy"))
    done = sum(len(np.load(p)) for p in shards)
    assert 16 <= done < 160
    import tools.embed.store as store

    ctx = ToolContext(workspace_dir=ws, show_progress=False)
    old = store.CPU_SHARD_DOCS
    store.CPU_SHARD_DOCS = 16
    try:
        res = embed.run({"corpus": str(path), "vector_store": False, "precision": "fp32"}, ctx)
    finally:
        store.CPU_SHARD_DOCS = old
    assert res.computed == 160 - done and res.reused == done
    assert not list((ws / "tmp").iterdir())  # the killed run's half artifact was swept
    _, mat, _ = embed.load_embeddings(res.artifacts["embeddings"], ctx)
    ref = embed.encode_texts(docs, device="cpu", precision="fp32")
    assert _cos(np.asarray(mat), ref).min() > 0.99999


def test_progress_events_report_docs_per_second(tmp_path):
    events = []
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, on_progress=events.append)
    res = embed.run({"corpus": str(_corpus(tmp_path, _docs(10, mu=3))), "vector_store": False}, ctx)
    assert res.docs_per_s > 0
    final = [e for e in events if e.tool == "embed" and e.done]
    assert final and final[-1].n == 10 and final[-1].rate and final[-1].unit == "docs"


# ------------------------------------------------------------------------------------ bad input


def test_unloadable_model_says_how_to_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResourceUnavailable) as e:
        embed.encode_texts(["x"], model="no-such-org/no-such-model-xyz", device="cpu")
    msg = str(e.value)
    assert "no-such-org/no-such-model-xyz" in msg and "pip install" in msg and "local" in msg


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory, stock) -> Path:
    """A custom model whose embedding row for the word 'banana' is NaN."""
    import copy

    import torch

    m = copy.deepcopy(stock)
    tok_id = m.tokenizer.convert_tokens_to_ids("banana")
    with torch.no_grad():
        m[0].auto_model.embeddings.word_embeddings.weight[tok_id] = float("nan")
    out = tmp_path_factory.mktemp("nanmodel") / "model"
    m.save(str(out))
    return out


def test_nan_embeddings_are_rejected_with_row_ids(tmp_path, ctx, nan_model):
    docs = ["a fine text", "i like banana bread", "another fine one", "banana"]
    with pytest.raises(BadInput) as e:
        embed.encode_texts(docs, model=str(nan_model), device="cpu", precision="fp32")
    assert "rows [1, 3]" in str(e.value)
    path = _corpus(tmp_path, docs)
    with pytest.raises(BadInput) as e2:
        embed.run({"corpus": str(path), "model": str(nan_model), "precision": "fp32"}, ctx)
    assert "d0001" in str(e2.value) and "d0003" in str(e2.value) and "d0000" not in str(e2.value)
    assert not ctx.workspace.list("embeddings")


def test_request_validation(tmp_path, ctx):
    path = _corpus(tmp_path, ["x"])
    with pytest.raises(BadInput):
        embed.run({"corpus": str(path), "backend": "tensorrt"}, ctx)
    with pytest.raises(BadInput):
        embed.run({"corpus": str(path), "batch_tokens": 0}, ctx)


# ------------------------------------------------------------------------------------ ONNX int8


@pytest.mark.slow
def test_onnx_int8_backend_is_close_to_stock(stock, texts, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.setenv("CURATE_MODEL_CACHE", os.environ.get("CURATE_MODEL_CACHE", str(Path.home() / ".cache/curate/models")))
    ref = stock.encode(texts)
    got = embed.encode_texts(texts, backend="onnx-int8", device="cpu")
    assert _cos(got, ref).min() >= 0.98
    got32 = embed.encode_texts(texts, backend="onnx", device="cpu")
    assert _cos(got32, ref).min() >= 0.999


# ------------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.999), ("fp16", 0.99), ("auto", 0.99)])
def test_gpu_encode_matches_stock(stock, texts, precision, floor):
    ref = stock.encode(texts)
    got = embed.encode_texts(texts, device="cuda", precision=precision)
    assert _cos(got, ref).min() >= floor


@pytest.mark.gpu
def test_gpu_tool_run(tmp_path, ctx):
    path = _corpus(tmp_path, _docs(50))
    res = embed.run({"corpus": str(path), "device": "cuda", "vector_store": False}, ctx)
    assert res.device.startswith("cuda") and res.embedded == 50
