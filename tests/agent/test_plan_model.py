"""The plan in the graph state is a dumped ``Plan``: every key the plan node writes is a field of the model
(unknown keys are refused), and the readers (service events, history, the CLI) read it through the model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.plan_model import Plan, PlanQuestion, PlanStep, read_plan


def _state_plan(svc, thread: str) -> dict:  # noqa: ANN001
    return svc.graph.get_state(svc._config(thread)).values["plan"]


def test_a_graph_plan_has_exactly_the_models_keys(make_service, demo_dir: Path):
    svc = make_service(planner="offline")
    pool = str(demo_dir / "pool.jsonl")
    events = list(svc.stream("t", "take a stratified sample of 120 documents", corpus=pool))
    raw = _state_plan(svc, "t")
    assert set(raw) == set(Plan.model_fields)  # the node wrote no key the model lacks, and every field
    assert all(set(s) == set(PlanStep.model_fields) for s in raw["steps"])
    plan = Plan.model_validate(raw)
    assert plan.planner == "offline" and plan.done and not plan.reviewed
    assert [(s.tool, s.status) for s in plan.steps] == [("sample", "done")]
    step = plan.steps[0]
    assert step.artifacts["selection"].startswith("selection-") and step.summary and step.duration_s is not None
    prop = next(e for e in events if e.kind == "proposal").proposal
    assert plan.proposal_id == prop["id"]
    # the service's plan event is the plan's own text, with the plan's planner
    ev = next(e for e in events if e.kind == "plan")
    assert ev.text == plan.text and ev.planner == plan.planner
    # the review tab reads the stored proposal through its typed record: the plan's done tools, the evidence
    from ui.app import _metrics_md
    from ui.render import plain

    md = _metrics_md(svc.proposal(prop["id"]))
    assert "**Plan**: sample" in md and plain(f"sample: {step.summary}"[:30]) in md
    from agent.proposals import Evidence, PlanCall, parse_proposal

    typed = parse_proposal(svc.proposal(prop["id"]))
    assert isinstance(typed.evidence[0], Evidence) and typed.evidence[0].tool == "sample"
    assert typed.evidence[0].artifacts["selection"] == step.artifacts["selection"]
    assert isinstance(typed.plan[0], PlanCall) and typed.plan[0].args["k"] == step.args["k"]
    with pytest.raises(ValidationError, match="plan.0.tool"):  # a record without a step's tool is refused by name
        parse_proposal({**svc.proposal(prop["id"]), "plan": [{"args": {}}]})
    # the review node writes the plan back through the model as well
    list(svc.review("t", prop["id"], "reject", note="no"))
    after = _state_plan(svc, "t")
    assert set(after) == set(Plan.model_fields) and Plan.model_validate(after).reviewed
    assert svc.history("t")[-1].planner == "offline"


def test_a_question_plan_is_typed_and_the_cli_reads_it(make_service, demo_dir: Path):
    from agent.cli_agent import _why_nothing_ran

    svc = make_service(planner="offline")
    pool = str(demo_dir / "pool.jsonl")
    events = list(svc.stream("q", "take a random sample of the pool", corpus=pool))
    raw = _state_plan(svc, "q")
    assert set(raw) == set(Plan.model_fields)
    plan = Plan.model_validate(raw)
    assert isinstance(plan.question, PlanQuestion) and set(raw["question"]) == set(PlanQuestion.model_fields)
    assert plan.question.reason == "missing" and re.search(r"\bk\b", " ".join(plan.question.missing))
    assert plan.steps and all(s.status == "pending" for s in plan.steps)
    question = next(e for e in events if e.kind == "question")
    assert question.choices == plan.question.choices == ["sample"]
    why = _why_nothing_ran(svc, "q", pool)
    assert why is not None and plan.question.text in why
    # the dry run shows the same question, as the model's keys
    dry = svc.dry_run("take a random sample of the pool", corpus=pool)
    assert PlanQuestion.model_validate(dry["question"]).choices == ["sample"]


def test_unknown_keys_and_statuses_are_refused():
    plan = Plan(id="p1", steps=[PlanStep(id="c1", tool="sample", args={"k": 3})])
    raw = plan.dump()
    assert Plan.model_validate(raw) == plan
    with pytest.raises(ValidationError, match="answered"):
        Plan.model_validate({**raw, "answered": True})
    with pytest.raises(ValidationError, match="call_id"):
        Plan.model_validate({**raw, "steps": [{**raw["steps"][0], "call_id": "c1"}]})
    with pytest.raises(ValidationError, match="status"):
        Plan.model_validate({**raw, "steps": [{**raw["steps"][0], "status": "finished"}]})
    with pytest.raises(ValueError):  # a node cannot add a key to the plan without adding it to the model
        plan.answered = True  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        plan.steps[0].status = "finished"  # type: ignore[assignment]


def test_a_plan_checkpointed_before_the_model_still_reads():
    """Checkpoints written before the plan was typed lack the optional keys; they read with defaults."""
    old = {"id": "abc", "planner": "offline", "request": "r", "dynamic": False, "done": True, "text": "t",
           "steps": [{"id": "c1", "tool": "sample", "args": {"k": 3}, "status": "done", "summary": "s",
                      "artifacts": {"selection": "selection-1"}, "duration_s": 0.5, "result": {"k": 3}}]}
    plan = read_plan({"plan": old})
    assert plan is not None and plan.proposal_id is None and not plan.reviewed and plan.steps[0].error == ""
    assert read_plan({}) is None and read_plan({"plan": None}) is None
