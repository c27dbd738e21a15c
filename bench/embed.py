"""Embedding throughput: ``tools.embed.encode_texts`` vs stock ``SentenceTransformer.encode``, one run.

Documents: word counts ~ log-normal(mu 4.8, sigma 0.8) (median ~120 words), text from the demo
generator's vocabularies; the same documents go to every method. On the CPU the documents are split
into rounds and the methods alternate inside each round (stock first in even rounds, last in odd
ones), so a noisy or shared machine slows every method alike; both wall-clock and process CPU time
are reported, and the ratios use the totals. Cosine similarity of each method to stock is reported
per row (min and mean).

    python bench/embed.py                                  # CPU, 5k docs: torch (auto precision), torch fp32, onnx-int8
    python bench/embed.py --device cuda --docs 100000      # GPU: stock fp32 and fp16 vs ours
Writes bench/results/embed_<device>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import write_result  # noqa: E402


def make_docs(n: int, seed: int = 0, mu: float = 4.8, sigma: float = 0.8) -> list[str]:
    from tools.demo_data import DOMAINS, make_document

    rng = np.random.default_rng(seed)
    doms = list(DOMAINS)
    words = np.maximum(1, rng.lognormal(mu, sigma, n)).astype(int)
    return [make_document(rng, doms[i % len(doms)], int(w)) for i, w in enumerate(words)]


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5 on CPU, 1 on GPU)")
    ap.add_argument("--methods", default=None,
                    help="comma list of ours: torch, torch-fp32, torch-bf16, torch-fp16, onnx, onnx-int8")
    ap.add_argument("--stock-batch", type=int, default=32)
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from tools import embed
    from tools.embed.encoder import get_encoder
    from tools.models import resolve_embedding_model

    gpu = args.device.startswith("cuda")
    rounds = args.rounds or (1 if gpu else 5)
    methods = (args.methods or ("torch,torch-fp32" if gpu else "torch,torch-fp32,onnx-int8")).split(",")
    if "onnx-int8" in methods or "onnx" in methods:
        try:
            import onnx  # noqa: F401
        except ImportError:
            print("onnx is not installed: skipping the onnx methods (pip install 'curation-assistant[onnx]')")
            methods = [m for m in methods if not m.startswith("onnx")]

    t = time.perf_counter()
    docs = make_docs(args.docs, args.seed)
    print(f"{len(docs)} documents generated in {time.perf_counter() - t:.1f}s", flush=True)

    stock_models = {"stock": SentenceTransformer(resolve_embedding_model(None), device=args.device)}
    if gpu:
        stock_models["stock-fp16"] = SentenceTransformer(resolve_embedding_model(None), device=args.device).half()

    def spec(m: str) -> dict:
        backend, _, prec = m.partition("-") if m.startswith("torch") else (m, "", "")
        return {"backend": backend, "precision": prec or "auto"}

    encoders = {}
    export_s = {}
    for m in methods:
        t = time.perf_counter()
        encoders[m] = get_encoder(None, device=args.device, **spec(m))
        export_s[m] = time.perf_counter() - t
    tok = encoders[methods[0]]
    toks = [tok.tokenize(docs[i : i + 4096]) for i in range(0, len(docs), 4096)]
    lens = np.concatenate([t.lengths for t in toks])
    over = float(np.concatenate([t.truncated for t in toks]).mean())

    def run_stock(name: str, texts: list[str]) -> np.ndarray:
        return stock_models[name].encode(texts, batch_size=args.stock_batch, convert_to_numpy=True)

    def run_ours(m: str, texts: list[str]) -> np.ndarray:
        return embed.encode_texts(texts, device=args.device, batch_tokens=args.batch_tokens, **spec(m))

    # warm-up (kernels, ONNX sessions, CUDA context) on a small slice, untimed
    for name in stock_models:
        run_stock(name, docs[:64])
    for m in methods:
        run_ours(m, docs[:64])

    names = [*stock_models, *methods]
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    outs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    bounds = np.linspace(0, len(docs), rounds + 1).astype(int)
    load_before = os.getloadavg()
    for r in range(rounds):
        part = docs[bounds[r] : bounds[r + 1]]
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            if gpu:
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            out = run_stock(name, part) if name in stock_models else run_ours(name, part)
            if gpu:
                torch.cuda.synchronize()
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
            outs[name].append(np.asarray(out, dtype=np.float32))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {bounds[r + 1] / wall[n]:.1f}" for n in names)
              + " docs/s so far", flush=True)
    load_after = os.getloadavg()
    ref = np.concatenate(outs["stock"])
    results = {}
    for name in names:
        mat = np.concatenate(outs[name])
        c = cos_rows(mat, ref)
        results[name] = {
            "docs_per_s": len(docs) / wall[name],
            "docs_per_cpu_s": len(docs) / cpu[name],
            "wall_s": wall[name],
            "cpu_s": cpu[name],
            "cos_to_stock_min": float(c.min()),
            "cos_to_stock_mean": float(c.mean()),
            "ratio_vs_stock": wall["stock"] / wall[name],
            "ratio_vs_stock_cpu_time": cpu["stock"] / cpu[name],
        }
        if name in encoders:
            results[name].update({"precision": encoders[name].precision, "backend": encoders[name].backend,
                                  "load_or_export_s": export_s[name]})
    payload = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if gpu else "cpu",
        "torch_threads": torch.get_num_threads(),
        "docs": len(docs),
        "rounds": rounds,
        "tokens_mean": float(lens.mean()),
        "tokens_over_cap_share": over,
        "stock_batch_size": args.stock_batch,
        "batch_tokens": args.batch_tokens,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "results": results,
    }
    path = write_result(args.out or f"embed_{'cuda' if gpu else 'cpu'}", payload)
    print(f"\nmean {payload['tokens_mean']:.0f} tokens/doc, {over:.0%} over the cap; load avg {load_before[0]:.1f}"
          f" -> {load_after[0]:.1f}")
    print(f"{'method':<14}{'docs/s':>9}{'docs/cpu-s':>12}{'ratio':>8}{'ratio(cpu)':>12}{'cos min':>10}")
    for name, r in results.items():
        print(f"{name:<14}{r['docs_per_s']:>9.1f}{r['docs_per_cpu_s']:>12.1f}{r['ratio_vs_stock']:>8.2f}"
              f"{r['ratio_vs_stock_cpu_time']:>12.2f}{r['cos_to_stock_min']:>10.4f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
