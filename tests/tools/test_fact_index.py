"""fact_index: tree invariants (exact partition, bounded leaves, determinism), c-TF-IDF against a hand formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tools.fact_index import core


def _blobs(n: int, d: int = 16, k: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((k, d)).astype(np.float32)
    x = c[rng.integers(0, k, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _check_tree(t: core.Tree, n: int, max_leaf: int) -> None:
    leaves = t.leaves()
    # every row in exactly one leaf
    seen = np.concatenate([t.members(int(lf)) for lf in leaves])
    assert np.array_equal(np.sort(seen), np.arange(n))
    assert np.array_equal(np.sort(t.order), np.arange(n))
    for lf in leaves:
        assert np.all(t.leaf_of[t.members(int(lf))] == lf)
    assert t.sizes[leaves].max() <= max_leaf
    assert t.sizes[leaves].min() >= 1
    # children partition their parent's slice, and centroids are unit vectors
    for node, ch in enumerate(t.children):
        if ch:
            assert t.start[ch[0]] == t.start[node] and t.end[ch[-1]] == t.end[node]
            assert all(t.end[a] == t.start[b] for a, b in zip(ch, ch[1:], strict=False))
            assert len(ch) <= t.branching and len(ch) >= 2
            assert all(t.parent[c] == node and t.depth[c] == t.depth[node] + 1 for c in ch)
    assert np.allclose(np.linalg.norm(t.centroid, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("n,max_leaf,branching", [(1, 100, 10), (100, 100, 10), (101, 100, 10), (2500, 37, 4),
                                                  (3000, 100, 10)])
def test_partition_and_bounded_leaves(n: int, max_leaf: int, branching: int) -> None:
    t = core.recursive_kmeans(_blobs(n), max_leaf=max_leaf, branching=branching, seed=1)
    _check_tree(t, n, max_leaf)
    if n <= max_leaf:
        assert t.n_nodes == 1


def test_deterministic_for_a_seed() -> None:
    x = _blobs(2000)
    a = core.recursive_kmeans(x, max_leaf=50, seed=3)
    b = core.recursive_kmeans(x, max_leaf=50, seed=3)
    assert np.array_equal(a.order, b.order) and np.array_equal(a.parent, b.parent)
    assert np.array_equal(a.leaf_of, b.leaf_of)


def test_branching_rule() -> None:
    """A node of n rows gets min(branching, ceil(n / max_leaf)) k-means clusters (fewer only if one is empty)."""
    t = core.recursive_kmeans(_blobs(450), max_leaf=100, branching=10)
    assert len(t.children[0]) <= math.ceil(450 / 100)
    t = core.recursive_kmeans(_blobs(5000), max_leaf=100, branching=6)
    assert len(t.children[0]) <= 6


def test_degenerate_splits_terminate() -> None:
    # all rows identical: k-means cannot split; chunks of max_leaf in input order
    x = np.tile(_blobs(1), (430, 1))
    t = core.recursive_kmeans(x, max_leaf=100)
    _check_tree(t, 430, 100)
    assert t.split[0] == "chunks"
    # two tight clumps of exact duplicates plus one outlier: every leaf still bounded
    y = np.concatenate([np.tile(_blobs(1, seed=1), (300, 1)), np.tile(_blobs(1, seed=2), (250, 1)), _blobs(1, seed=3)])
    t = core.recursive_kmeans(y, max_leaf=100)
    _check_tree(t, 551, 100)


def test_ctfidf_matches_hand_formula() -> None:
    texts = ["apple banana apple", "apple cherry", "dog cat dog", "dog mouse"]
    t = core.Tree(parent=np.array([-1, 0, 0], np.int32), depth=np.array([0, 1, 1], np.int32),
                  start=np.array([0, 0, 2]), end=np.array([4, 2, 4]), children=[[1, 2], [], []],
                  centroid=np.ones((3, 2), np.float32) / np.sqrt(2), split=["kmeans", "leaf", "leaf"],
                  order=np.arange(4), leaf_of=np.array([1, 1, 2, 2], np.int32), max_leaf=2, branching=2)
    dt = core.doc_terms(texts)
    labels, weights = core.ctfidf_labels(t, dt.matrix, dt.vocab, top_n=3)
    # leaf 1: apple 3, banana 1, cherry 1 (5 words); f(apple)=3, A = 10 words / 2 leaves = 5
    assert labels[1][0] == "apple"
    assert weights[1][0] == pytest.approx(3 / 5 * math.log1p(5 / 3), rel=1e-5)
    assert labels[1][1:] == ["banana", "cherry"]  # equal weights: ties by term
    assert weights[1][1] == pytest.approx(1 / 5 * math.log1p(5 / 1), rel=1e-5)
    assert labels[2][0] == "dog"
    assert set(labels[0]) <= set(dt.vocab)


def test_tokenize_drops_stopwords_and_numbers() -> None:
    assert core.tokenize("The Eiffel Tower was built in 1889 by Gustave Eiffel's firm.") == [
        "eiffel", "tower", "built", "gustave", "eiffel's", "firm"]


def test_tool_run_and_load(tmp_path, ctx) -> None:  # noqa: ANN001
    import json

    from tools import fact_index

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    rows = [{"id": f"d{i:02d}", "text": f"topic{i % 3} word{i}"} for i in range(60)]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    res = fact_index.run({"corpus": str(tmp_path / "c.jsonl"), "embeddings": str(tmp_path / "e.npy"),
                          "max_leaf": 8, "llm_labels": "off"}, ctx)
    assert res.n_docs == 60 and res.leaf_size_max <= 8 and res.labelled_by == ["ctfidf"]
    idx = fact_index.load_index(res.artifacts["index"], ctx)
    got = sorted(i for lf in idx.tree.leaves() for i in idx.leaf_ids(int(lf)))
    assert got == sorted(r["id"] for r in rows)
    # shuffled corpus rows (embeddings shuffled alike) give the same tree
    perm = rng.permutation(60)
    np.save(tmp_path / "e2.npy", x[perm])
    (tmp_path / "c2.jsonl").write_text("\n".join(json.dumps(rows[i]) for i in perm))
    res2 = fact_index.run({"corpus": str(tmp_path / "c2.jsonl"), "embeddings": str(tmp_path / "e2.npy"),
                           "max_leaf": 8, "llm_labels": "off"}, ctx)
    idx2 = fact_index.load_index(res2.artifacts["index"], ctx)
    assert idx2.ids == idx.ids and idx2.labels == idx.labels


def test_no_text_field_is_bad_input(tmp_path, ctx) -> None:  # noqa: ANN001
    import json

    from tools import fact_index
    from tools.errors import BadInput

    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"id": f"d{i}", "body": "x"}) for i in range(5)))
    np.save(tmp_path / "e.npy", np.eye(5, dtype=np.float32))
    with pytest.raises(BadInput, match="text"):
        fact_index.run({"corpus": str(tmp_path / "c.jsonl"), "embeddings": str(tmp_path / "e.npy")}, ctx)


def test_llm_labels_garbage_keeps_keyword_labels(tmp_path, openai_server) -> None:  # noqa: ANN001
    """An LLM that answers garbage: every leaf keeps its c-TF-IDF labels, the failures are counted."""
    import json

    from tools import fact_index
    from tools.contract import ToolContext
    from tools.llm import LLMConfig

    rows = [{"id": f"d{i:02d}", "text": f"topic{i % 3} word{i}"} for i in range(30)]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    np.save(tmp_path / "e.npy", np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32))
    openai_server.responder = lambda messages, params: "labels: maybe"
    ctx = ToolContext(workspace_dir=tmp_path / ".curate", show_progress=False,
                      llm_config=LLMConfig(base_url=openai_server.url, max_retries=0), max_llm_calls=40)
    res = fact_index.run({"corpus": str(tmp_path / "c.jsonl"), "embeddings": str(tmp_path / "e.npy"),
                          "max_leaf": 10}, ctx)
    assert res.labelled_by == ["ctfidf", "llm"] and res.llm_label_failures == res.n_leaves
    idx = fact_index.load_index(res.artifacts["index"], ctx)
    assert all(idx.llm_labels[int(lf)] == [] and idx.labels[int(lf)] for lf in idx.tree.leaves())
