"""A selection made by one step is the corpus of the next: "sample 300 documents, then profile them"."""

from __future__ import annotations

import pytest

from agent.chain import consumer_field, makes
from agent.offline import OfflinePlanner
from tests.agent.conftest import kinds

POOL = "data/pool.jsonl"


@pytest.fixture(scope="module")
def planner() -> OfflinePlanner:
    from tools.registry import list_specs

    return OfflinePlanner({s.name: s for s in list_specs()})


def _plan(planner: OfflinePlanner, request: str) -> list[tuple[str, dict]]:
    d = planner.decide(request, inputs={"corpus": POOL})
    assert d.kind == "plan", (d.kind, d.question)
    return [(s["tool"], s["args"]) for s in d.steps]


def test_a_corpus_field_takes_a_selection_and_every_selector_makes_one(planner):
    specs = planner.specs
    assert consumer_field(specs["profile"], "selection") == "corpus"
    assert consumer_field(specs["quality_signals"], "selection") == "corpus"
    assert "selection" in makes(specs["sample"]) and "selection" in makes(specs["dsir"])
    assert "selection" not in makes(specs["profile"])


@pytest.mark.parametrize(("request_text", "first", "second"), [
    ("sample 300 documents, then profile them", "sample", "profile"),
    ("take a stratified sample of 500 and profile it", "sample", "profile"),
    ("sample 2000 documents and then compute quality signals on them", "sample", "quality_signals"),
    ("select 1000 docs like data/target.jsonl with DSIR, then deduplicate them semantically", "dsir",
     "semantic_dedup"),
    ("pick 2000 docs like data/target.jsonl with dsir, then profile the selection", "dsir", "profile"),
    ("dedup data/pool.jsonl at threshold 0.92 and then profile what's left", "semantic_dedup", "profile"),
])
def test_a_later_step_that_points_back_reads_the_selection(planner, request_text, first, second):
    steps = _plan(planner, request_text)
    assert [t for t, _ in steps] == [first, second]
    assert steps[0][1]["corpus"] == POOL and steps[1][1]["corpus"] == "$selection"


def test_a_later_step_that_does_not_point_back_reads_the_pool(planner):
    steps = _plan(planner, "run dsir for 3000 docs like data/target.jsonl and then also give me a random baseline "
                           "of the same size")
    assert [t for t, _ in steps] == ["dsir", "sample"] and steps[1][1]["corpus"] == POOL
    steps = _plan(planner, "profile the pool, then take a random sample of 100 documents")
    assert [t for t, _ in steps] == ["profile", "sample"] and steps[1][1]["corpus"] == POOL
    # prrc_rate draws its own sample: still one step (the fold rule), not sample -> prrc_rate(corpus=$selection)
    assert _plan(planner, "sample 500 docs, then rate them with the LLM") == [
        ("prrc_rate", {"corpus": POOL, "sample_size": 500})]


def test_the_graph_profiles_the_sample_it_drew(make_service, demo_dir, tmp_path, monkeypatch):
    # run from outside the data roots: the guard does not read a selection id as a relative path
    # (agent/adapters.call_paths); the runtime checks the selection's source files itself
    monkeypatch.chdir("/")
    svc = make_service(planner="offline")
    events = list(svc.stream("t", "sample 300 documents, then profile them", corpus=str(demo_dir / "pool.jsonl")))
    ends = [e for e in events if e.kind == "tool_end"]
    assert [(e.tool, e.status) for e in ends] == [("sample", "done"), ("profile", "done")], \
        [(e.tool, e.summary) for e in ends]
    sel = ends[0].artifacts["selection"]
    start = [e for e in events if e.kind == "tool_start"][1]
    assert start.args["corpus"] == sel
    assert ends[1].summary.startswith("300 documents")
    ws = svc.tool_context().workspace
    prof = next(a for a in ws.list() if a.manifest.get("tool") == "profile")
    assert prof.manifest["request"]["corpus"]["selection"].endswith(sel)
    assert prof.manifest["request"]["corpus"]["path"] == str(demo_dir / "pool.jsonl")
    assert "done" in kinds(events)


def test_a_request_that_names_the_thread_selection_reads_it(planner):
    arts = {"selection": "selection-0123456789ab"}
    for text in ("profile the sample", "compute quality signals on the selected documents"):
        d = planner.decide(text, inputs={"corpus": POOL}, artifacts=arts)
        assert d.kind == "plan" and d.steps[-1]["args"]["corpus"] == arts["selection"], (text, d.steps)
    d = planner.decide("profile the pool", inputs={"corpus": POOL}, artifacts=arts)
    assert d.steps[-1]["args"]["corpus"] == POOL
    d = planner.decide("profile the sample", inputs={"corpus": POOL})  # no selection in the thread: the pool
    assert d.steps[-1]["args"]["corpus"] == POOL
