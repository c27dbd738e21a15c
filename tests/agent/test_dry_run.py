"""The service's dry run shows the plan the graph would run: both go through the plan node's own planner
functions, so for the same request the dry run's steps equal the steps of the graph's plan event (and a
question or an off-topic answer is the same text)."""

from __future__ import annotations

from typing import Any

from tests.agent.fakes import ScriptedChat, call, install


def _first_answer(svc: Any, thread: str, request: str, corpus: str) -> tuple[Any, list[tuple[str, dict]]]:
    """The graph's first plan / question / message event for ``request``, and the plan's steps then;
    the stream is closed at that event, so no tool runs."""
    stream = svc.stream(thread, request, corpus=corpus)
    try:
        event = next(e for e in stream if e.kind in ("plan", "question", "message", "error"))
    finally:
        stream.close()
    plan = svc.graph.get_state(svc._config(thread)).values.get("plan") or {}
    return event, [(s["tool"], s["args"]) for s in plan.get("steps") or []]


REQUESTS = [
    "profile the pool, then take a random sample of 100 documents",
    "what is in the pool? give me the domain breakdown",
    "select 200 documents like {target} with DSIR",
    "pick 150 docs close to {target} using optimal transport",
    "which training documents support the fact that 'the sky is blue'",
    "remove near duplicates from the pool at 0.9 similarity",
    "run dsir",  # a question: the target is missing
    "take a random sample of the pool",  # a question: how many
    "what's the weather in Paris tomorrow",  # off-topic
]


def test_offline_dry_run_equals_the_graphs_plan(make_service, demo_dir):
    pool, target = str(demo_dir / "pool.jsonl"), str(demo_dir / "target.jsonl")
    svc = make_service(planner="offline")
    seen = set()
    for i, request in enumerate(r.format(target=target) for r in REQUESTS):
        dry = svc.dry_run(request, corpus=pool)
        event, steps = _first_answer(svc, f"t{i}", request, pool)
        assert event.kind != "error", (request, event.text)
        assert [(s["tool"], s["args"]) for s in dry["steps"]] == steps, request
        assert dry["text"] == event.text, request
        assert (event.kind == "question") == (dry["question"] is not None), request
        if event.kind == "question":
            assert event.choices == dry["question"]["choices"]
            assert all(s["status"] == "pending" for s in dry["steps"])
        if event.kind == "plan":
            assert steps and all(s["status"] == "planned" for s in dry["steps"])
        seen.add(event.kind if event.kind != "plan" or len(steps) == 1 else "chain")
    assert seen == {"plan", "chain", "question", "message"}  # every kind of outcome was compared


def test_json_dry_run_equals_the_graphs_plan(make_service, monkeypatch, demo_dir):
    pool = str(demo_dir / "pool.jsonl")
    plan = {"steps": [{"tool": "profile", "args": {}}, {"tool": "sample", "args": {"k": 40, "seed": 3}}]}
    install(monkeypatch, ScriptedChat(replies=[call("submit_plan", plan), call("submit_plan", plan)]))
    svc = make_service(planner="json", llm_base_url="http://fake/v1", llm_model="tiny")
    dry = svc.dry_run("profile the pool, then sample 40 docs with seed 3", corpus=pool)
    event, steps = _first_answer(svc, "t", "profile the pool, then sample 40 docs with seed 3", pool)
    assert event.kind == "plan" and dry["planner"] == event.planner == "json:tiny"
    assert [(s["tool"], s["args"]) for s in dry["steps"]] == steps
    assert [t for t, _ in steps] == ["profile", "sample"] and steps[1][1]["k"] == 40
    assert dry["text"] == event.text


def test_dry_run_takes_the_explicit_k_like_a_run(make_service, demo_dir):
    """An explicit k (the UI's field, a request file) overrides the planner's k in both."""
    pool = str(demo_dir / "pool.jsonl")
    svc = make_service(planner="offline")
    dry = svc.dry_run("take a random sample of 100 documents", corpus=pool, k=70)
    assert [(s["tool"], s["args"].get("k")) for s in dry["steps"]] == [("sample", 70)]
    stream = svc.stream("t", "take a random sample of 100 documents", corpus=pool, k=70)
    try:
        event = next(e for e in stream if e.kind == "plan")
    finally:
        stream.close()
    assert event.text == dry["text"]


def test_json_plan_gets_its_prerequisites_in_the_dry_run_and_the_graph(make_service, monkeypatch, demo_dir):
    """A model that plans only the last step (trace_fact) gets the chain the offline planner would build."""
    pool = str(demo_dir / "pool.jsonl")
    plan = {"steps": [{"tool": "trace_fact", "args": {"queries": ["the pool has math documents"]}}]}
    install(monkeypatch, ScriptedChat(replies=[call("submit_plan", plan), call("submit_plan", plan)]))
    svc = make_service(planner="json", llm_base_url="http://fake/v1", llm_model="tiny")
    dry = svc.dry_run("which documents say the pool has math documents?", corpus=pool)
    assert [s["tool"] for s in dry["steps"]] == ["embed", "fact_index", "trace_fact"]
    assert dry["steps"][2]["args"]["index"] == "$index"
    event, steps = _first_answer(svc, "t", "which documents say the pool has math documents?", pool)
    assert event.kind == "plan" and [t for t, _ in steps] == ["embed", "fact_index", "trace_fact"]
