"""The LLM planners' prompts carry every tool's schema, the chaining rules and worked examples."""

from __future__ import annotations

from tests.agent.fakes import ScriptedChat, call, install


def test_json_planner_prompt_has_schemas_chaining_and_examples(make_service, monkeypatch, demo_dir):
    from tools.registry import list_specs

    model = install(monkeypatch, ScriptedChat(replies=[call("submit_plan", {"steps": [
        {"tool": "profile", "args": {}}]})]))
    svc = make_service(planner="json", llm_base_url="http://fake/v1", llm_model="tiny")
    out = svc.dry_run("what is in the pool?", corpus=str(demo_dir / "pool.jsonl"))
    assert [s["tool"] for s in out["steps"]] == ["profile"]
    system = model.seen[0][0].content
    specs = list_specs()
    for s in specs:  # every tool with its argument names, and what it consumes -> produces
        assert f"- {s.name}(" in system
        assert all(f"{n}:" in system for n in list(s.request_model.model_fields)[:3])
        if s.consumes or s.produces:
            assert f"  {s.name}: {', '.join(s.consumes) or '-'} -> {', '.join(s.produces) or '-'}" in system
    assert '"$<kind>"' in system and "Examples (request -> steps):" in system
    names = {s.name for s in specs}
    shown = [line for line in system.splitlines() if line.startswith("- ") and " -> [" in line]
    assert shown and all(all(f'"tool": "{t}"' not in line or t in names for t in ("fact_index", "trace_fact"))
                         for line in shown)


def test_native_planner_prompt_has_the_same_rules(make_service, monkeypatch, demo_dir):
    model = install(monkeypatch, ScriptedChat(replies=[call("profile", {"corpus": "p"})]))
    svc = make_service(planner="llm", llm_base_url="http://fake/v1", llm_model="tiny")
    out = svc.dry_run("what is in the pool?", corpus=str(demo_dir / "pool.jsonl"))
    assert out["steps"][0]["tool"] == "profile"
    system = model.seen[0][0].content
    assert "Chaining:" in system and '"$<kind>"' in system and "Examples (request -> steps):" in system
    assert str(demo_dir / "pool.jsonl") in system
    tools, _ = model.bound[0]
    assert {t.name for t in tools} >= {"profile", "sample", "dsir"}  # the schemas are bound as tools
