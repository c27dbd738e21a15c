"""Ask instead of failing: the offline planner's clarifying question, through `curate run`, the dry run
and the chat handler, and the answer in the next message of the same thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.cli_agent import EXIT_QUESTION


@pytest.fixture
def policy(tmp_path: Path, demo_dir: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(f"name: asktest\ndata_roots: [{demo_dir}, {tmp_path}]\n")
    return p


def _json(out: str):  # noqa: ANN202
    return json.loads(out[out.index("{"):])


def test_curate_run_asks_for_a_missing_count_then_runs_on_the_answer(demo_dir: Path, policy: Path):
    runner = CliRunner()
    pool = str(demo_dir / "pool.jsonl")
    base = ["--corpus", pool, "--policy", str(policy), "--planner", "offline", "--thread", "t-ask"]
    r = runner.invoke(app, ["run", "take a random sample of the pool", *base])
    assert r.exit_code == EXIT_QUESTION, r.output
    assert "question:" in r.output and "k (" in r.output and "choices: sample" in r.output
    from tools.artifacts import Workspace

    assert Workspace().list() == []  # nothing ran
    r = runner.invoke(app, ["run", "250", *base, "--json"])  # the answer, in the same thread
    assert r.exit_code == 0, r.output
    out = _json(r.output)
    ends = [e for e in out["events"] if e["kind"] == "tool_end"]
    assert [e["tool"] for e in ends] == ["sample"] and ends[0]["status"] == "done"
    assert ends[0]["args"]["k"] == 250 and ends[0]["args"]["corpus"] == pool
    assert out["proposals"] and out["proposals"][0]["n_docs"] == 250


def test_dry_run_json_shows_the_question_and_pending_choices(demo_dir: Path, policy: Path):
    runner = CliRunner()
    r = runner.invoke(app, ["run", "run dsir", "--dry-run", "--json", "--corpus", str(demo_dir / "pool.jsonl"),
                            "--policy", str(policy), "--planner", "offline"])
    assert r.exit_code == EXIT_QUESTION, r.output
    out = _json(r.output)
    q = out["question"]
    assert q["reason"] == "missing" and "target" in q["missing"] and q["choices"][0] == "dsir"
    assert out["steps"] and all(s["status"] == "pending" for s in out["steps"])
    assert out["steps"][0]["tool"] == "dsir" and out["text"] == q["text"]
    r = runner.invoke(app, ["run", "what's the weather in Paris tomorrow", "--dry-run", "--json", "--policy",
                            str(policy), "--planner", "offline"])
    out = _json(r.output)
    assert out["steps"] == [] and out["question"] is None and "not a data-curation request" in out["text"]


def test_chat_shows_choice_buttons_and_a_click_answers(tmp_path: Path, demo_dir: Path, policy: Path):
    from agent.service import AgentService
    from ui.app import build_app, new_session

    service = AgentService(planner="offline", workspace=tmp_path / ".curate", policy=str(policy))
    h = build_app(service).handlers
    pool, target = str(demo_dir / "pool.jsonl"), str(demo_dir / "target_math.jsonl")
    outs = list(h.send("run dsir, 100 docs", pool, None, new_session()))
    session = outs[-1][3]
    view = session["view"]
    assert view.choices and view.choices[0] == "dsir"
    assert any("**Question**" in m["content"] and "target" in m["content"] for m in outs[-1][0])
    buttons = h.choice_buttons(session)
    assert buttons[0]["visible"] and buttons[0]["value"] == "dsir"
    assert not buttons[-1]["visible"] or len(view.choices) == len(buttons)
    # the button answers with the tool's name: dsir still needs its target, so the planner asks again
    outs = list(h.pick_choice("dsir", pool, None, session))
    assert session["view"].choices[:1] == ["dsir"]
    # answering in words with the target runs it, with the count of the original request
    outs = list(h.send(f"target {target}", pool, None, session))
    boxes = [m for m in outs[-1][0] if (m.get("metadata") or {}).get("title", "").startswith("🛠️")]
    assert boxes and boxes[-1]["metadata"]["title"] == "🛠️ dsir" and boxes[-1]["metadata"]["status"] == "done"
    assert h.choice_buttons(session)[0]["visible"] is False
    service.close()
