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


# ------------------------------------------------------------------------------- distillation by encoder fine-tuning

_TOPICS = {  # the grade is the topic: an obvious textual property a fine-tuned encoder must pick up
    5: ["The theorem follows from the lemma by induction on n.", "We prove the bound with a spectral argument.",
        "Let G be a finite group and H a normal subgroup of G."],
    3: ["The match ended two to one after extra time.", "The striker scored in the final minute.",
        "Fans cheered as the team lifted the cup."],
    1: ["Mix the flour and sugar, then bake for twenty minutes.", "Add salt to the soup and stir well.",
        "Spread butter on the toast and serve it warm."],
}


def _topic_docs(n=40):
    ids, texts, grades = [], [], []
    for i in range(n):
        g = (5, 3, 1)[i % 3]
        ids.append(f"t{i:02d}")
        texts.append(f"{_TOPICS[g][(i // 3) % 3]} Note {i}.")
        grades.append(g)
    return ids, texts, np.array(grades, dtype=np.float64)


def test_fold_of_is_by_id():
    ids = [f"d{i}" for i in range(200)]
    f = core.fold_of(ids, 5, 0)
    assert f.shape == (200,) and set(f.tolist()) == set(range(5)) and np.bincount(f).min() > 20
    sub = ids[::3]  # a dimension rated on a subset holds out the same documents
    assert np.array_equal(core.fold_of(sub, 5, 0), f[::3])
    assert not np.array_equal(core.fold_of(ids, 5, 1), f)


def test_encoder_distillation_tiny_cpu():
    from tools.prrc_rate.finetune import distil_encoder

    ids, texts, y = _topic_docs()
    pool = [*texts, "Whisk two eggs with milk for the batter.", "The proof uses a compactness lemma."]
    kw = {"ids": ids, "device": "cpu", "epochs": 1, "batch_size": 32, "max_length": 32, "seed": 0, "threads": 1}
    r = distil_encoder(texts, y[:, None], pool, **kw)
    fold = core.fold_of(ids, core.FOLDS, 0)
    fits = [np.sum(fold != f) for f in range(core.FOLDS) if np.any(fold == f)] + [40]
    assert r.predict_pool.shape == (42, 1) and r.oof.shape == (40, 1) and r.device == "cpu"
    assert r.steps == sum(-(-n // 32) for n in fits)  # one epoch per fit: out-of-fold fits, then the full one
    assert np.all((r.predict_pool >= 1) & (r.predict_pool <= 5))
    assert len(r.spearman) == len(r.within_one) == 1 and np.isfinite(r.spearman[0]) and 0 <= r.within_one[0] <= 1
    # held out on the ridge rater's folds, it beats the constant (training-fold mean) predictor
    const = np.array([y[fold != f].mean() for f in fold])
    assert np.mean((r.oof[:, 0] - y) ** 2) < 0.5 * np.mean((const - y) ** 2)
    assert r.spearman[0] > 0.8
    assert r.predict_pool[40, 0] < r.predict_pool[41, 0]  # unseen cooking text below unseen mathematics
    again = distil_encoder(texts, y[:, None], pool, **kw)
    assert np.array_equal(again.predict_pool, r.predict_pool) and np.array_equal(again.oof, r.oof)


def test_encoder_distillation_through_the_tool(tmp_path):
    ids, texts, y = _topic_docs()
    corpus = write_jsonl(tmp_path / "pool.jsonl", [{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)]
                         + [{"id": "u0", "text": "Whisk two eggs with milk for the batter."}])
    ratings = write_jsonl(tmp_path / "r.jsonl", [{"id": i, "reasoning": g, "readability": 3 + (k % 2)}
                                                 for k, (i, g) in enumerate(zip(ids, y.tolist(), strict=True))])
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, num_workers=1, device="cpu")
    res = _run(ctx, corpus=str(corpus), ratings=str(ratings), dimensions=["reasoning", "readability"],
               distill_model="encoder", encoder_epochs=1)
    assert res.distilled_with == "encoder" and res.distill_device == "cpu"
    assert set(res.spearman) == {"reasoning", "readability"} and res.spearman["reasoning"] > 0.8
    tbl = ctx.workspace.get(res.artifacts["scores"]).table()
    assert tbl.num_rows == 41 and {"prrc_reasoning", "prrc_readability"} <= set(tbl.column_names)
    assert "Distilled encoder rater" in res.summary
    # on a CPU 'auto' is the ridge rater (the encoder is the GPU default)
    auto = _run(ctx, corpus=str(corpus), ratings=str(ratings), dimensions=["reasoning"])
    assert auto.distilled_with == "ridge" and auto.distill_device is None


@pytest.mark.gpu
def test_encoder_distillation_on_cuda():
    from tools.prrc_rate.finetune import distil_encoder

    ids, texts, y = _topic_docs(90)
    r = distil_encoder(texts, y[:, None], texts, ids=ids, device="cuda", epochs=2, seed=0)
    assert r.device.startswith("cuda") and r.predict_pool.shape == (90, 1) and r.spearman[0] > 0.8


def _real_rated(raw, n_per=60):
    """Wikipedia paragraphs, GSM8K, MBPP, PubMed abstracts; the grade is the document's share of long words
    (more than 6 letters: lexical sophistication) in quintiles, a property of the text itself."""
    squad = json.loads((raw / "squad_v2_dev_cs224n" / "dev-v2.0.json").read_text())
    wiki = [p["context"] for a in squad["data"] for p in a["paragraphs"]][:n_per]
    gsm = [json.loads(x) for x in (raw / "gsm8k" / "test.jsonl").read_text().splitlines()[:n_per]]
    mbpp = [json.loads(x) for x in (raw / "mbpp" / "mbpp.jsonl").read_text().splitlines()[:n_per]]
    pubmed = list(json.loads((raw / "pubmedqa" / "ori_pqal.json").read_text()).values())[:n_per]
    texts = (wiki + [g["question"] + "\n" + g["answer"] for g in gsm] + [m["text"] + "\n" + m["code"] for m in mbpp]
             + [" ".join(p["CONTEXTS"]) for p in pubmed])
    long = np.array([np.mean([len(re.sub(r"[^A-Za-z]", "", w)) > 6 for w in t.split()] or [0]) for t in texts])
    grade = 1 + np.searchsorted(np.quantile(long, [0.2, 0.4, 0.6, 0.8]), long, side="right")
    return [f"r{i:03d}" for i in range(len(texts))], texts, grade.astype(np.float64)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # about 12 minutes on 2 heavily shared cores (2026-12-01)
def test_encoder_vs_ridge_on_real_documents(shared_raw):
    """160 real documents, a grade from their text; ridge on frozen MiniLM embeddings vs the fine-tuned
    encoder, on the same held-out folds. Measured 2026-12-01 (CPU, 1 thread): ridge 0.781, encoder 0.788."""
    from tools.embed import encode_texts
    from tools.proxy_lm import _threads
    from tools.prrc_rate.finetune import distil_encoder

    ids, texts, y = _real_rated(shared_raw, 40)
    with _threads(1):
        X = encode_texts(texts, device="cpu")
    ridge = core.distil(X, y, X, ids=ids, seed=0)
    enc = distil_encoder(texts, y[:, None], texts, ids=ids, device="cpu", epochs=2, max_length=128, seed=0,
                         threads=1)
    print(f"\nheld-out Spearman on {len(ids)} real documents: ridge {ridge.spearman:.3f} "
          f"(within one {ridge.within_one:.0%}), encoder {enc.spearman[0]:.3f} (within one {enc.within_one[0]:.0%})")
    assert ridge.spearman > 0.6 and enc.spearman[0] > 0.6
    assert enc.spearman[0] > ridge.spearman - 0.05

def test_a_budget_stopped_run_is_not_cached_as_finished(tmp_path, llm_ctx, openai_server):
    corpus, emb = _pool(tmp_path)
    openai_server.responder = lambda m, p: json.dumps({"justification": "fine", "score": 2 + len(m[-1]["content"]) % 3})
    req = {"corpus": str(corpus), "dimensions": ["readability"], "sample_size": 30, "embeddings": str(emb)}
    first = _run(llm_ctx.model_copy(update={"max_llm_calls": 12}), **req)
    assert first.partial and first.rated == {"readability": 12} and not first.cached
    kept = llm_ctx.workspace.get(first.artifacts["ratings"]).table()  # what was rated is an artifact
    assert kept.num_rows == 12
    # the same request again, with budget to spare: it runs (not the cached partial result), and only
    # the 18 answers not yet paid for are sent
    second = _run(llm_ctx.model_copy(update={"max_llm_calls": 100}), **req)
    assert not second.cached and not second.partial and second.rated == {"readability": 30}
    assert second.llm_calls == 18 and len(openai_server.requests) == 30
    assert llm_ctx.workspace.exists(first.artifacts["ratings"])
    third = _run(llm_ctx, **req)  # now finished: a cached run, nothing sent
    assert third.cached and len(openai_server.requests) == 30 and third.rated == {"readability": 30}
