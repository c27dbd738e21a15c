"""TSDS end to end (index, search, KDE, probabilities): ours vs the reference tsds.py, same input.

Data: ``--candidates`` (default 1M) x 384-d pool and ``--queries`` (default 1k) targets, random but
clustered like sentence embeddings (unit vectors around cluster centres of Zipf-like sizes; the
targets come from a few of the clusters, as a task does). Each side runs in a fresh process, so its
peak RSS is its own, at the paper's defaults (alpha 0.5, C 5, sigma 0.75, K 5000, KDE-K 1000, IVF
nprobe 10). When ``TSDS_REF`` points at a checkout of ZifanL/TSDS (its ``tsds.py``), the reference
runs on the same .npy files, unmodified; its probability vector is captured at its multinomial draw,
so the two are compared directly (L1) besides the wall-time ratio. Writes bench/results/tsds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_result  # noqa: I001

OURS = """
import sys
import numpy as np
from tools.tsds import core
xq = np.load({xq!r}); xb = np.load({xb!r})
t = time.perf_counter()
_last = [0.0]
def log(stage, done, total):  # stage progress on stderr (the bench streams it to a log file), <= 1 line / 5 s
    now = time.perf_counter() - t
    if done in (0, total) or now - _last[0] >= 5:
        _last[0] = now
        print(f"{{now:8.1f}}s {{stage}} {{done}}/{{total}}", file=sys.stderr, flush=True)
res = core.tsds_probabilities(xq, xb, alpha={alpha}, C={C}, sigma={sigma}, max_K={max_K}, kde_K={kde_K},
                              index={index!r}, seed=0, progress=log)
total = time.perf_counter() - t
np.save({out!r}, res.probs)
ru = resource.getrusage(resource.RUSAGE_SELF)
out = {{"algo_s": total, "cpu_s": ru.ru_utime + ru.ru_stime, "timings": res.timings, "K": res.K, "kde_K": res.kde_K, "union": res.union_size, "kde_evaluated": res.kde_evaluated,
        "level": res.level, "neighbours_mean": float(res.neighbours_used.mean()),
        "neighbours_max": int(res.neighbours_used.max()), "truncated": res.truncated,
        "ess": core.effective_sample_size(res.probs), "index": res.index_kind}}
"""

# Runs the reference script as is (with python -O: under NumPy 2, NEP 50 makes its heap keys float32
# and its final sanity assert trips on rounding); np.random.multinomial is wrapped to keep a copy of
# the probability vector it draws from, and to renormalise it when rounding put its sum past 1.
REF_WRAPPER = """
import json, resource, runpy, sys, time
import numpy as np
script, probs_out = sys.argv[1], sys.argv[2]
_draw = np.random.multinomial
def _keep(n, pvals, size=None):
    np.save(probs_out, np.asarray(pvals, dtype=np.float64))
    try:
        return _draw(n, pvals, size)
    except ValueError:  # under NumPy 2 its float32 heap keys can push sum(p) just past 1
        p = np.asarray(pvals, dtype=np.float64)
        return _draw(n, p / p.sum(), size)
np.random.multinomial = _keep
sys.path.insert(0, __import__("os").path.dirname(script))
sys.argv = [script]
t0 = time.perf_counter()
runpy.run_path(script, run_name="__main__")
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": ru.ru_utime + ru.ru_stime,
                  "peak_rss_mb": ru.ru_maxrss / 1024}))
"""


def make_data(n: int, m: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around cluster centres; cluster sizes Zipf-like; targets from 20 clusters."""
    rng = np.random.default_rng(seed)
    n_clusters = max(20, n // 500)
    centres = rng.standard_normal((n_clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    assign = rng.choice(n_clusters, size=n, p=sizes / sizes.sum())
    # noise per coordinate s: cosine to the centre ~ 1/sqrt(1 + s^2 d), between cluster mates ~ 1/(1 + s^2 d);
    # s^2 d spread over 0.3..1.2 gives mates at cosine ~0.45-0.75, near-duplicate pairs at the tight end
    scale = np.sqrt(rng.uniform(0.3, 1.2, n_clusters) / d).astype(np.float32)
    xb = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 100_000):
        a = assign[lo : lo + 100_000]
        x = centres[a] + scale[a, None] * rng.standard_normal((len(a), d), dtype=np.float32)
        xb[lo : lo + len(a)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    task = rng.choice(n_clusters, size=20, replace=False)
    qa = task[rng.integers(0, 20, m)]
    xq = centres[qa] + scale[qa, None] * rng.standard_normal((m, d), dtype=np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    return xq, xb


def run_logged(code: str, log: Path) -> dict:
    """Like _common.run_child, but the child's stderr goes to ``log`` as it runs."""
    wrapper = (
        "import json, resource, time\n"
        "t0 = time.perf_counter()\n"
        f"{code}\n"
        "out['wall_s'] = time.perf_counter() - t0\n"
        "out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(out))\n"
    )
    root = Path(__file__).resolve().parents[1]
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, "-c", wrapper], stdout=subprocess.PIPE, stderr=err, text=True,
                              cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    if proc.returncode != 0:
        raise RuntimeError(log.read_text()[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_reference(ref: Path, tmp: Path, xq: Path, xb: Path, args: argparse.Namespace) -> dict:
    ref = ref.resolve()
    script = ref / "tsds.py" if ref.is_dir() else ref
    work = tmp / "ref"
    work.mkdir(exist_ok=True)
    (work / "config.yaml").write_text(
        "\n".join(
            [
                f"query_embedding_path: {xq}",
                f"candidate_embedding_path: {xb}",
                f"output_folder: {work / 'output'}",
                "sample_size: 100",
                f"alpha: {args.alpha}",
                f"C: {args.C}",
                f"sigma: {args.sigma}",
                f"max_K: {args.max_K}",
                f"kde_K: {args.kde_K}",
            ]
        )
        + "\n"
    )
    probs = tmp / "ref_probs.npy"
    t0 = time.perf_counter()
    print(f"reference: running (log: {work / 'ref.log'})", flush=True)
    with open(work / "ref.log", "w") as err:
        proc = subprocess.run(
            [sys.executable, "-O", "-c", REF_WRAPPER, str(script), str(probs)], cwd=work, stdout=subprocess.PIPE,
            stderr=err, text=True,
        )
    if proc.returncode != 0:
        return {"error": (work / "ref.log").read_text()[-2000:], "wall_s": time.perf_counter() - t0}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["probs_path"] = str(probs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--C", type=float, default=5.0)
    ap.add_argument("--sigma", type=float, default=0.75)
    ap.add_argument("--max-K", dest="max_K", type=int, default=5000)
    ap.add_argument("--kde-K", dest="kde_K", type=int, default=1000)
    ap.add_argument("--index", default="auto", choices=["auto", "flat", "ivf"])
    ap.add_argument("--ref", default=os.environ.get("TSDS_REF"), help="reference tsds.py or its checkout (env TSDS_REF)")
    ap.add_argument("--skip-ours", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_tsds_"))
    t0 = time.perf_counter()
    xq, xb = make_data(args.candidates, args.queries, args.dim)
    xq_p, xb_p = tmp / "xq.npy", tmp / "xb.npy"
    np.save(xq_p, xq)
    np.save(xb_p, xb)
    del xq, xb
    print(f"data: {args.candidates} x {args.dim} pool, {args.queries} targets ({time.perf_counter() - t0:.1f}s to make)",
          flush=True)
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} CPUs (other processes share them)")

    result: dict = {"candidates": args.candidates, "queries": args.queries, "dim": args.dim,
                    "params": {k: getattr(args, k) for k in ("alpha", "C", "sigma", "max_K", "kde_K", "index")},
                    "loadavg_start": load}
    ours_probs = tmp / "ours_probs.npy"
    if not args.skip_ours:
        code = OURS.format(xq=str(xq_p), xb=str(xb_p), out=str(ours_probs), alpha=args.alpha, C=args.C,
                           sigma=args.sigma, max_K=args.max_K, kde_K=args.kde_K, index=args.index)
        log = tmp / "ours.log"
        print(f"ours: running (stage log: {log})", flush=True)
        ours = run_logged(code, log)
        result["ours"] = ours
        tm = ours["timings"]
        print(f"ours:      {ours['wall_s']:7.1f}s end to end (algorithm {ours['algo_s']:.1f}s: index {tm['index_s']:.1f}, "
              f"search {tm['search_s']:.1f}, kde {tm.get('kde_s', 0):.1f}, probabilities {tm['probabilities_s']:.2f}); "
              f"CPU {ours['cpu_s']:.0f}s; peak RSS {ours['peak_rss_mb']:.0f} MB")
        print(f"           K {ours['K']}, |U| {ours['union']} (densities needed: {ours['kde_evaluated']}), neighbours/target mean {ours['neighbours_mean']:.1f} "
              f"max {ours['neighbours_max']}, truncated {ours['truncated']}, ESS {ours['ess']:.0f}, index {ours['index']}")
    if args.ref:
        ref = run_reference(Path(args.ref), tmp, xq_p, xb_p, args)
        result["reference"] = {k: v for k, v in ref.items() if k != "probs_path"}
        if "error" in ref:
            print(f"reference: failed after {ref['wall_s']:.1f}s: {ref['error'][-400:]}")
        else:
            rp = np.load(ref["probs_path"])
            print(f"reference: {ref['wall_s']:7.1f}s end to end; CPU {ref['cpu_s']:.0f}s; peak RSS {ref['peak_rss_mb']:.0f} MB; "
                  f"sum p = {rp.sum():.6f}")
            result["reference"]["sum_p"] = float(rp.sum())
            if "ours" in result:
                op = np.load(ours_probs)
                l1 = float(np.abs(op - rp).sum())
                ratio = ref["wall_s"] / result["ours"]["wall_s"]
                cpu_ratio = ref["cpu_s"] / result["ours"]["cpu_s"]
                result.update(l1_ours_vs_reference=l1, speedup=ratio, cpu_speedup=cpu_ratio)
                print(f"speed-up (reference / ours): {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU time; "
                      f"L1(ours, reference) = {l1:.4f} "
                      "(both approximate: IVF indexes trained on different samples)")
    else:
        print("reference: skipped (set TSDS_REF to a checkout of ZifanL/TSDS to compare)")
    path = write_result("tsds", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
