"""`curate chat`: local by default, auth from --auth or CURATE_AUTH, no share link unless asked."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent.cli import app


@pytest.fixture
def launched(monkeypatch):  # noqa: ANN001, ANN201
    import ui.app

    calls = []
    monkeypatch.setattr(ui.app, "launch", lambda **kw: calls.append(kw))
    return calls


def test_chat_defaults_are_local_and_private(launched):
    res = CliRunner().invoke(app, ["chat", "--planner", "offline"])
    assert res.exit_code == 0, res.output
    (kw,) = launched
    assert kw["host"] == "127.0.0.1" and kw["port"] == 7860 and kw["auth"] is None and kw["share"] is False
    assert kw["service"].settings()["planner"] == "offline"


def test_chat_auth_host_share(launched, monkeypatch):
    monkeypatch.setenv("CURATE_AUTH", "ann:pw")
    res = CliRunner().invoke(app, ["chat", "--planner", "offline", "--host", "0.0.0.0", "--port", "9001", "--share"])
    assert res.exit_code == 0, res.output
    kw = launched[-1]
    assert kw["auth"] == ("ann", "pw") and kw["host"] == "0.0.0.0" and kw["port"] == 9001 and kw["share"] is True
    monkeypatch.delenv("CURATE_AUTH")
    res = CliRunner().invoke(app, ["chat", "--planner", "offline", "--host", "0.0.0.0"])
    assert "without --auth" in res.output


def test_chat_bad_auth_is_an_input_error(launched):
    res = CliRunner().invoke(app, ["chat", "--auth", "nocolon"])
    assert res.exit_code == 2 and not launched
