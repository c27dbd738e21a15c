"""The ``curate`` CLI round trips, in a subprocess like a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_jsonl


def curate(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CURATE_HOME": str(cwd / ".curate")}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=check)


def test_tools_list_and_schema(tmp_path):
    out = json.loads(curate("tools", "--json", cwd=tmp_path).stdout)
    names = {t["name"] for t in out}
    assert {"profile", "sample"} <= names
    sample = next(t for t in out if t["name"] == "sample")
    k = sample["schema"]["properties"]["k"]
    assert 1 in [a.get("minimum") for a in k.get("anyOf", [k])] and sample["cost"] == "cpu"
    assert "fraction" in sample["schema"]["properties"]  # k or a share of the pool


def test_tool_run_artifacts_and_export_round_trip(tmp_path, tiny_corpus):
    args = json.dumps({"corpus": str(tiny_corpus), "k": 6, "seed": 3})
    res = json.loads(curate("tool", "sample", "--args", args, "--json", cwd=tmp_path).stdout)
    assert res["tool"] == "sample" and res["k"] == 6
    path = Path(res["artifacts"]["selection"])
    assert path.is_dir() and (path / "data.parquet").exists()
    sel_id = res["artifact_ids"]["selection"]
    listed = json.loads(curate("artifacts", "list", "--json", cwd=tmp_path).stdout)
    assert [a["id"] for a in listed] == [sel_id]
    manifest = json.loads(curate("artifacts", "show", sel_id, cwd=tmp_path).stdout)
    assert manifest["request"]["seed"] == 3
    out = tmp_path / "export.jsonl"
    info = json.loads(curate("artifacts", "export", sel_id, "--to", str(out), cwd=tmp_path).stdout)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert info["exported"] == 6 and len(rows) == 6 and all(r["text"] for r in rows)
    pq_out = tmp_path / "export.parquet"
    curate("artifacts", "export", sel_id, "--to", str(pq_out), "--format", "parquet", cwd=tmp_path)
    import pyarrow.parquet as pq

    assert pq.read_table(pq_out).num_rows == 6
    # args from a file
    argfile = tmp_path / "a.json"
    argfile.write_text(args)
    res2 = json.loads(curate("tool", "sample", "--args", f"@{argfile}", "--json", cwd=tmp_path).stdout)
    assert res2["cached"] is True


def test_errors_are_one_line_with_exit_codes(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"question": "x"}])
    r = curate("tool", "sample", "--args", json.dumps({"corpus": str(tmp_path / "c.jsonl"), "k": 1}),
               cwd=tmp_path, check=False)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "question" in r.stderr
    r = curate("tool", "sample", "--args", '{"k": -1, "corpus": "x"}', cwd=tmp_path, check=False)
    assert r.returncode == 2 and "sample.k" in r.stderr
    r = curate("tool", "nope", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "unknown tool" in r.stderr
    r = curate("tool", "sample", "--args", "{not json", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_demo_data(tmp_path):
    out = json.loads(curate("demo-data", "--out", str(tmp_path / "demo"), "--docs", "2000", cwd=tmp_path).stdout)
    lines = Path(out["pool"]).read_text().splitlines()
    domains = {json.loads(line)["domain"] for line in lines}
    assert len(lines) >= 2000 and len(domains) >= 6
    assert len(Path(out["target"]).read_text().splitlines()) == 300
