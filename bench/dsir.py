"""DSIR: our tool vs the reference package (data-selection 1.0.3) on the same JSONL, in one run.

Both do fit + importance weights + resample of k = docs/20 documents with 2 worker processes
(``num_proc=2`` / ``num_workers=2``), each in its own fresh interpreter (so peak RSS is its own),
alternating ours, reference over ``--rounds``. Prints both wall times, the ratio (reference / ours)
and peak RSS, and how many picks land in the target's domain; writes bench/results/dsir.json
(dsir_parity.json with ``--parity``).

Ours is measured as the full tool run (reading, featurization, both models, weights, Gumbel top-k,
the KL reduction, and the scores + selection artifacts); the reference's includes writing the
selected lines. Settings are the reference defaults except ``hash``/``target_prior`` (``--parity``
runs ours in sha256 parity mode with the reference's target model).

The corpus: ``--docs`` documents of 80-250 words, 70% web / 20% code / 10% math, each domain a
Zipf distribution over its own ordering of a 30k-word pseudo-vocabulary plus shared function words
and punctuation; the target is 5000 math documents from the same generator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from _common import run_child, write_result  # noqa: I001

OURS = """
import resource
from tools.contract import ToolContext
from tools import dsir
ctx = ToolContext(workspace_dir={ws!r}, show_progress=False, num_workers=2, use_cache=False)
r = dsir.run(dict(corpus={pool!r}, target={target!r}, k={k}, seed=0, **{extra!r}), ctx)
out = {{"k": r.k, "domains": r.domain_counts, "kl_reduction": r.kl_reduction, "eligible": r.eligible,
       "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}
"""

REFERENCE = """
import json, resource, time
from pathlib import Path
import numpy as np
from collections import Counter
from data_selection import HashedNgramDSIR
np.random.seed(0)
d = HashedNgramDSIR([{pool!r}], [{target!r}], cache_dir={cache!r}, num_proc=2)
t = time.perf_counter(); d.fit_importance_estimator(num_tokens_to_fit="auto"); fit_s = time.perf_counter() - t
t = time.perf_counter(); d.compute_importance_weights(); w_s = time.perf_counter() - t
t = time.perf_counter(); d.resample(out_dir={out!r}, num_to_sample={k}); r_s = time.perf_counter() - t
doms = Counter(json.loads(x)["domain"] for f in Path({out!r}).glob("*.jsonl") for x in open(f))
out = {{"k": sum(doms.values()), "domains": dict(doms), "fit_s": fit_s, "weights_s": w_s, "resample_s": r_s,
       "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}
"""

SHARES = {"web": 0.7, "code": 0.2, "math": 0.1}


def _vocab(rng: np.random.Generator, n: int = 30_000) -> np.ndarray:
    syll = np.array("ka lo mi ne ru ta po se di an ex or un in re co de ma li su ve ra to ni".split())
    parts = rng.integers(0, len(syll), size=(n, 3))
    nsyl = rng.integers(1, 4, size=n)
    words = ["".join(syll[p[:k]]) + str(i % 7 if i % 11 == 0 else "") for i, (p, k) in enumerate(zip(parts, nsyl, strict=True))]
    return np.array(words)


def generate(pool: Path, target: Path, docs: int, n_target: int = 5000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = _vocab(rng)
    function_words = np.array("the of and to in is that for it as was with be by on not this are or".split())
    ranks = np.arange(1, vocab.size + 1, dtype=np.float64)
    zipf = 1.0 / ranks**1.1
    zipf /= zipf.sum()
    orders = {d: rng.permutation(vocab.size) for d in SHARES}

    def write(fh, n: int, domain_of: np.ndarray, start: int, prefix: str) -> None:  # noqa: ANN001
        lens = rng.integers(80, 251, size=n)
        for d in SHARES:
            sel = np.flatnonzero(domain_of == d)
            if not sel.size:
                continue
            total = int(lens[sel].sum())
            ids = orders[d][rng.choice(vocab.size, size=total, p=zipf)]
            words = vocab[ids]
            fw = rng.random(total) < 0.3
            words[fw] = function_words[rng.integers(0, function_words.size, int(fw.sum()))]
            punct = rng.random(total) < 0.07
            words[punct] = np.char.add(words[punct], np.where(rng.random(int(punct.sum())) < 0.6, ".", ","))
            offs = np.concatenate([[0], np.cumsum(lens[sel])])
            texts = {int(i): " ".join(words[offs[j] : offs[j + 1]].tolist()) for j, i in enumerate(sel)}
            for i in sel:
                lines[int(i)] = json.dumps({"id": f"{prefix}{start + int(i)}", "text": texts[int(i)], "domain": d})
        fh.write("\n".join(lines[i] for i in range(n)) + "\n")

    names = list(SHARES)
    p = np.array([SHARES[d] for d in names])
    with open(pool, "w") as fh:
        for start in range(0, docs, 20_000):
            n = min(20_000, docs - start)
            lines: dict[int, str] = {}
            write(fh, n, np.array(names)[rng.choice(len(names), size=n, p=p)], start, "doc-")
    with open(target, "w") as fh:
        lines = {}
        write(fh, n_target, np.array(["math"] * n_target), 0, "t-")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=None, help="reuse/keep the generated JSONL here")
    ap.add_argument("--parity", action="store_true", help="ours in sha256 parity mode with the reference's target model")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_dsir_"))
    data = args.data_dir or tmp
    data.mkdir(parents=True, exist_ok=True)
    pool, target = data / f"pool_{args.docs}.jsonl", data / "target_math.jsonl"
    if not pool.exists() or not target.exists():
        print(f"generating {args.docs:,} documents in {data} ...", flush=True)
        generate(pool, target, args.docs)
    k = max(1, args.docs // 20)
    extra = {"hash": "sha256", "target_prior": "none"} if args.parity else {}
    ours, ref = [], []
    for r in range(args.rounds):
        ours.append(run_child(OURS.format(ws=str(tmp / f"ws{r}"), pool=str(pool), target=str(target), k=k,
                                          extra=extra)))
        print(f"round {r}: ours {ours[-1]['wall_s']:.1f} s", flush=True)
        ref.append(run_child(REFERENCE.format(pool=str(pool), target=str(target), cache=str(tmp / f"cache{r}"),
                                              out=str(tmp / f"out{r}"), k=k)))
        print(f"round {r}: reference {ref[-1]['wall_s']:.1f} s", flush=True)
    ours_s = statistics.median(o["wall_s"] for o in ours)
    ref_s = statistics.median(o["wall_s"] for o in ref)
    share = {name: runs[0]["domains"].get("math", 0) / runs[0]["k"] for name, runs in (("ours", ours), ("ref", ref))}
    payload = {
        "docs": args.docs, "file_mb": round(pool.stat().st_size / 2**20, 1), "k": k, "rounds": args.rounds,
        "workers": 2, "ours_settings": extra or {"hash": "fast", "target_prior": "auto"},
        "ours": {"wall_s": ours_s, "per_round_s": [o["wall_s"] for o in ours],
                 "peak_rss_mb": max(o["peak_rss_mb"] for o in ours),
                 "workers_peak_rss_mb": max(o["children_rss_mb"] for o in ours),
                 "math_share": share["ours"], "kl_reduction": ours[0]["kl_reduction"]},
        "reference": {"wall_s": ref_s, "per_round_s": [o["wall_s"] for o in ref],
                      "fit_s": ref[0]["fit_s"], "weights_s": ref[0]["weights_s"], "resample_s": ref[0]["resample_s"],
                      "peak_rss_mb": max(o["peak_rss_mb"] for o in ref),
                      "workers_peak_rss_mb": max(o["children_rss_mb"] for o in ref), "math_share": share["ref"]},
        "speedup": ref_s / ours_s,
        "speedup_per_round": [b["wall_s"] / a["wall_s"] for a, b in zip(ours, ref, strict=True)],
    }
    print(f"docs={args.docs:,} file={payload['file_mb']:.0f} MB k={k:,} workers=2 rounds={args.rounds}")
    print(f"ours      {ours_s:8.1f} s  peak RSS {payload['ours']['peak_rss_mb']:.0f} MB "
          f"(+workers {payload['ours']['workers_peak_rss_mb']:.0f} MB)  math share {share['ours']:.3f}")
    print(f"reference {ref_s:8.1f} s  peak RSS {payload['reference']['peak_rss_mb']:.0f} MB "
          f"(+workers {payload['reference']['workers_peak_rss_mb']:.0f} MB)  math share {share['ref']:.3f}  "
          f"(fit {ref[0]['fit_s']:.1f} s, weights {ref[0]['weights_s']:.1f} s, resample {ref[0]['resample_s']:.1f} s)")
    print(f"speedup (reference / ours): {payload['speedup']:.2f}x")
    print("wrote", write_result("dsir_parity" if args.parity else "dsir", payload))


if __name__ == "__main__":
    main()
