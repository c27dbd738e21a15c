"""Our streaming corpus reader vs the `datasets` JSON loader on the same JSONL, in one run.

Each reader runs in its own fresh process (so peak RSS is its own), alternating A B A B over
``--repeats`` rounds; prints rows/s of each, the ratio (ours / datasets) and peak RSS, and writes
bench/results/corpus_read.json. The `datasets` loader includes its Arrow cache write, which is what
a user of it pays; its cache dir is fresh each round.
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
from tools.corpus import read_batches
n = 0
for b in read_batches({path!r}, ("id", "text", "domain")):
    n += b.num_rows
out = {{"rows": n}}
"""

DATASETS = """
import datasets
datasets.disable_progress_bars()
ds = datasets.load_dataset("json", data_files={path!r}, split="train", cache_dir={cache!r})
n = 0
for b in ds.with_format("arrow").iter(batch_size=8192):
    n += b.num_rows
out = {{"rows": n}}
"""


def make_jsonl(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = np.array("the of and to in is that for it as was with be by on not he this are or".split() +
                     [f"w{i}" for i in range(2000)])
    domains = ["web", "code", "math", "law", "medicine", "news"]
    with open(path, "w") as fh:
        for i in range(rows):
            n = int(np.clip(rng.lognormal(4.0, 0.7), 5, 800))
            text = " ".join(vocab[rng.integers(0, len(vocab), n)])
            fh.write(json.dumps({"id": f"doc-{i}", "text": text, "domain": domains[i % 6], "meta": {"n": n}}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None, help="reuse this JSONL instead of generating one")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_corpus_"))
    path = args.data or tmp / "pool.jsonl"
    if args.data is None:
        make_jsonl(path, args.rows)
    size_mb = path.stat().st_size / 2**20
    ours, ref = [], []
    for r in range(args.repeats):
        ours.append(run_child(OURS.format(path=str(path))))
        ref.append(run_child(DATASETS.format(path=str(path), cache=str(tmp / f"hf_cache_{r}"))))
    rows = ours[0]["rows"]
    assert all(o["rows"] == rows for o in ours + ref), "readers disagree on the row count"
    ours_s = statistics.median(o["wall_s"] for o in ours)
    ref_s = statistics.median(o["wall_s"] for o in ref)
    ratios = [b["wall_s"] / a["wall_s"] for a, b in zip(ours, ref, strict=True)]
    payload = {
        "rows": rows, "file_mb": round(size_mb, 1), "repeats": args.repeats,
        "ours": {"wall_s": ours_s, "rows_per_s": rows / ours_s, "peak_rss_mb": max(o["peak_rss_mb"] for o in ours)},
        "datasets": {"wall_s": ref_s, "rows_per_s": rows / ref_s, "peak_rss_mb": max(o["peak_rss_mb"] for o in ref)},
        "ratio_rows_per_s": statistics.median(ratios),
        "ratio_per_round": ratios,
    }
    print(f"rows={rows:,} file={size_mb:.0f} MB rounds={args.repeats}")
    print(f"ours     {payload['ours']['rows_per_s']:>12,.0f} rows/s  peak RSS {payload['ours']['peak_rss_mb']:.0f} MB")
    print(f"datasets {payload['datasets']['rows_per_s']:>12,.0f} rows/s  peak RSS {payload['datasets']['peak_rss_mb']:.0f} MB")
    print(f"ratio (ours/datasets, rows/s): {payload['ratio_rows_per_s']:.2f}x  per round {[round(x, 2) for x in ratios]}")
    print("wrote", write_result("corpus_read", payload))


if __name__ == "__main__":
    main()
