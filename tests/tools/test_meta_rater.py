"""Meta-rater: normalisation and selection against hand values, the regressors against known
functions, synthetic recovery of a hidden sparse quality (research notes 4(e)2), the tool end to end
(oracle proxy, cache/resume, row order, bad input), and a real proxy run on shared documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import write_jsonl
from tools.contract import ToolContext
from tools.errors import BadInput
from tools.meta_rater import core


def _run(ctx, **kw):
    from tools import meta_rater

    return meta_rater.run(kw, ctx)


@pytest.fixture
def ctx(tmp_path):
    return ToolContext(workspace_dir=tmp_path / "ws", show_progress=False)


# ------------------------------------------------------------------------------- core pieces


def test_rank_normalization_hand_values():
    X = np.array([[3.0, 1.0, 5.0], [1.0, 1.0, np.nan], [2.0, 1.0, 5.0], [2.0, 1.0, 7.0]])
    Xn, const = core.normalize_scores(X, "rank")
    # column 0: ranks 4, 1, 2.5, 2.5 (ties share the mean rank) over n=4
    assert Xn[:, 0].tolist() == [1.0, 0.25, 0.625, 0.625]
    assert const.tolist() == [False, True, False]
    assert Xn[:, 1].tolist() == [0, 0, 0, 0]
    # column 2: finite values 5, 5, 7 -> ranks 1.5, 1.5, 3 over 3; the NaN gets the middle 0.5
    assert Xn[:, 2].tolist() == [0.5, 0.5, 0.5, 1.0]


def test_robust_z_hand_values():
    col = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    Xn, _ = core.normalize_scores(col[:, None], "robust_z")
    mad = 1.4826 * 1.0  # median 3, |x - 3| = 2, 1, 0, 1, 97 -> median 1
    assert Xn[:, 0] == pytest.approx([-2 / mad, -1 / mad, 0, 1 / mad, 3.0])  # 97/mad clipped to 3


def test_select_top_budget_and_ties():
    s = np.array([0.5, 0.9, 0.9, 0.1])
    tok = np.array([10, 5, 5, 100])
    assert core.select_top(s, tok, 10).tolist() == [1, 2]  # ties: lower index first; 5 + 5 reaches 10
    assert core.select_top(s, tok, 11).tolist() == [1, 2, 0]  # the document that passes the budget is kept
    assert core.select_top(s, tok, 1e9).tolist() == [1, 2, 0, 3]


def test_weights_on_the_simplex_and_seeded():
    W = core.sample_weights(5, 2000, np.random.default_rng(0))
    assert W.shape == (2000, 5) and np.allclose(W.sum(1), 1) and (W >= 0).all()
    assert np.array_equal(W, core.sample_weights(5, 2000, np.random.default_rng(0)))
    # the concentration varies: some draws are near one-hot, some near uniform
    assert W.max(1).max() > 0.99 and W.max(1).min() < 0.5


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b[:10] = b[0]  # ties
    assert core.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)


@pytest.mark.parametrize("kind", ["ridge", "lightgbm"])
def test_regressors_rank_a_known_function(kind):
    rng = np.random.default_rng(0)
    W = core.sample_weights(4, 96, rng)
    y = (W[:, 0] - 0.5) ** 2 + 0.3 * W[:, 1] + rng.normal(0, 0.005, 96)
    fit = core.fit_regressor(W, y, kind=kind)
    assert fit.name == kind and fit.spearman > 0.8
    Wt = core.sample_weights(4, 500, np.random.default_rng(9))
    yt = (Wt[:, 0] - 0.5) ** 2 + 0.3 * Wt[:, 1]
    assert core.spearman(fit.predict(Wt), yt) > 0.8


def test_auto_uses_ridge_for_few_runs():
    rng = np.random.default_rng(0)
    W = core.sample_weights(3, 16, rng)
    fit = core.fit_regressor(W, W[:, 0], kind="auto")
    assert fit.name == "ridge" and list(fit.candidates) == ["ridge"]
    with pytest.raises(ValueError, match="at least 6"):
        core.fit_regressor(W[:4], W[:4, 0])


# ------------------------------------------------------------------------------- synthetic recovery


def _synthetic(n=20_000, k=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k))
    w_true = np.zeros(k)
    w_true[[1, 4, 6]] = [0.5, 0.3, 0.2]
    quality = X @ w_true + 0.3 * rng.normal(size=n)
    return X, w_true, quality, rng


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_recovery(seed):
    X, w_true, q, rng = _synthetic(seed=seed)
    n = X.shape[0]
    tok = np.ones(n)
    budget = 0.1 * n
    Xn, _ = core.normalize_scores(X)

    def oracle(_w, idx):  # research notes 4(e)2: -mean true quality of the top 10% + N(0, 0.01)
        return -q[idx].mean() + rng.normal(0, 0.01)

    fit = core.metarater_fit(Xn, tok, budget, oracle, n_proxies=64, seed=seed, n_search=50_000)
    assert fit.fit.spearman > 0.8
    # held-out check of the regressor on fresh weight vectors, measured without noise
    W_test = core.sample_weights(8, 40, np.random.default_rng(100 + seed))
    measured = [-q[core.select_top(Xn @ w, tok, budget)].mean() for w in W_test]
    assert core.spearman(fit.fit.predict(W_test), measured) > 0.8
    learned = q[core.select_top(Xn @ fit.weights, tok, budget)].mean()
    optimum = q[core.select_top(X @ w_true, tok, budget)].mean()  # the hidden weights on the raw signals
    singles = [q[core.select_top(X[:, j], tok, budget)].mean() for j in range(X.shape[1])]
    assert learned >= 0.95 * optimum
    assert learned > max(singles)
    assert set(np.argsort(-fit.weights)[:2]) <= {1, 4, 6}


# ------------------------------------------------------------------------------- the tool


def _pool(tmp_path, n=200, seed=0, shuffle=False):
    """Documents with 4 signals; hidden quality = signal a + signal c; a constant and a text column too."""
    rng = np.random.default_rng(seed)
    ids = [f"doc-{i:04d}" for i in range(n)]
    sig = rng.normal(size=(n, 4))
    quality = sig[:, 0] + sig[:, 2]
    rows = [{"id": ids[i], "text": f"document {i} " + "word " * int(5 + 20 * rng.random()),
             "domain": "ab"[i % 2]} for i in range(n)]
    if shuffle:
        random.Random(1).shuffle(rows)
    corpus = write_jsonl(tmp_path / ("shuffled.jsonl" if shuffle else "pool.jsonl"), rows)
    tbl = pa.table({"id": ids, "a": sig[:, 0], "b": sig[:, 1], "c": sig[:, 2], "d": sig[:, 3],
                    "flat": np.ones(n), "quality": quality})
    path = tmp_path / "signals.parquet"
    pq.write_table(tbl, path)
    return corpus, path, quality


def test_tool_oracle_learns_the_hidden_signals(tmp_path, ctx):
    corpus, sig, quality = _pool(tmp_path)
    res = _run(ctx, corpus=str(corpus), scores=str(sig), proxy="oracle", oracle_column="quality",
               n_proxies=32, n_search=20_000, fraction=0.3)
    assert res.dropped_signals == {"flat": "zero variance"}
    assert set(res.weights) == {"a", "b", "c", "d"} and sum(res.weights.values()) == pytest.approx(1)
    assert set(res.top_signals[:2]) == {"a", "c"}
    assert res.spearman > 0.8
    assert res.learned_loss < res.random_loss
    ws = ctx.workspace
    sel = ws.get(res.artifacts["selection"]).table()
    scores = ws.get(res.artifacts["scores"]).table()
    assert scores.num_rows == 200 and set(scores.column_names) >= {"id", "meta_rater_score"}
    assert {"plot_weights", "plot_fit", "plot_histograms", "proxy_runs", "extremes"} <= set(res.artifacts)
    assert ws.get(res.artifacts["plot_weights"]).kind == "plot"
    runs = ws.get(res.artifacts["proxy_runs"]).table()
    assert runs.num_rows == 32 and "loss" in runs.column_names
    ext = ws.get(res.artifacts["extremes"]).table().to_pydict()
    assert ext["position"].count("top") == 10
    # selection = the best documents by the learned score, ~30% of the bytes
    q = dict(zip([f"doc-{i:04d}" for i in range(200)], quality, strict=True))
    sel_q = np.mean([q[i] for i in sel.column("id").to_pylist()])
    assert sel_q > np.mean(quality) + 0.8
    assert "a" in res.summary and len(res.summary) <= 600
    # the selection's bookkeeping (tools.selection.record_selection): domain counts and pool shares
    doms = sel.column("domain").to_pylist()
    assert res.domain_counts == {d: doms.count(d) for d in ("a", "b") if d in doms} and sum(res.domain_counts.values()) == res.k
    assert res.pool_domain_share == {"a": 0.5, "b": 0.5}
    metrics = ws.get(res.artifacts["selection"]).manifest["metrics"]
    assert metrics["domain_counts"] == res.domain_counts and metrics["pool_domain_share"] == {"a": 0.5, "b": 0.5}


def test_tool_bigram_caches_and_resumes_runs(tmp_path, ctx):
    corpus, sig, _ = _pool(tmp_path, n=120)
    args = dict(corpus=str(corpus), scores=str(sig), columns=["a", "b", "c"], proxy="bigram", n_proxies=12,
                n_search=2000, proxy_tokens=2000)
    first = _run(ctx, **args)
    cache = ctx.workspace.cache_dir("meta_rater")
    files = sorted(cache.glob("*.json"))
    assert 2 <= len(files) <= 14 and first.proxy_runs_reused <= 14 - len(files)
    files[0].unlink()  # as if the run had died before this proxy finished
    ctx2 = ctx.model_copy(update={"use_cache": False})
    again = _run(ctx2, **args)
    assert again.proxy_runs_reused >= len(files) - 1
    assert again.weights == first.weights and again.learned_loss == first.learned_loss


def test_tool_row_order_does_not_matter(tmp_path, ctx):
    corpus, sig, _ = _pool(tmp_path, n=100)
    shuffled, _, _ = _pool(tmp_path, n=100, shuffle=True)
    args = dict(scores=str(sig), proxy="oracle", oracle_column="quality", n_proxies=16, n_search=2000)
    a = _run(ctx, corpus=str(corpus), **args)
    b = _run(ctx, corpus=str(shuffled), **args)
    assert a.weights == b.weights
    ta = ctx.workspace.get(a.artifacts["selection"]).table().column("id").to_pylist()
    tb = ctx.workspace.get(b.artifacts["selection"]).table().column("id").to_pylist()
    assert ta == tb


def test_tool_bad_input(tmp_path, ctx):
    corpus, sig, _ = _pool(tmp_path, n=60)
    with pytest.raises(BadInput, match="at least 2 signals"):
        _run(ctx, corpus=str(corpus), scores=str(sig), columns=["a", "flat"], proxy="bigram")
    with pytest.raises(BadInput, match="at least 2 signals"):
        _run(ctx, corpus=str(corpus), scores=str(sig), columns=["a"], proxy="bigram")
    with pytest.raises(BadInput, match="columns"):
        _run(ctx, corpus=str(corpus), scores=str(sig), columns=["a", "nope"], proxy="bigram")
    with pytest.raises(BadInput, match="oracle_column"):
        _run(ctx, corpus=str(corpus), scores=str(sig), proxy="oracle")
    bad = tmp_path / "noid.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0]}), bad)
    with pytest.raises(BadInput, match="no 'id' column"):
        _run(ctx, corpus=str(corpus), scores=str(bad), proxy="bigram")
    # empty and whitespace-only documents are skipped and counted, the rest still runs
    rows = [{"id": f"doc-{i:04d}", "text": " \n " if i < 5 else f"text {i} " * 5} for i in range(60)]
    blanks = write_jsonl(tmp_path / "blanks.jsonl", rows)
    res = _run(ctx, corpus=str(blanks), scores=str(sig), columns=["a", "b"], proxy="bigram", n_proxies=8,
               n_search=1000, proxy_tokens=1000)
    assert res.rows.skipped.get("meta_rater_empty_text") == 5 and res.pool_size == 55
    few = write_jsonl(tmp_path / "few.jsonl", rows[:12])
    with pytest.raises(BadInput, match="at least 10"):
        _run(ctx, corpus=str(few), scores=str(sig), columns=["a", "b"], proxy="bigram")


# ------------------------------------------------------------------------------- real documents


def _real_pool(raw: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Wikipedia paragraphs, GSM8K, MBPP code, PubMed abstracts; target: other Wikipedia paragraphs.
    Six cheap text statistics are the signals."""
    squad = json.loads((raw / "squad_v2_dev_cs224n" / "dev-v2.0.json").read_text())
    wiki = [p["context"] for a in squad["data"] for p in a["paragraphs"]]
    gsm = [json.loads(x) for x in (raw / "gsm8k" / "test.jsonl").read_text().splitlines()[:100]]
    mbpp = [json.loads(x) for x in (raw / "mbpp" / "mbpp.jsonl").read_text().splitlines()[:100]]
    pubmed = list(json.loads((raw / "pubmedqa" / "ori_pqal.json").read_text()).values())[:100]
    sources = {"wiki": wiki[:100], "math": [g["question"] + "\n" + g["answer"] for g in gsm],
               "code": [m["text"] + "\n" + m["code"] for m in mbpp],
               "pubmed": [" ".join(p["CONTEXTS"]) for p in pubmed]}
    rows = [{"id": f"{d}-{i}", "text": t, "domain": d} for d, ts in sources.items() for i, t in enumerate(ts)]
    corpus = write_jsonl(tmp_path / "pool.jsonl", rows)
    target = write_jsonl(tmp_path / "target.jsonl", [{"id": f"t{i}", "text": t} for i, t in enumerate(wiki[300:340])])
    texts = [r["text"] for r in rows]
    n = np.array([max(len(t), 1) for t in texts], dtype=float)
    tbl = pa.table({
        "id": [r["id"] for r in rows],
        "digit_frac": [sum(c.isdigit() for c in t) for t in texts] / n,
        "alpha_frac": [sum(c.isalpha() for c in t) for t in texts] / n,
        "symbol_frac": [sum(not c.isalnum() and not c.isspace() for c in t) for t in texts] / n,
        "newline_frac": [t.count("\n") for t in texts] / n,
        "upper_frac": [sum(c.isupper() for c in t) for t in texts] / n,
        "mean_word_len": [np.mean([len(w) for w in t.split()]) for t in texts],
    })
    sig = tmp_path / "signals.parquet"
    pq.write_table(tbl, sig)
    return corpus, target, sig


def test_real_documents_bigram_proxy(shared_raw, tmp_path, ctx):
    corpus, target, sig = _real_pool(shared_raw, tmp_path)
    res = _run(ctx, corpus=str(corpus), scores=str(sig), validation=str(target), proxy="bigram", n_proxies=24,
               proxy_tokens=30_000, fraction=0.25, n_search=20_000)
    assert res.learned_loss < res.random_loss
    assert res.domain_counts.get("wiki", 0) > 0.4 * res.k  # the target is Wikipedia prose


@pytest.mark.slow
def test_real_documents_transformer_proxy(shared_raw, tmp_path, ctx):
    corpus, target, sig = _real_pool(shared_raw, tmp_path)
    res = _run(ctx, corpus=str(corpus), scores=str(sig), validation=str(target), proxy="transformer", n_proxies=16,
               proxy_tokens=40_000, fraction=0.25, n_search=20_000, max_validation_docs=40)
    assert res.learned_loss < res.random_loss


@pytest.mark.slow
def test_real_documents_chain_from_quality_signals(shared_raw, tmp_path, ctx):
    """quality_signals -> meta_rater on the real pool: the scores artifact id is the input."""
    from tools import quality_signals

    corpus, target, _ = _real_pool(shared_raw, tmp_path)
    qs = quality_signals.run({"corpus": str(corpus)}, ctx)
    res = _run(ctx, corpus=str(corpus), scores=qs.artifacts["scores"], validation=str(target), proxy="bigram",
               n_proxies=48, proxy_tokens=30_000, fraction=0.25, n_search=20_000)
    assert res.learned_loss < res.random_loss and res.search_loss < res.random_loss
    assert "gopher_pass" in res.weights or "gopher_pass" in res.dropped_signals
    assert set(res.weights) | set(res.dropped_signals) == set(qs.score_columns)


def test_tool_same_result_for_any_worker_count(tmp_path):
    corpus, sig, _ = _pool(tmp_path, n=80)
    args = dict(corpus=str(corpus), scores=str(sig), columns=["a", "b", "c"], proxy="bigram", n_proxies=10,
                n_search=2000, proxy_tokens=2000)
    one = _run(ToolContext(workspace_dir=tmp_path / "w1", show_progress=False, num_workers=1), **args)
    two = _run(ToolContext(workspace_dir=tmp_path / "w2", show_progress=False, num_workers=2), **args)
    assert one.weights == two.weights and one.learned_loss == two.learned_loss and one.spearman == two.spearman


def test_tool_joins_several_scores_artifacts(tmp_path, ctx):
    corpus, sig, quality = _pool(tmp_path, n=60)
    ids = [f"doc-{i:04d}" for i in range(60)]
    t = pq.read_table(sig)
    first = tmp_path / "first.parquet"
    pq.write_table(t.select(["id", "a", "b", "quality"]), first)
    second = tmp_path / "second.jsonl"  # another format, half the ids, a clashing column name
    second.write_text("".join(json.dumps({"id": i, "a": float(v), "c": float(c)}) + "\n"
                              for i, v, c in zip(ids[:30], t.column("d").to_pylist()[:30],
                                                 t.column("c").to_pylist()[:30], strict=True)))
    res = _run(ctx, corpus=str(corpus), scores=[str(first), str(second)], proxy="oracle", oracle_column="quality",
               n_proxies=12, n_search=2000)
    assert set(res.weights) == {"a", "b", "a_1", "c"} and res.pool_size == 60
