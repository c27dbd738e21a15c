"""Per-example projected LoRA gradients (LESS features): batched vmap vs one backward per example.

The model has random weights built from a config (timing only; no download). Shapes:
``--shape small`` (GPT-NeoX, 4 layers, hidden 256: runs on a laptop CPU), ``--shape pythia-410m``
(24 layers, hidden 1024, 16 heads, vocab 50304: Pythia-410M's shape, for a GPU). LoRA r=8 on
query_key_value/dense, rows of ``--seq`` random tokens, Adam direction + Rademacher projection to
``--proj-dim`` + L2 normalisation in both paths, so each side produces the same features.
Both paths run in the same process on the same rows, interleaved over rounds; the features are
compared (max abs difference). Writes bench/results/influence.json.

    .venv/bin/python bench/influence.py --shape small
    .venv/bin/python bench/influence.py --shape pythia-410m --device cuda --rows 256 --batch 32
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import write_result  # noqa: E402, I001

SHAPES = {
    "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024,
              "vocab_size": 8192},
    "pythia-410m": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                    "intermediate_size": 4096, "vocab_size": 50304},
}


def log(msg: str) -> None:
    print(msg, flush=True)  # noqa: T201


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from tools.influence import core

    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=list(SHAPES), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--proj-dim", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(**SHAPES[args.shape], max_position_embeddings=2048, attn_implementation="eager")
    model = GPTNeoXForCausalLM(cfg).to(args.device)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=["query_key_value", "dense"]))
    for _, p in model.named_parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)
    model.eval()
    lp = core.lora_params(model)
    params = tuple(dict(model.named_parameters())[n].detach() for n in lp.names)
    m = torch.randn(lp.dim, device=args.device) * 1e-4
    v = torch.rand(lp.dim, device=args.device) * 1e-6
    proj = core.RademacherProjector(lp.dim, args.proj_dim, seed=0, device=args.device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if args.bf16 else None
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(4, cfg.vocab_size, size=args.seq)) for _ in range(args.rows)]
    n_params = sum(p.numel() for p in model.parameters())
    log(f"shape {args.shape}: {n_params / 1e6:.1f}M params, {lp.dim} LoRA params, seq {args.seq}, "
        f"proj {args.proj_dim}, device {args.device}, batch {args.batch}")

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(batched: bool) -> tuple[np.ndarray, float, float]:
        """(features, seconds for projected features, seconds for the raw gradients alone)."""
        out = []
        sync()
        t = time.perf_counter()
        for lo in range(0, len(seqs), args.batch):
            out.append(core.features(model, lp, params, seqs[lo : lo + args.batch], proj, moments=(m, v),
                                     batched=batched, autocast=autocast, device=args.device))
        sync()
        t_feat = time.perf_counter() - t
        t = time.perf_counter()
        for lo in range(0, len(seqs), args.batch):
            ids, labels = core.pad_batch(seqs[lo : lo + args.batch])
            core.per_example_grads(model, lp, params, ids.to(args.device), labels.to(args.device), batched=batched,
                                   autocast=autocast)
        sync()
        return np.concatenate(out), t_feat, time.perf_counter() - t

    run(True)  # warm-up (kernels, projection blocks)
    times: dict[str, list[float]] = {"batched": [], "loop": []}
    grad_times: dict[str, list[float]] = {"batched": [], "loop": []}
    feats = {}
    for _ in range(args.rounds):
        for name, batched in (("batched", True), ("loop", False)):
            f, t, tg = run(batched)
            feats[name] = f
            times[name].append(t)
            grad_times[name].append(tg)
            log(f"  {name}: {len(seqs) / t:.2f} projected examples/s ({t:.2f} s for {len(seqs)} rows; "
                f"gradients alone {len(seqs) / tg:.2f} ex/s)")
    eps = {k: len(seqs) / min(v) for k, v in times.items()}
    geps = {k: len(seqs) / min(v) for k, v in grad_times.items()}
    diff = float(np.abs(feats["batched"] - feats["loop"]).max())
    log(f"projected features: batched {eps['batched']:.2f} ex/s vs loop {eps['loop']:.2f} ex/s = "
        f"{eps['batched'] / eps['loop']:.2f}x; gradients alone {geps['batched'] / geps['loop']:.2f}x; "
        f"max |feature difference| {diff:.2e}")
    tag = f"influence_{args.shape}_{args.device.split(':')[0]}"
    path = write_result(tag, {
        "shape": args.shape, "config": SHAPES[args.shape], "params": n_params, "lora_params": lp.dim,
        "device": args.device, "seq": args.seq, "rows": args.rows, "batch": args.batch, "proj_dim": args.proj_dim,
        "bf16": args.bf16, "examples_per_s": eps, "speedup": eps["batched"] / eps["loop"],
        "grad_examples_per_s": geps, "grad_speedup": geps["batched"] / geps["loop"], "times_s": times,
        "grad_times_s": grad_times, "max_abs_feature_diff": diff, "load_avg_1m": os.getloadavg()[0],
    })
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
