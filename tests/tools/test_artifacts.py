"""Artifacts: content-addressed ids, manifests, and atomic writes proven with a real kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pytest

from tools.artifacts import Workspace
from tools.errors import BadInput


def test_write_read_and_manifest(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with ws.write("scores", "abc123" * 4, {"tool": "t", "metrics": {"m": 1}}) as w:
        w.table(pa.table({"id": ["a", "b"], "s": [1.0, 2.0]}))
        w.meta["rows"] = {"rows_in": 2, "rows_out": 2, "skipped": {}}
    art = ws.get(w.id)
    assert art.id == "scores-abc123abc123" and art.kind == "scores"
    assert art.table()["s"].to_pylist() == [1.0, 2.0]
    m = art.manifest
    assert m["tool"] == "t" and m["files"] == ["data.parquet"] and m["rows"]["rows_out"] == 2
    assert ws.get(art.path) .id == art.id and ws.get(art.path / "data.parquet").id == art.id
    assert [a.id for a in ws.list("scores")] == [art.id]


def test_same_key_same_id_and_unknown_ids(tmp_path):
    ws = Workspace(tmp_path / "ws")
    for _ in range(2):
        with ws.write("embeddings", "f" * 40, {}) as w:
            w.array(np.ones((3, 2), dtype=np.float32))
    assert len(ws.list()) == 1 and ws.get(w.id).array().shape == (3, 2)
    with pytest.raises(BadInput, match="no artifact"):
        ws.get("selection-000000000000")
    with pytest.raises(ValueError):
        Workspace.make_id("bogus", "k")


def test_failed_write_leaves_nothing(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(RuntimeError):
        with ws.write("selection", "e" * 40, {}) as w:
            w.table(pa.table({"id": ["a"]}))
            raise RuntimeError("boom")
    assert ws.list() == [] and list(ws.tmp_dir.iterdir()) == []


def test_kill_9_mid_write_leaves_no_half_artifact(tmp_path):
    root = tmp_path / "ws"
    code = textwrap.dedent(
        f"""
        import sys, time, numpy as np
        from tools.artifacts import Workspace
        ws = Workspace({str(root)!r})
        with ws.write("embeddings", "d" * 40, {{"tool": "slow"}}) as w:
            w.array(np.zeros((1000, 100), dtype=np.float32), name="part1.npy")
            print("writing", flush=True)
            time.sleep(60)
            w.array(np.zeros((10, 10), dtype=np.float32))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (root / "artifacts" / ("embeddings-" + "d" * 12)).exists()
    assert any((root / "tmp").iterdir())  # the half-written temp dir is there ...
    ws = Workspace(root)  # ... and opening the workspace sweeps it, since its writer is dead
    assert ws.list() == [] and list(ws.tmp_dir.iterdir()) == []
    with ws.write("embeddings", "d" * 40, {}) as w:  # the same artifact can then be written whole
        w.array(np.ones(3))
    assert ws.get(w.id).array().tolist() == [1, 1, 1]


def test_sweep_keeps_temp_dirs_of_live_writers(tmp_path):
    ws = Workspace(tmp_path / "ws")
    live = ws.tmp_dir / f"x-1.{os.getpid()}.abcd"
    live.mkdir()
    time.sleep(0.01)
    Workspace(tmp_path / "ws")
    assert live.exists()
