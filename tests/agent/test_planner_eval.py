"""The offline planner on the written request set: right tools and valid arguments.

Measured 31/37 (84%) with the seven tools registered (profile, sample, dsir, tsds, embed,
neighbors, semantic_dedup). The floor here catches regressions in the router or the arguments.
"""

from __future__ import annotations

from tests.agent.planner_eval import evaluate, judge_plan, load_items


def test_judge_plan_checks_tools_order_and_args():
    item = {"expect": [["profile"], ["dsir", "tsds"]], "args": {"k": 10}, "target": True}
    p, t = "demo/pool.jsonl", "demo/target_math.jsonl"
    ok = [{"tool": "profile", "args": {"corpus": p}}, {"tool": "dsir", "args": {"corpus": p, "target": t, "k": 10}}]
    assert judge_plan(item, ok)["correct"]
    assert not judge_plan(item, ok[::-1])["right_tools"]
    bad_k = [ok[0], {"tool": "dsir", "args": {"corpus": p, "target": t, "k": 11}}]
    assert judge_plan(item, bad_k)["right_tools"] and not judge_plan(item, bad_k)["correct"]
    invalid = [ok[0], {"tool": "dsir", "args": {"corpus": p, "k": 10}}]  # dsir needs a target
    assert not judge_plan(item, invalid)["valid_args"]
    assert judge_plan({"expect": []}, [])["correct"]


def test_offline_planner_accuracy(make_service):
    items = load_items()
    assert len(items) >= 30
    res = evaluate(make_service(planner="offline"), items)
    assert res["n"] >= 25
    assert res["accuracy"] >= 0.75, [(r["request"], r["tools"], r["problems"]) for r in res["rows"] if not r["correct"]]
