"""quality_signals vs DataTrove's Gopher filters on the same documents, in one run.

Both sides get the same documents (real text from ../shared/data/raw: Wikipedia paragraphs, GSM8K,
MBPP, PubMedQA, AlpacaEval outputs, Self-Instruct, MMLU questions; records joined 1-8 at a time with
blank lines so lengths and repetition vary) and the same number of worker processes (``--workers``,
default 2, forked pools over batches of ``--batch`` documents):

- ours: :func:`tools.quality_signals.core.signals` on Arrow batches, every signal of every document
  (26 columns), plus the Gopher rule flags;
- DataTrove: ``GopherQualityFilter().filter(doc)`` and ``GopherRepetitionFilter().filter(doc)`` on
  every document, with DataTrove's own English word tokenizer (each filter stops at its first failing
  rule, so it does less work on documents it drops).

Prints docs/s for both, the ratio (ours / DataTrove) of wall time and of CPU time (this process and its
workers; the shared machine's other load changes wall time), and agreement where the definitions match:

- values: duplicated line / paragraph fractions and their character fractions (DataTrove's
  ``find_duplicates`` on its own splits) and the top 2/3/4-gram character fractions (its
  ``find_top_duplicate`` over whitespace words): max abs difference;
- decisions: both Gopher filters with DataTrove's word tokenizer replaced by whitespace splitting (our
  word definition), against our rule flags: share of documents with the same keep/drop decision
  (the repetition filter's greedy duplicated-n-gram rules differ from our RedPajama-V2 definition, so
  documents it drops for those are left out of that comparison).

Writes bench/results/quality_signals.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import write_result  # noqa: E402

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"


def load_documents(n: int, seed: int = 0) -> list[str]:
    """``n`` documents from real records, 1-8 records joined by blank lines (some repeated on purpose)."""
    recs: list[str] = []
    squad = json.loads((RAW / "squad_v2_dev_cs224n" / "dev-v2.0.json").read_text())
    recs += [p["context"] for a in squad["data"] for p in a["paragraphs"]]
    recs += [json.loads(x)["question"] + "\n" + json.loads(x)["answer"]
             for x in (RAW / "gsm8k" / "train.jsonl").read_text().splitlines()]
    recs += [json.loads(x)["text"] + "\n" + json.loads(x)["code"]
             for x in (RAW / "mbpp" / "mbpp.jsonl").read_text().splitlines()]
    recs += [" ".join(v["CONTEXTS"]) for v in json.loads((RAW / "pubmedqa" / "ori_pqal.json").read_text()).values()]
    alpaca = RAW / "alpaca_eval_instructions" / "alpaca_eval_text_davinci_003_outputs.json"
    if alpaca.exists():
        recs += [r.get("output", "") for r in json.loads(alpaca.read_text())]
    for p in sorted((RAW / "self_instruct_human").glob("*.jsonl"))[:1]:
        for x in p.read_text().splitlines():
            r = json.loads(x)
            recs.append(" ".join(str(v) for v in r.values() if isinstance(v, str)))
    mmlu = sorted((RAW / "mmlu").rglob("*.csv"))
    for p in mmlu[:20]:
        recs += [line for line in p.read_text().splitlines()[1:] if line.strip()]
    recs = [r for r in recs if r.strip()]
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        k = rng.choice([1, 1, 1, 2, 3, 4, 8])
        parts = [rng.choice(recs) for _ in range(k)]
        if rng.random() < 0.1:  # a boilerplate-like document: one part repeated
            parts = parts[:1] * k
        docs.append("\n\n".join(parts))
    return docs


# ----------------------------------------------------------------------------- the two sides


def _ours(texts: list[str]) -> dict[str, np.ndarray]:
    import pyarrow as pa

    from tools.quality_signals import core

    cols = core.signals(pa.array(texts, pa.string()))
    fails = core.gopher_failures(cols)
    return {**cols, **{f"fail:{k}": v for k, v in fails.items()}}


def _filters(whitespace: bool):  # noqa: ANN202
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.utils.word_tokenizers import WordTokenizer

    if not whitespace:  # DataTrove's English word tokenizer (spaCy's rule-based one)
        return GopherQualityFilter(), GopherRepetitionFilter()

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    tok = Whitespace("en")
    return GopherQualityFilter(language=tok), GopherRepetitionFilter(language=tok)


def _theirs(texts: list[str], whitespace: bool = False) -> list[tuple[str, str]]:
    from datatrove.data import Document

    q, r = _filters(whitespace)
    out = []
    for i, t in enumerate(texts):
        d = Document(text=t, id=str(i))
        a, b = q.filter(d), r.filter(d)
        out.append(("keep" if a is True else a[1], "keep" if b is True else b[1]))
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (robust to other load on the machine)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _run_pool(fn, batches: list[list[str]], workers: int) -> tuple[list, float, float]:  # noqa: ANN001
    t0, c0 = time.perf_counter(), _cpu()
    if workers == 1:
        res = [fn(b) for b in batches]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            res = pool.map(fn, batches, chunksize=1)
    return res, time.perf_counter() - t0, _cpu() - c0


# ----------------------------------------------------------------------------- agreement


def value_diffs(texts: list[str], ours: dict[str, np.ndarray]) -> dict[str, float]:
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_duplicates,
        find_top_duplicate,
        get_n_grams,
    )

    diffs: dict[str, float] = {}
    para_exp, line_exp = re.compile(r"\n{2,}"), re.compile("\n+")
    for i, t in enumerate(texts):
        vals = {}
        paras = para_exp.split(t.strip())
        pd, pc_ = find_duplicates(paras)
        vals["frac_paragraphs_duplicated"] = pd / len(paras)
        vals["frac_chars_dup_paragraphs"] = pc_ / len(t)
        lines = line_exp.split(t)
        ld, lc = find_duplicates(lines)
        vals["frac_lines_duplicated"] = ld / len(lines)
        vals["frac_chars_dup_lines"] = lc / len(t)
        words = t.split()
        for n in (2, 3, 4):
            grams = get_n_grams(words, n)
            vals[f"frac_chars_top_{n}gram"] = find_top_duplicate(grams) / len(t) if grams else 0.0
        for k, v in vals.items():
            diffs[k] = max(diffs.get(k, 0.0), abs(float(ours[k][i]) - v))
    return diffs


QUALITY_ORDER = ("gopher_short_doc", "gopher_long_doc", "gopher_below_avg_threshold", "gopher_above_avg_threshold",
                 "gopher_too_many_hashes", "gopher_too_many_ellipsis", "gopher_too_many_bullets",
                 "gopher_too_many_end_ellipsis", "gopher_below_alpha_threshold", "gopher_too_few_stop_words")
REPETITION = ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac", "top_2_gram",
              "top_3_gram", "top_4_gram")


def decision_agreement(ours: dict[str, np.ndarray], theirs: list[tuple[str, str]]) -> dict[str, float]:
    n = len(theirs)
    q_ours = np.any(np.stack([ours[f"fail:{k}"] for k in QUALITY_ORDER]), axis=0)
    r_ours = np.any(np.stack([ours[f"fail:{k}"] for k in REPETITION]), axis=0)
    q_theirs = np.array([a != "keep" for a, _ in theirs])
    # their repetition filter also applies its greedy duplicated-n-gram rules (our n-gram definition
    # differs): compare only documents it keeps or drops for a line/paragraph/top-n-gram reason
    rep_known = np.array([b == "keep" or b in REPETITION for _, b in theirs])
    r_theirs = np.array([b != "keep" for _, b in theirs])
    return {"quality_same_decision": float(np.mean(q_ours == q_theirs)),
            "repetition_same_decision": float(np.mean((r_ours == r_theirs)[rep_known])),
            "repetition_compared_docs": int(rep_known.sum()), "check_docs": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=5_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--check-docs", type=int, default=2000, help="documents for the agreement checks")
    args = ap.parse_args()
    import datatrove  # noqa: F401 - fail early with the install hint below

    texts = load_documents(args.docs)
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    _ours(batches[0][:50])  # warm imports in the parent before forking
    _theirs(batches[0][:50])
    ours_res, t_ours, cpu_ours = _run_pool(_ours, batches, args.workers)
    theirs_res, t_theirs, cpu_theirs = _run_pool(_theirs, batches, args.workers)
    ours_rate, theirs_rate = len(texts) / t_ours, len(texts) / t_theirs

    chk = texts[: args.check_docs]
    ours_chk = _ours(chk)
    diffs = value_diffs(chk, ours_chk)
    ws = _theirs(chk, whitespace=True)
    agree = decision_agreement(ours_chk, ws)
    default_drop = float(np.mean([a != "keep" or b != "keep" for r in theirs_res for a, b in r]))
    ours_drop = float(np.mean(np.concatenate([
        np.any(np.stack([r[k] for k in r if k.startswith("fail:")]), axis=0) for r in ours_res])))
    out = {
        "docs": len(texts), "workers": args.workers, "batch": args.batch,
        "ours_s": t_ours, "datatrove_s": t_theirs, "ours_docs_per_s": ours_rate, "datatrove_docs_per_s": theirs_rate,
        "ratio": ours_rate / theirs_rate, "ours_cpu_s": cpu_ours, "datatrove_cpu_s": cpu_theirs,
        "cpu_ratio": cpu_theirs / cpu_ours, "ours_signals": 26, "max_abs_diff": diffs, **agree,
        "datatrove_drop_fraction": default_drop, "ours_drop_fraction": ours_drop,
    }
    print(f"documents: {len(texts)}, workers: {args.workers}")  # noqa: T201
    print(f"ours      : {ours_rate:10.0f} docs/s ({t_ours:.2f} s, all 26 signals + rule flags)")  # noqa: T201
    print(f"datatrove : {theirs_rate:10.0f} docs/s ({t_theirs:.2f} s, Gopher quality + repetition filters)")  # noqa: T201
    print(f"ratio     : {ours_rate / theirs_rate:.2f}x wall, {cpu_theirs / cpu_ours:.2f}x CPU time "  # noqa: T201
          f"({cpu_ours:.1f} s vs {cpu_theirs:.1f} s)")
    print("max abs diff where definitions match: " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))  # noqa: T201
    print(f"same keep/drop decision (whitespace words): quality {agree['quality_same_decision']:.4f}, "  # noqa: T201
          f"repetition {agree['repetition_same_decision']:.4f} ({agree['repetition_compared_docs']} docs)")
    print(f"wrote {write_result('quality_signals', out)}")  # noqa: T201


if __name__ == "__main__":
    main()
