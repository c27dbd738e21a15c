"""propose_mixture: every method end to end on small corpora; the proxy LM environment on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools.contract import ToolContext
from tools.errors import BadInput


def _real_corpus(raw: Path, out: Path, n: int = 40) -> Path:
    """math (GSM8K), code (MBPP) and general text (SQuAD contexts) as one JSONL pool."""
    rows = []
    with open(raw / "gsm8k" / "train.jsonl") as fh:
        for i, line in zip(range(n), fh, strict=False):
            r = json.loads(line)
            rows.append({"id": f"math-{i}", "domain": "math", "text": r["question"] + "\n" + r["answer"]})
    with open(raw / "mbpp" / "mbpp.jsonl") as fh:
        for i, line in zip(range(n), fh, strict=False):
            r = json.loads(line)
            rows.append({"id": f"code-{i}", "domain": "code", "text": r["text"] + "\n" + r["code"]})
    squad = json.loads((raw / "squad_v2_dev_cs224n" / "dev-v2.0.json").read_text())
    ctxs = [p["context"] for art in squad["data"] for p in art["paragraphs"]]
    rows += [{"id": f"web-{i}", "domain": "web", "text": t} for i, t in enumerate(ctxs[: 2 * n])]
    path = out / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _toy(out: Path, sizes: dict[str, int]) -> Path:
    rows = [{"id": f"{d}-{i}", "domain": d, "text": f"{d} document {i} " + "word " * 40}
            for d, n in sizes.items() for i in range(n)]
    p = out / "toy.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.fixture
def ctx(tmp_path):
    return ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, device="cpu")


def test_temperature_stages_tokens_and_plot(tmp_path, ctx):
    from tools import propose_mixture as pm

    pool = _toy(tmp_path, {"web": 80, "code": 15, "math": 5})
    res = pm.run({"corpus": str(pool), "method": "temperature", "temperature": 2.0, "stages": 3,
                  "target_domains": ["math"], "token_budget": 3000, "max_epochs": 2.0}, ctx)
    share = np.array([res.pool_share[d] for d in res.domains])
    tok = np.array([res.pool_tokens[d] for d in res.domains])
    assert res.domains == ["code", "math", "web"]
    want = np.sqrt(share) / np.sqrt(share).sum()
    assert np.allclose([res.stages[0][d] for d in res.domains], want, atol=2e-3)
    total = np.array([sum(t[d] for t in res.tokens) for d in res.domains])
    assert total.sum() == 3000
    assert (total <= 2.0 * tok + 1).all()  # the epochs cap over all stages
    ws = ctx.workspace
    doc = ws.get(res.artifacts["mixture"]).json()
    assert [s["stage"] for s in doc["stages"]] == [1, 2, 3]
    assert doc["fields"] == {"source": ["code", "web"], "target": ["math"]}
    assert ws.get(res.artifacts["plot"]).file().suffix == ".png"
    assert res.source_domains == ["code", "web"]


def test_epoch_cap_moves_weight_and_says_so(tmp_path, ctx):
    from tools import propose_mixture as pm

    pool = _toy(tmp_path, {"web": 80, "math": 4})
    res = pm.run({"corpus": str(pool), "method": "uniform", "stages": 2, "token_budget": 3000, "max_epochs": 1.0}, ctx)
    math_total = sum(t["math"] for t in res.tokens)
    assert math_total <= res.pool_tokens["math"] + 1
    assert res.corrections and "math" in res.corrections[0]
    assert res.weights["math"] < 0.5


def test_caps_floors_and_bad_input(tmp_path, ctx):
    from tools import propose_mixture as pm

    pool = _toy(tmp_path, {"web": 50, "code": 30, "math": 20})
    res = pm.run({"corpus": str(pool), "method": "proportional", "caps": {"web": 0.3}, "floors": {"math": 0.3},
                  "max_epochs": None}, ctx)
    assert res.weights["web"] == pytest.approx(0.3, abs=2e-3) and res.weights["math"] >= 0.3 - 2e-3
    assert res.corrections
    with pytest.raises(BadInput, match=r"propose_mixture\.caps.*\['wiki'\]"):
        pm.run({"corpus": str(pool), "method": "uniform", "caps": {"wiki": 0.5}}, ctx)
    with pytest.raises(BadInput, match=r"propose_mixture\.token_budget.*at least"):
        pm.run({"corpus": str(pool), "method": "uniform", "token_budget": 20, "stages": 4}, ctx)
    with pytest.raises(BadInput, match=r"propose_mixture\.token_budget.*epochs"):
        pm.run({"corpus": str(pool), "method": "uniform", "token_budget": 10**9}, ctx)
    with pytest.raises(BadInput, match=r"propose_mixture\.domains.*\['poetry'\]"):
        pm.run({"corpus": str(pool), "method": "uniform", "domains": ["web", "poetry"]}, ctx)
    with pytest.raises(BadInput, match=r"propose_mixture\.target_domains"):
        pm.run({"corpus": str(pool), "method": "uniform", "target_domains": ["maths"]}, ctx)
    single = _toy(tmp_path / "one", {"web": 10}) if (tmp_path / "one").mkdir() is None else None
    with pytest.raises(BadInput, match="at least two domains"):
        pm.run({"corpus": str(single), "method": "uniform"}, ctx)
    empty_text = tmp_path / "empty.jsonl"
    empty_text.write_text(json.dumps({"id": "a", "domain": "web", "text": "hello there"}) + "\n"
                          + json.dumps({"id": "b", "domain": "code", "text": ""}) + "\n")
    with pytest.raises(BadInput, match=r"no text.*\['code'\]"):
        pm.run({"corpus": str(empty_text), "method": "uniform"}, ctx)


def test_regmix_from_user_tables(tmp_path, ctx):
    """Tables of proxy runs whose loss is lowest near (0.2, 0.5, 0.3): the proposal lands near it."""
    import pandas as pd

    from tools import propose_mixture as pm

    pool = _toy(tmp_path, {"web": 50, "code": 30, "math": 20})
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 300)
    star = np.array([0.2, 0.5, 0.3])  # code, math, web
    loss = 3.0 + ((X - star) ** 2).sum(1) + rng.normal(0, 0.002, 300)
    pd.DataFrame({"index": range(300), "train_code": X[:, 0], "train_math": X[:, 1], "train_web": X[:, 2]}
                 ).to_csv(tmp_path / "mix.csv", index=False)
    pd.DataFrame({"index": range(300), "metric/val_loss": loss}).to_csv(tmp_path / "loss.csv", index=False)
    res = pm.run({"corpus": str(pool), "method": "regmix", "proxy_runs": str(tmp_path / "mix.csv"),
                  "proxy_metrics": str(tmp_path / "loss.csv"), "max_epochs": None}, ctx)
    w = np.array([res.weights[d] for d in ["code", "math", "web"]])
    assert np.abs(w - star).sum() < 0.3, w
    assert res.evidence["runs"] == 300 and res.evidence["fit"]["spearman_heldout"] > 0.8
    pd.DataFrame({"index": range(300), "train_code": X[:, 0], "train_web": X[:, 2]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(BadInput, match=r"proxy_runs.*no mixture column for \['math'\]"):
        pm.run({"corpus": str(pool), "method": "regmix", "proxy_runs": str(tmp_path / "bad.csv"),
                "proxy_metrics": str(tmp_path / "loss.csv")}, ctx)


def test_agent_on_the_simulator_and_reuse(tmp_path, ctx):
    from tools import propose_mixture as pm

    pool = _toy(tmp_path, {"web": 60, "code": 20, "math": 20})
    args = {"corpus": str(pool), "method": "agent", "target_domains": ["math"], "stages": 8,
            "n_trajectories": 60, "agent_steps": 300, "max_epochs": None, "token_budget": 4000}
    res = pm.run(args, ctx)
    ev = res.evidence
    assert len(res.stages) == 8 and ev["agent"].startswith("agent-")
    assert ev["policy_return"] > ev["baseline_returns"]["uniform"]
    # within the source field the weights keep the pool's ratio (web : code = 3 : 1)
    s0 = res.stages[0]
    if s0["code"] > 1e-6:
        assert s0["web"] / s0["code"] == pytest.approx(3.0, rel=0.05)
    again = pm.run({**args, "agent": ev["agent"], "n_trajectories": 2}, ctx)
    assert again.stages == res.stages and again.evidence["runs"] == 0
    # the saved agent acts on fields, so it serves another domain space without retraining
    other = _toy(tmp_path / "o", {"news": 30, "legal": 30, "forum": 10, "medicine": 20}) \
        if (tmp_path / "o").mkdir() is None else None
    moved = pm.run({"corpus": str(other), "method": "agent", "agent": ev["agent"], "target_domains": ["medicine"],
                    "stages": 8, "max_epochs": None, "token_budget": 4000}, ctx)
    assert moved.evidence["runs"] == 0 and len(moved.stages) == 8
    assert moved.evidence["policy_return"] > moved.evidence["baseline_returns"]["uniform"]
    with pytest.raises(BadInput, match="target_domains"):
        pm.run({**args, "target_domains": []}, ctx)


def test_proxy_env_on_real_domains(shared_raw, tmp_path):
    """The proxy LM environment over GSM8K / MBPP / SQuAD: training on math lowers math loss most."""
    from tools.corpus import read_table
    from tools.mixing.proxy_env import ProxyLMEnv
    from tools.proxy_lm import ProxyConfig

    pool = _real_corpus(shared_raw, tmp_path, n=30)
    t = read_table(str(pool))
    texts: dict[str, list[str]] = {}
    for d, x in zip(t.column("domain").to_pylist(), t.column("text").to_pylist(), strict=True):
        texts.setdefault(d, []).append(x)
    env = ProxyLMEnv(texts, source=["web", "code"], target=["math"], config=ProxyConfig(kind="bigram"), seed=0)
    fb0 = env.reset(0)
    fb1, r1 = env.step(np.array([1.0, 0.0, 0.0]), 20_000)  # domains: math, code, web in file order
    assert env.domains == ["math", "code", "web"]
    assert fb1[1] < fb0[1] and r1 == pytest.approx(fb0.sum() - fb1.sum())
    losses = env.domain_losses()
    env2 = ProxyLMEnv(texts, source=["web", "code"], target=["math"], config=ProxyConfig(kind="bigram"), seed=0)
    env2.reset(0)
    env2.step(np.array([0.0, 0.0, 1.0]), 20_000)
    assert losses["math"] < env2.domain_losses()["math"]  # math data teaches math more than web data does
    with pytest.raises(ValueError, match="summing to 1"):
        env.step(np.array([0.5, 0.6, 0.0]), 100)


def test_proxy_methods_on_real_domains(shared_raw, tmp_path, ctx):
    """DoReMi and RegMix through proxy runs (closed-form bigram proxy, CPU-fast) on real text."""
    from tools import propose_mixture as pm

    pool = _real_corpus(shared_raw, tmp_path, n=30)
    d = pm.run({"corpus": str(pool), "method": "doremi", "proxy_model": "bigram", "doremi_rounds": 4,
                "proxy_tokens": 8000, "max_epochs": None}, ctx)
    assert np.isclose(sum(d.weights.values()), 1) and d.evidence["rounds"] == 4
    assert set(d.evidence["final_excess"]) == {"code", "math", "web"}
    r = pm.run({"corpus": str(pool), "method": "regmix", "proxy_model": "bigram", "n_configs": 24,
                "proxy_tokens": 8000, "target_domains": ["math"], "max_epochs": None}, ctx)
    assert r.evidence["runs"] == 24 and np.isclose(sum(r.weights.values()), 1)


def test_proxy_env_trains_the_torch_lm_in_stages(shared_raw, tmp_path):
    """The default proxy (a tiny byte-level transformer): two stages of math lower the target loss."""
    from tools.corpus import read_table
    from tools.mixing.proxy_env import ProxyLMEnv

    pool = _real_corpus(shared_raw, tmp_path, n=12)
    t = read_table(str(pool))
    texts: dict[str, list[str]] = {}
    for d, x in zip(t.column("domain").to_pylist(), t.column("text").to_pylist(), strict=True):
        texts.setdefault(d, []).append(x)
    env = ProxyLMEnv(texts, source=["web", "code"], target=["math"], seed=0, max_val_docs=4)
    fb0 = env.reset(0)
    fb1, _ = env.step(np.array([0.8, 0.1, 0.1]), 8192)
    fb2, _ = env.step(np.array([0.8, 0.1, 0.1]), 8192)
    assert env.lm.stage == 2 and fb2[1] < fb1[1] < fb0[1]


def test_clusters_as_domains_when_the_corpus_has_none(tmp_path, ctx):
    """No domain column: k-means clusters of given embeddings become the domains."""
    from tools import propose_mixture as pm

    rows = [{"id": f"d{i:03d}", "text": f"document {i} " + "w " * (10 + i % 3)} for i in range(60)]
    pool = tmp_path / "nodomain.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng(0)
    centers = np.eye(8, dtype=np.float32)[:3] * 5
    vecs = np.stack([centers[i % 3] + rng.normal(0, 0.1, 8) for i in range(60)]).astype(np.float32)
    np.save(tmp_path / "emb.npy", vecs)
    with pytest.raises(BadInput, match="no domain column; pass clusters"):
        pm.run({"corpus": str(pool), "method": "uniform"}, ctx)
    res = pm.run({"corpus": str(pool), "method": "proportional", "clusters": 3, "embeddings": str(tmp_path / "emb.npy"),
                  "max_epochs": None}, ctx)
    assert len(res.domains) == 3 and all(d.startswith("cluster-") for d in res.domains)
    assert sum(json.loads(ctx.workspace.get(res.artifacts["mixture"]).file().read_text())["pool"]["docs"].values()) == 60
    assert all(n == 20 for n in ctx.workspace.get(res.artifacts["mixture"]).json()["pool"]["docs"].values())


def test_agent_over_proxy_lm_runs(shared_raw, tmp_path, ctx):
    """method=agent with trajectories from proxy LM runs (bigram proxy, a few trajectories)."""
    from tools import propose_mixture as pm

    pool = _real_corpus(shared_raw, tmp_path, n=20)
    res = pm.run({"corpus": str(pool), "method": "agent", "env": "proxy_lm", "proxy_model": "bigram",
                  "target_domains": ["math"], "stages": 3, "n_trajectories": 6, "agent_steps": 50,
                  "proxy_tokens": 4000, "max_epochs": None}, ctx)
    assert len(res.stages) == 3 and res.evidence["runs"] == 6
    assert set(res.expected_feedback[0]) == {"source_loss", "target_loss"}
    traj = ctx.workspace.get(res.evidence["trajectories"]).table()
    assert traj.num_rows == 18


@pytest.mark.gpu
def test_proxy_env_on_gpu(shared_raw, tmp_path):
    """The same environment with a larger proxy on CUDA (run where a GPU is present)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from tools.corpus import read_table
    from tools.mixing.proxy_env import ProxyLMEnv
    from tools.proxy_lm import ProxyConfig

    pool = _real_corpus(shared_raw, tmp_path, n=40)
    t = read_table(str(pool))
    texts: dict[str, list[str]] = {}
    for d, x in zip(t.column("domain").to_pylist(), t.column("text").to_pylist(), strict=True):
        texts.setdefault(d, []).append(x)
    cfg = ProxyConfig(device="cuda", d_model=256, n_layers=4, n_heads=8, context=128, batch_size=64)
    env = ProxyLMEnv(texts, source=["web", "code"], target=["math"], config=cfg, seed=0)
    fb0 = env.reset(0)
    fb1, _ = env.step(np.array([0.6, 0.2, 0.2]), 200_000)
    assert (fb1 < fb0).all()
