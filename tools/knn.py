"""The shared k-nearest-neighbour layer: one small API over faiss (CPU or GPU) with a NumPy fallback.

```
index = build_index(vectors, metric="ip" | "l2", kind="auto" | "flat" | "ivf" | "hnsw" | "numpy")
scores, ids = index.search(queries, k)     # float32 (m, k), int64 (m, k)
```

Conventions every caller can rely on:

- ``metric="ip"``: scores are inner products, larger = closer. ``metric="l2"``: scores are *squared*
  L2 distances, smaller = closer (faiss' convention; take the square root yourself).
- Rows are sorted best first. When fewer than ``k`` neighbours exist (``k > ntotal``, or an IVF
  probe that reaches too few points) the missing slots hold id ``-1`` and score ``-inf`` (ip) or
  ``+inf`` (l2).
- ``kind="auto"``: exact flat search below :data:`AUTO_IVF_MIN` vectors, IVF-Flat above it with
  ``nlist = int(sqrt(N)) // 2`` (as in TSDS' ``faiss_helper.py``), k-means trained on a seeded sample.
  ``kind="numpy"`` (and the fallback when faiss is not installed) is exact search in NumPy.
- ``device="cuda"`` uses faiss' GPU indexes when the installed faiss has them; otherwise the index
  stays on the CPU and ``index.device`` says so.

:func:`exact_search` is the NumPy oracle, batched over queries so memory stays bounded.
faiss is imported inside functions only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Metric = Literal["ip", "l2"]
Kind = Literal["auto", "flat", "ivf", "hnsw", "numpy"]

AUTO_IVF_MIN = 50_000
"""``kind="auto"`` switches from exact flat search to IVF at this many vectors."""

HNSW_M = 32
HNSW_EF_SEARCH = 128
GPU_MAX_K = 2048  # faiss GPU indexes refuse k above this; such searches run on a CPU copy
_EXACT_BLOCK_FLOATS = 32_000_000  # ~128 MB of float32 scores per query block in exact_search

__all__ = [
    "AUTO_IVF_MIN",
    "KnnIndex",
    "build_index",
    "default_nlist",
    "exact_search",
    "faiss_available",
    "recall_at_k",
]


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss_gpu_available() -> bool:
    try:
        import faiss
    except ImportError:
        return False
    return hasattr(faiss, "StandardGpuResources") and getattr(faiss, "get_num_gpus", lambda: 0)() > 0


def default_nlist(n: int) -> int:
    """TSDS' choice (``faiss_helper.py``): ``int(sqrt(N)) // 2`` inverted lists, at least 1."""
    return max(1, int(math.isqrt(max(n, 1))) // 2)


def _as_matrix(x: np.ndarray, name: str, d: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (n, d); got shape {x.shape}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} must have dimension {d}; got {x.shape[1]}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _missing_score(metric: Metric) -> np.float32:
    return np.float32(-np.inf) if metric == "ip" else np.float32(np.inf)


# ------------------------------------------------------------------------------ exact (oracle)


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, metric: Metric = "ip", *, block: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN in NumPy: ``(scores float32 (m, k), ids int64 (m, k))``, best first.

    Queries are processed in blocks so at most ~128 MB of scores live at once. Ties are broken by
    the smaller id. Conventions as in the module docstring (squared L2 for ``metric="l2"``).
    """
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric must be 'ip' or 'l2'; got {metric!r}")
    xb = _as_matrix(vectors, "vectors")
    xq = _as_matrix(queries, "queries", xb.shape[1])
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    n, m = xb.shape[0], xq.shape[0]
    kk = min(k, n)
    out_s = np.full((m, k), _missing_score(metric), dtype=np.float32)
    out_i = np.full((m, k), -1, dtype=np.int64)
    if n == 0 or m == 0:
        return out_s, out_i
    xb_sq = np.einsum("ij,ij->i", xb, xb, dtype=np.float64) if metric == "l2" else None
    step = block or max(1, _EXACT_BLOCK_FLOATS // max(n, 1))
    for lo in range(0, m, step):
        q = xq[lo : lo + step]
        s = (q.astype(np.float64) @ xb.T.astype(np.float64)) if n * len(q) <= 4_000_000 else (q @ xb.T)
        s = np.asarray(s, dtype=np.float64)
        if metric == "l2":
            q_sq = np.einsum("ij,ij->i", q, q, dtype=np.float64)
            s = np.maximum(q_sq[:, None] + xb_sq[None, :] - 2.0 * s, 0.0)
            key = s
        else:
            key = -s
        if kk < n:
            part = np.argpartition(key, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(n), (len(q), n)).copy()
        pk = np.take_along_axis(key, part, axis=1)
        order = np.lexsort((part, pk), axis=1)  # by key, then by id
        ids = np.take_along_axis(part, order, axis=1)
        out_i[lo : lo + len(q), :kk] = ids
        out_s[lo : lo + len(q), :kk] = np.take_along_axis(s, ids, axis=1).astype(np.float32)
    return out_s, out_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` ids (``-1`` ignored) that appears in the same row of ``found``."""
    hits = 0
    total = 0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        total += len(t)
        hits += np.isin(t, f[f >= 0]).sum()
    return float(hits / total) if total else 1.0


# ------------------------------------------------------------------------------------- index


@dataclass
class KnnIndex:
    """A built k-NN index. ``search(queries, k) -> (scores, ids)``; see the module docstring."""

    metric: Metric
    kind: Literal["flat", "ivf", "hnsw", "numpy"]
    ntotal: int
    dim: int
    device: str = "cpu"
    nlist: int | None = None
    nprobe: int | None = None
    _index: Any = field(default=None, repr=False)
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _cpu_index: Any = field(default=None, repr=False)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError(f"k must be at least 1; got {k}")
        xq = _as_matrix(queries, "queries", self.dim)
        if self.kind == "numpy":
            return exact_search(self._vectors, xq, k, self.metric)
        index = self._index
        if self.device != "cpu" and k > GPU_MAX_K:
            index = self._cpu()
        if self.kind == "ivf":
            _set_nprobe(index, self.nprobe or 1)
        if self.kind == "hnsw":
            index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
        kk = min(k, self.ntotal)
        if kk == 0 or len(xq) == 0:
            return (
                np.full((len(xq), k), _missing_score(self.metric), np.float32),
                np.full((len(xq), k), -1, np.int64),
            )
        d, i = index.search(xq, kk)
        d = np.asarray(d, dtype=np.float32)
        i = np.asarray(i, dtype=np.int64)
        missing = i < 0
        if missing.any():
            d[missing] = _missing_score(self.metric)
        if kk < k:
            pad_d = np.full((len(xq), k - kk), _missing_score(self.metric), np.float32)
            pad_i = np.full((len(xq), k - kk), -1, np.int64)
            d, i = np.hstack([d, pad_d]), np.hstack([i, pad_i])
        return d, i

    def _cpu(self) -> Any:
        if self._cpu_index is None:
            import faiss

            self._cpu_index = faiss.index_gpu_to_cpu(self._index)
        return self._cpu_index


def _set_nprobe(index: Any, nprobe: int) -> None:
    import faiss

    try:
        faiss.extract_index_ivf(index).nprobe = nprobe
    except Exception:  # noqa: BLE001 - GPU IVF indexes expose nprobe directly
        index.nprobe = nprobe


def build_index(
    vectors: np.ndarray,
    *,
    metric: Metric = "ip",
    kind: Kind = "auto",
    nlist: int | None = None,
    nprobe: int = 10,
    device: str = "cpu",
    seed: int = 0,
) -> KnnIndex:
    """Build a k-NN index over ``vectors`` (n, d).

    ``kind="auto"``: exact flat search for fewer than :data:`AUTO_IVF_MIN` vectors, else IVF-Flat with
    ``nlist`` lists (default :func:`default_nlist`) and ``nprobe`` probed per query; the IVF coarse
    quantizer is trained with k-means on a seeded sample of at most 256 points per list (faiss' own
    cap). ``device`` starting with ``"cuda"`` moves flat/IVF indexes to the GPU when faiss has GPU
    support. Without faiss every kind becomes ``"numpy"`` (exact).
    """
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric must be 'ip' or 'l2'; got {metric!r}")
    if kind not in ("auto", "flat", "ivf", "hnsw", "numpy"):
        raise ValueError(f"kind must be one of auto, flat, ivf, hnsw, numpy; got {kind!r}")
    xb = _as_matrix(vectors, "vectors")
    n, d = xb.shape
    if d == 0:
        raise ValueError("vectors must have at least one dimension")
    if kind == "auto":
        kind = "flat" if n < AUTO_IVF_MIN else "ivf"
    if kind != "numpy" and not faiss_available():
        kind = "numpy"
    if kind == "numpy" or n == 0:
        return KnnIndex(metric=metric, kind="numpy", ntotal=n, dim=d, _vectors=xb)

    import faiss

    fmetric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    lists: int | None = None
    if kind == "flat":
        index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, fmetric)
    else:
        lists = int(nlist) if nlist else default_nlist(n)
        lists = max(1, min(lists, n))
        quantizer = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, lists, fmetric)
        index.cp.seed = int(seed)
        n_train = min(n, 256 * lists)
        if n_train < n:
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(n, size=n_train, replace=False))
            train = xb[sample]
        else:
            train = xb
        index.train(train)

    on = "cpu"
    if device.startswith("cuda") and kind in ("flat", "ivf") and _faiss_gpu_available():
        dev_no = int(device.split(":", 1)[1]) if ":" in device else 0
        res = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(res, dev_no, index)
        index._curate_res = res  # keep the resources alive with the index
        on = f"cuda:{dev_no}"
    index.add(xb)
    if lists:
        _set_nprobe(index, min(nprobe, lists))
    return KnnIndex(
        metric=metric,
        kind=kind,
        ntotal=n,
        dim=d,
        device=on,
        nlist=lists,
        nprobe=min(nprobe, lists) if lists else None,
        _index=index,
    )
