"""Plans that chain prerequisites by what tools consume and produce, and reuse thread artifacts."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

from agent.chain import complete, consumer_field, producers
from tools.contract import ToolRequest, ToolResult, ToolSpec
from tools.refs import ArtifactOrPath, CorpusRef


class _Corpus(ToolRequest):
    corpus: CorpusRef = Field(description="pool")


class _Index(ToolRequest):
    corpus: CorpusRef = Field(description="pool")
    embeddings: ArtifactOrPath | None = Field(None, description="vectors")


class _Trace(ToolRequest):
    queries: list[str] = Field(description="facts")
    index: ArtifactOrPath | None = Field(None, description="index")


def _spec(name: str, req: type[ToolRequest], consumes: tuple[str, ...] = (), produces: tuple[str, ...] = ()) -> ToolSpec:
    return ToolSpec(name=name, description=name, request_model=req, result_model=ToolResult, consumes=consumes,
                    produces=produces)


SPECS = {s.name: s for s in (
    _spec("embed", _Corpus, (), ("embeddings",)),
    _spec("fact_index", _Index, ("embeddings",), ("index",)),
    _spec("trace_fact", _Trace, ("index",), ("traces",)),
    _spec("profile", _Corpus),
)}


def _args(spec: ToolSpec, produced: set[str]) -> dict[str, Any]:
    return {"corpus": "pool.jsonl"} if "corpus" in spec.request_model.model_fields else {}


def test_chain_builds_every_missing_input_first():
    steps = complete([{"tool": "trace_fact", "args": {"queries": ["x"]}}], SPECS, artifacts={}, make_args=_args)
    assert [s["tool"] for s in steps] == ["embed", "fact_index", "trace_fact"]
    assert steps[1]["args"] == {"corpus": "pool.jsonl", "embeddings": "$embeddings"}
    assert steps[2]["args"] == {"queries": ["x"], "index": "$index"}


def test_chain_reuses_thread_artifacts_and_named_inputs():
    steps = complete([{"tool": "trace_fact", "args": {"queries": ["x"]}}], SPECS,
                     artifacts={"index": "index-abc"}, make_args=_args)
    assert steps == [{"tool": "trace_fact", "args": {"queries": ["x"], "index": "index-abc"}}]
    steps = complete([{"tool": "trace_fact", "args": {"queries": ["x"]}}], SPECS,
                     artifacts={"embeddings": "embeddings-1"}, make_args=_args)
    assert [s["tool"] for s in steps] == ["fact_index", "trace_fact"]
    assert steps[0]["args"]["embeddings"] == "embeddings-1"
    steps = complete([{"tool": "trace_fact", "args": {"queries": ["x"], "index": "idx/dir"}}], SPECS,
                     artifacts={}, make_args=_args)  # a path the user named: nothing to build
    assert [s["tool"] for s in steps] == ["trace_fact"]


def test_chain_keeps_explicit_steps_and_links_them():
    steps = complete([{"tool": "fact_index", "args": {"corpus": "pool.jsonl"}},
                      {"tool": "trace_fact", "args": {"queries": ["x"]}}], SPECS, artifacts={}, make_args=_args)
    assert [s["tool"] for s in steps] == ["embed", "fact_index", "trace_fact"]
    assert steps[2]["args"]["index"] == "$index"


def test_producers_and_consumer_fields():
    assert [s.name for s in producers("index", SPECS)] == ["fact_index"]
    assert producers("influence", SPECS) == []
    assert consumer_field(SPECS["trace_fact"], "index") == "index"
    assert consumer_field(SPECS["profile"], "index") is None


# ------------------------------------------------------------------ the offline planner's multi-step paths


@pytest.fixture(scope="module")
def planner():  # noqa: ANN201
    from agent.offline import OfflinePlanner
    from tests.agent.standin_specs import with_standins
    from tools.registry import list_specs

    return OfflinePlanner({s.name: s for s in with_standins(list_specs())})


def _tools(d: Any) -> list[str]:
    return [s["tool"] for s in d.steps]


def test_which_documents_say_builds_the_index_first(planner):  # noqa: ANN001
    d = planner.decide("which documents say that the Eiffel Tower is 330 m tall?", inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan", d.question
    tools = _tools(d)
    assert tools[-2:] == ["fact_index", "trace_fact"]
    if any("embeddings" in s.produces for s in planner.specs.values()):
        assert tools[0] in {s.name for s in planner.specs.values() if "embeddings" in s.produces}
    assert d.steps[-1]["args"]["queries"] == ["the Eiffel Tower is 330 m tall"]
    assert d.steps[-1]["args"].get("index", "$index") == "$index"
    again = planner.decide("which documents say that the Eiffel Tower is 330 m tall?", inputs={"corpus": "p.jsonl"},
                           artifacts={"index": "index-0f3"})
    assert _tools(again) == ["trace_fact"] and again.steps[0]["args"]["index"] == "index-0f3"


def test_balance_by_gradient_influence_computes_the_matrix_first(planner):  # noqa: ANN001
    req = ("balance the selection by gradient influence across tasks: 10% of data/train.jsonl, "
           "validation data/val.jsonl, model gpt2")
    d = planner.decide(req, inputs={"corpus": "data/train.jsonl"})
    assert _tools(d) == ["influence", "bids"], (d.kind, d.question)
    assert d.steps[0]["args"]["validation"] == "data/val.jsonl" and d.steps[0]["args"]["model"] == "gpt2"
    assert d.steps[1]["args"]["influence"] == "$influence" and d.steps[1]["args"]["fraction"] == 0.1
    reuse = planner.decide(req, inputs={"corpus": "data/train.jsonl"}, artifacts={"influence": "influence-9a"})
    assert _tools(reuse) == ["bids"] and reuse.steps[0]["args"]["influence"] == "influence-9a"


def test_combining_scores_needs_scores_first(planner):  # noqa: ANN001
    d = planner.decide("meta-rater on the pool, keep 20%", inputs={"corpus": "p.jsonl"})
    assert _tools(d)[-1] == "meta_rater" and len(d.steps) == 2
    assert "scores" in planner.specs[d.steps[0]["tool"]].produces
    assert d.steps[1]["args"]["fraction"] == 0.2


def test_clauses_become_steps_in_order(planner):  # noqa: ANN001
    d = planner.decide("dedup data/pool.jsonl at threshold 0.92 and then profile what's left")
    assert _tools(d) == ["semantic_dedup", "profile"]
    assert d.steps[0]["args"]["threshold"] == 0.92
    d = planner.decide("build the tracing index for data/pretrain.jsonl and then trace 'the sky is blue'")
    assert _tools(d)[-2:] == ["fact_index", "trace_fact"] and d.steps[-1]["args"]["index"] == "$index"
