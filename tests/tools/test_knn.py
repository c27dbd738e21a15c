"""tools.knn: exact search against a brute-force oracle, faiss kinds against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from tools import knn


def clustered(
    n: int, d: int, *, centers: int = 50, spread: float = 0.35, seed: int = 0, center_seed: int | None = None
) -> np.ndarray:
    c = np.random.default_rng(seed if center_seed is None else center_seed).standard_normal((centers, d))
    c = c.astype(np.float32)
    rng = np.random.default_rng([seed, 1])
    x = c[rng.integers(0, centers, n)] + spread * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(xb: np.ndarray, xq: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Oracle written independently: full sort of every pairwise score, one query at a time."""
    out_s, out_i = [], []
    for q in xq.astype(np.float64):
        if metric == "ip":
            s = xb.astype(np.float64) @ q
            order = sorted(range(len(xb)), key=lambda i: (-s[i], i))
        else:
            s = ((xb.astype(np.float64) - q) ** 2).sum(1)
            order = sorted(range(len(xb)), key=lambda i: (s[i], i))
        out_i.append(order[:k])
        out_s.append(s[order[:k]])
    return np.array(out_s), np.array(out_i)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_search_matches_brute_force(metric):
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((300, 16)).astype(np.float32)
    xq = rng.standard_normal((7, 16)).astype(np.float32)
    s, i = knn.exact_search(xb, xq, 10, metric, block=3)
    bs, bi = brute(xb, xq, 10, metric)
    assert s.dtype == np.float32 and i.dtype == np.int64 and s.shape == (7, 10)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_allclose(s, bs, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["flat", "numpy", "hnsw"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_kinds_agree_with_exact_search(kind, metric):
    xb = clustered(2000, 32, seed=2)
    xq = clustered(20, 32, seed=3)
    index = knn.build_index(xb, metric=metric, kind=kind)
    assert index.ntotal == 2000 and index.metric == metric and index.kind == kind
    s, i = index.search(xq, 10)
    es, ei = knn.exact_search(xb, xq, 10, metric)
    if kind == "hnsw":
        assert knn.recall_at_k(i, ei) > 0.95
    else:
        assert knn.recall_at_k(i, ei) == 1.0
        np.testing.assert_allclose(s, es, rtol=1e-4, atol=1e-4)
    # best first
    assert np.all(np.diff(s, axis=1) <= 1e-6) if metric == "ip" else np.all(np.diff(s, axis=1) >= -1e-6)


def test_ip_and_l2_rank_unit_vectors_identically():
    xb = clustered(1000, 24, seed=4)
    xq = clustered(15, 24, seed=5)
    s_ip, i_ip = knn.build_index(xb, metric="ip", kind="flat").search(xq, 8)
    s_l2, i_l2 = knn.build_index(xb, metric="l2", kind="flat").search(xq, 8)
    np.testing.assert_array_equal(i_ip, i_l2)
    # unit vectors: |q - x|^2 = 2 - 2 q.x
    np.testing.assert_allclose(s_l2, 2 - 2 * s_ip, atol=1e-5)


def test_ivf_recall_at_defaults():
    # queries near the same cluster centres as the pool, but not pool points
    xb = clustered(20_000, 64, centers=200, seed=6, center_seed=60)
    xq = clustered(100, 64, centers=200, seed=7, center_seed=60)
    index = knn.build_index(xb, metric="l2", kind="ivf", seed=0)
    assert index.kind == "ivf" and index.nlist == knn.default_nlist(20_000) == 70 and index.nprobe == 10
    _, i = index.search(xq, 10)
    _, ei = knn.exact_search(xb, xq, 10, "l2")
    assert knn.recall_at_k(i, ei) >= 0.9


def test_ivf_is_deterministic_for_a_seed():
    xb = clustered(5000, 16, seed=7)
    xq = clustered(30, 16, seed=8)
    a = knn.build_index(xb, kind="ivf", nlist=40, nprobe=2, seed=3).search(xq, 5)
    b = knn.build_index(xb, kind="ivf", nlist=40, nprobe=2, seed=3).search(xq, 5)
    np.testing.assert_array_equal(a[1], b[1])


def test_auto_picks_flat_below_threshold_and_ivf_above(monkeypatch):
    xb = clustered(600, 8, seed=9)
    assert knn.build_index(xb).kind == "flat"
    monkeypatch.setattr(knn, "AUTO_IVF_MIN", 500)
    index = knn.build_index(xb)
    assert index.kind == "ivf" and index.nlist == knn.default_nlist(600)


@pytest.mark.parametrize("kind", ["flat", "numpy", "ivf"])
def test_fewer_than_k_pads_with_minus_one(kind):
    xb = clustered(5, 8, seed=10)
    xq = clustered(3, 8, seed=11)
    s, i = knn.build_index(xb, metric="l2", kind=kind, nlist=1).search(xq, 8)
    assert i.shape == (3, 8)
    assert np.all(i[:, :5] >= 0) and np.all(i[:, 5:] == -1)
    assert np.all(np.isinf(s[:, 5:])) and np.all(s[:, 5:] > 0)
    s, i = knn.build_index(xb, metric="ip", kind=kind, nlist=1).search(xq, 8)
    assert np.all(i[:, 5:] == -1) and np.all(s[:, 5:] == -np.inf)


def test_numpy_fallback_without_faiss(monkeypatch):
    monkeypatch.setattr(knn, "faiss_available", lambda: False)
    xb = clustered(300, 8, seed=12)
    index = knn.build_index(xb, kind="ivf")
    assert index.kind == "numpy"
    s, i = index.search(xb[:4], 3)
    np.testing.assert_array_equal(i[:, 0], np.arange(4))


def test_bad_arguments():
    xb = clustered(10, 4)
    with pytest.raises(ValueError, match="metric"):
        knn.build_index(xb, metric="cos")
    with pytest.raises(ValueError, match="dimension"):
        knn.build_index(xb).search(np.zeros((2, 5), np.float32), 3)
    with pytest.raises(ValueError, match="k must"):
        knn.build_index(xb).search(xb, 0)
