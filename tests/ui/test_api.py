"""The running app over HTTP, driven with gradio_client (FakeService behind it)."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.ui.fakes import FakeService


@pytest.fixture
def served(tmp_path, demo_dir):  # noqa: ANN001, ANN201
    from ui.app import launch

    svc = FakeService(workspace=tmp_path / "ws", data_roots=[str(demo_dir)])
    port = free_port()
    demo = launch(port=port, service=svc, prevent_thread_lock=True, quiet=True)
    try:
        yield demo, svc, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_chat_streams_and_review_exports_over_http(served, demo_dir):
    from gradio_client import Client

    demo, svc, url = served
    assert demo.server_name == "127.0.0.1" and demo.share_url is None, "local only, no share link by default"
    client = Client(url, verbose=False)
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/chat", "/artifact", "/proposal", "/review_approve", "/review_reject"} <= set(endpoints)

    pool = str(demo_dir / "pool.jsonl")
    job = client.submit("select 30 math docs", pool, None, api_name="/chat")
    updates = list(job)
    chat, _msg, banner, _arts, threads, props = job.result()
    assert len(updates) > 3, "the answer arrives as a stream of updates"
    boxes = {m["metadata"]["title"]: m["metadata"] for m in chat if m.get("metadata")}
    assert boxes["🛠️ fake_select"]["status"] == "done" and boxes["🛠️ fake_select"]["duration"] == 1.25
    assert "❌ broken_tool failed" in boxes
    assert banner["visible"] is False
    tid = threads["value"]
    pid = props["value"]
    assert pid == f"prop-{tid}" and svc.calls[0][1] == tid and svc.calls[0][3] == pool

    with pytest.raises(Exception, match="not in the list of choices"):  # the picker is the data roots
        client.predict("read this", "/etc/passwd", None, api_name="/chat")

    info, frame, *_ = client.predict(pid, api_name="/proposal")
    assert "0\\.8123" in info
    result, chat2, *_ = client.predict(pid, frame, "ship it", api_name="/review_approve")
    assert "data.jsonl" in result and "exported" in result
    assert svc.calls[-1][:4] == ("review", tid, pid, "approve") and svc.calls[-1][5] == "ship it"
    assert any((m.get("metadata") or {}).get("title") == "🛠️ export" for m in chat2)


def test_sessions_are_isolated_over_http(served):
    from gradio_client import Client

    _, svc, url = served
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    chat_a, *_, threads_a, _ = a.predict("alice request", None, None, api_name="/chat")
    chat_b, *_, threads_b, _ = b.predict("bob request", None, None, api_name="/chat")
    assert threads_a["value"] != threads_b["value"]
    text_b = str(chat_b)
    assert "bob request" in text_b and "alice request" not in text_b
    chat_a2, *_, threads_a2, _ = a.predict("alice again", None, None, api_name="/chat")
    assert threads_a2["value"] == threads_a["value"], "a session keeps its own thread"
    assert "bob request" not in str(chat_a2) and "alice request" in str(chat_a2)


def test_auth_is_enforced(tmp_path):
    from gradio_client import Client

    from ui.app import launch

    port = free_port()
    demo = launch(port=port, auth="ann:s3cret", service=FakeService(workspace=tmp_path / "ws"),
                  prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises differently across versions
            Client(url, verbose=False)
        client = Client(url, auth=("ann", "s3cret"), verbose=False)
        chat, *_ = client.predict("hello", None, None, api_name="/chat")
        assert chat[0]["role"] == "user"
    finally:
        demo.close()
