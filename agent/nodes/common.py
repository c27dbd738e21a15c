"""Small helpers the nodes share: the thread id, the active context, the plan's books."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage

from agent.context import CurateContext


def content_text(content: Any) -> str:
    """A message's content as plain text (LangChain content is a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return str(content)


def context_of(runtime: Any) -> CurateContext:
    ctx = getattr(runtime, "context", None) if runtime is not None else None
    return ctx if isinstance(ctx, CurateContext) else CurateContext.from_env()


def thread_id() -> str:
    try:
        from langgraph.config import get_config

        return str(get_config()["configurable"].get("thread_id", "default"))
    except Exception:  # noqa: BLE001 - outside a run
        return "default"


def last_ai_with_calls(messages: list[AnyMessage]) -> AIMessage | None:
    for m in reversed(messages):
        if isinstance(m, AIMessage):
            return m if m.tool_calls else None
    return None


def trailing_tool_messages(messages: list[AnyMessage]) -> list[ToolMessage]:
    out: list[ToolMessage] = []
    for m in reversed(messages):
        if isinstance(m, ToolMessage):
            out.append(m)
        else:
            break
    return list(reversed(out))


def planner_label(planner: str) -> str:
    """How answers name a planner (``Plan.planner``: offline, request-file, json:<model>, llm:<model>)."""
    p = planner or "offline"
    if p == "offline":
        return "offline planner"
    if p == "request-file":
        return "request file (structured steps)"
    kind, _, model = p.partition(":")
    return f"{'LLM (native tool calls)' if kind == 'llm' else 'LLM (JSON plan)'} {model}".strip()


def kind_of(artifact_id: str) -> str:
    return artifact_id.split("-", 1)[0]


def new_usage() -> dict[str, int]:
    return {"rounds": 0, "tool_calls": 0, "llm_calls": 0, "docs_selected": 0}
