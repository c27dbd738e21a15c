"""Where the graph goes next; pure functions of the state, unit-tested without an LLM."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolMessage


def after_plan(state: dict[str, Any]) -> Literal["guard", "review", "__end__"]:
    last = state["messages"][-1]
    if not isinstance(last, AIMessage):
        raise ValueError(f"plan must end with an AI message, got {type(last).__name__}")
    if last.tool_calls:
        return "guard"
    plan = state.get("plan") or {}
    if plan.get("proposal_id") and not plan.get("reviewed"):
        return "review"
    return "__end__"


def after_guard(state: dict[str, Any]) -> Literal["tools", "plan"]:
    last = state["messages"][-1]
    if isinstance(last, ToolMessage):  # the guard answered the calls itself (denied or rejected)
        return "plan"
    if isinstance(last, AIMessage) and last.tool_calls:
        return "tools"
    raise ValueError(f"unexpected message after guard: {type(last).__name__}")


def after_review(state: dict[str, Any]) -> Literal["review", "__end__"]:
    plan = state.get("plan") or {}
    return "__end__" if plan.get("reviewed") or not plan.get("proposal_id") else "review"
