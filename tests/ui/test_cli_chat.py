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


def test_chat_engine_flag_and_config_file(launched, monkeypatch, tmp_path):
    from agent import config

    for var in (*config.ENV_VARS, config.ENV_CONFIG):
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    monkeypatch.setattr(config, "_applied", {})
    res = CliRunner().invoke(app, ["chat", "--planner", "offline", "--engine", "ray"])
    assert res.exit_code == 0, res.output
    assert launched[-1]["service"].ctx.engine == "ray" and "engine ray" in res.output
    f = tmp_path / "curate.yaml"
    f.write_text("engine: ray\n")
    res = CliRunner().invoke(app, ["--config", str(f), "chat", "--planner", "offline"])
    assert res.exit_code == 0, res.output
    assert launched[-1]["service"].ctx.engine == "ray", "the config file's engine"
    res = CliRunner().invoke(app, ["chat", "--planner", "offline", "--engine", "spark"])
    assert res.exit_code == 2 and "must be local or ray" in res.output
