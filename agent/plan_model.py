"""The typed plan: what the plan node writes into the graph state and what every front end reads back.

The checkpointed state keeps the plan as a JSON dict (``Plan.dump()``, the same keys older checkpoints
hold), because LangGraph's checkpointer serialises the state; the plan node builds it through these
models and readers go through :func:`read_plan`. Unknown keys are refused, so a key added (or spelt
differently) on one side fails at once instead of being read as missing on the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StepStatus = Literal["planned", "running", "done", "error", "denied", "pending"]
"""planned: not run yet; running: handed out as a tool call; done/error: its result came back;
denied: the policy or a person refused it; pending: a candidate step under a clarifying question."""


class PlanStep(BaseModel):
    """One tool call of a plan and, once it ran, what came back."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str = Field(description="the tool call id (call_<hex>, or the LLM's own call id)")
    tool: str = Field(description="the tool's registry name")
    args: dict[str, Any] = Field(default_factory=dict, description="its arguments; '$kind' = this thread's artifact")
    status: StepStatus = Field("planned", description="where the step is (see StepStatus)")
    summary: str = Field("", description="the tool's one-line summary, once done")
    artifacts: dict[str, str] = Field(default_factory=dict, description="artifact ids it produced, by kind")
    duration_s: float | None = Field(None, description="how long the tool ran, once done")
    result: dict[str, Any] = Field(default_factory=dict, description="the tool's result fields (metrics), once done")
    error: str = Field("", description="why it failed or was denied")

    @property
    def failed(self) -> bool:
        return self.status in ("error", "denied")


class PlanQuestion(BaseModel):
    """A clarifying question the planner asked instead of running anything."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the question as shown to the person")
    choices: list[str] = Field(default_factory=list, description="tool names offered as answers")
    reason: str = Field("", description="why it asks: 'tie' (two tools fit) or 'missing' (an argument)")
    missing: list[str] = Field(default_factory=list, description="the arguments the request did not give")
    request: str = Field("", description="the request the question is about (an answer is read into it)")


class Plan(BaseModel):
    """The current request's plan in the graph state."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str = Field(description="a fresh hex id per request")
    planner: str = Field("offline", description="'offline', 'request-file', 'json:<model>' or 'llm:<model>'")
    request: str = Field("", description="the request as planned (an answer is read into the asked request)")
    steps: list[PlanStep] = Field(default_factory=list, description="the tool calls, in order")
    dynamic: bool = Field(False, description="the native tool-call planner: steps are added round by round")
    done: bool = Field(False, description="the plan node gave its closing answer (or its question)")
    text: str = Field("", description="the plan as text; or the question, or the off-topic answer")
    question: PlanQuestion | None = Field(None, description="the clarifying question, if the planner asked one")
    proposal_id: str | None = Field(None, description="the proposal the finished plan filed")
    reviewed: bool = Field(False, description="the proposal was decided (the review node is done)")

    @property
    def failed(self) -> bool:
        return any(s.failed for s in self.steps)

    def next_planned(self) -> PlanStep | None:
        return next((s for s in self.steps if s.status == "planned"), None)

    def dump(self) -> dict[str, Any]:
        """The JSON dict the graph state (and its checkpoint) keeps."""
        return self.model_dump(mode="json")


def read_plan(state: Mapping[str, Any] | None) -> Plan | None:
    """The typed plan of a graph state (or of a node's update); None when it has none."""
    raw = (state or {}).get("plan")
    if not raw:
        return None
    return raw if isinstance(raw, Plan) else Plan.model_validate(raw)
