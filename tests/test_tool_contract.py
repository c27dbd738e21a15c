"""The conformance suite every registered tool must pass (scikit-learn's common-checks idea).

For each registered tool (none may be skipped: every ``ToolSpec`` names a ``conformance`` hook that
builds its arguments, and any extra input, for the fixture corpus): schema JSON round trip,
description and examples present, a CPU run with a bounded summary, a complete manifest, a cache
hit on repeat, the request untouched, BadInput on an empty corpus, and per-id results that do not
depend on row order.
"""

from __future__ import annotations

import importlib
import json
import random

import pytest

from tests.conftest import write_jsonl
from tools import registry
from tools.contract import ToolContext, ToolSpec
from tools.errors import BadInput

SPECS = registry.list_specs()


def conformance_args(spec: ToolSpec, tmp_path, corpus) -> dict:
    """The tool's own hook builds its arguments (and any extra input) for the fixture corpus."""
    assert spec.conformance, f"{spec.name}: ToolSpec.conformance must name its conformance_case hook"
    module, _, attr = spec.conformance.partition(":")
    case = getattr(importlib.import_module(module), attr)(tmp_path, corpus)
    assert isinstance(case, dict), f"{spec.conformance} must return a dict of arguments"
    if "corpus" in spec.request_model.model_fields:
        case = {"corpus": str(corpus), **case}
    return case


def _corpus(tmp_path, shuffle=False):
    rows = []
    words = {"math": "integer prime equation proof", "code": "function loop return list",
             "food": "butter flour bake oven"}
    for d, w in words.items():
        for i in range(15):
            rows.append({"id": f"{d}-{i}", "text": f"{w} {w.split()[i % 4]} item {i} of {d} " * 3, "domain": d})
    if shuffle:
        random.Random(1).shuffle(rows)
    return write_jsonl(tmp_path / ("shuffled.jsonl" if shuffle else "c.jsonl"), rows)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_static_contract(spec: ToolSpec):
    schema = spec.json_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert spec.description and len(spec.description) < 400
    assert spec.examples, "examples feed the offline router"
    assert spec.request_model.model_config.get("extra") == "forbid"
    assert spec.request_model.model_config.get("frozen") is True


def test_the_suite_runs_every_registered_tool():
    """No tool is skipped: every registered SPEC has a conformance hook and is parametrized below."""
    assert sorted(s.name for s in SPECS) == sorted(registry.names())
    missing = [s.name for s in SPECS if not s.conformance]
    assert missing == [], f"tools without ToolSpec.conformance: {missing}"


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_runtime_contract(spec: ToolSpec, tmp_path):
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False)
    corpus = _corpus(tmp_path)
    args = conformance_args(spec, tmp_path, corpus)
    req = spec.request_model.model_validate(args)
    before = req.model_dump()
    res = registry.invoke(spec.name, args, ctx)
    assert req.model_dump() == before
    assert 0 < len(res.summary) <= 600
    assert res.artifacts
    for art_id in res.artifacts.values():
        m = ctx.workspace.get(art_id).manifest
        for key in ("tool", "version", "request", "inputs", "seed", "started_at", "ended_at", "metrics", "rows"):
            assert key in m, key
        assert m["tool"] == spec.name
        assert spec.request_model.model_validate(m["request"]) == req  # rebuildable from its manifest
    again = registry.invoke(spec.name, args, ctx)
    assert again.cached and again.artifacts == res.artifacts

    if "corpus" not in args:
        return
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BadInput):
        registry.invoke(spec.name, {**args, "corpus": str(empty)}, ctx)

    if spec.family in ("scores", "selection") and spec.deterministic:
        shuffled = registry.invoke(spec.name, {**args, "corpus": str(_corpus(tmp_path, shuffle=True))}, ctx)
        for name, art_id in res.artifacts.items():
            a, b = ctx.workspace.get(art_id), ctx.workspace.get(shuffled.artifacts[name])
            if a.kind in ("scores", "selection"):
                ta = {r["id"]: r for r in a.table().to_pylist()}
                tb = {r["id"]: r for r in b.table().to_pylist()}
                assert ta.keys() == tb.keys(), f"{name}: row order changed which ids were chosen"
                for doc_id, ra in ta.items():
                    for col, va in ra.items():
                        vb = tb[doc_id][col]
                        if isinstance(va, float):
                            assert va == pytest.approx(vb, rel=1e-5, abs=1e-6), (name, doc_id, col)
                        else:
                            assert va == vb, (name, doc_id, col)
