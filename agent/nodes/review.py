"""The review node: ``interrupt()`` on a pending proposal, then apply the person's decision.

It writes nothing before the interrupt; on resume it re-runs from the top, and everything after the
interrupt is idempotent by proposal id (an export that already finished is returned as is).
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langgraph.types import interrupt

from agent import prompts
from agent.adapters import active_policy, tool_context
from agent.nodes.common import context_of
from agent.plan_model import Plan, read_plan
from agent.proposals import ProposalStore, decide
from tools.errors import CurateError


def normalize_decision(answer: Any) -> dict[str, Any]:
    if isinstance(answer, str):
        return {"decision": answer}
    if isinstance(answer, dict):
        return answer
    raise ValueError(f"a review decision must be a string or a mapping, got {type(answer).__name__}")


def review(state: dict[str, Any], runtime: Any = None) -> dict[str, Any]:
    ctx = context_of(runtime)
    policy = active_policy(ctx)
    tctx = tool_context(ctx, policy)
    plan = read_plan(state)
    if plan is None:  # the routing only comes here with a plan that filed a proposal
        return {}
    pid = plan.proposal_id
    store = ProposalStore(tctx.workspace.root)
    if not pid or not store.exists(pid):
        return {"plan": _reviewed(plan, True)}
    rec = store.get(pid)
    if rec["status"] != "pending":  # decided elsewhere (e.g. `curate review approve`)
        return {"plan": _reviewed(plan, True), "proposals": [{"id": pid, "status": rec["status"]}]}
    answer = normalize_decision(interrupt({"type": "proposal", "id": pid, "proposal": rec}))
    decision = answer.get("decision", "")
    note = answer.get("note", "") or ""
    try:
        out = decide(store, pid, decision, tctx=tctx, policy=policy, weights=answer.get("weights"), note=note,
                     fmt=answer.get("format", "jsonl"))
    except CurateError as e:
        return {"messages": [AIMessage(content=f"Review of {pid} not applied: {e.render()}")], "plan": plan.dump()}
    outcome = out["outcome"]
    if outcome == "exported":
        exp = out.get("export") or {}
        text = prompts.REVIEW_APPROVED.format(id=pid, rows=exp.get("rows"), path=exp.get("path"),
                                              manifest=exp.get("manifest"))
    elif outcome == "rejected":
        text = prompts.REVIEW_REJECTED.format(id=pid, note=f" ({note})" if note else "")
    elif outcome == "edited":
        counts = ", ".join(f"{d} {n}" for d, n in (out.get("counts") or out.get("weights") or {}).items())
        text = prompts.REVIEW_EDITED.format(id=pid, counts=counts)
    else:
        text = prompts.REVIEW_BLOCKED.format(id=pid, policy=policy.name, problems=out.get("reason", ""))
    reviewed = outcome in ("exported", "rejected")
    return {
        "messages": [AIMessage(content=text)],
        "plan": _reviewed(plan, reviewed),
        "proposals": [{"id": pid, "status": out["status"]}],
    }


def _reviewed(plan: Plan, reviewed: bool) -> dict[str, Any]:
    plan.reviewed = reviewed
    return plan.dump()
