"""The handlers over the real AgentService: an unreachable LLM endpoint gives a banner and keeps the
thread; switching to the offline planner in Settings continues the same thread."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_llm_down_banner_then_offline_planner_continues_the_thread(tmp_path, demo_dir):
    from agent.service import AgentService
    from ui.app import build_app, new_session

    policy = tmp_path / "policy.yaml"
    policy.write_text(f"name: ui\ndata_roots: [{demo_dir}]\n")
    service = AgentService(planner="llm", llm_base_url="http://127.0.0.1:9/v1", llm_model="nobody",
                           workspace=tmp_path / ".curate", policy=str(policy))
    demo = build_app(service)
    h = demo.handlers
    pool = str(demo_dir / "pool.jsonl")
    outs = list(h.send("profile the pool", pool, None, new_session()))
    banner, session = outs[-1][2], outs[-1][3]
    assert banner["visible"] and "did not answer" in banner["value"]
    tid = session["thread_id"]
    assert tid in [t["id"] for t in service.threads()], "the thread is kept"

    _, status, *_ = h.apply_settings("offline", "", "", "", str(policy))
    assert "applied" in status
    assert demo.holder.get().settings()["planner"] == "offline"
    outs = list(h.send("profile the pool", pool, None, session))
    assert outs[-1][3]["thread_id"] == tid and outs[-1][2]["visible"] is False
    boxes = [m for m in outs[-1][0] if m.get("metadata")]
    assert boxes and boxes[-1]["metadata"]["title"] == "🛠️ profile" and boxes[-1]["metadata"]["status"] == "done"
    texts = [m["content"] for m in outs[-1][0]]
    assert texts[0] == "profile the pool" and sum(t == "profile the pool" for t in texts) == 2
