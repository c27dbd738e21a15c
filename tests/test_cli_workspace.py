"""One workspace resolver: a policy's ``workspace:`` is honoured by the graph and by every command."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.context import CurateContext, resolve_workspace
from tools.contract import ToolContext


@pytest.fixture
def policy_ws(tmp_path):
    ws = tmp_path / "policy-ws"
    pol = tmp_path / "pol.yaml"
    pol.write_text(f"name: elsewhere\ndata_roots: [{str(tmp_path)!r}]\nworkspace: {str(ws)!r}\n")
    ctx = ToolContext(workspace_dir=ws, show_progress=False)
    with ctx.artifact("table", "probe") as w:
        w.json({"x": 1})
    (ws / "proposals").mkdir(parents=True, exist_ok=True)
    rec = {"id": "prop-0001", "status": "pending", "kind": "selection", "n_docs": 3, "request": "r",
           "created_at": "2026-01-01T00:00:00"}
    (ws / "proposals" / "prop-0001.json").write_text(json.dumps(rec))
    return pol, ws, w.id


def test_resolver_prefers_the_policy_workspace(policy_ws, tmp_path):
    pol, ws, _ = policy_ws
    assert resolve_workspace(CurateContext.from_env(policy=str(pol))) == ws
    assert resolve_workspace(CurateContext.from_env(policy="default")) == CurateContext.from_env().workspace


def test_artifacts_and_review_commands_use_it(policy_ws, monkeypatch):
    pol, ws, art_id = policy_ws
    run = CliRunner().invoke
    listed = run(app, ["artifacts", "list", "--json", "--policy", str(pol)])
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.output)] == [art_id]
    assert art_id not in run(app, ["artifacts", "list", "--json"]).output  # the default workspace is another
    shown = run(app, ["artifacts", "show", art_id, "--policy", str(pol)])
    assert shown.exit_code == 0 and json.loads(shown.output)["id"] == art_id
    monkeypatch.setenv("CURATE_POLICY", str(pol))  # the policy from the environment counts the same
    assert "prop-0001" in run(app, ["review", "list", "--json"]).output
    assert json.loads(run(app, ["review", "show", "prop-0001"]).output)["id"] == "prop-0001"
