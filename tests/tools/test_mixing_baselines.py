"""Baselines: temperature sampling with an epochs cap, RegMix (sampler, regression, simulation, tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tools.mixing import baselines, regmix


def test_temperature_by_hand():
    sizes = np.array([900.0, 90.0, 10.0])
    assert np.allclose(baselines.temperature(sizes, 1.0), [0.9, 0.09, 0.01])
    p = np.sqrt([0.9, 0.09, 0.01])
    assert np.allclose(baselines.temperature(sizes, 2.0), p / p.sum())
    assert np.allclose(baselines.temperature(sizes, 1e6), 1 / 3, atol=1e-5)
    assert np.allclose(baselines.uniform(4), 0.25)


def test_epochs_cap_water_fills():
    sizes = np.array([1000.0, 100.0, 100.0])
    w0 = baselines.uniform(3)
    w, capped = baselines.cap_by_epochs(w0, sizes, total=600.0, max_epochs=1.0)
    # domains 2 and 3 hold 100 tokens each: at most 1/6 of 600; the rest goes to domain 1
    assert np.allclose(w, [4 / 6, 1 / 6, 1 / 6]) and capped.tolist() == [False, True, True]
    assert np.isclose(w.sum(), 1)
    w, capped = baselines.cap_by_epochs(w0, sizes, total=600.0, max_epochs=None)
    assert np.allclose(w, w0) and not capped.any()
    with pytest.raises(ValueError, match="more than 2 epochs"):
        baselines.cap_by_epochs(w0, sizes, total=5000.0, max_epochs=2.0)


def test_regmix_sampler_respects_usage_rounding_and_dedup():
    prior = np.array([0.6, 0.3, 0.05, 0.05])
    cfg = regmix.sample_configs(prior, 64, multiplier=50, max_usage=3.0, seed=1)
    assert cfg.shape[1] == 4 and len(cfg) <= 64
    assert np.allclose(cfg.sum(1), 1)
    assert (cfg <= np.minimum(3.0 * prior, 1.0) + 1e-3).all()
    units = cfg / 2e-4
    assert np.allclose(units, np.round(units), atol=1e-6)
    assert len({tuple(np.round(r, 6)) for r in cfg}) == len(cfg)
    assert np.array_equal(cfg, regmix.sample_configs(prior, 64, multiplier=50, max_usage=3.0, seed=1))


def test_regmix_finds_the_optimum_of_a_known_loss():
    """Loss = ||w - w*||^2: fit on sampled configs, simulate, the top mean lands near w*.

    (A linear ridge cannot: its optimum is always a vertex; that is why RegMix uses LightGBM.)
    """
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    star = np.array([0.1, 0.2, 0.3, 0.4])
    X = regmix.sample_configs(prior, 256, multiplier=20, seed=0)
    y = ((X - star) ** 2).sum(1)
    fit = regmix.fit_regressor(X, y, kind="lightgbm", val_fraction=0.1, num_iterations=400, learning_rate=0.05)
    assert fit.spearman_val > 0.8
    w, pred = regmix.simulate(fit, np.ones(4), n_sim=20_000, top_k=64)
    assert np.abs(w - star).sum() < 0.35, w
    assert np.isclose(w.sum(), 1)
    ridge = regmix.fit_regressor(X, y, kind="ridge")
    assert regmix.simulate(ridge, np.ones(4), n_sim=20_000, top_k=64)[0].max() > 0.9


def test_regmix_tables_ranks_held_out_runs(shared_raw):
    """LightGBM on the 512 1M-param runs ranks the 256 held-out 1M runs and the 64 1B runs (Pile-CC loss)."""
    R = shared_raw / "regmix"
    train = regmix.read_runs(R / "train_mixture_1m.csv", R / "train_pile_loss_1m.csv")
    test = regmix.read_runs(R / "test_mixture_1m.csv", R / "test_pile_loss_1m.csv")
    big = regmix.read_runs(R / "test_mixture_1B.csv", R / "test_pile_loss_1B.csv")
    assert (len(train.X), len(test.X), len(big.X)) == (512, 256, 64)
    y = regmix.metric_for(train, "pile_cc")
    out = {}
    for kind in ("ridge", "lightgbm"):
        fit = regmix.fit_regressor(train.X, y, kind=kind)
        out[kind] = (regmix.spearman(fit.predict(regmix.align(test, train.domains)), regmix.metric_for(test, "pile_cc")),
                     regmix.spearman(fit.predict(regmix.align(big, train.domains)), regmix.metric_for(big, "pile_cc")))
    print("spearman 1M/1B", out)
    assert out["ridge"][0] == pytest.approx(0.90, abs=0.01) and out["ridge"][1] == pytest.approx(0.88, abs=0.015)
    assert out["lightgbm"][0] >= out["ridge"][0] and out["lightgbm"][1] >= out["ridge"][1]


def test_proxy_run_tables_bad_input(tmp_path):
    mix = pd.DataFrame({"index": [0, 1, 2, 3, 4], "train_a": [.5, .2, .1, .7, .3], "train_b": [.5, .8, .9, .3, .7]})
    loss = pd.DataFrame({"index": [0, 1, 2, 3, 4], "metric/a_val_loss": [3.0, 3.2, 3.4, 2.9, 3.1]})
    mix.to_csv(tmp_path / "mix.csv", index=False)
    loss.to_parquet(tmp_path / "loss.parquet")
    runs = regmix.read_runs(tmp_path / "mix.csv", tmp_path / "loss.parquet")
    assert runs.domains == ["a", "b"] and list(runs.metrics) == ["a"]
    loss.drop(columns=["index"]).to_csv(tmp_path / "noindex.csv", index=False)
    with pytest.raises(KeyError, match="noindex.csv.*no 'index' column"):
        regmix.read_runs(tmp_path / "mix.csv", tmp_path / "noindex.csv")
    loss[["index"]].to_csv(tmp_path / "nometric.csv", index=False)
    with pytest.raises(KeyError, match="no metric column"):
        regmix.read_runs(tmp_path / "mix.csv", tmp_path / "nometric.csv")
    with pytest.raises(KeyError, match="metric 'zzz' not found"):
        regmix.metric_for(runs, "zzz")
    with pytest.raises(KeyError, match=r"no mixture column for \['c'\]"):
        regmix.align(runs, ["a", "c"])
    one = pd.DataFrame({"train_a": [1.0, 1.0], "a_loss": [3.0, 3.1]})
    one.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(KeyError, match="at least two mixture columns"):
        regmix.read_runs(tmp_path / "one.csv")


def test_doremi_update_by_hand_and_the_average():
    from tools.mixing import doremi

    a = np.array([0.5, 0.3, 0.2])
    ex = np.array([0.2, -0.1, 0.6])
    logits = np.log(a) + 1.0 * np.maximum(ex, 0)
    want = np.exp(logits) / np.exp(logits).sum()
    want = (1 - 1e-3) * want + 1e-3 / 3
    assert np.allclose(doremi.update(a, ex), want)
    # a proxy whose excess on a domain shrinks as it gets more weight: the average moves to the hard domain
    ref = np.array([1.0, 1.0, 1.0])
    hard = np.array([0.05, 0.05, 0.5])
    avg, hist, exs = doremi.doremi_weights(ref, lambda al: ref + hard / (1 + 5 * al), rounds=20, init=np.ones(3))
    assert len(hist) == 20 and np.isclose(avg.sum(), 1)
    assert avg.argmax() == 2 and avg[2] > 0.5
    assert np.allclose(avg, np.mean(hist, axis=0) / np.mean(hist, axis=0).sum())


def test_proxy_stream_holds_the_weighted_bytes():
    from tools.mixing.proxy_env import ProxyLMEnv
    from tools.proxy_lm import ProxyConfig

    texts = {"a": ["alpha " * 50] * 10, "b": ["beta " * 40] * 10, "c": ["gamma " * 30] * 10}
    env = ProxyLMEnv(texts, source=["a", "b"], target=["c"], config=ProxyConfig(kind="bigram"), seed=0)
    env.reset(0)
    data = env.sample_stream(np.array([0.5, 0.3, 0.2]), 10_000)
    raw = bytes(data.astype(np.uint8)).decode("utf-8", errors="ignore")
    n = {k: raw.count(w) * len(w) for k, w in (("a", "alpha "), ("b", "beta "), ("c", "gamma "))}
    assert abs(data.size - 10_000) <= 3
    for k, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(n[k] - share * 10_000) <= 3 * 6 + 12, (k, n)  # whole words, cut at document ends
