"""``curate demo-data --source hf``: a real multi-domain pool from public datasets on a hub.

Needs network access to a Hugging Face hub and the ``datasets`` package; offline it fails with a
clear message and the synthetic generator is the default.
"""

from __future__ import annotations

import json
from pathlib import Path

from tools.errors import ResourceUnavailable

SOURCES = {
    "math": ("openai/gsm8k", "main", "train", ["question", "answer"]),
    "code": ("google-research-datasets/mbpp", "full", "train", ["text", "code"]),
    "biomedical": ("qiaojin/PubMedQA", "pqa_labeled", "train", ["question", "long_answer"]),
    "encyclopedic": ("rajpurkar/squad_v2", None, "validation", ["context"]),
    "general_qa": ("truthfulqa/truthful_qa", "generation", "validation", ["question", "best_answer"]),
    "exam": ("cais/mmlu", "all", "test", ["question"]),
}


def generate_hf(out_dir: str | Path, seed: int = 0, per_domain: int = 4000, n_target: int = 300) -> dict[str, str]:
    try:
        import datasets
    except ImportError as e:
        raise ResourceUnavailable("--source hf needs the 'datasets' package", hint="pip install datasets") from e
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool, target = out / "pool.jsonl", out / "target_math.jsonl"
    try:
        with open(pool, "w") as fp, open(target, "w") as ft:
            for domain, (name, config, split, fields) in SOURCES.items():
                ds = datasets.load_dataset(name, config, split=split).shuffle(seed=seed)
                seen = set()
                for i, rec in enumerate(ds.select(range(min(len(ds), per_domain + n_target)))):
                    text = "\n\n".join(str(rec[f]) for f in fields if rec.get(f))
                    if text in seen:
                        continue
                    seen.add(text)
                    row = {"id": f"{domain}-{i}", "text": text, "domain": domain}
                    fh = ft if domain == "math" and i < n_target else fp
                    fh.write(json.dumps(row) + "\n")
    except Exception as e:  # noqa: BLE001 - any hub failure means "not reachable here"
        raise ResourceUnavailable(f"could not load public datasets from a hub: {e}",
                                  hint="use the default synthetic demo data offline") from e
    return {"pool": str(pool), "target": str(target)}
