"""Selection quality on real data: our DSIR and TSDS (defaults), cosine top-k to the target centroid,
random sampling and the reference DSIR package, side by side on held-out target sets.

    .venv/bin/python bench/selection_quality.py [--cases dev|test|all] [--quick] [--work DIR]
                                                [--methods tsds,cosine] [--out NAME]

The pool (bench/selection_cases.py): twelve public sources from ../shared/data/raw, about 15k
documents (``--quick``: about 4k), each labelled with its source in ``domain``. Each case is a
target set of real rows from one source, held out of the pool, and a budget k. The ``domain`` field
is only for scoring (the selectors see it only because it is in the file).

Metrics per (case, method):
- ``prec``: share of selected rows whose source is the target's (``ceil`` = the best possible,
  min(1, in-source pool docs / k));
- ``klr``: KL reduction on hashed uni+bigrams, ``tools.metrics.kl_reduction_texts`` (nats, higher
  = closer to the target);
- ``ot``: W1 distance target -> selection in MiniLM space (each side subsampled to <= 1000 points;
  lower = closer);
- ``div``: mean pairwise cosine distance of the distinct selected documents' embeddings, and
  ``nsrc``: distinct sources among them (higher = more diverse);
- ``n``: distinct documents in the selection table (TSDS draws k distinct documents by default; with
  ``replace=true`` it draws k times with replacement and may hand back fewer; every metric is over
  the table's rows);
- ``s``: wall seconds of the method (the pool's embeddings are computed once, outside the methods,
  and shared by TSDS and cosine; the reference featurizes the pool again on every case).

A method that fails on a case is recorded as an error string, not a crash. Results go to
bench/results/selection_quality.json (git-ignored); the work folder (pool, targets, workspace and
embedding cache) defaults to /tmp/selection_quality and is never inside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference package's progress bars
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import selection_cases as sc  # noqa: E402
from _common import write_result  # noqa: E402

METHODS = ("dsir", "tsds", "cosine", "random", "ref_dsir")
METRICS = ("prec", "klr", "ot", "div", "nsrc", "n", "s")
SHOWN = METRICS  # table column groups
ABBR = {"dsir": "dsir", "tsds": "tsds", "cosine": "cos", "random": "rand", "ref_dsir": "refds"}
OT_POINTS = 1000
WORKERS = 2


# ------------------------------------------------------------------------------------ methods
# Each returns the selected pool ids (a list; repeats allowed if the method draws with replacement).


def _ids_of(ctx, res) -> list[str]:  # noqa: ANN001
    table = ctx.workspace.get(res.artifacts["selection"]).table()
    return [str(x) for x in table.column("id").to_pylist()]


def run_dsir(env: dict, case: sc.Case, target: Path) -> list[str]:
    from tools import dsir

    res = dsir.run(dict(corpus=str(env["pool"]), target=str(target), k=case.k, seed=0), env["ctx"])
    return _ids_of(env["ctx"], res)


def run_tsds(env: dict, case: sc.Case, target: Path) -> list[str]:
    from tools import tsds

    res = tsds.run(
        dict(corpus=str(env["pool"]), target=str(target), k=case.k, seed=0, embeddings=env["emb_id"],
             target_embeddings=env["target_emb_id"]),
        env["ctx"],
    )
    return _ids_of(env["ctx"], res)


def run_cosine(env: dict, case: sc.Case, target: Path) -> list[str]:
    centroid = env["target_vecs"].mean(axis=0)
    sims = env["pool_vecs"] @ centroid
    top = np.argsort(-sims, kind="stable")[: case.k]
    return [env["pool_ids"][i] for i in top]


def run_random(env: dict, case: sc.Case, target: Path) -> list[str]:
    from tools import sample

    res = sample.run(dict(corpus=str(env["pool"]), k=case.k, seed=0), env["ctx"])
    return _ids_of(env["ctx"], res)


def run_ref_dsir(env: dict, case: sc.Case, target: Path) -> list[str]:
    """data-selection 1.0.3 with its defaults (min_example_length=100, num_tokens_to_fit='auto')."""
    from data_selection import HashedNgramDSIR

    base = env["work"] / "ref" / case.name
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    out = base / "out"  # must not exist before resample()
    np.random.seed(0)  # the package samples with the global np.random
    d = HashedNgramDSIR([str(env["pool"])], [str(target)], cache_dir=str(base / "cache"), num_proc=WORKERS)
    d.fit_importance_estimator(num_tokens_to_fit="auto")
    d.compute_importance_weights()
    d.resample(out_dir=str(out), num_to_sample=case.k)
    ids = []
    for f in sorted(out.glob("*.jsonl")):
        ids += [json.loads(x)["id"] for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
    shutil.rmtree(base, ignore_errors=True)
    return ids


RUNNERS: dict[str, Callable[[dict, sc.Case, Path], list[str]]] = {
    "dsir": run_dsir, "tsds": run_tsds, "cosine": run_cosine, "random": run_random, "ref_dsir": run_ref_dsir,
}


# ------------------------------------------------------------------------------------ metrics


def mean_pairwise_cosine_distance(vecs: np.ndarray) -> float:
    """1 - mean cosine over distinct pairs of unit vectors: (|sum v|^2 - n) / (n (n - 1)), O(n d)."""
    n = len(vecs)
    if n < 2:
        return 0.0
    v = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    s = v.sum(axis=0)
    return float(1.0 - (s @ s - n) / (n * (n - 1)))


def score(env: dict, case: sc.Case, ids: list[str], target_texts: list[str]) -> dict:
    from tools.metrics import kl_reduction_texts, ot_distance

    if not ids:
        raise RuntimeError("the method selected no documents")
    rows = np.array([env["row_of"][i] for i in ids])
    domains = [env["pool_domains"][r] for r in rows]
    distinct = np.unique(rows)
    rng = np.random.default_rng(0)
    tv = env["target_vecs"]
    tv = tv[rng.choice(len(tv), OT_POINTS, replace=False)] if len(tv) > OT_POINTS else tv
    sv = env["pool_vecs"][rows]
    sv = sv[rng.choice(len(sv), OT_POINTS, replace=False)] if len(sv) > OT_POINTS else sv
    return {
        "prec": float(np.mean([d == case.source for d in domains])),
        "klr": kl_reduction_texts([env["pool_texts"][r] for r in rows], env["pool_texts"], target_texts),
        "ot": ot_distance(tv, sv),
        "div": mean_pairwise_cosine_distance(env["pool_vecs"][distinct]),
        "nsrc": len({env["pool_domains"][r] for r in distinct}),
        "n": int(distinct.size),
        "rows": len(ids),
    }


# ------------------------------------------------------------------------------------- output


def _cell(v) -> str:  # noqa: ANN001
    if isinstance(v, str):
        return "ERR"
    if isinstance(v, int):
        return f"{v:d}"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def print_table(split: str, rows: list[dict], methods: tuple[str, ...] = METHODS) -> None:
    """Rows: cases; columns: metric groups, one column per method inside each (methods side by side)."""
    METHODS = methods  # noqa: N806 - the methods that ran (--methods), in the default order
    w = 7
    lead = f"{'case':<22}{'k':>5}{'tgt':>5}{'ceil':>5} |"
    print(f"\n== {split} split ({len(rows)} cases) ==")
    print(" " * len(lead) + "|".join(f"{x:^{w * len(METHODS)}}" for x in SHOWN))
    print(lead + "|".join("".join(f"{ABBR[m]:>{w}}" for m in METHODS) for _ in SHOWN))
    errors = []
    for r in rows:
        groups = []
        for x in SHOWN:
            cells = []
            for m in METHODS:
                res = r["methods"][m]
                cells.append("ERR" if "error" in res else _cell(res[x]))
            groups.append("".join(f"{c:>{w}}" for c in cells))
        errors += [f"{r['case']} / {m}: {res['error']}" for m, res in r["methods"].items() if "error" in res and m in METHODS]
        print(f"{r['case']:<22}{r['k']:>5}{r['n_target']:>5}{r['ceiling']:>5.2f} |" + "|".join(groups))
    groups = []
    for x in SHOWN:
        cells = []
        for m in METHODS:
            vals = [r["methods"][m][x] for r in rows if "error" not in r["methods"][m]]
            cells.append(_cell(float(np.mean(vals))) if vals else "-")
        groups.append("".join(f"{c:>{w}}" for c in cells))
    print(f"{'mean':<22}{'':>5}{'':>5}{np.mean([r['ceiling'] for r in rows]):>5.2f} |" + "|".join(groups))
    for e in errors:
        print("error:", e)


def split_means(rows: list[dict]) -> dict:
    out = {}
    for m in METHODS:
        ok = [r["methods"][m] for r in rows if "error" not in r["methods"][m]]
        out[m] = {x: (float(np.mean([o[x] for o in ok])) if ok else None) for x in METRICS}
        out[m]["errors"] = len(rows) - len(ok)
    return out


# --------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="dev", choices=("dev", "test", "all"))
    ap.add_argument("--quick", action="store_true", help="a ~4k-document pool instead of ~15k")
    ap.add_argument("--work", type=Path, default=Path("/tmp/selection_quality"),
                    help="work folder: pool, targets, workspace, embedding cache (kept between runs)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    ap.add_argument("--out", default="selection_quality",
                    help="result name: bench/results/NAME.json (default selection_quality)")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")

    from tools import embed
    from tools.contract import ToolContext

    t_all = time.perf_counter()
    work = args.work / ("quick" if args.quick else "full")
    built = sc.build(work, quick=args.quick)
    ws = args.work / "workspace"  # shared by both sizes: the embedding cache is keyed by text
    ctx = ToolContext(workspace_dir=ws, show_progress=False, num_workers=WORKERS, use_cache=False)
    ectx = ToolContext(workspace_dir=ws, show_progress=False, num_workers=WORKERS)
    print(f"pool: {len(built.pool_rows)} documents from {len(built.sizes)} sources -> {built.pool}")
    for src, s in built.sizes.items():
        print(f"  {src:<16} pool {s['pool']:>5}  held out {s['heldout']:>4}  median words {s['median_words']}")

    t = time.perf_counter()
    emb_id = embed.run(dict(corpus=str(built.pool), vector_store=False), ectx).artifacts["embeddings"]
    pool_ids, matrix, _ = embed.load_embeddings(emb_id, ectx)
    embed_s = time.perf_counter() - t
    print(f"pool embeddings: {matrix.shape} in {embed_s:.1f}s")
    env = {
        "pool": built.pool, "work": work, "ctx": ctx, "emb_id": emb_id,
        "pool_ids": list(pool_ids), "pool_vecs": np.asarray(matrix, dtype=np.float32),
        "row_of": {i: r for r, i in enumerate(pool_ids)},
    }
    by_id = {r["id"]: r for r in built.pool_rows}
    env["pool_texts"] = [by_id[i]["text"] for i in env["pool_ids"]]
    env["pool_domains"] = [by_id[i]["domain"] for i in env["pool_ids"]]
    in_source = {s: v["pool"] for s, v in built.sizes.items()}

    results = []
    for case in sc.select_cases(args.cases):
        target, target_texts = sc.write_target(built, case, work)
        row = {"case": case.name, "split": case.split, "source": case.source, "kind": case.kind,
               "k": case.k, "n_target": case.n_target, "ceiling": min(1.0, in_source[case.source] / case.k),
               "methods": {}}
        try:
            env["target_emb_id"] = embed.run(dict(corpus=str(target), vector_store=False), ectx).artifacts["embeddings"]
            env["target_vecs"] = np.asarray(embed.load_embeddings(env["target_emb_id"], ectx)[1], dtype=np.float32)
        except Exception as e:  # noqa: BLE001 - every method needs this; record and go on
            row["methods"] = {m: {"error": f"target embedding: {type(e).__name__}: {e}"[:300]} for m in METHODS}
            results.append(row)
            continue
        for m in METHODS:
            if m not in methods:
                row["methods"][m] = {"error": "not run (--methods)"}
                continue
            t = time.perf_counter()
            try:
                ids = RUNNERS[m](env, case, target)
                wall = time.perf_counter() - t
                row["methods"][m] = {**score(env, case, ids, target_texts), "s": wall}
            except Exception as e:  # noqa: BLE001 - a failing method is a table entry, not a crash
                row["methods"][m] = {"error": f"{type(e).__name__}: {e}"[:300],
                                     "trace": traceback.format_exc(limit=3)[-800:]}
        done = ", ".join(f"{m} {r.get('prec', 'ERR') if 'error' not in r else 'ERR'!s:.4}" for m, r in row["methods"].items())
        print(f"  {case.name}: prec {done}", flush=True)
        results.append(row)

    for split in ("dev", "test"):
        rows = [r for r in results if r["split"] == split]
        if rows:
            print_table(split, rows, tuple(m for m in METHODS if m in methods))
    path = write_result(args.out, {
        "quick": args.quick, "cases_arg": args.cases, "methods_run": methods, "pool_docs": len(built.pool_rows), "sources": built.sizes,
        "embed_pool_s": embed_s, "embedding_shape": list(matrix.shape), "metrics": {
            "prec": "share of selected rows from the target's source", "klr": "KL reduction, hashed uni+bigrams (nats)",
            "ot": f"W1 target->selection, MiniLM, <= {OT_POINTS} points per side", "div": "mean pairwise cosine "
            "distance of distinct selected docs", "nsrc": "distinct sources selected", "n": "distinct documents selected", "s": "method wall seconds"},
        "cases": results,
        "means": {s: split_means([r for r in results if r["split"] == s]) for s in ("dev", "test")
                  if any(r["split"] == s for r in results)},
        "total_s": time.perf_counter() - t_all,
    })
    print(f"\nwrote {path} ({time.perf_counter() - t_all:.0f}s total)")


if __name__ == "__main__":
    main()
