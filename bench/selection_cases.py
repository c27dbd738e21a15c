"""Real-data pool and held-out target cases for bench/selection_quality.py.

Reads the public datasets in ``../shared/data/raw`` (see SOURCES.md there) and builds one mixed pool
of twelve sources, short documents (questions, code prompts, instructions, facts) and long ones
(PubMed abstracts, Wikipedia paragraphs, web arguments), each row labelled with its source in a
``domain`` field. Every source's rows are split once, with a fixed seed, into a *held-out* part
(targets are drawn only from it) and a *pool* part (capped per source), so no target row, and no
exact duplicate of one, is in the pool. Where a source ships two splits (GSM8K train/test, the two
SQuAD halves) the pool takes one and the targets the other.

Pool size: about 15k documents (``quick``: about 4k). Nothing here is written into the repository;
the caller gives the output folder.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raw"

# source -> (pool cap, quick pool cap, held-out rows)
SOURCES: dict[str, tuple[int, int, int]] = {
    "gsm8k": (2500, 500, 300),
    "mbpp": (700, 300, 260),
    "humaneval": (120, 120, 44),
    "mmlu": (3000, 600, 200),
    "squad_context": (646, 300, 60),
    "squad_question": (2000, 400, 300),
    "pubmedqa": (750, 350, 250),
    "truthfulqa": (620, 300, 150),
    "alpaca_eval": (360, 250, 190),
    "self_instruct": (380, 250, 40),
    "ukp_convarg": (850, 300, 120),
    "trex_evidence": (3000, 500, 250),
}


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    n_target: int
    k: int
    kind: str  # "short" or "long" documents
    split: str  # "dev" or "test"


# FIXED SPLIT: the dev cases are for designing defaults; the test cases are reported and must never
# be used to tune anything. Do not move cases between the lists or change their parameters.
CASES: tuple[Case, ...] = (
    # dev
    Case("code_mbpp_large", "mbpp", 250, 500, "short", "dev"),
    Case("math_gsm8k_small", "gsm8k", 30, 300, "short", "dev"),
    Case("qa_truthfulqa", "truthfulqa", 50, 200, "short", "dev"),
    Case("instr_self_instruct", "self_instruct", 30, 100, "short", "dev"),
    Case("exam_mmlu", "mmlu", 200, 500, "short", "dev"),
    Case("bio_pubmedqa_small", "pubmedqa", 30, 300, "long", "dev"),
    Case("argument_ukp", "ukp_convarg", 100, 300, "long", "dev"),
    # test
    Case("code_humaneval", "humaneval", 40, 100, "short", "test"),
    Case("math_gsm8k_large", "gsm8k", 300, 1000, "short", "test"),
    Case("qa_squad_questions", "squad_question", 300, 1000, "short", "test"),
    Case("chat_alpaca", "alpaca_eval", 40, 200, "short", "test"),
    Case("bio_pubmedqa_large", "pubmedqa", 250, 700, "long", "test"),
    Case("passage_squad", "squad_context", 50, 300, "long", "test"),
    Case("facts_trex", "trex_evidence", 200, 500, "short", "test"),
)


# ------------------------------------------------------------------------------- source readers
# Each returns (rows for the pool side, rows for the held-out side or None = split one list).


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _gsm8k(raw: Path):
    f = lambda r: f"{r['question']}\n{r['answer']}"  # noqa: E731
    return [f(r) for r in _jsonl(raw / "gsm8k/train.jsonl")], [f(r) for r in _jsonl(raw / "gsm8k/test.jsonl")]


def _mbpp(raw: Path):
    return [f"{r['text']}\n{r['code']}".replace("\r\n", "\n") for r in _jsonl(raw / "mbpp/mbpp.jsonl")], None


def _humaneval(raw: Path):
    return [r["prompt"] for r in _jsonl(raw / "humaneval/HumanEval.jsonl")], None


def _mmlu(raw: Path):
    out = []
    for p in sorted((raw / "mmlu/test").glob("*.csv")):
        with p.open(encoding="utf-8", errors="replace", newline="") as fh:
            for r in csv.DictReader(fh):
                ch = " ".join(f"{'ABCD'[i]}. {r.get(f'choice{i}', '')}" for i in range(4))
                out.append(f"{r['question']}\n{ch}")
    return out, None


def _squad(raw: Path, what: str):
    def read(name: str) -> list[str]:
        data = json.loads((raw / "squad_v2_dev_cs224n" / name).read_text(encoding="utf-8"))["data"]
        if what == "context":
            return [p["context"] for a in data for p in a["paragraphs"]]
        return [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]

    return read("dev-v2.0.json"), read("test-v2.0.json")


def _pubmedqa(raw: Path):
    d = json.loads((raw / "pubmedqa/ori_pqal.json").read_text(encoding="utf-8"))
    return [" ".join(v["CONTEXTS"]) for _, v in sorted(d.items())], None


def _truthfulqa(raw: Path):
    with (raw / "truthfulqa/TruthfulQA.csv").open(encoding="utf-8", newline="") as fh:
        return [f"{r['Question']} {r['Best Answer']}" for r in csv.DictReader(fh)], None


def _alpaca(raw: Path):
    rows = json.loads((raw / "alpaca_eval_instructions/alpaca_eval_text_davinci_003_outputs.json").read_text())
    # instructions only (the outputs are machine-written); the selfinstruct items duplicate self_instruct
    return [r["instruction"] for r in rows if r["dataset"] != "selfinstruct"], None


def _self_instruct(raw: Path):
    out = []
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        for r in _jsonl(raw / "self_instruct_human" / name):
            inst = (r.get("instances") or [{}])[0]
            parts = [r["instruction"], inst.get("input", ""), inst.get("output", "")]
            out.append("\n".join(p for p in parts if p))
    return out, None


def _ukp(raw: Path):
    out = []
    for p in sorted((raw / "ukp_convarg1/ranking").glob("*.csv")):
        with p.open(encoding="utf-8", errors="replace", newline="") as fh:
            for r in csv.DictReader(fh, delimiter="\t"):
                arg = (r.get("argument") or "").replace("<br/>", " ").strip()
                if arg:
                    out.append(arg)
    return out, None


def _trex(raw: Path):
    out = []
    for p in sorted((raw / "lama_trex_evidence").glob("P*.jsonl")):
        for r in _jsonl(p):
            ev = r.get("evidences") or []
            if ev:
                out.append(ev[0]["masked_sentence"].replace("[MASK]", ev[0].get("obj_surface") or r["obj_label"]))
    return out, None


READERS = {
    "gsm8k": _gsm8k, "mbpp": _mbpp, "humaneval": _humaneval, "mmlu": _mmlu,
    "squad_context": lambda raw: _squad(raw, "context"), "squad_question": lambda raw: _squad(raw, "question"),
    "pubmedqa": _pubmedqa, "truthfulqa": _truthfulqa, "alpaca_eval": _alpaca, "self_instruct": _self_instruct,
    "ukp_convarg": _ukp, "trex_evidence": _trex,
}


def _dedupe(texts: list[str]) -> list[str]:
    seen, out = set(), []
    for t in texts:
        key = re.sub(r"\s+", " ", t).strip()
        if key and key not in seen:
            seen.add(key)
            out.append(t)
    return out


@dataclass
class Built:
    pool: Path
    pool_rows: list[dict]
    heldout: dict[str, list[str]]
    sizes: dict[str, dict[str, int]]


def build(out_dir: Path, *, quick: bool = False, raw: Path = RAW, seed: int = 0) -> Built:
    """Write ``out_dir/pool.jsonl`` (id, text, domain) and return it with the held-out rows per source."""
    if not (raw / "SOURCES.md").exists():
        raise FileNotFoundError(f"the raw datasets are not at {raw} (expected SOURCES.md there)")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool_rows: list[dict] = []
    heldout: dict[str, list[str]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for src, (cap, qcap, n_held) in SOURCES.items():
        pool_side, held_side = READERS[src](raw)
        pool_side = _dedupe(pool_side)
        if held_side is None:
            order = rng.permutation(len(pool_side))
            held = [pool_side[i] for i in order[:n_held]]
            rest = [pool_side[i] for i in order[n_held:]]
        else:
            held_side = _dedupe(held_side)
            held = [held_side[i] for i in rng.permutation(len(held_side))[:n_held]]
            rest = [pool_side[i] for i in rng.permutation(len(pool_side))]
        held_keys = {re.sub(r"\s+", " ", t).strip() for t in held}
        rest = [t for t in rest if re.sub(r"\s+", " ", t).strip() not in held_keys][: qcap if quick else cap]
        heldout[src] = held
        words = [len(t.split()) for t in rest]
        sizes[src] = {"pool": len(rest), "heldout": len(held), "median_words": int(np.median(words))}
        pool_rows += [{"id": f"{src}-{i}", "text": t, "domain": src} for i, t in enumerate(rest)]
    order = rng.permutation(len(pool_rows))  # interleave sources (some readers stop early)
    pool_rows = [pool_rows[i] for i in order]
    pool = out_dir / "pool.jsonl"
    with pool.open("w", encoding="utf-8") as fh:
        for r in pool_rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return Built(pool=pool, pool_rows=pool_rows, heldout=heldout, sizes=sizes)


def write_target(built: Built, case: Case, out_dir: Path) -> tuple[Path, list[str]]:
    """The case's target set (the first ``n_target`` held-out rows of its source) as JSONL."""
    held = built.heldout[case.source]
    if len(held) < case.n_target:
        raise ValueError(f"case {case.name}: {case.source} has {len(held)} held-out rows, needs {case.n_target}")
    texts = held[: case.n_target]
    path = out_dir / f"target_{case.name}.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"id": f"t-{case.name}-{i}", "text": t, "domain": case.source}, ensure_ascii=False) + "\n")
    return path, texts


def select_cases(which: str) -> list[Case]:
    if which == "all":
        return list(CASES)
    if which not in ("dev", "test"):
        raise ValueError(f"--cases must be dev, test or all; got {which!r}")
    return [c for c in CASES if c.split == which]
