"""KL reduction on hashed n-grams, checked against scipy's relative entropy and its defining identities."""

from __future__ import annotations

import numpy as np
import pytest

from tools.metrics import hashed_ngram_counts, kl_divergence, kl_reduction, kl_reduction_texts


def test_kl_divergence_matches_scipy():
    from scipy.stats import entropy

    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.integers(0, 50, size=300)
        r = rng.integers(1, 50, size=300)  # r has no empty bucket, so eps=0 is the plain KL
        assert kl_divergence(p, r, eps=0.0) == pytest.approx(entropy(p, r), rel=1e-12)
        assert kl_divergence(p, r) == pytest.approx(entropy(p, r), rel=1e-4)  # the 1e-8 floor barely moves it
    assert kl_divergence(np.array([3, 1]), np.array([6, 2])) == pytest.approx(0.0, abs=1e-12)


def test_kl_reduction_identities():
    rng = np.random.default_rng(1)
    raw = rng.integers(1, 100, size=500)
    t1 = rng.integers(0, 100, size=500)
    t2 = rng.integers(0, 100, size=500)
    assert kl_reduction(raw, raw, t1) == 0.0  # a selection with the pool's distribution
    assert kl_reduction(t1, raw, t1) == pytest.approx(kl_divergence(t1, raw), abs=1e-6)  # the target itself
    both = kl_reduction(t1, raw, [t1, t2])
    assert both == pytest.approx(np.mean([kl_reduction(t1, raw, t) for t in (t1, t2)]))
    assert kl_reduction(t1, raw, np.stack([t1, t2])) == pytest.approx(both)
    # moving the selection towards the target increases the reduction
    mixes = [kl_reduction((1 - a) * raw / raw.sum() + a * t1 / t1.sum(), raw, t1) for a in (0.0, 0.3, 0.6, 0.9)]
    assert all(x < y for x, y in zip(mixes, mixes[1:], strict=False))


def test_kl_rejects_bad_counts():
    with pytest.raises(ValueError, match="sum to zero"):
        kl_divergence(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="differ in length"):
        kl_divergence(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        kl_divergence(np.array([1, -1]), np.ones(2))


def test_kl_reduction_texts_uses_dsir_features():
    raw = ["the cat sat on the mat", "stocks fell on monday", "the dog sat on the log", "bonds rose today"]
    target = ["a cat and a dog sat"]
    good = kl_reduction_texts(raw[0::2], raw, target)
    bad = kl_reduction_texts(raw[1::2], raw, target)
    assert good > 0 > bad
    counts = hashed_ngram_counts(raw[0::2])
    assert counts.sum() == sum(2 * len(t.split()) - 1 for t in raw[0::2])
    assert good == pytest.approx(
        kl_reduction(counts, hashed_ngram_counts(raw), hashed_ngram_counts(target)), rel=1e-12
    )
    assert kl_reduction_texts(raw[0::2], raw, [target, raw[1::2]]) < good
