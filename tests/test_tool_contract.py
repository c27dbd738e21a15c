"""The conformance suite every registered tool must pass (scikit-learn's common-checks idea).

For each tool: schema JSON round trip, description and examples present, and, for tools that run
on a corpus alone, a CPU run on a fixture corpus with a bounded summary, a complete manifest,
a cache hit on repeat, the request untouched, BadInput on an empty corpus, and per-id results that
do not depend on row order.
"""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import write_jsonl
from tools import registry
from tools.contract import ToolContext, ToolSpec
from tools.errors import BadInput

SPECS = registry.list_specs()
# Minimal valid arguments for tools that need more than a corpus; tools missing here are only
# checked statically (their own test files run them against their oracles).
ARGS = {
    "profile": {},
    "sample": {"k": 10},
    "dsir": {"k": 10, "min_example_length": 1},
    "semantic_dedup": {},
    "embed": {"vector_store": False},
    "neighbors": {"query": "integer prime equation", "k": 5},
    "tsds": {"k": 10, "target": "__target__"},
}


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


RUNNABLE = [s for s in SPECS if s.name in ARGS]


@pytest.mark.parametrize("spec", RUNNABLE, ids=[s.name for s in RUNNABLE])
def test_runtime_contract(spec: ToolSpec, tmp_path):
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False)
    corpus = _corpus(tmp_path)
    args = {"corpus": str(corpus), **ARGS[spec.name]}
    fields = spec.request_model.model_fields
    extra_target = "target" in fields and (fields["target"].is_required() or args.get("target") == "__target__")
    if extra_target:
        target_rows = [{"text": f"integer prime equation proof number {i} " * (i + 2)} for i in range(5)]
        args["target"] = str(write_jsonl(tmp_path / "t.jsonl", target_rows))
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
