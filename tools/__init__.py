"""Curation tools: one package per algorithm (``schema.py`` request/result/SPEC, ``core.py`` the
algorithm over arrays, ``__init__.py`` the typed ``run(request, ctx) -> result``).

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
