"""The baselines FASTTRACK is compared with (Chen et al. 2024, Table 2): BM25 top-k and embedding top-k.

Both return, per query, the ``k`` best corpus rows as a set (ties by row). BM25 is ``bm25s`` (Lucene
variant, k1 = 1.5, b = 0.75, English stopwords); embedding top-k is exact cosine on unit vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bm25_topk(corpus: Sequence[str], queries: Sequence[str], k: int) -> list[list[int]]:
    """Rows of the ``k`` highest BM25 scores per query (rows with a zero score are not returned)."""
    import bm25s

    if not corpus:
        return [[] for _ in queries]
    retriever = bm25s.BM25(k1=1.5, b=0.75)
    retriever.index(bm25s.tokenize(list(corpus), stopwords="en", show_progress=False), show_progress=False)
    k = min(k, len(corpus))
    q = bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
    docs, scores = retriever.retrieve(q, k=k, show_progress=False, n_threads=1)
    return [[int(d) for d, s in zip(dr, sr, strict=True) if s > 0] for dr, sr in zip(docs, scores, strict=True)]


def embedding_topk(doc_vecs: np.ndarray, query_vecs: np.ndarray, k: int) -> list[list[int]]:
    """Rows of the ``k`` highest cosine similarities per query (unit vectors: inner product)."""
    d = np.asarray(doc_vecs, dtype=np.float32)
    out = []
    k = min(k, len(d))
    for lo in range(0, len(query_vecs), 256):
        s = np.asarray(query_vecs[lo : lo + 256], dtype=np.float32) @ d.T
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        for row, cand in zip(s, idx, strict=True):
            out.append(cand[np.lexsort((cand, -row[cand]))].tolist())
    return out
