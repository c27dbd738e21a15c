"""The app's handlers driven directly (no server) over the scripted FakeService."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.ui.fakes import FakeService
from ui import app as ui_app
from ui.app import build_app, corpus_choices, new_session, parse_auth
from ui.render import plain


@pytest.fixture
def svc(tmp_path, demo_dir):  # noqa: ANN001, ANN201
    return FakeService(workspace=tmp_path / "ws", data_roots=[str(demo_dir)])


@pytest.fixture
def h(svc):  # noqa: ANN001, ANN201
    return build_app(svc).handlers


def run_chat(h, text, session, corpus=None):  # noqa: ANN001, ANN201
    outs = list(h.send(text, corpus, None, session))
    return outs, outs[-1][3]


def _val(update):  # noqa: ANN001, ANN202
    return update.get("value") if isinstance(update, dict) else update


def test_send_streams_tool_boxes_pending_then_done(h, svc, demo_dir):
    pool = str(demo_dir / "pool.jsonl")
    outs, session = run_chat(h, "select 30 math docs", new_session(), corpus=pool)
    first = outs[0][0]
    assert first[-1]["role"] == "user" and outs[0][1] == "", "the user turn shows at once and the box clears"
    pending = [o for o in outs if any((m.get("metadata") or {}).get("status") == "pending" for m in o[0])]
    assert pending, "a tool box is shown pending while the tool runs"
    logs = {(m.get("metadata") or {}).get("log") for o in outs for m in o[0]}
    assert "scoring: 20/30 docs (67%)" in logs, "live progress reaches the box"
    final = outs[-1][0]
    boxes = [m for m in final if m.get("metadata") and "parent_id" not in m["metadata"]]
    assert [b["metadata"]["title"] for b in boxes] == ["🛠️ fake_select", "❌ broken_tool failed"]
    assert all(b["metadata"]["status"] == "done" for b in boxes)
    phases = [m["metadata"] for m in final if (m.get("metadata") or {}).get("parent_id")]
    assert [(p["title"], p["parent_id"], p["status"]) for p in phases] == [
        ("⏳ scoring", "tool-c1", "done"), ("⏳ ranking", "tool-c1", "done")], "two phases nest under their tool"
    assert boxes[0]["metadata"]["duration"] == 1.25
    assert final[-1]["content"].startswith("Done")
    assert svc.calls[0][3] == pool
    assert svc.stream_threads == ["agent-stream"], "the service generator runs on the pump thread"
    art_choices = outs[-1][4]["choices"]
    assert any("selection" in label for label, _ in art_choices)
    assert outs[-1][4]["value"].startswith("selection-"), "the side panel opens the new selection"
    assert [v for _, v in outs[-1][5]["choices"]] == [session["thread_id"]]
    assert outs[-1][6]["choices"][0][1] == f"prop-{session['thread_id']}"
    assert outs[-1][6]["value"] == f"prop-{session['thread_id']}", "the Review tab is ready on the new proposal"


def test_llm_down_shows_banner_and_keeps_thread(h, svc):
    outs, session = run_chat(h, "llm down please", new_session())
    tid = session["thread_id"]
    banner = outs[-1][2]
    assert banner["visible"] is True and "unreachable" in banner["value"]
    outs2, session2 = run_chat(h, "select 30 docs", session)
    assert session2["thread_id"] == tid
    assert outs2[-1][2]["visible"] is False, "the banner clears on the next turn"
    contents = [m["content"] for m in outs2[-1][0]]
    assert any("llm down please" in c for c in contents), "the earlier turn is still in the chat"
    assert [c[1] for c in svc.calls] == [tid, tid]


def test_service_exception_becomes_banner(h):
    outs, session = run_chat(h, "explode", new_session())
    assert "service exploded" in outs[-1][2]["value"]
    assert session["thread_id"] and outs[-1][0][0]["role"] == "user"


def test_two_sessions_never_share_state(h, svc):
    a, b = new_session(), new_session()
    _, a = run_chat(h, "select 30 docs for alice", a)
    _, b = run_chat(h, "select 30 docs for bob", b)
    assert a["thread_id"] != b["thread_id"]
    text_a = " ".join(m["content"] for m in a["view"].messages)
    text_b = " ".join(m["content"] for m in b["view"].messages)
    assert "alice" in text_a and "bob" not in text_a
    assert "bob" in text_b and "alice" not in text_b
    # the Blocks' initial State value is deep-copied per session by Gradio; check ours is fresh too
    assert new_session()["view"] is not new_session()["view"]


def test_open_thread_rerenders_history(h):
    _, s1 = run_chat(h, "select 30 docs", new_session())
    tid = s1["thread_id"]
    msgs, s2, _, arts = h.open_thread(tid, new_session())
    assert s2["thread_id"] == tid
    assert msgs[0]["content"] == "select 30 docs"
    assert any((m.get("metadata") or {}).get("title") == "❌ broken_tool failed" for m in msgs)
    assert arts["choices"], "the thread's artifacts come back with it"
    msgs3, s3, *_ = h.new_thread(s2)
    assert msgs3 == [] and s3["thread_id"] is None


def test_show_artifact_table_plot_and_image(h, svc):
    _, session = run_chat(h, "select 30 docs", new_session())
    ids = list(session["view"].artifacts.values())
    sel = next(i for i in ids if i.startswith("selection-"))
    info, table, plot, pca, image = h.show_artifact(sel)
    assert "selection" in info
    assert table["visible"] and isinstance(table["value"], pd.DataFrame) and len(table["value"]) == 30
    assert plot["visible"] and plot["value"] is not None, "a selection gets its domain-mix figure"
    assert image["visible"] is False
    plot_id = next(i for i in ids if i.startswith("plot-"))
    _, table, plot, pca, image = h.show_artifact(plot_id)
    assert image["visible"] and image["value"].size[0] > 0
    info, *_ = h.show_artifact("selection-doesnotexist")
    assert "cannot open" in info


def _proposal(h):  # noqa: ANN001, ANN202
    _, session = run_chat(h, "select 30 docs", new_session())
    return f"prop-{session['thread_id']}", session


def test_show_proposal_evidence(h):
    pid, session = _proposal(h)
    info, frame, plot, gallery, _ = h.show_proposal(pid, session)
    assert plain("fake_select: selected 30 of 3000 docs") in info and plain("0.8123") in info
    assert list(frame["domain"]) == ["math", "code", "web"] and list(frame["weight"]) == [0.6, 0.3, 0.1]
    assert plot["visible"] and gallery["visible"] and len(gallery["value"]) == 1


def test_approve_exports_and_shows_path(h, svc):
    pid, session = _proposal(h)
    _, frame, *_ = h.show_proposal(pid, session)
    outs = list(h.review("approve", pid, frame, "looks right", session))
    text = outs[-1][0]
    assert "exported" in text and "data.jsonl" in text
    call = svc.calls[-1]
    assert call[:4] == ("review", session["thread_id"], pid, "approve") and call[4] is None and call[5] == "looks right"
    assert outs[-1][4]["choices"] == [], "the approved proposal leaves the pending list"
    chat = outs[-1][1]
    assert any((m.get("metadata") or {}).get("title") == "🛠️ export" for m in chat), "export shows as a tool box"


def test_edit_rejected_by_policy_is_not_sent(h, svc):
    pid, session = _proposal(h)
    _, frame, *_ = h.show_proposal(pid, session)
    frame.loc[0, "weight"] = 0.9
    n_calls = len(svc.calls)
    outs = list(h.review("approve", pid, frame, "", session))
    assert "Edit not accepted" in outs[-1][0] and "cap" in outs[-1][0] and "sum" in outs[-1][0]
    assert len(svc.calls) == n_calls, "a rejected edit never reaches the agent"
    frame = frame.astype({"weight": object})
    frame.loc[0, "weight"] = "lots"
    outs = list(h.review("edit", pid, frame, "", session))
    assert "not a number" in outs[-1][0]


def test_valid_edit_then_approve_passes_weights(h, svc):
    pid, session = _proposal(h)
    _, frame, *_ = h.show_proposal(pid, session)
    frame["weight"] = [0.5, 0.4, 0.1]
    outs = list(h.review("edit", pid, frame, "more code", session))
    assert svc.calls[-1][3] == "edit" and svc.calls[-1][4] == {"math": 0.5, "code": 0.4, "web": 0.1}
    assert "pending" in outs[-1][0]
    outs = list(h.review("edit", pid, frame, "", session))
    assert "unchanged" in outs[-1][0]


def test_reject(h, svc):
    pid, session = _proposal(h)
    _, frame, *_ = h.show_proposal(pid, session)
    outs = list(h.review("reject", pid, frame, "wrong domain", session))
    assert "rejected" in outs[-1][0]
    assert svc.calls[-1][3] == "reject"


def test_review_from_another_session_switches_to_the_proposals_thread(h, svc):
    pid, session = _proposal(h)
    other = new_session()
    _, frame, *_ = h.show_proposal(pid, session)
    outs = list(h.review("approve", pid, frame, "", other))
    assert outs[-1][2]["thread_id"] == session["thread_id"]
    assert svc.calls[-1][1] == session["thread_id"]


def test_corpus_picker_is_limited_to_data_roots(svc, demo_dir, tmp_path):
    (tmp_path / "elsewhere.jsonl").write_text('{"text": "x"}\n')
    paths = [p for _, p in corpus_choices(svc)]
    assert str(demo_dir / "pool.jsonl") in paths and str(demo_dir / "target_math.jsonl") in paths
    assert str(tmp_path / "elsewhere.jsonl") not in paths
    assert all(p.startswith(str(demo_dir)) for p in paths)
    hidden = demo_dir / ".cache" / "x.jsonl"
    hidden.parent.mkdir(exist_ok=True)
    hidden.write_text("{}\n")
    try:
        assert str(hidden) not in [p for _, p in corpus_choices(svc)], "hidden folders are not listed"
    finally:
        hidden.unlink()
        hidden.parent.rmdir()


def test_upload_is_size_limited_and_stored_in_workspace(h, svc, tmp_path, monkeypatch):
    small = tmp_path / "my data.jsonl"
    small.write_text('{"text": "hello"}\n')
    status, corpus, _ = h.upload(str(small))
    dest = svc.workspace.root / "uploads" / "my_data.jsonl"
    assert dest.exists() and "Not usable yet" in status, "outside the data roots: stored, not offered"
    svc.data_roots.append(str(svc.workspace.root / "uploads"))
    status, corpus, _ = h.upload(str(small))
    assert dest.read_text() == small.read_text() and "Stored" in status
    assert corpus["value"] == str(dest) and str(dest) in [p for _, p in corpus["choices"]]
    monkeypatch.setattr(ui_app, "MAX_UPLOAD_MB", 0.00001)
    status, *_ = h.upload(str(small))
    assert "refused" in status and "limit" in status
    monkeypatch.setattr(ui_app, "MAX_UPLOAD_MB", 20)
    exe = tmp_path / "run.sh"
    exe.write_text("echo hi")
    status, *_ = h.upload(str(exe))
    assert "refused" in status


def test_settings_recreate_the_service(tmp_path):
    made = []

    def factory(**kw):  # noqa: ANN003, ANN202
        if kw.get("policy") == "broken":
            raise ValueError("no policy named broken")
        made.append(kw)
        return FakeService(**kw)

    demo = build_app(FakeService(workspace=tmp_path / "ws1"), service_factory=factory)
    h = demo.handlers
    view, status, *_ = h.apply_settings("llm", "http://127.0.0.1:8000/v1", "qwen", "sk-secret", "strict", "ray")
    assert made == [{"planner": "llm", "llm_base_url": "http://127.0.0.1:8000/v1", "llm_model": "qwen",
                     "llm_api_key": "sk-secret", "policy": "strict", "workspace": tmp_path / "ws1", "engine": "ray"}]
    assert "applied" in status and "8000" in view and "sk-secret" not in view
    assert "**engine**: ray" in view
    before = demo.holder.get()
    view, status, *_ = h.apply_settings("auto", "", "", "", "broken")
    assert "not applied" in status and "no policy named broken" in status
    assert demo.holder.get() is before, "a failed change keeps the working service"


def test_parse_auth(monkeypatch):
    assert parse_auth("ann:pw:with:colons") == ("ann", "pw:with:colons")
    assert parse_auth(None) is None
    monkeypatch.setenv("CURATE_AUTH", "bob:secret")
    assert parse_auth(None) == ("bob", "secret")
    with pytest.raises(ValueError):
        parse_auth("nopassword")


def test_call_approval_interrupt_is_reviewable(h, svc):
    outs, session = run_chat(h, "run the gpu job", new_session())
    pid = f"approval-{session['thread_id']}"
    assert outs[-1][6]["value"] == pid, "a call awaiting approval shows in the pending list"
    info, *_ = h.show_proposal(pid, session)
    assert "approval" in info
    outs = list(h.review("approve", pid, None, "", session))
    assert svc.calls[-1][:4] == ("review", session["thread_id"], pid, "approve")
    assert "approved" in outs[-1][0]
    assert pid not in [v for _, v in outs[-1][4]["choices"]], "answered, it leaves the list"


def test_engine_setting_reaches_the_agent_context(tmp_path):
    """The Settings tab's engine builds a real AgentService whose tool runs use it (see test_services_engine)."""
    demo = build_app(FakeService(workspace=tmp_path / "ws"))  # no factory: the default builds an AgentService
    h = demo.handlers
    view, status, *_ = h.apply_settings("offline", "", "", "", "", "ray")
    svc = demo.holder.get()
    try:
        assert "applied" in status and svc.ctx.engine == "ray" and "**engine**: ray" in view
        assert h.on_load(new_session())[-1]["value"] == "ray"
        h.apply_settings("offline", "", "", "", "", "local")
        assert demo.holder.get().ctx.engine == "local"
    finally:
        demo.holder.get().close()
