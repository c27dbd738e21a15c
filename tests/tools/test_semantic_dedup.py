"""semantic_dedup: exact enumeration as the oracle, keep rules, chains, demo-data recall, bad input."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import write_jsonl
from tools import semantic_dedup as sd
from tools.errors import BadInput

# ------------------------------------------------------------------------------------ oracle


def brute_force(x: np.ndarray, threshold: float, keep: str, compare: str, lengths=None, ids=None):  # noqa: ANN001, ANN201
    """SemDeDup with one cluster, written from the rule, pair by pair in float64.

    Keep priority: by the rule (centroid = normalised mean), ties by row. A row is removed when its
    cosine to an earlier row in that priority (kept rows only, for compare='kept') exceeds the
    threshold; it duplicates the most similar such row. Returns {row: (duplicate_of, similarity)}.
    """
    x = x.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = x.mean(0)
    c /= np.linalg.norm(c)
    dist = [1.0 - float(v @ c) for v in x]
    n = len(x)
    if keep == "farthest_from_centroid":
        order = sorted(range(n), key=lambda i: (-dist[i], i))
    elif keep == "closest_to_centroid":
        order = sorted(range(n), key=lambda i: (dist[i], i))
    elif keep == "longest":
        order = sorted(range(n), key=lambda i: (-lengths[i], i))
    else:
        order = list(range(n))
    removed: dict[int, tuple[int, float]] = {}
    for pos, j in enumerate(order):
        best, arg = -2.0, -1
        for i in order[:pos]:
            if compare == "kept" and i in removed:
                continue
            s = float(x[i] @ x[j])
            if s > best:
                best, arg = s, i
        if best > threshold:
            removed[j] = (arg, best)
    return removed


def planted(n_base: int = 60, d: int = 32, seed: int = 0) -> np.ndarray:
    """Random directions plus copies at graded distances (some chains), far from ties at 0.9."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n_base, d))
    rows = [base]
    for noise in (0.05, 0.2, 0.3, 0.45):
        src = base[rng.choice(n_base, size=n_base // 3, replace=False)]
        rows.append(src + noise * np.linalg.norm(src, axis=1, keepdims=True) / np.sqrt(d) * rng.standard_normal(src.shape))
    x = np.vstack(rows)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("keep", ["farthest_from_centroid", "closest_to_centroid", "longest", "first"])
@pytest.mark.parametrize("compare", ["kept", "earlier"])
def test_one_cluster_equals_exact_enumeration(keep, compare):
    x = planted()
    threshold = 0.9
    s = x.astype(np.float64) @ x.T.astype(np.float64)
    off = s[~np.eye(len(x), dtype=bool)]
    assert np.abs(off - threshold).min() > 1e-4  # no pair sits on the threshold: float32 vs float64 agree
    assert (off > threshold).sum() > 20  # and there is something to remove
    lengths = np.random.default_rng(1).integers(10, 1000, size=len(x))
    want = brute_force(x, threshold, keep, compare, lengths=lengths)
    out = sd.semdedup(x, threshold=threshold, n_clusters=1, keep=keep, compare=compare, lengths=lengths)
    got = {int(j): (int(out.duplicate_of[j]), float(out.similarity[j])) for j in np.flatnonzero(out.removed)}
    assert got.keys() == want.keys()
    for j, (dup, sim) in want.items():
        assert got[j][0] == dup
        assert got[j][1] == pytest.approx(sim, abs=1e-5)
    kept = set(range(len(x))) - set(got)
    if compare == "kept":  # every removed row duplicates a kept one, above the threshold
        assert all(d in kept for d, _ in got.values())
    assert all(out.representative[j] in kept for j in got)


def test_blocked_resolution_equals_one_block():
    x = planted(n_base=90, seed=3)
    for compare in ("kept", "earlier"):
        whole = sd.dedup_ordered(x, 0.9, compare, block=10_000)
        blocked = sd.dedup_ordered(x, 0.9, compare, block=7)
        np.testing.assert_array_equal(whole.removed, blocked.removed)
        np.testing.assert_array_equal(whole.dup_of[whole.removed], blocked.dup_of[blocked.removed])


def test_chain_kept_versus_earlier():
    """A~B and B~C but not A~C: 'kept' keeps A and C; 'earlier' (NeMo's rule) removes B and C."""
    ang = np.radians([0.0, 20.0, 40.0])
    x = np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)
    t = float(np.cos(np.radians(25.0)))
    kept = sd.semdedup(x, threshold=t, n_clusters=1, keep="first", compare="kept")
    assert kept.removed.tolist() == [False, True, False] and kept.duplicate_of[1] == 0
    earlier = sd.semdedup(x, threshold=t, n_clusters=1, keep="first", compare="earlier")
    assert earlier.removed.tolist() == [False, True, True]
    assert earlier.duplicate_of[2] == 1 and earlier.representative[2] == 0  # chain followed to a kept row


def test_keep_rules_pick_the_stated_member():
    rng = np.random.default_rng(5)
    spread = rng.standard_normal((30, 8)) * 0.5 + np.eye(8)[0] * 3  # a cluster around e0
    twin = spread[4] + 1e-3 * rng.standard_normal(8)  # row 30 duplicates row 4
    x = np.vstack([spread, twin]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = x.mean(0) / np.linalg.norm(x.mean(0))
    farther = 4 if x[4] @ c < x[30] @ c else 30
    out = sd.semdedup(x, threshold=0.99, n_clusters=1, keep="farthest_from_centroid")
    assert np.flatnonzero(out.removed).tolist() == [34 - farther]
    out = sd.semdedup(x, threshold=0.99, n_clusters=1, keep="closest_to_centroid")
    assert np.flatnonzero(out.removed).tolist() == [farther]
    lengths = np.full(31, 10)
    lengths[30] = 99
    out = sd.semdedup(x, threshold=0.99, n_clusters=1, keep="longest", lengths=lengths)
    assert np.flatnonzero(out.removed).tolist() == [4]
    out = sd.semdedup(x, threshold=0.99, n_clusters=1, keep="first")
    assert np.flatnonzero(out.removed).tolist() == [30]


# ------------------------------------------------------------------------------------- tool


def hashed_vectors(texts: list[str], dim: int = 2048) -> np.ndarray:
    """A model-free embedding: hashed word unigrams and bigrams plus a constant (no zero rows)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for r, t in enumerate(texts):
        w = re.findall(r"\w+", t.lower())
        for tok in w + [f"{a} {b}" for a, b in zip(w, w[1:], strict=False)]:
            out[r, int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little") % dim] += 1
        out[r, 0] += 1
    return out


def read(ctx, res, name):  # noqa: ANN001, ANN201
    return pq.read_table(ctx.workspace.get(res.artifacts[name]).path / "data.parquet").to_pylist()


def test_tool_artifacts_and_oracle(ctx, tmp_path):
    x = planted(n_base=45, seed=2)
    rows = [{"id": f"r{i:03d}", "text": "w " * (i % 17 + 1), "domain": ["a", "b", "c"][i % 3]} for i in range(len(x))]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    np.save(tmp_path / "x.npy", x * 3.0)  # not unit length: the tool normalises
    res = sd.run({"corpus": str(corpus), "embeddings": str(tmp_path / "x.npy"), "threshold": 0.9,
                  "n_clusters": 1, "keep": "longest"}, ctx)
    want = brute_force(x, 0.9, "longest", "kept", lengths=[len(r["text"]) for r in rows])
    rej = read(ctx, res, "rejected")
    sel = read(ctx, res, "selection")
    assert {r["id"] for r in rej} == {rows[j]["id"] for j in want}
    assert {r["id"]: r["duplicate_of"] for r in rej} == {rows[j]["id"]: rows[d]["id"] for j, (d, _) in want.items()}
    kept = {r["id"] for r in sel}
    assert kept | {r["id"] for r in rej} == {r["id"] for r in rows} and not kept & {r["id"] for r in rej}
    assert all(r["duplicate_of"] in kept and r["representative"] == r["duplicate_of"] for r in rej)
    assert all(r["similarity"] > 0.9 and r["cluster"] == 0 for r in rej)
    assert [r["similarity"] for r in rej] == sorted((r["similarity"] for r in rej), reverse=True)
    assert res.removed == len(want) and res.k == len(kept) and res.pool_size == len(rows)
    by_dom = {d: sum(1 for j in want if rows[j]["domain"] == d) / sum(1 for r in rows if r["domain"] == d)
              for d in "abc"}
    assert res.removal_rate_by_domain == pytest.approx(by_dom)
    assert "a " in res.summary and "farthest" not in res.summary and "longest" in res.summary
    manifest = ctx.workspace.get(res.artifacts["rejected"]).manifest
    assert manifest["metrics"]["eps"] == pytest.approx(0.1) and manifest["rows"]["skipped"]["semantic_duplicate"] == len(want)


def test_demo_data_injected_duplicates(ctx, demo_dir, tmp_path):
    """Model-free vectors on the demo pool: every injected exact duplicate pair loses one member, nearly
    every one-word near duplicate is caught, and almost nothing else is removed."""
    pool = demo_dir / "pool.jsonl"
    rows = [json.loads(line) for line in pool.open()]
    np.save(tmp_path / "demo.npy", hashed_vectors([r["text"] for r in rows]))
    res = sd.run({"corpus": str(pool), "embeddings": str(tmp_path / "demo.npy")}, ctx)
    stats = injected_recall(rows, {r["id"] for r in read(ctx, res, "rejected")})
    assert stats["exact_recall"] == 1.0 and stats["exact_both_removed"] == 0
    assert stats["near_recall"] >= 0.9
    assert stats["false_removed"] <= 0.005 * stats["distinct"]
    assert res.n_clusters == round(len(rows) ** 0.5)


def injected_recall(rows: list[dict], removed: set[str]) -> dict:
    ids = {r["id"] for r in rows}
    dups = [i for i in ids if i.startswith("dup-")]
    nears = [i for i in ids if i.startswith("near-")]
    group = {"doc-" + i.split("-", 1)[1] for i in dups + nears} | set(dups) | set(nears)
    exact = sum((d in removed) != ("doc-" + d[4:] in removed) for d in dups)
    both = sum((d in removed) and ("doc-" + d[4:] in removed) and ("near-" + d[4:] not in ids) for d in dups)
    near = sum((d in removed) or ("doc-" + d[5:] in removed) for d in nears)
    distinct = [i for i in ids if i not in group and not i.startswith(("empty-", "garbled-"))]
    false = [i for i in distinct if i in removed]
    return {"exact_recall": exact / len(dups), "exact_both_removed": both, "near_recall": near / len(nears),
            "false_removed": len(false), "distinct": len(distinct), "removed": len(removed),
            "precision": 1 - len(false) / max(1, len(removed))}


@pytest.mark.slow
def test_demo_data_with_the_default_model(ctx, demo_dir, capsys):
    """all-MiniLM-L6-v2 through the embed tool on the 3k-document demo pool (precision/recall printed).

    Measured (threshold 0.95, 56 clusters): exact pairs 50/50, near pairs 36/37, 0 of ~2,990 distinct
    documents removed; at 0.9: near 37/37 and 10 distinct documents removed.
    """
    pool = demo_dir / "pool.jsonl"
    rows = [json.loads(line) for line in pool.open()]
    res = sd.run({"corpus": str(pool)}, ctx)
    stats = injected_recall(rows, {r["id"] for r in read(ctx, res, "rejected")})
    with capsys.disabled():
        print(f"\nsemantic_dedup demo (MiniLM, threshold 0.95): {stats}")
    assert stats["exact_recall"] == 1.0
    assert stats["near_recall"] >= 0.8
    assert stats["false_removed"] <= 0.02 * stats["distinct"]


def test_bad_input(ctx, tmp_path):
    rows = [{"id": f"d{i}", "text": f"text {i}", "domain": "x"} for i in range(10)]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    x = planted(n_base=10)[:10]
    bad = x.copy()
    bad[2, 0] = np.nan
    bad[6, 3] = -np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(BadInput, match=r"semantic_dedup.embeddings: must be finite.*\['d2', 'd6'\]"):
        sd.run({"corpus": str(corpus), "embeddings": str(tmp_path / "bad.npy")}, ctx)
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(BadInput, match=r"n_clusters: must be at most the number of documents \(10\)"):
        sd.run({"corpus": str(corpus), "embeddings": str(tmp_path / "x.npy"), "n_clusters": 11}, ctx)
    with pytest.raises(BadInput, match="threshold"):
        sd.run({"corpus": str(corpus), "embeddings": str(tmp_path / "x.npy"), "threshold": 1.5}, ctx)
    with pytest.raises(BadInput, match="keep"):
        sd.run({"corpus": str(corpus), "embeddings": str(tmp_path / "x.npy"), "keep": "best"}, ctx)
    np.save(tmp_path / "short.npy", x[:7])
    with pytest.raises(BadInput, match="one row per corpus document"):
        sd.run({"corpus": str(corpus), "embeddings": str(tmp_path / "short.npy")}, ctx)
    np.save(tmp_path / "flat.npy", x[:, 0])
    with pytest.raises(BadInput, match="2-d"):
        sd.run({"corpus": str(corpus), "embeddings": str(tmp_path / "flat.npy")}, ctx)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BadInput, match="no documents"):
        sd.run({"corpus": str(empty), "embeddings": str(tmp_path / "x.npy")}, ctx)
    with pytest.raises(BadInput, match="no artifact"):
        sd.run({"corpus": str(corpus), "embeddings": "embeddings-000000000000"}, ctx)
