"""The offline planner on the untouched `test` half of heldout_requests.yaml (written by someone who
never saw the router; never used for tuning: the router's examples, cues and thresholds were tuned on
the `dev` half only).

Measured with the 15 wave-2 tools registered (2026-12-01): tool 88.6%, strict 78.1% of n=105 (dev:
94.5% / 89.1%); unchanged on test after the wave-3 planner changes (a sample clause folded into a tool that
samples itself, fact_index/trace_fact ties decided by the request's arguments, artifact ids read), which
moved dev from 95.5% / 90.0% to 96.4% / 90.9%; the wave-1 router (cosine to description + SPEC.examples) scored 55.2% on test, 50.9% on dev.
The floors sit two binomial standard errors below the measured figures (SE = sqrt(p(1-p)/n): 0.031
for tool, 0.040 for strict), so a change of the tool set's own examples does not trip them by
chance, while a real regression (anything near the wave-1 router) fails by a wide margin.
"""

from __future__ import annotations

from pathlib import Path

TOOL_FLOOR = 0.82
STRICT_FLOOR = 0.70
OFFTOPIC_FLOOR = 0.85


def test_offline_planner_accuracy_on_the_untouched_test_half(tmp_path: Path):
    from agent.service import AgentService
    from tests.agent.heldout_eval import evaluate, load_split
    from tools.registry import names

    svc = AgentService(workspace=tmp_path / ".curate", planner="offline")
    try:
        res = evaluate(svc, load_split("test"), names=set(names()))
    finally:
        svc.close()
    assert res["n"] >= 90, f"only {res['n']} items scorable; skipped (tools not registered): {res['skipped']}"
    per = res["per_tool"]
    wrong = [(r["id"], r["expect"], r["label"]) for r in res["rows"] if not r["tool"]]  # ids and labels only
    assert res["tool_accuracy"] >= TOOL_FLOOR, (res["tool_accuracy"], wrong)
    assert res["strict_accuracy"] >= STRICT_FLOOR, res["strict_accuracy"]
    assert per["none"]["strict"] / per["none"]["n"] >= OFFTOPIC_FLOOR  # off-topic: no tool, no question
