"""The graph's state: messages plus small records (ids, plan steps, proposal stubs), never data."""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later keys win."""
    return {**(left or {}), **(right or {})}


def upsert_by_id(left: list[dict[str, Any]] | None, right: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Reducer: records with the same ``id`` are replaced in place, new ones appended."""
    out = list(left or [])
    index = {r.get("id"): i for i, r in enumerate(out)}
    for rec in right or []:
        i = index.get(rec.get("id"))
        if i is None:
            index[rec.get("id")] = len(out)
            out.append(rec)
        else:
            out[i] = {**out[i], **rec}
    return out


class CurateInput(TypedDict, total=False):
    """What a caller passes in: the conversation and the data the request is about."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; tool results appear as short summaries with artifact ids."""
    inputs: Annotated[dict[str, Any], merge_dicts]
    """Paths the caller named for this thread: ``corpus``, ``target`` (kept across turns)."""


class CurateState(CurateInput, total=False):
    """Everything the graph keeps between nodes and across turns of one thread."""

    artifacts: Annotated[dict[str, str], merge_dicts]
    """Latest artifact id per kind (``selection``, ``embeddings``, ``plot``, ...)."""
    plan: dict[str, Any] | None
    """The current request's plan, a dumped :class:`agent.plan_model.Plan` (read it with ``read_plan``)."""
    proposals: Annotated[list[dict[str, Any]], upsert_by_id]
    """Stubs of this thread's proposals (id, status, kind); full records live in the proposal store."""
    policy_name: str
    """Name of the active policy."""
    usage: dict[str, int]
    """What the current request has spent: rounds, tool_calls, llm_calls, docs_selected."""
