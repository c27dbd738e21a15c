"""End to end with the offline planner: CLI propose -> pending -> approve -> export matches the selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app


@pytest.fixture
def policy(tmp_path: Path, demo_dir: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(f"name: itest\ndata_roots: [{demo_dir}, {tmp_path}]\nbudgets: {{max_docs_selected: 1000}}\n")
    return p


def _json(out: str):  # noqa: ANN202
    return json.loads(out[out.index("{"):])


def test_propose_review_approve_export(tmp_path: Path, demo_dir: Path, policy: Path):
    req = tmp_path / "req.yaml"
    req.write_text(
        "request: Use DSIR to select documents from the pool that look like the math target set.\n"
        f"corpus: {demo_dir / 'pool.jsonl'}\ntarget: {demo_dir / 'target_math.jsonl'}\nk: 400\n"
    )
    runner = CliRunner()
    r = runner.invoke(app, ["propose", "--request", str(req), "--policy", str(policy), "--json"])
    assert r.exit_code == 0, r.output
    out = _json(r.output)
    assert len(out["proposals"]) == 1
    prop = out["proposals"][0]
    plan_ev = next(e for e in out["events"] if e["kind"] == "plan")
    assert plan_ev["planner"] == "offline" and "offline planner" in plan_ev["text"]
    assert prop["status"] == "pending" and prop["n_docs"] == 400 and prop["plan"][0]["args"]["k"] == 400
    assert prop["plan"][0]["tool"] == "dsir"

    r = runner.invoke(app, ["review", "list", "--json"])
    assert [p["id"] for p in json.loads(r.output)] == [prop["id"]]
    r = runner.invoke(app, ["review", "show", prop["id"]])
    assert json.loads(r.output)["evidence"][0]["tool"] == prop["plan"][0]["tool"]

    r = runner.invoke(app, ["review", "approve", prop["id"], "--note", "looks right", "--policy", str(policy)])
    assert r.exit_code == 0, r.output
    assert "approved and exported: 400 documents" in r.output
    r = runner.invoke(app, ["review", "show", prop["id"]])
    rec = json.loads(r.output)
    assert rec["status"] == "exported" and rec["note"] == "looks right"
    rows = [json.loads(line) for line in open(rec["export"]["path"], encoding="utf-8")]
    from tools.artifacts import Workspace

    sel = Workspace().get(rec["selection"]).table()
    assert sorted(r["id"] for r in rows) == sorted(sel.column("id").to_pylist())
    assert all(r["text"] for r in rows)
    manifest = json.loads(Path(rec["export"]["manifest"]).read_text())
    assert manifest["rows"] == 400 and manifest["plan"] == rec["plan"] and manifest["seeds"] == [0]
    assert manifest["tools"] and manifest["tools"][0]["request"]["k"] == 400
    assert manifest["reproduce"][0].startswith(f"curate tool {rec['plan'][0]['tool']} --args ")
    # nothing is left pending; approving twice is a no-op
    assert json.loads(runner.invoke(app, ["review", "list", "--json"]).output) == []
    again = runner.invoke(app, ["review", "approve", prop["id"], "--policy", str(policy)])
    assert again.exit_code == 0, again.output


def test_run_dry_run_and_policy_denial(tmp_path: Path, demo_dir: Path, policy: Path):
    runner = CliRunner()
    pool = str(demo_dir / "pool.jsonl")
    r = runner.invoke(app, ["run", "profile the pool, then take a random sample of 300 documents", "--corpus", pool,
                            "--dry-run", "--json", "--policy", str(policy)])
    assert r.exit_code == 0, r.output
    out = _json(r.output)
    assert [s["tool"] for s in out["steps"]] == ["profile", "sample"] and out["steps"][1]["args"]["k"] == 300
    from tools.artifacts import Workspace

    assert Workspace().list() == []  # a dry run runs nothing
    outside = tmp_path.parent / "other" / "pool.jsonl"
    r = runner.invoke(app, ["run", "profile the corpus", "--corpus", str(outside), "--policy", str(policy)])
    assert r.exit_code == 3, r.output
    assert "outside the policy's data roots" in r.output
    r = runner.invoke(app, ["run", "take a random sample of 5000 documents", "--corpus", pool, "--policy", str(policy)])
    assert r.exit_code == 3 and "above the policy's budget of 1000" in r.output
    r = runner.invoke(app, ["run", "take a random sample of 50 documents", "--corpus", pool, "--policy", str(policy)])
    assert r.exit_code == 0, r.output
    assert "pending review" in r.output and "curate review show prop-" in r.output


def test_strict_policy_blocks_export_without_dedup(tmp_path: Path, demo_dir: Path):
    strict = tmp_path / "strict.yaml"
    strict.write_text(f"data_roots: [{demo_dir}]\nexport: {{dedup_required: true}}\n")
    from agent.service import AgentService

    svc = AgentService(policy=str(strict), planner="offline")
    events = list(svc.stream("t", "take a random sample of 60 documents", corpus=str(demo_dir / "pool.jsonl")))
    prop = next(e for e in events if e.kind == "proposal").proposal
    assert "requires deduplication" in prop["problems"][0]
    out = list(svc.review("t", prop["id"], "approve"))
    assert "cannot be exported" in out[0].text
    assert svc.proposal(prop["id"])["status"] == "pending"
    assert not (svc.workspace / "exports" / prop["id"] / "manifest.json").exists()
    svc.close()


def test_curate_demo_runs_without_an_llm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # the default policy reads the working directory
    runner = CliRunner()
    r = runner.invoke(app, ["demo", "--docs", "3000", "--k", "300"])
    assert r.exit_code == 0, r.output
    assert "Plan by the offline planner" in r.output and "curate review approve prop-" in r.output
    assert (tmp_path / "demo" / "pool.jsonl").exists()
    r = runner.invoke(app, ["demo", "--docs", "3000", "--k", "300", "--approve"])
    assert r.exit_code == 0, r.output
    assert "approved and exported: 300 documents" in r.output
