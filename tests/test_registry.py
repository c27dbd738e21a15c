"""The registry: unique names, every SPEC in the tree registered, implementations bound lazily."""

from __future__ import annotations

import ast
import json

import pytest

from tests.conftest import REPO
from tools import registry


def _spec_modules() -> set[str]:
    """Modules under tools/ that assign a module-level ``SPEC = ToolSpec(...)``."""
    out = set()
    for p in (REPO / "tools").rglob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in tree.body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SPEC" for t in node.targets)
                    and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "ToolSpec"):
                parts = list(p.relative_to(REPO).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out.add(".".join(parts))
    return out


def test_every_spec_in_the_tree_is_registered():
    listed = {loc.partition(":")[0] for loc in registry.TOOL_LOCATIONS}
    assert _spec_modules() - listed == set(), "a module defines SPEC but tools/registry.py does not list it"
    assert len(listed) == len(registry.TOOL_LOCATIONS), "a location is listed twice"


def test_names_unique_and_described():
    names = registry.names()
    assert len(names) == len(set(names))
    for spec in registry.list_specs():
        d = registry.describe(spec)
        assert json.loads(json.dumps(d)) == d
        assert registry.location_of(spec.name) in registry.TOOL_LOCATIONS


@pytest.mark.parametrize("name", registry.names())
def test_implementation_binds(name):
    spec = registry.bind(registry.get(name))
    assert spec.bound
    loc = registry.location_of(name)
    if loc.partition(":")[0].endswith(".schema"):
        assert registry.implementation_module(spec) == (spec.implementation or loc.partition(":")[0][: -len(".schema")])


def _package(root, name, init, impl=None, implementation=None):
    pkg = root / name
    pkg.mkdir()
    extra = f", implementation={implementation!r}" if implementation else ""
    (pkg / "schema.py").write_text(
        "from tools.contract import ToolRequest, ToolResult, ToolSpec\n"
        "class R(ToolRequest):\n    n: int = 1\n"
        f"SPEC = ToolSpec(name={name!r}, description='probe', request_model=R, result_model=ToolResult,"
        f" examples=('x',){extra})\n")
    (pkg / "__init__.py").write_text(init)
    if impl is not None:
        (pkg / "impl.py").write_text(impl)


RUN = ("from {name}.schema import SPEC\nfrom tools.contract import ToolResult\n"
       "@SPEC.implement\ndef run(request, ctx):\n    return ToolResult(summary=f'n={{request.n}}')\n")


def test_lazy_binding(tmp_path, monkeypatch, ctx):
    _package(tmp_path, "lazy_impl", "", impl=RUN.format(name="lazy_impl"), implementation="lazy_impl.impl")
    _package(tmp_path, "lazy_pkg", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    from lazy_impl.schema import SPEC as a
    from lazy_pkg.schema import SPEC as b

    assert not a.bound and not b.bound  # importing a schema imports no implementation
    with pytest.raises(RuntimeError, match="no implementation bound"):
        a.impl  # noqa: B018
    registry.bind(a)  # imports spec.implementation
    assert a.bound and a.impl is not None
    monkeypatch.setitem(registry._LOCATION_BY_NAME, "lazy_pkg", "lazy_pkg.schema:SPEC")
    assert registry.implementation_module(b) == "lazy_pkg"
    with pytest.raises(TypeError, match="decorated with @SPEC.implement"):
        registry.bind(b)  # the package above .schema has no run


_SCHEMA_MAY_IMPORT = {"pydantic", "tools.contract", "tools.corpus", "tools.refs", "tools.kinds"}
_CORE_ELSEWHERE = {"embed": "encoder.py"}  # its arrays-in, arrays-out code predates the core.py name


def test_every_tool_is_one_package_shape():
    """tools/<tool>/{schema,core,__init__}.py, listed as tools.<tool>.schema:SPEC; a schema module imports
    only the standard library, pydantic and the contract's types (no algorithm, no heavy library)."""
    import sys

    for loc in registry.TOOL_LOCATIONS:
        module, _, attr = loc.partition(":")
        parts = module.split(".")
        assert attr == "SPEC" and len(parts) == 3 and parts[0] == "tools" and parts[2] == "schema", loc
        pkg = REPO / "tools" / parts[1]
        core = _CORE_ELSEWHERE.get(parts[1], "core.py")
        assert {"schema.py", core, "__init__.py"} <= {p.name for p in pkg.iterdir()}, loc
        tree = ast.parse((pkg / "schema.py").read_text(encoding="utf-8"))
        imported = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0}
        imported |= {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        outside = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names} - _SCHEMA_MAY_IMPORT
        assert not outside, f"{module} imports {sorted(outside)}"


# results still filled from metrics dicts: none left (every tool has a metrics model); keep it empty
_RESULT_FROM_DICT: set[str] = set()


def test_result_fields_come_from_one_metrics_model():
    """A result with fields of its own subclasses a ToolMetrics model (built with ``Result.of``), so the
    manifest and the result cannot disagree; new tools may not join the list above."""
    from tools.contract import MixtureResult, ScoresResult, SelectionResult, ToolMetrics, ToolResult

    for spec in registry.list_specs():
        r = spec.result_model
        base = next(b for b in (SelectionResult, ScoresResult, MixtureResult, ToolResult) if issubclass(r, b))
        if set(r.model_fields) - set(base.model_fields) and spec.name not in _RESULT_FROM_DICT:
            assert issubclass(r, ToolMetrics), f"{spec.name}: declare its metrics as a ToolMetrics model"
        if spec.name in _RESULT_FROM_DICT:  # the list only shrinks: a converted tool leaves it
            assert not issubclass(r, ToolMetrics), f"{spec.name} has a metrics model now: drop it from the list"
