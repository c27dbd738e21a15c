"""The explicit list of tools, and the one invoke path every front end uses.

Spec locations are listed here by hand (no folder scanning, no heavy imports), so listing tools is
instant and a typo fails loudly. A tool lands by adding its ``"tools.<module>:SPEC"`` line.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from tools.contract import ToolContext, ToolResult, ToolSpec
from tools.errors import BadInput, ResourceUnavailable

TOOL_LOCATIONS: tuple[str, ...] = (
    "tools.profile:SPEC",
    "tools.sample:SPEC",
    "tools.tsds:SPEC",
    "tools.dsir:SPEC",
    "tools.neighbors:SPEC",
    "tools.semantic_dedup:SPEC",
    "tools.embed:SPEC",
    "tools.bids.schema:SPEC",
)


def _load(location: str) -> ToolSpec:
    module_name, _, attr = location.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ResourceUnavailable(f"tool module {module_name} cannot be imported: {e}") from e
    spec = getattr(module, attr)
    if not isinstance(spec, ToolSpec):
        raise TypeError(f"{location} is not a ToolSpec")
    return spec


@cache
def _specs() -> dict[str, ToolSpec]:
    specs: dict[str, ToolSpec] = {}
    for loc in TOOL_LOCATIONS:
        spec = _load(loc)
        if spec.name in specs:
            raise ValueError(f"duplicate tool name {spec.name!r} ({loc})")
        specs[spec.name] = spec
    return specs


def names() -> list[str]:
    return list(_specs())


def list_specs(tag: str | None = None) -> list[ToolSpec]:
    """All tools, optionally only one family (``selection``, ``scores``, ``mixture``, ...)."""
    specs = list(_specs().values())
    return [s for s in specs if tag is None or s.family == tag or s.cost == tag]


def get(name: str) -> ToolSpec:
    specs = _specs()
    if name not in specs:
        raise BadInput(f"unknown tool {name!r}; tools are: {', '.join(specs)}")
    return specs[name]


def invoke(name: str, args: dict[str, Any] | None = None, ctx: ToolContext | None = None) -> ToolResult:
    """Validate ``args`` against the tool's request model and run it (the path for CLI, agent, UI)."""
    from tools.runtime import execute

    return execute(get(name), args or {}, ctx, {})


def describe(spec: ToolSpec) -> dict[str, Any]:
    """What ``curate tools --json`` prints for one tool."""
    return {
        "name": spec.name,
        "version": spec.version,
        "description": spec.description,
        "family": spec.family,
        "cost": spec.cost,
        "gpu": spec.gpu,
        "effects": sorted(spec.effects),
        "confirmation": spec.confirmation,
        "needs_target": spec.needs_target,
        "schema": spec.json_schema(),
    }
