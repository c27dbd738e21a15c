"""Recursive k-means tree and c-TF-IDF cluster labels (FASTTRACK's offline index; Chen et al. 2024).

Arrays in, arrays out: no pydantic, no context, no I/O, so ``bench/`` and tests call it directly.

Tree. Rows are L2-normalised vectors. A node holding ``n > max_leaf`` rows is split by spherical
k-means (faiss, seeded) into ``k = min(branching, ceil(n / max_leaf))`` children; children above
``max_leaf`` are split again, until every leaf holds at most ``max_leaf`` rows. The paper states the
threshold (100) but not the branching factor; ``ceil(n / max_leaf)`` capped at ``branching`` (10)
keeps leaves between about max_leaf/2 and max_leaf instead of shattering a node of 150 into ten.
Degenerate splits are guarded: when k-means leaves every row in one child (duplicates, a tight
clump) the node is split at the median of its principal direction, and when the rows are all equal
it is cut into contiguous chunks of ``max_leaf`` rows in input order. Every split therefore makes
progress, so the recursion ends. Each node's rows are one contiguous slice of ``order``: a leaf is
``order[start:end]`` and an internal node's slice is the union of its children's.

Labels. Class-based TF-IDF (Grootendorst 2022, BERTopic's c-TF-IDF): the documents of a node are one
class; weight(t, c) = tf(t, c) / |c| * log(1 + A / f(t)), with |c| the node's word count, f(t) the
term's total count and A the mean word count per leaf. The top terms are the node's labels. It needs
no model, so the index works offline; the LLM labels (when configured) are added by the tool.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself yourselves one two
    first second new known since later became become us may many much well including within among upon via per
    de la le les el der die das du des von van""".split()
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords, single characters or pure numbers (label vocabulary)."""
    out = []
    for w in _WORD.findall((text or "").lower()):
        if len(w) < 2 or w in STOPWORDS or w.isdigit():
            continue
        out.append(w)
    return out


@dataclass
class Tree:
    """A recursive k-means tree over ``n`` rows, nodes in breadth-first order (node 0 = root).

    ``order``: row numbers so that node ``i`` holds ``order[start[i]:end[i]]``; ``leaf_of``: the leaf of
    each row; ``centroid``: unit mean vector of each node's rows; ``split``: how each internal node was
    split (``kmeans``, ``principal`` or ``chunks``; ``leaf`` for leaves).
    """

    parent: np.ndarray  # int32 (m,), -1 for the root
    depth: np.ndarray  # int32 (m,)
    start: np.ndarray  # int64 (m,)
    end: np.ndarray  # int64 (m,)
    children: list[list[int]]
    centroid: np.ndarray  # float32 (m, d)
    split: list[str]
    order: np.ndarray  # int64 (n,)
    leaf_of: np.ndarray  # int32 (n,)
    max_leaf: int
    branching: int

    @property
    def n_nodes(self) -> int:
        return len(self.parent)

    @property
    def is_leaf(self) -> np.ndarray:
        return np.asarray([not c for c in self.children], dtype=bool)

    @property
    def sizes(self) -> np.ndarray:
        return (self.end - self.start).astype(np.int64)

    def leaves(self) -> np.ndarray:
        return np.flatnonzero(self.is_leaf)

    def members(self, node: int) -> np.ndarray:
        return self.order[self.start[node] : self.end[node]]

    def path(self, node: int) -> list[int]:
        """Node ids from the root down to ``node``."""
        out = [int(node)]
        while self.parent[out[-1]] >= 0:
            out.append(int(self.parent[out[-1]]))
        return out[::-1]


def _unit_mean(x: np.ndarray) -> np.ndarray:
    c = x.mean(axis=0, dtype=np.float64)
    nrm = float(np.linalg.norm(c))
    if nrm < 1e-12:  # antipodal rows: any unit vector is as good; keep the first row's direction
        c = x[0].astype(np.float64)
        nrm = max(float(np.linalg.norm(c)), 1e-12)
    return (c / nrm).astype(np.float32)


_PARALLEL_ROWS = 50_000  # nodes smaller than this run single-threaded (OpenMP start-up dominates them)


def _kmeans_assign(x: np.ndarray, k: int, *, niter: int, seed: int, threads: int) -> np.ndarray:
    """Spherical k-means (faiss) labels for the rows of ``x``; each row goes to its highest-cosine centroid."""
    import faiss

    faiss.omp_set_num_threads(threads if len(x) >= _PARALLEL_ROWS else 1)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=256)
    km.train(x)
    cent = np.ascontiguousarray(km.centroids, dtype=np.float32)
    out = np.empty(len(x), dtype=np.int64)
    step = max(1, 8_000_000 // max(k, 1))
    for lo in range(0, len(x), step):
        out[lo : lo + step] = np.argmax(x[lo : lo + step] @ cent.T, axis=1)
    return out


def _principal_split(x: np.ndarray) -> np.ndarray | None:
    """Two groups split at the median of the rows' projection on their principal direction; None if flat."""
    xc = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(x.shape[1]).astype(np.float32)
    for _ in range(30):  # power iteration on X^T X
        v = xc.T @ (xc @ v)
        nrm = float(np.linalg.norm(v))
        if nrm < 1e-20:
            return None
        v /= nrm
    proj = xc @ v
    if float(proj.max() - proj.min()) < 1e-7:
        return None
    order = np.argsort(proj, kind="stable")
    lab = np.zeros(len(x), dtype=np.int64)
    lab[order[len(x) // 2 :]] = 1
    return lab


def recursive_kmeans(
    x: np.ndarray,
    *,
    max_leaf: int = 100,
    branching: int = 10,
    niter: int = 20,
    seed: int = 0,
    threads: int | None = None,
    progress: object | None = None,
) -> Tree:
    """Split ``x`` (n, d), L2-normalised rows, until every leaf has at most ``max_leaf`` rows.

    Deterministic for a seed: the k-means seed of a node is derived from ``seed`` and the node id.
    ``threads``: faiss threads for nodes of 50k rows or more (None = faiss' default); smaller nodes
    use one thread, since on a loaded machine OpenMP start-up costs more than their k-means (measured:
    0.4 s vs 1.5 ms per 200-row k-means on a busy 2-core box). ``progress.update(n)`` is called with
    the number of rows that land in a final leaf.
    """
    import faiss

    saved = faiss.omp_get_max_threads()
    try:
        return _recursive_kmeans(x, max_leaf=max_leaf, branching=branching, niter=niter, seed=seed,
                                 threads=threads or saved, progress=progress)
    finally:
        faiss.omp_set_num_threads(saved)


def _recursive_kmeans(x: np.ndarray, *, max_leaf: int, branching: int, niter: int, seed: int, threads: int,
                      progress: object | None) -> Tree:
    if max_leaf < 1:
        raise ValueError("max_leaf must be >= 1")
    if branching < 2:
        raise ValueError("branching must be >= 2")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    order = np.arange(n, dtype=np.int64)
    parent, depth, start, end, split = [-1], [0], [0], [n], ["leaf"]
    children: list[list[int]] = [[]]
    cents: list[np.ndarray] = [(_unit_mean(x) if n else np.zeros(x.shape[1], dtype=np.float32))]
    queue = [0]
    qi = 0
    while qi < len(queue):
        node = queue[qi]
        qi += 1
        a, b = start[node], end[node]
        m = b - a
        if m <= max_leaf:
            if progress is not None:
                progress.update(int(m))  # type: ignore[attr-defined]
            continue
        rows = order[a:b]
        sub = x[rows]
        k = min(branching, math.ceil(m / max_leaf))
        lab = _kmeans_assign(sub, k, niter=niter, seed=(seed * 1_000_003 + node) % (2**31 - 1), threads=threads)
        how = "kmeans"
        if np.bincount(lab, minlength=k).max() == m:  # k-means made no split
            lab = _principal_split(sub)
            how = "principal"
            if lab is None:  # all rows equal: contiguous chunks in input order
                lab = np.arange(m, dtype=np.int64) // max_leaf
                how = "chunks"
        split[node] = how
        perm = np.argsort(lab, kind="stable")
        order[a:b] = rows[perm]
        counts = np.bincount(lab)
        pos = a
        for cnt in counts:
            if cnt == 0:
                continue
            child = len(parent)
            parent.append(node)
            depth.append(depth[node] + 1)
            start.append(pos)
            end.append(pos + int(cnt))
            split.append("leaf")
            children.append([])
            children[node].append(child)
            cents.append(_unit_mean(x[order[pos : pos + int(cnt)]]))
            queue.append(child)
            pos += int(cnt)
    # renumber breadth-first (the queue order already is breadth-first)
    tree_parent = np.asarray(parent, dtype=np.int32)
    leaf_of = np.full(n, -1, dtype=np.int32)
    for node, ch in enumerate(children):
        if not ch:
            leaf_of[order[start[node] : end[node]]] = node
    return Tree(
        parent=tree_parent, depth=np.asarray(depth, dtype=np.int32), start=np.asarray(start, dtype=np.int64),
        end=np.asarray(end, dtype=np.int64), children=children,
        centroid=np.stack(cents).astype(np.float32) if cents else np.zeros((0, x.shape[1]), np.float32),
        split=split, order=order, leaf_of=leaf_of, max_leaf=max_leaf, branching=branching,
    )


# ------------------------------------------------------------------------------------ labels


@dataclass
class DocTerms:
    """A sparse document-term count matrix (CSR, rows = documents) and its vocabulary."""

    matrix: object  # scipy.sparse.csr_matrix (n, V), int32 counts
    vocab: list[str]


def doc_terms(texts: list[str]) -> DocTerms:
    """Count :func:`tokenize` terms per text into a CSR matrix (vocabulary in first-seen order)."""
    from scipy import sparse

    index: dict[str, int] = {}
    indptr = [0]
    cols: list[int] = []
    vals: list[int] = []
    for t in texts:
        counts: dict[int, int] = {}
        for w in tokenize(t):
            j = index.setdefault(w, len(index))
            counts[j] = counts.get(j, 0) + 1
        cols.extend(counts)
        vals.extend(counts.values())
        indptr.append(len(cols))
    mat = sparse.csr_matrix(
        (np.asarray(vals, dtype=np.int32), np.asarray(cols, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
        shape=(len(texts), len(index)),
    )
    return DocTerms(mat, list(index))


def node_term_counts(tree: Tree, doc_term: object) -> object:
    """(m nodes, V) term counts of every node: the sum of its rows of ``doc_term``."""
    from scipy import sparse

    d = sparse.csr_matrix(doc_term)[tree.order]  # rows in tree order: every node is a contiguous slice
    m = tree.n_nodes
    rows = np.repeat(np.arange(m), tree.sizes)
    cols = np.concatenate([np.arange(tree.start[i], tree.end[i]) for i in range(m)]) if m else np.zeros(0, np.int64)
    ind = sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(m, d.shape[0]))
    return (ind @ d.astype(np.int64)).tocsr()


def ctfidf_labels(tree: Tree, doc_term: object, vocab: list[str], *, top_n: int = 20) -> tuple[list[list[str]], list[list[float]]]:
    """Top ``top_n`` c-TF-IDF terms of every node, with their weights (highest first, ties by term)."""
    counts = node_term_counts(tree, doc_term)
    leaves = tree.leaves()
    leaf_counts = counts[leaves]
    f = np.asarray(leaf_counts.sum(axis=0)).ravel().astype(np.float64)  # each term's total count
    total = f.sum()
    a = total / max(len(leaves), 1)
    idf = np.log1p(a / np.maximum(f, 1.0))
    labels: list[list[str]] = []
    weights: list[list[float]] = []
    vocab_arr = np.asarray(vocab, dtype=object)
    for i in range(tree.n_nodes):
        lo, hi = counts.indptr[i], counts.indptr[i + 1]
        cols = counts.indices[lo:hi]
        if len(cols) == 0:
            labels.append([])
            weights.append([])
            continue
        tf = counts.data[lo:hi].astype(np.float64)
        w = tf / tf.sum() * idf[cols]
        terms = vocab_arr[cols]
        top = np.lexsort((terms, -w))[:top_n]
        labels.append([str(t) for t in terms[top]])
        weights.append([round(float(v), 6) for v in w[top]])
    return labels, weights


def leaf_term_index(tree: Tree, doc_term: object) -> object:
    """CSR (V terms x L leaves, in ``tree.leaves()`` order) of term counts: which leaves contain each term.

    Labels name a cluster by its top terms only; a fact's rare entity names are seldom among them, so
    the tracer also looks keywords up here (an inverted index from terms to leaves).
    """
    from scipy import sparse

    counts = node_term_counts(tree, doc_term)
    return sparse.csr_matrix(counts[tree.leaves()].T).astype(np.int32)
