"""The policy guard: every planned call is allowed, denied with a reason, or put to a person."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.types import interrupt

from agent import prompts
from agent.adapters import active_policy, planned_call
from agent.nodes.common import context_of, last_ai_with_calls, new_usage
from policies.enforce import Decision, Usage, judge
from tools.contract import ToolSpec


def make_guard(specs: dict[str, ToolSpec]):  # noqa: ANN201
    def guard(state: dict[str, Any], runtime: Any = None) -> dict[str, Any]:
        ctx = context_of(runtime)
        policy = active_policy(ctx)
        ai = last_ai_with_calls(state["messages"])
        if ai is None:
            return {}
        usage = {**new_usage(), **(state.get("usage") or {})}
        decisions: list[Decision] = []
        for i, call in enumerate(ai.tool_calls):
            spec = specs.get(call["name"])
            if spec is None:
                decisions.append(Decision(verdict="deny", rule="tools", reason=f"unknown tool {call['name']!r}"))
                continue
            u = Usage(tool_calls=usage["tool_calls"] + i, llm_calls=usage["llm_calls"],
                      docs_selected=usage["docs_selected"])
            decisions.append(judge(planned_call(spec, call.get("args") or {}), policy, u))
        if any(d.verdict == "deny" for d in decisions):
            msgs = []
            for call, d in zip(ai.tool_calls, decisions, strict=True):
                text = prompts.DENIED.format(policy=policy.name, reason=d.reason) if d.verdict == "deny" else prompts.SKIPPED
                msgs.append(ToolMessage(content=text, tool_call_id=call["id"], name=call["name"], status="error",
                                        artifact={"denied": d.verdict == "deny", "reason": d.reason, "rule": d.rule}))
            return {"messages": msgs}
        asks = [(c, d) for c, d in zip(ai.tool_calls, decisions, strict=True) if d.verdict == "ask"]
        if asks:
            answer = interrupt({
                "type": "approval",
                "id": f"approve-{asks[0][0]['id']}",
                "policy": policy.name,
                "calls": [{"tool": c["name"], "args": c.get("args") or {}, "reason": d.reason} for c, d in asks],
            })
            decision = answer.get("decision") if isinstance(answer, dict) else str(answer)
            note = answer.get("note", "") if isinstance(answer, dict) else ""
            if decision != "approve":
                return {"messages": [
                    ToolMessage(content=prompts.REJECTED_CALL.format(note=note or "no note"), tool_call_id=c["id"],
                                name=c["name"], status="error", artifact={"denied": True, "reason": "rejected by a person"})
                    for c in ai.tool_calls
                ]}
        usage["tool_calls"] += len(ai.tool_calls)
        return {"usage": usage}

    return guard
