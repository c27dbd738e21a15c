"""Measure a planner on ``planner_requests.yaml``: right tools (in order) and valid arguments.

    python -m tests.agent.planner_eval --planner offline
    python -m tests.agent.planner_eval --planner json --base-url http://127.0.0.1:8765/v1 --model smollm2

A plan is correct when its tools match the expected steps (each step: any of the listed tools) and
every step's arguments validate against the tool's request model and carry the expected values.
Items whose expected tools are not registered are skipped (and counted as skipped).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml

REQUESTS = Path(__file__).with_name("planner_requests.yaml")
POOL, TARGET = "demo/pool.jsonl", "demo/target_math.jsonl"


def load_items() -> list[dict[str, Any]]:
    return yaml.safe_load(REQUESTS.read_text(encoding="utf-8"))


def applicable(item: dict[str, Any], names: set[str]) -> bool:
    return all(any(t in names for t in step) for step in item["expect"])


def judge_plan(item: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    from tools.registry import get

    tools = [s["tool"] for s in steps]
    exp = item["expect"]
    right_tools = len(tools) == len(exp) and all(t in ok for t, ok in zip(tools, exp, strict=False))
    valid = True
    problems: list[str] = []
    for s in steps:
        try:
            get(s["tool"]).request_model.model_validate(s["args"])
        except Exception as e:  # noqa: BLE001
            valid = False
            problems.append(f"{s['tool']}: {str(e)[:120]}")
    for s in steps:  # paths must be the ones the request or the thread gave
        a = s["args"]
        if "corpus" in a and a["corpus"] != POOL:
            valid = False
            problems.append(f"corpus={a['corpus']!r}")
        if "target" in a and a["target"] is not None and item.get("target") and a["target"] != TARGET:
            valid = False
            problems.append(f"target={a['target']!r}")
    want = item.get("args") or {}
    if steps and want:
        last = steps[-1]["args"]
        for k, v in want.items():
            if last.get(k) != v:
                valid = False
                problems.append(f"{k}={last.get(k)!r}, expected {v!r}")
    return {"right_tools": right_tools, "valid_args": valid, "correct": right_tools and (valid or not exp),
            "tools": tools, "problems": problems}


def evaluate(service: Any, items: list[dict[str, Any]], log: Path | None = None) -> dict[str, Any]:
    from tools.registry import names

    registered = set(names())
    rows = []
    skipped = 0
    for item in items:
        if not applicable(item, registered):
            skipped += 1
            continue
        corpus = None if item.get("corpus") == "none" else POOL
        target = TARGET if item.get("target") is True else None
        t0 = time.perf_counter()
        try:
            out = service.dry_run(item["request"], corpus=corpus, target=target)
            steps = out["steps"]
        except Exception as e:  # noqa: BLE001 - a planner failure counts as a wrong plan
            steps = []
            out = {"text": f"{type(e).__name__}: {e}"}
        verdict = judge_plan(item, steps)
        if not steps and item["expect"]:
            verdict["problems"].append(out.get("text", "")[:200])
        rows.append({"request": item["request"], "expect": item["expect"], **verdict, "args": [s["args"] for s in steps],
                     "seconds": round(time.perf_counter() - t0, 2)})
        if log is not None:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rows[-1]) + "\n")
    n = len(rows)
    return {
        "n": n,
        "skipped": skipped,
        "correct": sum(r["correct"] for r in rows),
        "right_tools": sum(r["right_tools"] for r in rows),
        "accuracy": sum(r["correct"] for r in rows) / n if n else 0.0,
        "tool_accuracy": sum(r["right_tools"] for r in rows) / n if n else 0.0,
        "rows": rows,
    }


def main() -> None:
    from agent.service import AgentService

    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", default="offline", choices=["offline", "json", "llm"])
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--out", default="bench/results/planner_eval_{planner}.json")
    ap.add_argument("--no-repair", action="store_true", help="JSON planner: skip the repair round")
    ap.add_argument("--max-tokens", type=int, default=300, help="JSON planner: generation cap")
    a = ap.parse_args()
    if a.planner == "json":
        import functools

        import agent.jsonplan

        agent.jsonplan.plan_with_llm = functools.partial(
            agent.jsonplan.plan_with_llm, repair=not a.no_repair, max_tokens=a.max_tokens)
    import tempfile

    svc = AgentService(workspace=Path(tempfile.mkdtemp()) / ".curate", planner=a.planner, llm_base_url=a.base_url,
                       llm_model=a.model)
    out = Path(a.out.format(planner=a.planner))
    out.parent.mkdir(parents=True, exist_ok=True)
    res = evaluate(svc, load_items(), log=out.with_suffix(".rows.jsonl"))
    res["planner"] = a.planner if a.planner == "offline" else f"{a.planner}:{a.model}"
    if a.planner == "json":
        res["repair"], res["max_tokens"] = not a.no_repair, a.max_tokens
    out.write_text(json.dumps(res, indent=2))
    for r in res["rows"]:
        mark = "ok " if r["correct"] else "BAD"
        print(f"{mark} {r['tools']!s:<28} {r['request'][:70]}  {'; '.join(r['problems'])[:120]}")
    print(f"{res['planner']}: {res['correct']}/{res['n']} correct ({res['accuracy']:.0%}), "
          f"right tools {res['right_tools']}/{res['n']}, skipped {res['skipped']} (tools not registered)")


if __name__ == "__main__":
    main()
