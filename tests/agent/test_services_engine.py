"""The engine switch: the agent's context (CLI --engine, chat settings, config file) reaches the tool runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from typer.testing import CliRunner

import tools.registry
from agent import config
from agent.adapters import make_tool
from agent.context import CurateContext
from tests.agent.fakes import ScriptedChat, call, install


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each tool run's ``ctx.engine``, then run it locally (no Ray needed to test the wiring)."""
    seen: list[str] = []
    real = tools.registry.invoke

    def invoke(name, args=None, ctx=None):  # noqa: ANN001, ANN202
        seen.append(ctx.engine)
        return real(name, args, ctx.model_copy(update={"engine": "local"}))

    monkeypatch.setattr(tools.registry, "invoke", invoke)
    return seen


def ray_capable(name: str):  # noqa: ANN201
    return tools.registry.get(name).model_copy(update={"engines": ("local", "ray")})


def test_ray_reaches_tools_that_support_it_only(spy, monkeypatch, tmp_path: Path, tiny_corpus: Path):
    pol = tmp_path / "policy.yaml"
    pol.write_text(f"name: t\ndata_roots: [{tiny_corpus.parent}]\n")
    monkeypatch.setattr("agent.adapters.current_context", lambda: CurateContext(engine="ray", policy=str(pol)))
    args = {"corpus": str(tiny_corpus), "k": 3}
    make_tool(ray_capable("sample")).invoke(args)
    make_tool(tools.registry.get("sample").model_copy(update={"engines": ("local",)})).invoke(args)
    assert spy == ["ray", "local"], "a tool without Ray support still runs, locally"
    monkeypatch.setattr("agent.adapters.current_context", lambda: CurateContext(policy=str(pol)))
    make_tool(ray_capable("sample")).invoke(args)
    assert spy[-1] == "local"


def test_the_service_engine_reaches_the_graph_tool_call(spy, monkeypatch, tmp_path: Path, tiny_corpus: Path):
    from agent.cli_common import make_service

    install(monkeypatch, ScriptedChat(replies=[call("sample", {"corpus": str(tiny_corpus), "k": 4}),
                                               AIMessage(content="done")]))
    pol = tmp_path / "policy.yaml"
    pol.write_text(f"name: t\ndata_roots: [{tiny_corpus.parent}]\n")
    svc = make_service(engine="ray", workspace=tmp_path / ".curate", policy=str(pol), specs=[ray_capable("sample")],
                       llm_base_url="http://fake/v1", llm_model="scripted")
    try:
        events = list(svc.stream("t", "sample 4 documents", corpus=str(tiny_corpus)))
    finally:
        svc.close()
    assert [e.status for e in events if e.kind == "tool_end"] == ["done"]
    assert spy == ["ray"]


def test_curate_run_engine_ray(spy, monkeypatch, tmp_path: Path, tiny_corpus: Path):
    from agent.cli import app

    for var in (*config.ENV_VARS, config.ENV_CONFIG):
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    monkeypatch.setitem(tools.registry._specs(), "sample", ray_capable("sample"))
    monkeypatch.setenv("CURATE_LLM_BASE_URL", "http://fake/v1")
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    pol = tmp_path / "policy.yaml"
    pol.write_text(f"name: t\ndata_roots: [{tiny_corpus.parent}]\n")
    for engine in ("ray", "local"):
        install(monkeypatch, ScriptedChat(replies=[call("sample", {"corpus": str(tiny_corpus), "k": 4}),
                                                   AIMessage(content="done")]))
        r = CliRunner().invoke(app, ["run", "sample 4 documents", "--corpus", str(tiny_corpus), "--planner", "llm",
                                     "--policy", str(pol), "--engine", engine, "--json"])
        assert r.exit_code == 0, r.output
        assert [e["status"] for e in json.loads(r.stdout)["events"] if e["kind"] == "tool_end"] == ["done"]
    assert spy == ["ray", "local"]
    r = CliRunner().invoke(app, ["run", "x", "--engine", "spark"])
    assert r.exit_code == 2 and "--engine (or CURATE_ENGINE): must be local or ray; got 'spark'" in r.output
