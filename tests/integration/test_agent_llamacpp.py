"""The whole OpenAI-compatible path against a real llama.cpp server running SmolLM2-135M (CPU).

The server is started by the test on 127.0.0.1. SmolLM2 cannot route (it picks tools at chance), so
the agent run restricts the tools to ``sample`` and checks the mechanics: a forced function call
that carries a JSON plan, validation, the graph, a pending proposal, approval and the export.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import smollm2_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    yield from smollm2_server(n_ctx=4096)


def test_chat_stream_and_forced_tool_call(server):  # noqa: ANN001
    from pydantic import BaseModel

    from agent.context import CurateContext
    from agent.llm import endpoint_healthy, load_chat_model

    assert endpoint_healthy(server.base_url)
    model = load_chat_model(CurateContext(base_url=server.base_url, model=server.model))
    reply = model.invoke("Say hello in one word.")
    assert isinstance(reply.content, str) and reply.content.strip()
    chunks = list(model.stream("Count to three."))
    assert len(chunks) > 1
    tool = {"type": "function", "function": {"name": "route", "description": "choose a tool",
                                             "parameters": {"type": "object",
                                                            "properties": {"tool": {"type": "string",
                                                                                    "enum": ["profile", "sample"]}},
                                                            "required": ["tool"]}}}
    forced = model.bind_tools([tool], tool_choice="route").invoke("Profile my dataset.")
    assert forced.tool_calls and forced.tool_calls[0]["name"] == "route"
    assert forced.tool_calls[0]["args"]["tool"] in ("profile", "sample")

    class Pick(BaseModel):
        tool: str
        k: int

    structured = model.with_structured_output(Pick, method="function_calling").invoke("Sample 10 documents.")
    assert isinstance(structured, Pick)


REQUESTS = ("Take a random sample of 80 documents from the pool.", "Sample 80 documents at random.",
            "Draw 80 random documents from the pool as a baseline.")


def test_json_planner_end_to_end_to_export(server, tmp_path, demo_dir, monkeypatch):  # noqa: ANN001
    """SmolLM2's arguments depend on the prompt's paths and on the CPU's arithmetic (on CI it once asked
    for ``domains=['']``; locally, on some paths, for a path as a domain), so each phrasing must end in
    one of the clean ways — a pending proposal, a stop naming the refused argument, or the planner
    saying why it has no plan — and at least one of three phrasings must reach a proposal, which is
    approved and must export exactly the selection."""
    from agent.service import AgentService

    monkeypatch.setenv("CURATE_LLM_TIMEOUT", "900")  # 2 shared CPU cores can be very slow
    from tools.registry import get

    pol = tmp_path / "p.yaml"
    pol.write_text(f"data_roots: [{demo_dir}]\n")
    svc = AgentService(workspace=tmp_path / ".curate", policy=str(pol), planner="json",
                       llm_base_url=server.base_url, llm_model=server.model, specs=[get("sample")])
    endings = []
    for i, request in enumerate(REQUESTS):
        events = list(svc.stream(f"t{i}", request, corpus=str(demo_dir / "pool.jsonl"), k=80))
        kinds = [e.kind for e in events if e.kind != "tool_progress"]
        assert "error" not in kinds, [e.text for e in events if e.kind == "error"]
        assert events[-1].kind == "done"
        answer = [e.text for e in events if e.kind == "message"][-1]
        assert "Traceback" not in answer
        plan = next((e for e in events if e.kind == "plan"), None)
        if plan is None:
            assert "The JSON plan was not valid" in answer, answer
            endings.append("no plan")
            continue
        assert plan.planner == "json:smollm2" and "sample(" in plan.text and "k=80" in plan.text
        steps = [line.split(". ", 1)[1] for line in plan.text.splitlines()[1:] if ". " in line]
        assert steps and len(steps) == len(set(steps))  # blank and repeated steps were cleaned
        prop = next((e.proposal for e in events if e.kind == "proposal"), None)
        if prop is None:
            assert "sample failed: error (bad_input): sample." in answer, answer
            endings.append("refused")
            continue
        assert prop["n_docs"] == 80 and prop["status"] == "pending"
        out = list(svc.review(f"t{i}", prop["id"], "approve"))
        assert "exported" in out[0].text
        rec = svc.proposal(prop["id"])
        rows = [json.loads(line) for line in open(rec["export"]["path"], encoding="utf-8")]
        sel = svc.tool_context().workspace.get(rec["selection"]).table().column("id").to_pylist()
        assert sorted(r["id"] for r in rows) == sorted(sel)
        break
    else:
        pytest.fail(f"no phrasing reached a proposal: {endings}")
    svc.close()


def test_native_tool_call_planner_runs_against_the_server(server, tmp_path, demo_dir, monkeypatch):  # noqa: ANN001
    from agent.service import AgentService

    monkeypatch.setenv("CURATE_LLM_TIMEOUT", "900")
    from tools.registry import get

    pol = tmp_path / "p.yaml"
    pol.write_text(f"data_roots: [{demo_dir}]\n")
    svc = AgentService(workspace=tmp_path / ".curate", policy=str(pol), planner="llm", max_steps=2,
                       llm_base_url=server.base_url, llm_model=server.model, specs=[get("profile")])
    events = list(svc.stream("t", "Profile the pool.", corpus=str(demo_dir / "pool.jsonl")))
    # a 135M model may or may not call the tool; either way the run ends cleanly with an answer
    assert events[-1].kind == "done" and events[-1].text == "complete"
    assert any(e.kind == "message" for e in events)
    svc.close()
