"""sample and profile against exact answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tests.conftest import write_jsonl
from tools import profile, sample
from tools.errors import BadInput
from tools.sample import allocate, uniform_keys


def test_allocation_is_exact_largest_remainder():
    assert allocate({"a": 50, "b": 30, "c": 20}, 10, "proportional") == {"a": 5, "b": 3, "c": 2}
    assert allocate({"a": 50, "b": 30, "c": 20}, 7, "proportional") == {"a": 4, "b": 2, "c": 1}
    # equal allocation redistributes what a small domain cannot take
    assert allocate({"a": 100, "b": 2, "c": 100}, 30, "equal") == {"a": 14, "b": 2, "c": 14}
    assert sum(allocate({"a": 3, "b": 4}, 100, "equal").values()) == 7


def test_uniform_keys_are_uniform_and_seeded():
    ids = [f"d{i}" for i in range(20000)]
    k0, k1 = uniform_keys(ids, 0), uniform_keys(ids, 1)
    assert stats.kstest(k0, "uniform").pvalue > 1e-3
    assert not np.allclose(k0, k1) and np.array_equal(k0, uniform_keys(ids, 0))


def test_random_sample_inclusion_probability_is_k_over_n(tmp_path, ctx):
    """Each of 12 docs must be included with probability k/n = 1/3 (binomial test over 300 seeds)."""
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": f"t{i}"} for i in range(12)])
    counts = np.zeros(12)
    for seed in range(300):
        res = sample.run({"corpus": str(p), "k": 4, "seed": seed}, ctx)
        ids = ctx.workspace.get(res.artifacts["selection"]).table()["id"].to_pylist()
        assert len(set(ids)) == 4
        for i in ids:
            counts[int(i[1:])] += 1
    chi2 = stats.chisquare(counts).pvalue
    assert chi2 > 1e-3, counts


def test_stratified_sample_meets_quotas(tiny_corpus, ctx):
    res = sample.run({"corpus": str(tiny_corpus), "k": 9, "mode": "stratified"}, ctx)
    assert res.domain_counts == {"math": 3, "code": 3, "cooking": 3} or sorted(res.domain_counts.values()) == [3, 3, 3]
    res = sample.run({"corpus": str(tiny_corpus), "k": 5, "domains": ["code"]}, ctx)
    assert res.domain_counts == {"code": 5}
    with pytest.raises(BadInput, match="sample.k"):
        sample.run({"corpus": str(tiny_corpus), "k": 1000}, ctx)
    with pytest.raises(BadInput, match="sample.k"):
        sample.run({"corpus": str(tiny_corpus), "k": 0}, ctx)


def test_profile_counts_duplicates_empty_garbled(tmp_path, ctx):
    rows = [
        {"id": "1", "text": "one two three", "domain": "a"},
        {"id": "2", "text": "one two three", "domain": "a"},
        {"id": "3", "text": "", "domain": "b"},
        {"id": "4", "text": "ok \ufffd broken", "domain": "b"},
        {"id": "5", "text": "four five six seven", "domain": "b"},
    ]
    p = write_jsonl(tmp_path / "p.jsonl", rows)
    res = profile.run({"corpus": str(p)}, ctx)
    assert res.rows_total == 5 and res.domains == {"b": 3, "a": 2}
    assert res.exact_duplicate_rate == pytest.approx(1 / 5)
    assert res.empty_rows == 1 and res.garbled_rows == 1
    assert res.words["max"] == 4 and res.tokens["max"] >= 4
    plot = ctx.workspace.get(res.artifacts["plot"])
    assert plot.file().name == "plot.png" and plot.file().stat().st_size > 1000
    table = ctx.workspace.get(res.artifacts["table"]).table()
    assert table["documents"].to_pylist() == [3, 2]


def test_profile_on_demo_pool_finds_injected_noise(demo_dir, ctx):
    res = profile.run({"corpus": str(demo_dir / "pool.jsonl")}, ctx)
    assert len(res.domains) == 8 and res.empty_rows == 12 and res.garbled_rows >= 12
    assert 0.01 < res.exact_duplicate_rate < 0.05


def test_a_fraction_is_the_same_sample_as_its_k(tmp_path, tiny_corpus, ctx):
    """fraction f draws exactly the sample of k = round(f * pool) (of the chosen domains), same seed."""
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": f"t{i}"} for i in range(12)])

    def ids(args: dict) -> list[str]:
        res = sample.run({"corpus": str(p), **args}, ctx)
        return ctx.workspace.get(res.artifacts["selection"]).table()["id"].to_pylist()

    assert ids({"fraction": 0.25, "seed": 3}) == ids({"k": 3, "seed": 3})
    assert len(ids({"fraction": 0.01})) == 1  # never an empty sample
    n_code = sample.run({"corpus": str(tiny_corpus), "k": 1, "domains": ["code"]}, ctx).pool_size
    res = sample.run({"corpus": str(tiny_corpus), "fraction": 0.5, "domains": ["code"]}, ctx)
    assert res.k == round(0.5 * n_code) and res.domain_counts == {"code": res.k}
    assert "0.5 of the pool" in res.summary and "Domains: code" in res.summary and "{" not in res.summary
    for bad in ({"k": 3, "fraction": 0.5}, {}, {"fraction": 1.5}):
        with pytest.raises(BadInput, match="sample"):
            sample.run({"corpus": str(p), **bad}, ctx)
