"""ChatView: agent events -> chat messages (no Gradio server)."""

from __future__ import annotations

from agent.events import AgentEvent
from tools.contract import ProgressEvent
from ui.render import ChatView, export_path, history_view, plain, proposal_counts, proposal_weights

T = "t-1"


def ev(kind: str, **kw) -> AgentEvent:  # noqa: ANN003
    return AgentEvent(kind=kind, thread_id=T, **kw)


def test_plain_escapes_html_and_markdown():
    s = plain('<script>alert(1)</script> **x** [a](http://e) `c` ![i](x)')
    assert "<" not in s and ">" not in s
    assert "&lt;script&gt;" in s
    for token in ("**", "[a]", "`c`", "!["):
        assert token not in s
    assert plain("x" * 50, limit=10).endswith("…") and len(plain("x" * 50, limit=10)) == 10


def test_tool_box_pending_then_done_in_place():
    v = ChatView()
    v.apply(ev("plan", text="1. profile\n2. dsir", planner="offline"))
    v.apply(ev("tool_start", tool="dsir", call_id="c1", args={"k": 10}))
    assert len(v.messages) == 2
    box = v.messages[1]
    assert box["metadata"]["title"] == "🛠️ dsir"
    assert box["metadata"]["status"] == "pending"
    assert box["metadata"]["id"] == "tool-c1"
    v.apply(ev("tool_progress", tool="dsir", call_id="c1",
               progress=ProgressEvent(tool="dsir", desc="hashing", n=500, total=1000, unit="docs", rate=250.0)))
    assert len(v.messages) == 2, "progress updates the box, it adds no message"
    assert box["metadata"]["log"] == "hashing: 500/1,000 docs (50%), 250 docs/s"
    assert "hashing" in box["content"] and "arguments" in box["content"]
    v.apply(ev("tool_end", tool="dsir", call_id="c1", status="done", duration_s=2.345,
               summary="selected 10 docs: math 10", artifacts={"selection": "selection-abc123def456"}))
    assert v.messages[1] is box
    assert box["metadata"]["status"] == "done"
    assert box["metadata"]["duration"] == 2.35
    assert box["metadata"]["log"] == "selected 10 docs: math 10"
    assert "arguments" in box["content"], "the arguments survive the end event"
    assert list(v.artifacts.values()) == ["selection-abc123def456"]
    assert "planner: offline" in v.messages[0]["content"]


def test_failed_tool_says_failed_and_chat_goes_on():
    v = ChatView()
    v.apply(ev("tool_start", tool="tsds", call_id="c1"))
    v.apply(ev("tool_end", tool="tsds", call_id="c1", status="error", summary="BadInput: no target"))
    v.apply(ev("message", text="I could not run tsds; here is why."))
    box = v.messages[0]
    assert box["metadata"]["title"] == "❌ tsds failed"
    assert box["metadata"]["status"] == "done"
    assert plain("error: BadInput: no target") in box["content"]
    assert v.messages[-1]["content"].startswith("I could not run tsds")
    assert v.banner is None


def test_error_event_sets_banner_and_keeps_messages():
    v = ChatView()
    v.add_user("hi")
    v.apply(ev("error", text="LLM endpoint unreachable"))
    assert v.banner == "LLM endpoint unreachable"
    assert v.messages[0]["role"] == "user" and "unreachable" in v.messages[-1]["content"]


def test_progress_without_start_and_done_closes_spinners():
    v = ChatView()
    v.apply(ev("tool_progress", tool="embed", call_id="e1",
               progress=ProgressEvent(desc="embedding", n=3, total=None, unit="batches")))
    assert v.messages[0]["metadata"]["log"] == "embedding: 3 batches"
    v.apply(ev("done"))
    assert v.messages[0]["metadata"]["status"] == "done"


def test_data_text_is_escaped_everywhere():
    evil = '<img src=x onerror=alert(1)> [x](javascript:alert(1))'
    v = ChatView()
    v.apply(ev("plan", text=evil))
    v.apply(ev("tool_start", tool="<b>x</b>", call_id="c", args={"q": evil}))
    v.apply(ev("tool_end", tool="<b>x</b>", call_id="c", status="done", summary=evil))
    v.apply(ev("message", text=evil))
    v.apply(ev("proposal", proposal={"id": "prop-1", "weights": {evil: 1.0}}, text=evil))
    for m in v.messages:
        assert "<" not in m["content"] and "](" not in m["content"], m["content"]
        # the title goes through Gradio's markdown renderer: tool names are reduced to [A-Za-z0-9_.-];
        # the log is set as text content by Gradio, so it stays raw (the browser test checks it)
        assert "<" not in (m.get("metadata") or {}).get("title", "")


def test_proposal_helpers_read_real_record_shape():
    rec = {"id": "prop-1", "kind": "selection", "counts": {"math": 3, "web": 1}, "weights": {"math": 0.75, "web": 0.25},
           "export": {"path": "/ws/exports/prop-1/data.jsonl", "manifest": "/ws/exports/prop-1/manifest.json",
                      "rows": 4}}
    assert proposal_weights(rec) == {"math": 0.75, "web": 0.25}
    assert proposal_counts(rec) == {"math": 3, "web": 1}
    assert export_path(rec) == "/ws/exports/prop-1/data.jsonl"
    assert proposal_weights({"id": "prop-2", "counts": {"a": 1, "b": 3}}) == {"a": 0.25, "b": 0.75}
    assert export_path({"id": "prop-3", "export": None}) is None
    mixture = {"id": "prop-4", "kind": "mixture", "weights": {"code": 0.4, "web": 0.6}}
    assert proposal_weights(mixture) == {"code": 0.4, "web": 0.6} and proposal_counts(mixture) == {}
    # an event that carries only the proposal's id and status has nothing to draw
    assert proposal_weights({"id": "prop-5", "status": "pending"}) == {} and proposal_weights(None) == {}


def test_history_replays_user_turns_once():
    events = [ev("message", role="user", text="hello"), ev("plan", text="p"), ev("message", text="answer"),
              ev("error", text="old failure")]
    v = history_view(events)
    assert [m["role"] for m in v.messages] == ["user", "assistant", "assistant", "assistant"]
    assert v.banner is None
    live = ChatView()
    live.add_user("hello")
    live.apply(events[0])  # the service echoing the user turn does not duplicate it
    assert len(live.messages) == 1


def test_phases_of_one_tool_nest_under_it():
    v = ChatView()
    v.apply(ev("tool_start", tool="tsds", call_id="c1"))

    def prog(desc, n):  # noqa: ANN001, ANN202
        v.apply(ev("tool_progress", tool="tsds", call_id="c1",
                   progress=ProgressEvent(desc=desc, n=n, total=10, unit="docs")))

    prog("embed pool", 5)
    prog("embed pool", 10)
    assert len(v.messages) == 1, "one phase: the tool box's log line is enough"
    prog("embed target", 3)
    kids = [m["metadata"] for m in v.messages[1:]]
    assert [(k["title"], k["parent_id"], k["status"]) for k in kids] == [
        ("⏳ embed pool", "tool-c1", "done"), ("⏳ embed target", "tool-c1", "pending")]
    assert kids[0]["log"] == "embed pool: 10/10 docs (100%)"
    prog("embed target", 10)
    assert len(v.messages) == 3 and v.messages[2]["metadata"]["log"] == "embed target: 10/10 docs (100%)"
    v.apply(ev("tool_end", tool="tsds", call_id="c1", status="done", summary="ok"))
    assert all(m["metadata"]["status"] == "done" for m in v.messages)
