"""What the agent streams to its front ends (chat, CLI): one event model, JSON-serialisable.

The UI renders these without knowing LangGraph: a plan message, a collapsible box per tool call
(pending -> done/error with duration and a log line), live progress, proposals awaiting review,
the final answer, and error banners (e.g. the LLM endpoint went away).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.contract import ProgressEvent

EventKind = Literal["plan", "tool_start", "tool_progress", "tool_end", "message", "question", "proposal", "error",
                   "done"]


class AgentEvent(BaseModel):
    kind: EventKind
    thread_id: str
    text: str = Field("", description="plan text, answer text or error text (plain text, never HTML)")
    planner: str | None = Field(None, description="which planner planned: 'llm:<model>', 'json:<model>', 'offline'")
    tool: str | None = None
    call_id: str | None = None
    args: dict[str, Any] | None = None
    status: Literal["pending", "done", "error"] | None = None
    duration_s: float | None = None
    summary: str | None = None
    artifacts: dict[str, str] = Field(default_factory=dict)
    progress: ProgressEvent | None = None
    proposal: dict[str, Any] | None = Field(None, description="a proposal record awaiting review")
    error_kind: str | None = Field(
        None, description="an 'error' event's kind (bad_input, policy_denied, state_conflict, busy, ...): the CLI's exit code"
    )
    choices: list[str] = Field(
        default_factory=list, description="a 'question' event's options (tool names), shown as buttons in the chat"
    )
    role: Literal["user", "assistant"] | None = Field(
        None, description="history replays: who wrote a 'message' event (None = the assistant, live)"
    )
