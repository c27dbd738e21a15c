from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from policies.enforce import PlannedCall, Usage, judge, proposal_problems, weight_problems
from policies.schema import Policy, PolicyError, load_policy, parse_policy


def test_bundled_policies_load_and_differ():
    d, s = load_policy("default"), load_policy("strict")
    assert d.name == "default" and s.name == "strict"
    assert s.export.dedup_required and not d.export.dedup_required
    assert s.budgets.max_docs_selected < d.budgets.max_docs_selected


def test_unknown_keys_and_bad_values_are_errors():
    with pytest.raises(PolicyError, match="budgetz"):
        parse_policy("budgetz: {}\n")
    with pytest.raises(PolicyError, match="floor"):
        parse_policy("domains: {math: {floor: 0.9, cap: 0.5}}\n")
    with pytest.raises(PolicyError, match="floors sum"):
        parse_policy("domains: {a: {floor: 0.6}, b: {floor: 0.6}}\n")


def test_judge_denies_paths_outside_roots(tmp_path: Path):
    pol = Policy(data_roots=[str(tmp_path / "data")])
    inside = judge(PlannedCall(tool="profile", paths=[str(tmp_path / "data" / "x.jsonl")]), pol)
    outside = judge(PlannedCall(tool="profile", paths=["/etc/passwd"]), pol)
    escape = judge(PlannedCall(tool="profile", paths=[str(tmp_path / "data" / ".." / "y.jsonl")]), pol)
    glob = judge(PlannedCall(tool="profile", paths=[str(tmp_path / "data" / "*.jsonl")]), pol)
    assert inside.verdict == "allow" and glob.verdict == "allow"
    assert outside.verdict == "deny" and "outside the policy's data roots" in outside.reason
    assert escape.verdict == "deny"


def test_judge_budgets_and_approval():
    pol = Policy(budgets={"max_docs_selected": 100, "max_tool_calls": 2, "gpu_allowed": False},
                 approval={"tools": ["dsir"], "effects": ["llm_calls"]})
    assert judge(PlannedCall(tool="sample", k=101, family="selection"), pol).rule == "budgets.max_docs_selected"
    assert judge(PlannedCall(tool="sample", k=100), pol).verdict == "allow"
    assert judge(PlannedCall(tool="sample"), pol, Usage(tool_calls=2)).rule == "budgets.max_tool_calls"
    assert judge(PlannedCall(tool="embed", gpu="required"), pol).rule == "budgets.gpu_allowed"
    assert judge(PlannedCall(tool="dsir"), pol).verdict == "ask"
    assert judge(PlannedCall(tool="rate", effects=["llm_calls"]), pol).verdict == "ask"
    assert judge(PlannedCall(tool="x", confirmation="required"), pol).verdict == "ask"


def test_weight_and_proposal_problems():
    pol = Policy(domains={"*": {"cap": 0.5}, "math": {"floor": 0.2}}, export={"dedup_required": True,
                                                                               "exclude_domains": ["spam"]})
    assert weight_problems({"math": 0.5, "code": 0.5}, pol) == []
    probs = weight_problems({"math": 0.1, "code": 0.8, "spam": 0.1}, pol)
    assert any("above its cap" in p for p in probs) and any("below its floor" in p for p in probs)
    assert any("excluded" in p for p in probs)
    assert any("sum to" in p for p in weight_problems({"math": 0.5, "code": 0.6}, pol))
    pp = proposal_problems(weights={"math": 0.5, "code": 0.5}, plan_tools=["dsir"], policy=pol)
    assert pp == ["the policy requires deduplication (semantic_dedup) before export"]
    assert proposal_problems(weights={"math": 0.5, "code": 0.5}, plan_tools=["semantic_dedup"], policy=pol) == []


def test_policy_check_cli(tmp_path: Path):
    from agent.cli import app

    good = tmp_path / "p.yaml"
    good.write_text("name: mine\ndata_roots: [data]\nbudgets: {max_docs_selected: 10}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data_roots: [data]\nbudgets: {max_docs: 10}\n")
    r = CliRunner().invoke(app, ["policy", "check", str(good)])
    assert r.exit_code == 0, r.output
    assert "ok: policy mine" in r.output
    r = CliRunner().invoke(app, ["policy", "check", str(bad)])
    assert r.exit_code == 2
    assert "budgets.max_docs" in r.output
    assert CliRunner().invoke(app, ["policy", "check", "strict"]).exit_code == 0
