"""prrc_rate: prompt/parse round trips (malformed answers included), the tool against a local
OpenAI-compatible server with a scripted rater (garbage counted, budget smaller than the sample,
cached answers free on a rerun), distillation agreement, and the offline path."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.conftest import write_jsonl
from tools.contract import LLMConfig, ToolContext
from tools.errors import BadInput, ResourceUnavailable
from tools.prrc_rate import core


def _run(ctx, **kw):
    from tools import prrc_rate

    return prrc_rate.run(kw, ctx)


# ------------------------------------------------------------------------------- prompts and parsing


@pytest.mark.parametrize("dim", core.DIMENSIONS)
def test_prompt_fills_the_template(dim):
    p = core.prompt(dim, "Photosynthesis converts light into chemical energy.")
    assert "Photosynthesis converts light" in p and dim in p
    assert p.count("\n1. ") == 1 and "\n5. " in p and '"score"' in p and "additive" in p
    long = core.prompt(dim, "x" * 100, max_chars=40)
    assert "x" * 40 + " [TRUNCATED]" in long and "x" * 41 not in long
    with pytest.raises(ValueError, match="unknown PRRC dimension"):
        core.prompt("style", "text")


@pytest.mark.parametrize(("raw", "score"), [
    ('{"justification": "criteria 1-3 met", "score": 3}', 3),
    ('  {"justification": "all met", "score": 5}\n', 5),
    ('{"justification": "ok", "score": 4.0}', 4),
    ('{"score": 1, "justification": "empty of content"}', 1),
])
def test_parse_accepts(raw, score):
    got, just, err = core.parse_rating(raw)
    assert (got, err) == (score, None) and just


@pytest.mark.parametrize(("raw", "why"), [
    ("", "empty"),
    ("Readability: 4", "not JSON"),
    ('Sure! {"justification": "x", "score": 3}', "not JSON"),
    ('{"justification": "x", "score": 6}', "out of range"),
    ('{"justification": "x", "score": 0}', "out of range"),
    ('{"justification": "x", "score": 3.5}', "integer"),
    ('{"justification": "x", "score": "4"}', "integer"),
    ('{"justification": "x", "score": true}', "integer"),
    ('{"justification": "", "score": 3}', "justification"),
    ('{"score": 3}', "justification"),
    ('{"justification": "x"}', "integer"),
    ("[3]", "object"),
])
def test_parse_rejects(raw, why):
    got, _, err = core.parse_rating(raw)
    assert got is None and why in err


# ------------------------------------------------------------------------------- the tool with a stub LLM


def _grade(text: str) -> int:
    """The scripted rater: one point per marker word present (the additive scale, made checkable)."""
    return 1 + sum(w in text for w in ("theorem", "evidence", "method", "analysis"))


def _pool(tmp_path, n=60):
    rng = np.random.default_rng(0)
    markers = ["theorem", "evidence", "method", "analysis"]
    rows, vecs = [], []
    for i in range(n):
        k = int(rng.integers(0, 5))
        used = markers[:k]
        text = f"document {i} " + " ".join(used) + (" garbage" if i % 10 == 7 else "") + " plain words here"
        rows.append({"id": f"d{i:03d}", "text": text})
        theta = k * np.pi / 8  # the grade turns the embedding along an arc (rows are L2-normalised)
        vecs.append(np.r_[np.cos(theta), np.sin(theta), rng.normal(size=6) * 0.05])
    rows.append({"id": "empty", "text": "   "})
    vecs.append(np.zeros(8) + 0.01)
    corpus = write_jsonl(tmp_path / "pool.jsonl", rows)
    emb = tmp_path / "emb.npy"
    np.save(emb, np.asarray(vecs, dtype=np.float32))
    return corpus, emb


def _responder(messages, params):
    text = re.search(r"<document>\n(.*)\n</document>", messages[-1]["content"] if "<document>" in
                     messages[-1]["content"] else messages[1]["content"], re.S)
    doc = text.group(1) if text else ""
    if "garbage" in doc:
        return "I would say this is about a 4."
    if "d005" in doc or "document 5 " in doc:
        return json.dumps({"justification": "too good", "score": 9})  # out of range, every time
    return json.dumps({"justification": "marker words counted", "score": _grade(doc)})


@pytest.fixture
def llm_ctx(tmp_path, openai_server):
    openai_server.responder = _responder
    return ToolContext(workspace_dir=tmp_path / "ws", show_progress=False,
                       llm_config=LLMConfig(base_url=openai_server.url, concurrency=4))


def test_rates_counts_garbage_and_distils(tmp_path, llm_ctx, openai_server):
    corpus, emb = _pool(tmp_path)
    res = _run(llm_ctx, corpus=str(corpus), dimensions=["professionalism"], sample_size=40, embeddings=str(emb))
    assert res.source == "llm" and res.rows.skipped == {"prrc_empty_text": 1}
    n_garbage = res.garbage["professionalism"]
    assert res.rated["professionalism"] + n_garbage == 40 and n_garbage >= 3
    tbl = llm_ctx.workspace.get(res.artifacts["ratings"]).table().to_pydict()
    docs = {r["id"]: r["text"] for r in map(json.loads, corpus.read_text().splitlines())}
    for i, g in zip(tbl["id"], tbl["professionalism"], strict=True):
        assert g == _grade(docs[i]) and "garbage" not in docs[i]  # never a guess for a rejected answer
    assert res.spearman["professionalism"] > 0.9 and res.within_one["professionalism"] > 0.9
    scores = llm_ctx.workspace.get(res.artifacts["scores"]).table()
    assert scores.num_rows == 61 and "prrc_professionalism" in scores.column_names
    assert res.llm_calls >= 40 and "Rejected answers: professionalism" in res.summary
    sent = len(openai_server.requests)
    again = _run(llm_ctx.model_copy(update={"use_cache": True}), corpus=str(corpus), dimensions=["professionalism"],
                 sample_size=40, embeddings=str(emb))
    assert again.cached and len(openai_server.requests) == sent


def test_budget_smaller_than_the_sample(tmp_path, llm_ctx, openai_server):
    corpus, emb = _pool(tmp_path)
    openai_server.responder = lambda m, p: json.dumps({"justification": "fine", "score": 3})
    ctx = llm_ctx.model_copy(update={"max_llm_calls": 10})
    res = _run(ctx, corpus=str(corpus), dimensions=["readability"], sample_size=30, embeddings=str(emb))
    assert res.rated == {"readability": 10} and res.not_rated == {"readability": 20} and res.partial
    assert len(openai_server.requests) == 10 and "budget" in res.summary
    assert res.distill_skipped.get("readability", "").startswith("need at least 10 ratings with 2 different")
    # the 10 answers already paid for are reused: a larger sample needs only the new ones
    ctx2 = llm_ctx.model_copy(update={"max_llm_calls": 21})
    res2 = _run(ctx2, corpus=str(corpus), dimensions=["readability"], sample_size=31, embeddings=str(emb))
    assert res2.rated == {"readability": 31} and not res2.not_rated and len(openai_server.requests) == 31


def test_offline_says_so_and_distils_supplied_ratings(tmp_path, monkeypatch):
    for var in ("CURATE_TOOL_LLM_BASE_URL", "CURATE_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    corpus, emb = _pool(tmp_path)
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False)
    with pytest.raises(ResourceUnavailable, match="no LLM is configured"):
        _run(ctx, corpus=str(corpus), embeddings=str(emb))
    docs = [json.loads(x) for x in corpus.read_text().splitlines()]
    ratings = write_jsonl(tmp_path / "ratings.jsonl", [{"id": d["id"], "reasoning": _grade(d["text"])}
                                                       for d in docs[:50]])
    res = _run(ctx, corpus=str(corpus), ratings=str(ratings), dimensions=["reasoning", "cleanliness"],
               embeddings=str(emb), distill_model="logistic")
    assert res.source == "ratings" and res.rated == {"reasoning": 50}
    assert res.spearman["reasoning"] > 0.9
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "d000", "reasoning": 7}])
    with pytest.raises(BadInput, match="outside 1-5"):
        _run(ctx, corpus=str(corpus), ratings=str(bad), dimensions=["reasoning"], embeddings=str(emb))
    none = write_jsonl(tmp_path / "none.jsonl", [{"id": "d000", "other": 3}])
    with pytest.raises(BadInput, match="none of the dimension columns"):
        _run(ctx, corpus=str(corpus), ratings=str(none), dimensions=["reasoning"], embeddings=str(emb))


def test_distil_against_a_known_linear_grade():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = np.clip(np.rint(3 + 1.2 * X[:, 0] - 0.8 * X[:, 2]), 1, 5)
    d = core.distil(X[:200], y[:200], X, model="ridge")
    assert d.spearman > 0.85 and d.within_one > 0.9
    assert core.spearman(d.predict_pool[200:], y[200:]) > 0.85
    with pytest.raises(ValueError, match="at least 10"):
        core.distil(X[:5], y[:5], X)
