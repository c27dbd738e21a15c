"""The curation agent: LangGraph planning over the tools, LLM backends, the CLI.

``from agent import graph`` gives the compiled graph (built on first access, so importing the
package for the CLI stays cheap); ``from agent import AgentService`` the front ends' facade.
"""

from __future__ import annotations

from typing import Any

__all__ = ["graph", "build_graph", "AgentService"]


def __getattr__(name: str) -> Any:
    if name in ("graph", "build_graph"):
        from agent import graph as _graph_module

        return getattr(_graph_module, name)
    if name == "AgentService":
        from agent.service import AgentService

        return AgentService
    raise AttributeError(name)
