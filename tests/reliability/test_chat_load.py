"""The chat under load: several browser sessions at once over HTTP on 127.0.0.1, the real service
with the offline planner. Each session gets its own correct answer; at most the stated number of
requests run at once; beyond it a session is told "busy" at once and succeeds when it retries."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.conftest import write_jsonl
from tests.ui.test_api import free_port

pytestmark = pytest.mark.slow

SESSIONS = 6
LIMIT = 3


def _answer_text(chat) -> str:
    return "\n".join(str(m.get("content", "")) for m in chat).replace("\\", "")  # unescape markdown


def test_simultaneous_sessions_each_get_their_own_answer(tmp_path):
    from gradio_client import Client

    from agent.service import AgentService
    from ui.app import launch

    pools = tmp_path / "pools"
    sizes = [23 + 7 * i for i in range(SESSIONS)]
    paths = []
    for i, n in enumerate(sizes):
        rows = [{"id": f"s{i}-{j}", "text": f"session {i} document {j} words here", "domain": f"dom{i}"}
                for j in range(n)]
        paths.append(str(write_jsonl(pools / f"pool_{i}.jsonl", rows).resolve()))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"name: load\ndata_roots: [{json.dumps(str(pools))}]\n")
    svc = AgentService(planner="offline", workspace=tmp_path / ".curate", policy=str(policy), max_concurrent=LIMIT)
    peak = {"running": 0}
    claim = svc._claim

    def counting_claim(tid):  # noqa: ANN001, ANN202
        why = claim(tid)
        peak["running"] = max(peak["running"], svc.busy()["running"])
        return why

    svc._claim = counting_claim
    list(svc.stream("warmup", "profile the pool", corpus=paths[0]))  # load the router once
    port = free_port()
    demo = launch(port=port, service=svc, prevent_thread_lock=True, quiet=True)
    results: dict[int, dict] = {}
    start = threading.Barrier(SESSIONS)

    def session(i: int) -> None:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        busy = 0
        t0 = time.perf_counter()
        start.wait()
        for _ in range(60):
            chat, _msg, banner, _arts, threads, _props = client.predict("profile the pool", paths[i], None,
                                                                        api_name="/chat")
            shown = str(banner.get("value")).replace("\\", "")  # the banner is escaped markdown
            if banner.get("visible") and "busy:" in shown and "requests are running" in shown:
                busy += 1
                time.sleep(0.5)
                continue
            results[i] = {"text": _answer_text(chat), "thread": threads["value"], "busy": busy,
                          "wall_s": time.perf_counter() - t0, "banner": banner}
            return

    try:
        workers = [threading.Thread(target=session, args=(i,)) for i in range(SESSIONS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=900)
    finally:
        demo.close()
        svc.close()
    assert sorted(results) == list(range(SESSIONS)), "every session got an answer"
    for i, r in results.items():
        assert r["banner"].get("visible") is False, r["banner"]
        assert f"{sizes[i]} documents in 1 domains (dom{i} {sizes[i]})" in r["text"], (i, r["text"][-400:])
        for j in range(SESSIONS):
            if j != i:
                assert f"dom{j} " not in r["text"], f"session {i} saw session {j}'s answer"
    assert len({r["thread"] for r in results.values()}) == SESSIONS, "each session its own thread"
    assert 1 <= peak["running"] <= LIMIT
    report = {"sessions": SESSIONS, "limit": LIMIT, "peak_running": peak["running"],
              "busy_replies": sum(r["busy"] for r in results.values()),
              "max_wall_s": round(max(r["wall_s"] for r in results.values()), 1)}
    print("chat load:", json.dumps(report))
