"""Several processes and sessions on one workspace: process-owned temp dirs, a bounded chat, the
run cache and the checkpointer under concurrent writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.reliability.conftest import REPO, curate_proc
from tools.artifacts import Workspace


def _holder(ws_root, prefix: str) -> subprocess.Popen:
    code = ("import sys, time; from tools.artifacts import Workspace; "
            f"d = Workspace({str(ws_root)!r}).tmp({prefix!r}); print(d, flush=True); time.sleep(60)")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def test_temp_dirs_are_swept_only_when_their_owner_is_dead(tmp_path):
    root = tmp_path / "ws"
    p = _holder(root, "dsir")
    try:
        owned = p.stdout.readline().strip()
        assert owned and os.path.isdir(owned)
        unowned = root / "tmp" / "dsir-abc123"  # another tool's mkdtemp, no pid in the name
        unowned.mkdir()
        Workspace(root)  # a new process opening the workspace sweeps
        assert os.path.isdir(owned), "a live process's temp dir survives another's sweep"
        assert unowned.is_dir(), "a fresh dir without a pid is not anyone's to sweep"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    Workspace(root)
    assert not os.path.exists(owned), "the dead owner's temp dir is swept"
    old = time.time() - 2 * 24 * 3600
    os.utime(unowned, (old, old))
    Workspace(root)
    assert not unowned.exists(), "an unowned dir is swept after a day"


def test_run_records_from_threads_do_not_collide(tmp_path):
    ws = Workspace(tmp_path / "ws")
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(30):
                ws.save_run("samekey" * 4, {"i": i, "j": j, "result": {"artifacts": {}}})
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ws.run_record("samekey" * 4)["j"] == 29
    assert not list(ws.runs_dir.glob("*.tmp"))
    (ws.runs_dir / f"{'broken' * 4}.json").write_text("{trunc")
    assert ws.run_record("broken" * 4) is None, "a damaged record is a cache miss, not a crash"


def test_chat_service_bounds_concurrent_runs_with_a_busy_message(tmp_path):
    from agent.service import AgentService

    svc = AgentService(planner="offline", workspace=tmp_path / "ws", max_concurrent=2)
    try:
        assert svc.busy() == {"running": 0, "limit": 2}
        assert svc._claim("a") is None and svc._claim("b") is None
        events = list(svc.stream("c", "profile the pool"))
        assert [e.kind for e in events] == ["error", "done"] and events[0].error_kind == "busy"
        assert "2 requests are running" in events[0].text
        svc._release("a")
        assert "already running" in svc._claim("b")
        assert svc._claim("c") is None
        svc._release("b")
        svc._release("c")
        assert svc.busy() == {"running": 0, "limit": 2}
    finally:
        svc.close()


def test_parallel_cli_runs_share_a_workspace(tmp_path, pool):
    """Writers and readers at once: every run succeeds, every artifact is whole, no temp dir is left."""
    procs = [curate_proc("tool", "sample", "--args", json.dumps({"corpus": str(pool), "k": 5, "seed": s}), "--json",
                         cwd=tmp_path) for s in range(4)]
    procs += [curate_proc("artifacts", "list", "--json", cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    ids = {json.loads(out)["artifact_ids"]["selection"] for out, _ in outs[:4]}
    assert len(ids) == 4
    assert_workspace_consistent(tmp_path / ".curate")


def assert_workspace_consistent(root) -> None:
    """Every artifact has its manifest and files, every run record parses, no live-less temp is left."""
    ws = Workspace(root)
    for d in ws.artifacts_dir.iterdir():
        m = json.loads((d / "manifest.json").read_text())
        assert m["id"] == d.name
        for f in m.get("files", []):
            assert (d / f).exists(), (d.name, f)
    for r in ws.runs_dir.glob("*.json"):
        rec = json.loads(r.read_text())
        for art in (rec.get("result") or {}).get("artifacts", {}).values():
            assert ws.exists(art), (r.name, art)
    assert not list(ws.tmp_dir.iterdir()), list(ws.tmp_dir.iterdir())
    assert not list(ws.runs_dir.glob("*.tmp"))


@pytest.mark.slow
def test_parallel_dsir_runs_and_a_reader(tmp_path, pool):
    """The issue's case: two dsir runs and an `artifacts list` at once on one workspace."""
    from tests.conftest import write_jsonl

    target = write_jsonl(tmp_path / "data" / "t.jsonl", [{"text": f"math document {i}"} for i in range(8)])
    args = [json.dumps({"corpus": str(pool), "target": str(target), "k": 5, "seed": s, "min_example_length": 1})
            for s in (0, 1)]
    procs = [curate_proc("tool", "dsir", "--args", a, "--json", cwd=tmp_path) for a in args]
    time.sleep(0.5)
    procs.append(curate_proc("artifacts", "list", cwd=tmp_path))
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    assert_workspace_consistent(tmp_path / ".curate")


_CHECKPOINT_WRITER = """
import sys
from langgraph.checkpoint.base import empty_checkpoint
from agent.service import AgentService
svc = AgentService(planner="offline", workspace=sys.argv[1])
cfg = {"configurable": {"thread_id": "w" + sys.argv[2], "checkpoint_ns": ""}}
for i in range(int(sys.argv[3])):
    cp = empty_checkpoint()
    cfg = svc.checkpointer.put(cfg, cp, {"source": "input", "step": i, "writes": {}}, {})
svc.close()
print("ok")
"""


@pytest.mark.slow
def test_checkpointer_takes_concurrent_writers_from_several_processes(tmp_path):
    ws = tmp_path / "ws"
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", _CHECKPOINT_WRITER, str(ws), str(i), str(n)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and out.strip().endswith("ok"), err[-2000:]
    import sqlite3

    con = sqlite3.connect(str(ws / "threads.sqlite"))
    counts = dict(con.execute("SELECT thread_id, COUNT(*) FROM checkpoints GROUP BY thread_id").fetchall())
    assert counts == {f"w{i}": n for i in range(4)}, "every write of every process landed"
