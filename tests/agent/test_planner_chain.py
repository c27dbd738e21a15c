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


@pytest.mark.parametrize("request_text", [
    "sample 400 documents, then rate them with the LLM",
    "take a random sample of 400 docs and then have the llm grade them on readability",
    "rate a sample of 400 docs with the LLM, then distil the ratings into a small model",
])
def test_a_sample_clause_is_the_raters_own_sample(planner, request_text: str):  # noqa: ANN001
    """prrc_rate rates a seeded sample itself: a "sample N" clause before it is its sample_size, not a sample
    step whose selection nothing uses (and that would be filed for review as the result)."""
    d = planner.decide(request_text, inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan", d.question
    assert _tools(d) == ["prrc_rate"]
    assert d.steps[0]["args"]["sample_size"] == 400 and d.steps[0]["args"]["corpus"] == "p.jsonl"
    if "readability" in request_text:
        assert d.steps[0]["args"]["dimensions"] == ["readability"]


def test_a_sample_before_a_tool_without_its_own_sample_stays_a_step(planner):  # noqa: ANN001
    d = planner.decide("sample 300 docs, then profile the pool", inputs={"corpus": "p.jsonl"})
    assert _tools(d) == ["sample", "profile"] and d.steps[0]["args"]["k"] == 300


def test_fact_index_or_trace_fact_by_what_the_request_gives(planner):  # noqa: ANN001
    """The two score alike on "fact tracing" words; trace_fact's plan builds the index first, so the request's
    arguments decide: statements to trace -> trace_fact (index built first), none -> the index alone."""
    d = planner.decide("set up the index for fact tracing over the corpus", inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan" and _tools(d)[-1] == "fact_index", (d.kind, d.question)
    d = planner.decide("which training documents support the fact that honey never spoils",
                       inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan" and _tools(d)[-2:] == ["fact_index", "trace_fact"], (d.kind, d.question)
    assert d.steps[-1]["args"]["queries"] == ["honey never spoils"] and d.steps[-1]["args"]["index"] == "$index"
    d = planner.decide("find the documents that taught the model that octopuses have three hearts",
                       inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan" and d.steps[-1]["args"]["queries"] == ["octopuses have three hearts"]


def test_an_index_named_by_id_is_used_not_rebuilt(planner):  # noqa: ANN001
    d = planner.decide('trace the fact "octopuses have three hearts" with index index-0a1b2c3d4e5f',
                       inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan", d.question
    assert _tools(d) == ["trace_fact"] and d.steps[0]["args"]["index"] == "index-0a1b2c3d4e5f"


def test_a_clause_about_an_earlier_steps_input_runs_first(planner):  # noqa: ANN001
    """"balance it ...; the matrix is at m.npy" reads the matrix before bids, and bids is the last step."""
    req = ("My LESS selection is dominated by one task. Can you balance the selection across tasks? "
           "The influence matrix is at runs/inf/matrix.npy and I need 15% of the pool.")
    d = planner.decide(req, inputs={"corpus": "data/pool.jsonl"})
    tools = _tools(d)
    assert tools[-1] == "bids" and tools.count("influence") <= 1, tools
    if "influence" in tools:
        assert tools.index("influence") < tools.index("bids")
        assert d.steps[tools.index("influence")]["args"].get("matrix") == "runs/inf/matrix.npy"


def test_similar_without_a_target_asks_instead_of_sampling(planner):  # noqa: ANN001
    d = planner.decide("pick 500 similar examples", inputs={"corpus": "p.jsonl"})
    assert d.kind == "ask" and "target" in " ".join(d.question_record("x")["missing"]), d.steps
    d = planner.decide("pick 500 random examples", inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan" and _tools(d) == ["sample"] and d.steps[0]["args"]["k"] == 500


def test_what_the_request_fills_breaks_a_near_tie(planner):  # noqa: ANN001
    """bids on a matrix the request names, not "did you mean influence or bids?"; quality_signals with its
    DSIR column, not a dsir selection that has no k."""
    d = planner.decide("iterative pick of the example with the highest normalised influence on the most "
                       "under-served validation instance; matrix runs/m.npy, n=800", inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan" and _tools(d) == ["bids"] and d.steps[0]["args"]["influence"] == "runs/m.npy"
    d = planner.decide("data/pool.jsonl -> quality_signals, and add a DSIR weight column against targets/wiki.jsonl")
    assert d.kind == "plan" and _tools(d) == ["quality_signals"]
    assert d.steps[0]["args"]["dsir_targets"] == ["targets/wiki.jsonl"]


def test_preparing_for_a_tool_plans_its_prerequisite_and_a_missing_input_asks(planner):  # noqa: ANN001
    d = planner.decide("index the training corpus for fact tracing", inputs={"corpus": "p.jsonl"})
    assert d.kind == "plan" and _tools(d)[-1] == "fact_index", (d.kind, _tools(d))
    for text in ("trace this fact", "which documents in the pool support the fact?"):
        d = planner.decide(text, inputs={"corpus": "p.jsonl"})
        assert d.kind == "ask" and _tools(d)[-1] == "trace_fact", text


@pytest.mark.parametrize("text", [
    "DSIR keeps giving me near-duplicates; I want the optimal-transport selection with a diversity term, 500 docs like data/t.jsonl",
    "this time use the transport-based selection instead of dsir: 500 docs like data/t.jsonl",
])
def test_a_tool_named_as_context_does_not_win(planner, text: str):  # noqa: ANN001
    d = planner.decide(text, inputs={"corpus": "p.jsonl"})
    assert _tools(d)[-1] == "tsds", (d.kind, _tools(d), d.scores)


def test_a_clause_on_the_earlier_selection_is_not_moved_before_it(planner):  # noqa: ANN001
    d = planner.decide("keep the top 20% with meta-rater, then compute quality signals on the selection",
                       inputs={"corpus": "p.jsonl"}, artifacts={"scores": "scores-abc123def456"})
    tools = _tools(d)
    assert tools[-1] == "quality_signals" and d.steps[-1]["args"]["corpus"] == "$selection", d.steps
