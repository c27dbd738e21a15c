"""Drive the ``curate`` CLI in-process (typer's runner) on a workspace of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CliOut:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``cli("tool", "sample", "--args", ...)`` -> CliOut; CURATE_HOME is tmp_path/.curate, cwd tmp_path."""
    from typer.testing import CliRunner

    from agent.cli import app

    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.delenv("CURATE_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> CliOut:
        r = runner.invoke(app, list(args), catch_exceptions=True)
        exc = r.exception if not isinstance(r.exception, SystemExit) else None
        return CliOut(r.exit_code, r.stdout, r.stderr, exc)

    return run


def curate_proc(*args: str, cwd: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    """The CLI as a user runs it, in its own process."""
    full = {**os.environ, "CURATE_HOME": str(cwd / ".curate"), "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "agent.cli", *args], cwd=cwd, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def assert_clean_error(out: CliOut, code: int | None = None, match: str | None = None) -> str:
    """One ``error:`` line on stderr, no traceback, the documented exit code."""
    assert out.exception is None, f"uncaught {type(out.exception).__name__}: {out.exception}"
    assert "Traceback" not in out.stderr + out.stdout
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out.stderr
    assert out.code in (2, 3, 4, 5) if code is None else out.code == code, (out.code, out.stderr)
    if match:
        options = (match,) if isinstance(match, str) else match
        assert any(m in lines[0] for m in options), lines[0]
    return lines[0]


@pytest.fixture
def pool(tmp_path) -> Path:
    rows = [{"id": f"d{i}", "text": f"document {i} about {'math' if i % 2 else 'code'}",
             "domain": "math" if i % 2 else "code"} for i in range(40)]
    return write_jsonl(tmp_path / "data" / "pool.jsonl", rows)
