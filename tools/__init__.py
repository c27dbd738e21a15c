"""Curation tools: one module per algorithm, each a typed ``run(request, ctx) -> result``.

``from tools import dsir`` imports only that tool; heavy libraries load inside ``run``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["invoke", "ToolContext"]


def __getattr__(name: str) -> Any:
    if name == "invoke":
        from tools.registry import invoke

        return invoke
    if name == "ToolContext":
        from tools.contract import ToolContext

        return ToolContext
    raise AttributeError(name)
