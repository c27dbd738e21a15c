"""The chat's Review tab on a mixture proposal: per-stage table and stacked bars, edit, approve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app

pytest.importorskip("gradio")


def test_review_tab_edits_and_approves_a_mixture(tmp_path: Path):
    from agent.service import AgentService
    from ui.app import build_app, new_session

    rows = [{"id": f"{d}-{i:03d}", "domain": d, "text": f"{d} " * (25 + i % 5)}
            for d, n in (("web", 40), ("code", 20), ("math", 10)) for i in range(n)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"name: ui\ndata_roots: [{tmp_path}]\ndomains:\n  web: {{cap: 0.7}}\n")
    req = tmp_path / "mix.yaml"
    req.write_text(f"request: uniform mixture\ncorpus: {pool}\nsteps:\n  - {{tool: propose_mixture, args: "
                   f"{{corpus: {pool}, method: uniform, stages: 2, token_budget: 1200}}}}\n")
    r = CliRunner().invoke(app, ["propose", "--request", str(req), "--policy", str(policy), "--json"])
    assert r.exit_code == 0, r.output
    out = r.output
    pid = json.loads(out[out.index("{"):])["proposals"][0]["id"]

    import os

    service = AgentService(planner="offline", workspace=Path(os.environ["CURATE_HOME"]), policy=str(policy))
    h = build_app(service).handlers
    md, df, fig, _gallery, _ = h.show_proposal(pid, new_session())
    assert list(df.columns) == ["domain", "stage 1", "stage 2", "pool share"]
    assert fig["visible"] and fig["value"] is not None
    assert df["stage 1"].sum() == pytest.approx(1.0, abs=1e-5)

    df.loc[df.domain == "math", "stage 1"] = 0.5  # stage 1 now sums to 1.1667: renormalised with a note
    outs = list(h.review("edit", pid, df, "more math", new_session()))
    text = outs[-1][0]
    assert "renormalised" in text and "pending" in text
    rec = service.proposal(pid)
    assert rec["stages"][0]["weights"]["math"] == pytest.approx(0.5 / (1 + 1 / 6), abs=1e-6)

    _, df2, *_ = h.show_proposal(pid, new_session())
    df2.loc[df2.domain == "web", "stage 2"] = 5.0  # ~90% web: above the policy's cap of 70%
    outs = list(h.review("edit", pid, df2, "", new_session()))
    assert "Edit not accepted" in outs[-1][0] and "cap" in outs[-1][0]

    _, df3, *_ = h.show_proposal(pid, new_session())
    outs = list(h.review("approve", pid, df3, "fine", new_session()))
    assert "exported" in outs[-1][0] and "mixture.json" in outs[-1][0] or "Exported to" in outs[-1][0]
    assert service.proposal(pid)["status"] == "exported"
