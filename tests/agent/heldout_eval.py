"""Score a planner on ``heldout_requests.yaml`` (written without seeing the router), per tool.

    python -m tests.agent.heldout_eval --split dev              # tune on this half only
    python -m tests.agent.heldout_eval --split test             # report only; never tune on it
    python -m tests.agent.heldout_eval --split test --planner json --base-url http://127.0.0.1:8765/v1

Every request runs through ``AgentService.dry_run`` (the path of ``curate run --dry-run``) with the
thread's corpus set to ``POOL`` (a user who passed ``--corpus``) and no target. Outcome labels: the
plan's last tool, ``ask`` (a clarifying question) or ``none`` (no tool, no question). Three scores:

- **tool**: the planner settled on the expected tool: a plan ending in it, or a question about a
  missing argument of a plan ending in it (it knew what to run); ``ask``/``none`` items need exactly
  that outcome;
- **strict**: the outcome label equals the expected one (a question where a plan was expected is wrong);
- **args**: among strict-correct plans with expected arguments, every expected argument is in some step;
- **chain**: multi-step items whose plan contains the expected tools in order, ending with the last.

Items whose expected tool is not registered are skipped unless ``--standins`` adds stand-in specs
(tests/agent/standin_specs.py; reported as such).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

HELDOUT = Path(__file__).with_name("heldout_requests.yaml")
POOL = "data/pool.jsonl"


def load_split(split: str, path: Path = HELDOUT) -> list[dict[str, Any]]:
    """The items of one half ("dev" or "test"); the other half is never returned."""
    items = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [i for i in items if i["split"] == split]


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return want == got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(float(want), float(got), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(want, str) and isinstance(got, str):
        return want.strip().lower() == got.strip().lower()
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(any(_same(w, g) for g in got) for w in want)
    return want == got


def _subsequence(want: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(w == g for g in it) for w in want)


def judge(item: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    exp = item["expect"]
    want = exp["tool"]
    ok_tools = {want, *(exp.get("accept") or [])}
    steps = out.get("steps") or []
    question = out.get("question")
    tools = [s["tool"] for s in steps if s.get("status") != "pending"] if not question else []
    pending = [s["tool"] for s in steps] if question else []
    if question:
        label = "ask"
    elif tools:
        label = tools[-1]
    else:
        label = "none"
    if want in ("ask", "none"):
        tool_ok = strict = label == want
    else:
        strict = label in ok_tools
        tool_ok = strict or (label == "ask" and question.get("reason") == "missing" and bool(pending)
                             and pending[-1] in ok_tools)
    args_ok = None
    problems: list[str] = []
    if strict and want not in ("ask", "none") and exp.get("args"):
        args_ok = True
        for k, v in exp["args"].items():
            if not any(k in s["args"] and _same(v, s["args"][k]) for s in steps):
                args_ok = False
                got = [s["args"].get(k) for s in steps if k in s["args"]]
                problems.append(f"{k}={got[0] if got else None!r} want {v!r}")
    chain_ok = None
    if exp.get("chain"):
        chain_ok = bool(tools) and tools[-1] in ok_tools and _subsequence(exp["chain"][:-1], tools[:-1])
    return {"label": label, "tool": tool_ok, "strict": strict, "args": args_ok, "chain": chain_ok,
            "tools": tools or pending, "problems": problems}


def evaluate(service: Any, items: list[dict[str, Any]], *, names: set[str], log: Path | None = None,
             redact: bool = False) -> dict[str, Any]:
    """``redact``: rows keep ids, labels and scores but not the request text (the test half's phrasings
    stay in the held-out file only)."""
    rows = []
    skipped = []
    for item in items:
        exp = item["expect"]
        need = [exp["tool"], *(exp.get("chain") or [])]
        if any(t not in names and t not in ("ask", "none") for t in need):
            skipped.append(item["id"])
            continue
        t0 = time.perf_counter()
        try:
            out = service.dry_run(item["request"], corpus=POOL)
        except Exception as e:  # noqa: BLE001 - a planner failure counts as a wrong answer
            out = {"steps": [], "text": f"{type(e).__name__}: {e}"}
        verdict = judge(item, out)
        rows.append({"id": item["id"], "request": "" if redact else item["request"], "expect": exp["tool"], **verdict,
                     "args_planned": [] if redact else [s.get("args") for s in out.get("steps") or []],
                     "seconds": round(time.perf_counter() - t0, 3)})
        if log is not None:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rows[-1]) + "\n")
    return summarise(rows, skipped)


def summarise(rows: list[dict[str, Any]], skipped: list[str]) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"n": 0, "tool": 0, "strict": 0, "args_n": 0, "args": 0})
    for r in rows:
        p = per[r["expect"]]
        p["n"] += 1
        p["tool"] += r["tool"]
        p["strict"] += r["strict"]
        if r["args"] is not None:
            p["args_n"] += 1
            p["args"] += r["args"]
    n = len(rows)
    chains = [r["chain"] for r in rows if r["chain"] is not None]
    args = [r["args"] for r in rows if r["args"] is not None]
    secs = [r["seconds"] for r in rows]
    return {
        "n": n, "skipped": skipped,
        "tool_accuracy": sum(r["tool"] for r in rows) / n if n else 0.0,
        "strict_accuracy": sum(r["strict"] for r in rows) / n if n else 0.0,
        "args_accuracy": sum(args) / len(args) if args else None,
        "chain_accuracy": sum(chains) / len(chains) if chains else None, "chains": len(chains),
        "median_seconds": statistics.median(secs) if secs else None,
        "per_tool": dict(sorted(per.items())), "rows": rows,
    }


def table(res: dict[str, Any], title: str) -> str:
    lines = [f"{title}: n={res['n']} tool={res['tool_accuracy']:.1%} strict={res['strict_accuracy']:.1%} "
             f"args={res['args_accuracy'] if res['args_accuracy'] is None else format(res['args_accuracy'], '.1%')} "
             f"chain={res['chain_accuracy'] if res['chain_accuracy'] is None else format(res['chain_accuracy'], '.1%')}"
             f" ({res['chains']}) median={res['median_seconds']}s skipped={len(res['skipped'])}",
             f"  {'tool':<16}{'n':>4}{'tool':>8}{'strict':>8}{'args':>9}"]
    for t, p in res["per_tool"].items():
        a = f"{p['args']}/{p['args_n']}" if p["args_n"] else "-"
        lines.append(f"  {t:<16}{p['n']:>4}{p['tool'] / p['n']:>8.0%}{p['strict'] / p['n']:>8.0%}{a:>9}")
    return "\n".join(lines)


def make_service(planner: str, *, standins: bool, base_url: str | None = None, model: str | None = None) -> Any:
    import tempfile

    from agent.service import AgentService
    from tools.registry import list_specs

    specs = list_specs()
    if standins:
        from tests.agent.standin_specs import with_standins

        specs = with_standins(specs)
    ws = Path(tempfile.mkdtemp()) / ".curate"
    return AgentService(workspace=ws, planner=planner, llm_base_url=base_url, llm_model=model, specs=specs), specs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--file", type=Path, default=HELDOUT, help="the held-out set (heldout_requests_b.yaml: a second one)")
    ap.add_argument("--planner", default="offline", choices=["offline", "json", "llm"])
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--standins", action="store_true", help="stand-in specs for tools not registered yet")
    ap.add_argument("--subset", type=int, default=0, help="a seeded random subset of this many items")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/heldout{set}_{planner}_{split}.json")
    ap.add_argument("--quiet", action="store_true", help="only the tables (no per-request lines)")
    a = ap.parse_args()
    svc, specs = make_service(a.planner, standins=a.standins, base_url=a.base_url, model=a.model)
    items = load_split(a.split, a.file)
    if a.subset:
        items = random.Random(a.seed).sample(items, min(a.subset, len(items)))
    suffix = a.file.stem.removeprefix("heldout_requests")  # "" for the first set, "_b" for the second
    out = Path(a.out.format(set=suffix, planner=a.planner, split=a.split))
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".rows.jsonl")
    log.unlink(missing_ok=True)
    res = evaluate(svc, items, names={s.name for s in specs}, log=log, redact=a.split == "test")
    res.update(planner=a.planner if a.planner == "offline" else f"{a.planner}:{a.model}", split=a.split, file=a.file.name,
               standins=a.standins, subset=a.subset, seed=a.seed)
    out.write_text(json.dumps(res, indent=2))
    if not a.quiet and a.split == "dev":  # the test half's requests are not printed
        for r in res["rows"]:
            mark = "ok " if r["strict"] and r["args"] is not False else ("~  " if r["tool"] else "BAD")
            print(f"{mark} {r['id']} want={r['expect']:<15} got={r['tools']!s:<40} {'; '.join(r['problems'])[:100]}"
                  f"  | {r['request'][:80]}")
    print(table(res, f"{res['planner']} on {a.split}{' (stand-in specs)' if a.standins else ''}"))


if __name__ == "__main__":
    main()
