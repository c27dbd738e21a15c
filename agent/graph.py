"""The curation graph (wiring only): plan -> guard -> tools -> plan ... -> review -> end."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode

from agent.adapters import build_tools, render_error
from agent.context import CurateContext
from agent.nodes.guard import make_guard
from agent.nodes.plan import make_plan
from agent.nodes.review import review
from agent.routing import after_guard, after_plan, after_review
from agent.state import CurateInput, CurateState
from tools.contract import ToolSpec


def build_graph(checkpointer: Any = None, *, specs: list[ToolSpec] | None = None) -> Any:
    """Compile the graph; ``specs`` defaults to every registered tool."""
    if specs is None:
        from tools.registry import list_specs

        specs = list_specs()
    by_name = {s.name: s for s in specs}
    tools = build_tools(specs)
    builder = StateGraph(CurateState, input_schema=CurateInput, context_schema=CurateContext)
    builder.add_node("plan", make_plan(by_name, tools))
    builder.add_node("guard", make_guard(by_name))
    builder.add_node("tools", ToolNode(tools, handle_tool_errors=render_error))
    builder.add_node("review", review)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", after_plan, ["guard", "review", END])
    builder.add_conditional_edges("guard", after_guard, ["tools", "plan"])
    builder.add_edge("tools", "plan")
    builder.add_conditional_edges("review", after_review, ["review", END])
    return builder.compile(checkpointer=checkpointer, name="curate")


graph = build_graph()
