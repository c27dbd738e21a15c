"""The explicit list of tools, and the one invoke path every front end uses.

Spec locations are listed here by hand (no folder scanning, no heavy imports), so listing tools is
instant and a typo fails loudly. A tool lands by adding its package and one line here:
``"tools.<tool>.schema:SPEC"``. The implementation (``run``, bound with ``@SPEC.implement``) is
imported only before the tool first runs: ``spec.implementation`` if set, else the package above
``.schema``. Every tool has that shape (``tests/test_registry.py`` checks it): ``schema.py`` (request,
metrics, result, SPEC, conformance case), ``core.py`` (the algorithm on arrays), ``__init__.py``
(``run``: I/O and bookkeeping).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from tools.contract import ToolContext, ToolResult, ToolSpec
from tools.errors import BadInput, ResourceUnavailable

TOOL_LOCATIONS: tuple[str, ...] = (
    "tools.profile.schema:SPEC",
    "tools.sample.schema:SPEC",
    "tools.tsds.schema:SPEC",
    "tools.dsir.schema:SPEC",
    "tools.neighbors.schema:SPEC",
    "tools.semantic_dedup.schema:SPEC",
    "tools.embed.schema:SPEC",
    "tools.bids.schema:SPEC",
    "tools.influence.schema:SPEC",
    "tools.fact_index.schema:SPEC",
    "tools.trace_fact.schema:SPEC",
    "tools.meta_rater.schema:SPEC",
    "tools.quality_signals.schema:SPEC",
    "tools.prrc_rate.schema:SPEC",
    "tools.propose_mixture.schema:SPEC",
)


def _import(module_name: str, why: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise ResourceUnavailable(f"{why} {module_name} cannot be imported: {e}") from e


def _load(location: str) -> ToolSpec:
    module_name, _, attr = location.partition(":")
    spec = getattr(_import(module_name, "tool module"), attr)
    if not isinstance(spec, ToolSpec):
        raise TypeError(f"{location} is not a ToolSpec")
    return spec


def implementation_module(spec: ToolSpec) -> str:
    """The module whose import binds ``spec``'s ``run``: ``spec.implementation``, else the package above
    the ``schema`` module the registry lists, else the listed module itself."""
    if spec.implementation:
        return spec.implementation
    module_name = _LOCATION_BY_NAME.get(spec.name, "").partition(":")[0]
    return module_name.removesuffix(".schema")


def bind(spec: ToolSpec) -> ToolSpec:
    """Import the tool's implementation (``run`` decorated with ``@SPEC.implement``) unless bound."""
    if spec.bound:
        return spec
    module_name = implementation_module(spec)
    module = _import(module_name, f"the implementation of tool {spec.name!r},")
    run = getattr(module, "run", None)
    if getattr(run, "spec", None) is not spec or not spec.bound:
        raise TypeError(f"{module_name}.run must be the function decorated with @SPEC.implement of tool "
                        f"{spec.name!r}")
    return spec


def location_of(name: str) -> str:
    """The ``TOOL_LOCATIONS`` entry a tool was loaded from."""
    _specs()
    return _LOCATION_BY_NAME[name]


_LOCATION_BY_NAME: dict[str, str] = {}


@cache
def _specs() -> dict[str, ToolSpec]:
    specs: dict[str, ToolSpec] = {}
    for loc in TOOL_LOCATIONS:
        spec = _load(loc)
        if spec.name in specs:
            raise ValueError(f"duplicate tool name {spec.name!r} ({loc})")
        specs[spec.name] = spec
        _LOCATION_BY_NAME[spec.name] = loc
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

    return execute(bind(get(name)), args or {}, ctx if ctx is not None else ToolContext(), {})


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
        "llm": spec.llm,
        "consumes": list(spec.consumes),
        "produces": list(spec.produces),
        "schema": spec.json_schema(),
    }
