"""kill -9 of a long-running tool: no half artifact, no orphan worker, the workspace heals on the next
open, and a rerun completes (resuming where the tool keeps resumable state)."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from tests.conftest import write_jsonl
from tests.reliability.conftest import curate_proc
from tests.reliability.test_concurrency import assert_workspace_consistent

pytestmark = pytest.mark.slow

WORDS = ("integer prime equation proof function loop return list butter flour bake oven river mountain "
         "theorem lemma compile debug whisk simmer").split()


def _pool(path, n: int):
    import random

    rng = random.Random(0)
    doms = ("math", "code", "food")
    rows = [{"id": f"d{i}", "domain": doms[i % 3], "text": " ".join(rng.choice(WORDS) for _ in range(60))}
            for i in range(n)]
    return write_jsonl(path, rows)


def _args(tool: str, corpus, target) -> dict:
    return {
        "dsir": {"corpus": str(corpus), "target": str(target), "k": 100, "min_example_length": 1, "workers": 2},
        "tsds": {"corpus": str(corpus), "target": str(target), "k": 100},
        "semantic_dedup": {"corpus": str(corpus)},
        "embed": {"corpus": str(corpus), "vector_store": False},
    }[tool]


@pytest.mark.parametrize("tool", ["dsir", "tsds", "semantic_dedup", "embed"])
def test_kill_9_mid_run(tool, tmp_path):
    from tools import registry

    if tool not in registry.names():
        pytest.skip(f"{tool} is not registered")
    fields = registry.get(tool).request_model.model_fields
    corpus = _pool(tmp_path / "data" / "pool.jsonl", 60_000 if tool == "dsir" else 2_000)
    target = write_jsonl(tmp_path / "data" / "t.jsonl",
                         [{"text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i))} for i in range(20)])
    args = {k: v for k, v in _args(tool, corpus, target).items() if k in fields}
    ws = tmp_path / ".curate"
    proc = curate_proc("tool", tool, "--args", json.dumps(args), "--json", cwd=tmp_path)
    me = psutil.Process(proc.pid)
    children: list[psutil.Process] = []
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # wait until it is doing real work
        busy = list((ws / "tmp").glob("*")) if (ws / "tmp").exists() else []
        children = me.children(recursive=True) or children
        if busy or (children and tool == "dsir"):
            time.sleep(1.0)
            children = me.children(recursive=True) or children
            break
        time.sleep(0.1)
    if proc.poll() is not None:
        pytest.skip(f"{tool} finished before it could be killed (rc {proc.returncode})")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"orphan workers survived the kill: {[p.pid for p in alive]}"
    for d in (ws / "artifacts").iterdir() if (ws / "artifacts").exists() else []:
        assert (d / "manifest.json").exists(), f"half artifact {d.name}"
    again = curate_proc("tool", tool, "--args", json.dumps(args), "--json", cwd=tmp_path)
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, err
    res = json.loads(out)
    assert res["tool"] == tool and res["artifacts"]
    assert_workspace_consistent(ws)
