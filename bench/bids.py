"""BIDS selection loop: the fast loop against the naive O(budget x N x M) loop, same inputs.

Matrices are LESS-like: each row "belongs" to one of T tasks (+1 on that task's columns, N(0,1)
noise), one task's columns inflated 20x, z-scored by ``core.zscore_columns`` (timed separately).
Where the naive loop is feasible both run on the same matrix, the selections are compared row by
row and the time ratio printed. Then the fast loop's scaling in N, M and budget, and the headline
100k x 1k at a 15% budget (fast loop only: the naive one would take hours).
Writes bench/results/bids.json.

    .venv/bin/python bench/bids.py            # full run
    .venv/bin/python bench/bids.py --quick    # smaller sizes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import write_result  # noqa: E402, I001

from tools.bids import core  # noqa: E402


def matrix(N: int, M: int, T: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, T, size=N)
    codes = np.arange(M) % T
    A = rng.standard_normal((N, M), dtype=np.float32)
    A += (owner[:, None] == codes[None, :])
    A[:, codes == 0] *= 20
    return A


def timed(fn, *a):  # noqa: ANN001, ANN202
    t = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t


def log(msg: str) -> None:
    print(msg, flush=True)  # noqa: T201


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    q = args.quick
    out: dict = {"side_by_side": [], "scaling": {"N": [], "M": [], "budget": []}}

    # -- naive vs fast where the naive loop is feasible ---------------------------------------------
    cases = [(2000, 50, 0.15), (5000, 100, 0.15), (10000, 200, 0.05)] if not q else [(2000, 50, 0.15)]
    if not q:
        cases.append((20000, 200, 0.05))
    for N, M, frac in cases:
        Z = core.zscore_columns(matrix(N, M)).Z
        b = int(frac * N)
        fast, tf = timed(core.bids_fast, Z, b)
        naive, tn = timed(core.bids_naive, Z, b)
        same = bool(np.array_equal(fast.indices, naive.indices))
        row = {"N": N, "M": M, "budget": b, "fast_s": tf, "naive_s": tn, "ratio": tn / tf, "identical": same}
        out["side_by_side"].append(row)
        log(f"N={N} M={M} budget={b}: naive {tn:.2f}s fast {tf:.3f}s ratio {tn / tf:.0f}x identical={same}")

    # -- fast loop scaling ----------------------------------------------------------------------
    base_N, base_M = (20000, 200) if q else (50000, 500)
    for N in ([5000, 10000, 20000] if q else [12500, 25000, 50000, 100000]):
        Z = core.zscore_columns(matrix(N, base_M)).Z
        _, t = timed(core.bids_fast, Z, int(0.15 * N))
        out["scaling"]["N"].append({"N": N, "M": base_M, "budget": int(0.15 * N), "fast_s": t})
        log(f"scaling N: N={N} M={base_M} budget={int(0.15 * N)} fast {t:.2f}s")
    for M in ([50, 100, 200] if q else [125, 250, 500, 1000]):
        Z = core.zscore_columns(matrix(base_N, M)).Z
        _, t = timed(core.bids_fast, Z, int(0.15 * base_N))
        out["scaling"]["M"].append({"N": base_N, "M": M, "budget": int(0.15 * base_N), "fast_s": t})
        log(f"scaling M: N={base_N} M={M} fast {t:.2f}s")
    Z = core.zscore_columns(matrix(base_N, base_M)).Z
    for frac in (0.01, 0.05, 0.15, 0.5):
        b = int(frac * base_N)
        _, t = timed(core.bids_fast, Z, b)
        out["scaling"]["budget"].append({"N": base_N, "M": base_M, "budget": b, "fast_s": t})
        log(f"scaling budget: N={base_N} M={base_M} budget={b} fast {t:.2f}s")
    del Z

    # -- headline: 100k x 1k, 15% budget ----------------------------------------------------------
    N, M = (100_000, 1000) if not q else (20000, 200)
    A = matrix(N, M)
    norm, t_norm = timed(core.zscore_columns, A)
    del A
    b = int(0.15 * N)
    sel, t_loop = timed(core.bids_fast, norm.Z, b)
    codes = np.arange(M) % 5
    rep = core.task_report(norm.Z, codes, 5, sel.indices)
    out["headline"] = {"N": N, "M": M, "budget": b, "normalize_s": t_norm, "fast_loop_s": t_loop,
                       "total_s": t_norm + t_loop, "goal_s": 30, "task_share": rep["share"].tolist(),
                       "fallback_scans": sel.meta["fallback_scans"]}
    log(f"headline N={N} M={M} budget={b}: normalise {t_norm:.2f}s + fast loop {t_loop:.2f}s = "
        f"{t_norm + t_loop:.2f}s (goal < 30 s); task shares {np.round(rep['share'], 3).tolist()}")
    path = write_result("bids" if not q else "bids_quick", out)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
