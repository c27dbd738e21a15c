"""fact_index at scale: recursive k-means over 1M synthetic 384-d vectors on this CPU, plus c-TF-IDF labels.

Data: unit vectors around 2,000 cluster centres of Zipf-like sizes (like sentence embeddings of a
crawl), plus a synthetic bag of 20 terms per document from a 50k-term Zipf vocabulary for the labels.
Side by side in one run: ours (recursive, every leaf <= max_leaf) and a flat faiss k-means with
k = n / max_leaf (what one would do without recursion: same number of clusters, unbounded sizes), on
the first ``--flat-n`` rows (default 100k: a flat k = 10,000 over 1M rows takes far longer than the
recursion on this shared 2-core machine), with ours rerun on the same rows for the ratio.
Prints time, leaf-size distribution and the ratio; writes bench/results/fact_index.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import write_result  # noqa: I001

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = 2000
    sizes = 1.0 / np.arange(1, k + 1) ** 0.8
    cent = rng.standard_normal((k, d)).astype(np.float32)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    lab = rng.choice(k, size=n, p=sizes / sizes.sum())
    x = np.empty((n, d), dtype=np.float32)
    step = 100_000
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        x[lo:hi] = cent[lab[lo:hi]] + 0.06 * rng.standard_normal((hi - lo, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic_terms(n: int, vocab: int, per_doc: int, seed: int):  # noqa: ANN201
    from scipy import sparse

    rng = np.random.default_rng(seed + 1)
    p = 1.0 / np.arange(1, vocab + 1)
    cols = rng.choice(vocab, size=n * per_doc, p=p / p.sum())
    rows = np.repeat(np.arange(n), per_doc)
    m = sparse.csr_matrix((np.ones(len(cols), dtype=np.int32), (rows, cols)), shape=(n, vocab))
    m.sum_duplicates()
    return m


def dist(sizes: np.ndarray) -> dict:
    q = np.percentile(sizes, [1, 10, 50, 90, 99])
    return {"leaves": int(len(sizes)), "min": int(sizes.min()), "p1": float(q[0]), "p10": float(q[1]),
            "median": float(q[2]), "p90": float(q[3]), "p99": float(q[4]), "max": int(sizes.max()),
            "mean": float(sizes.mean()), "histogram_edges": [1, 10, 25, 50, 75, 100, 101, 1000, 10**9],
            "histogram": np.histogram(sizes, bins=[1, 10, 25, 50, 75, 100, 101, 1000, 10**9])[0].tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--max-leaf", type=int, default=100)
    ap.add_argument("--branching", type=int, default=10)
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--skip-flat", action="store_true")
    ap.add_argument("--flat-n", type=int, default=100_000)
    args = ap.parse_args()

    import faiss

    from tools.fact_index import core

    t = time.perf_counter()
    x = synthetic(args.n, args.d, 0)
    gen_s = time.perf_counter() - t
    print(f"data {args.n}x{args.d} in {gen_s:.1f}s", flush=True)

    t = time.perf_counter()
    tree = core.recursive_kmeans(x, max_leaf=args.max_leaf, branching=args.branching, niter=args.niter, seed=0)
    tree_s = time.perf_counter() - t
    leaf_sizes = tree.sizes[tree.is_leaf]
    print(f"ours: tree {tree_s:.1f}s, {tree.n_nodes} nodes, depth {int(tree.depth.max())}, "
          f"leaf sizes min {leaf_sizes.min()} median {np.median(leaf_sizes):g} max {leaf_sizes.max()}", flush=True)
    terms = synthetic_terms(args.n, 50_000, 20, 0)
    vocab = [f"t{i}" for i in range(terms.shape[1])]
    t = time.perf_counter()
    labels, _ = core.ctfidf_labels(tree, terms, vocab, top_n=20)
    label_s = time.perf_counter() - t
    print(f"ours: c-TF-IDF labels for {tree.n_nodes} nodes {label_s:.1f}s", flush=True)
    ok = bool(np.array_equal(np.sort(tree.order), np.arange(args.n)) and leaf_sizes.max() <= args.max_leaf)

    flat = None
    if not args.skip_flat:
        xs = x[: args.flat_n]
        t = time.perf_counter()
        sub_tree = core.recursive_kmeans(xs, max_leaf=args.max_leaf, branching=args.branching, niter=args.niter,
                                         seed=0)
        sub_s = time.perf_counter() - t
        k = int(np.ceil(len(xs) / args.max_leaf))
        t = time.perf_counter()
        km = faiss.Kmeans(args.d, k, niter=args.niter, seed=0, spherical=True, verbose=False)
        km.train(xs)
        _, assign = km.index.search(xs, 1)
        flat_s = time.perf_counter() - t
        fs = np.bincount(assign.ravel(), minlength=k)
        fs = fs[fs > 0]
        flat = {"n": len(xs), "k": k, "wall_s": flat_s, "ours_tree_s_same_rows": sub_s,
                "ours_leaf_sizes_same_rows": dist(sub_tree.sizes[sub_tree.is_leaf]), "leaf_sizes": dist(fs),
                "share_docs_in_clusters_over_max_leaf": float(fs[fs > args.max_leaf].sum() / len(xs))}
        print(f"flat faiss k-means on {len(xs)} rows, k={k}: {flat_s:.1f}s, sizes min {fs.min()} median "
              f"{np.median(fs):g} max {fs.max()}, {flat['share_docs_in_clusters_over_max_leaf']:.1%} of docs in "
              f"clusters > {args.max_leaf}; ours on the same rows {sub_s:.1f}s (ratio ours/flat "
              f"{sub_s / flat_s:.2f})", flush=True)

    out = {
        "n": args.n, "d": args.d, "max_leaf": args.max_leaf, "branching": args.branching, "niter": args.niter,
        "ours": {"tree_s": tree_s, "labels_s": label_s, "total_s": tree_s + label_s, "n_nodes": tree.n_nodes,
                 "depth": int(tree.depth.max()), "splits": {s: tree.split.count(s) for s in set(tree.split)},
                 "leaf_sizes": dist(leaf_sizes), "partition_ok": ok, "goal_s": 300,
                 "under_goal": bool(tree_s + label_s < 300)},
        "flat_kmeans": flat,
        "ratio_ours_over_flat_same_rows": (flat["ours_tree_s_same_rows"] / flat["wall_s"]) if flat else None,
        "labels_example": labels[int(tree.leaves()[0])][:5],
    }
    path = write_result("fact_index", out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
