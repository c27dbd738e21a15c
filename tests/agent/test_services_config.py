"""The services config file (agent/config.py): validation naming file and field, env over file, engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent import config
from agent.config import ConfigError, apply_env, effective, load_config
from agent.context import CurateContext


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every variable the file can fill starts unset and is restored after the test (apply_env writes them)."""
    for var in (*config.ENV_VARS, config.ENV_CONFIG, "VLLM_TEST_KEY"):
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    monkeypatch.setattr(config, "_applied", {})
    return monkeypatch


FULL = """\
llm:
  base_url: http://gpu-box:8000/v1/
  model: Qwen/Qwen2.5-7B-Instruct
  api_key_env: VLLM_TEST_KEY
  timeout_s: 30
tool_llm: {base_url: "http://gpu-box:8001/v1", model: small, concurrency: 8}
vector_store: {host: chroma-box, port: 8001}
engine: {kind: ray, ray_address: "head:6379"}
planner: llm
policy: strict
"""


def test_the_file_feeds_the_same_variables_and_the_environment_wins(tmp_path: Path, clean_env):
    f = tmp_path / "curate.yaml"
    f.write_text(FULL)
    clean_env.setenv("CURATE_CONFIG", str(f))
    clean_env.setenv("VLLM_TEST_KEY", "sk-from-env")
    clean_env.setenv("CURATE_TOOL_LLM_MODEL", "from-env")
    eff = effective()
    assert eff["CURATE_LLM_BASE_URL"] == ("http://gpu-box:8000/v1", str(f))  # trailing slash dropped
    assert eff["CURATE_LLM_API_KEY"] == ("sk-from-env", str(f)), "the key is read from the variable the file names"
    assert eff["CURATE_TOOL_LLM_MODEL"] == ("from-env", "env")
    assert eff["CURATE_CHROMA_URL"][0] == "http://chroma-box:8001"
    assert eff["CURATE_ENGINE"][0] == "ray" and eff["RAY_ADDRESS"][0] == "head:6379"
    added = apply_env()
    assert "CURATE_TOOL_LLM_MODEL" not in added and added["CURATE_TOOL_LLM_CONCURRENCY"] == "8"
    # what the tools read: tools.llm resolves the tool LLM from the same variables
    from tools.llm import resolve_config

    tool = resolve_config()
    assert tool is not None and tool.base_url == "http://gpu-box:8001/v1" and tool.model == "from-env"
    assert tool.concurrency == 8
    assert effective()["CURATE_LLM_MODEL"] == ("Qwen/Qwen2.5-7B-Instruct", str(f)), "applied values keep their source"
    ctx = CurateContext.from_env()
    assert (ctx.base_url, ctx.model, ctx.api_key, ctx.planner, ctx.policy, ctx.engine, ctx.request_timeout_s) == (
        "http://gpu-box:8000/v1", "Qwen/Qwen2.5-7B-Instruct", "sk-from-env", "llm", "strict", "ray", 30.0)
    assert CurateContext.from_env(engine="local").engine == "local"


def test_context_reads_the_file_without_apply_env(tmp_path: Path, clean_env):
    f = tmp_path / "c.yaml"
    f.write_text("engine: ray\nllm: {base_url: 'http://h:1/v1'}\n")
    clean_env.setenv("CURATE_CONFIG", str(f))
    ctx = CurateContext.from_env()
    assert ctx.engine == "ray" and ctx.base_url == "http://h:1/v1"
    clean_env.setenv("CURATE_ENGINE", "local")
    assert CurateContext.from_env().engine == "local"
    clean_env.delenv("CURATE_CONFIG")
    clean_env.delenv("CURATE_ENGINE")
    clean_env.chdir(tmp_path)  # no ./curate.yaml here
    assert CurateContext.from_env().engine == "local"


@pytest.mark.parametrize(("doc", "where", "says"), [
    ("llm: {base_url: localhost:8000}", "llm.base_url", "http(s) URL"),
    ("llm: {base_url: 'http://h:1/v1', api_key: sk-123}", "llm.api_key", "api_key_env"),
    ("llm: {base_url: 'http://h:1/v1', modle: x}", "llm.modle", "unknown field (known: base_url, model"),
    ("llm: {model: x}", "llm.base_url", "required"),
    ("engine: gpu", "engine.kind", "'local' or 'ray'"),
    ("engine: {kind: ray, address: h}", "engine.address", "unknown field"),
    ("vector_store: {host: c, port: 70000}", "vector_store.port", "65535"),
    ("vector_store: {url: 'http://a:1', path: /tmp/x}", "vector_store", "not both"),
    ("tool_llm: {base_url: 'http://a:1/v1', concurrency: 0}", "tool_llm.concurrency", "greater than or equal to 1"),
    ("lmm: {}", "lmm", "unknown field (known: llm, tool_llm"),
    ("planner: clever", "planner", "'auto'"),
])
def test_a_bad_field_is_named_with_the_file(tmp_path: Path, clean_env, doc: str, where: str, says: str):
    f = tmp_path / "curate.yaml"
    f.write_text(doc + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert err.value.where == f"{f}: {where} (line 1)" and says in err.value.message, err.value.render()


def test_the_line_of_a_nested_field(tmp_path: Path, clean_env):
    f = tmp_path / "curate.yaml"
    f.write_text(FULL.replace("port: 8001", "port: -1"))
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert err.value.where == f"{f}: vector_store.port (line 7)"


def test_unreadable_files(tmp_path: Path, clean_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML .*line 2"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_config(bad)
    clean_env.setenv("CURATE_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="missing.yaml .*no such config file"):
        load_config()


def test_cli_names_the_bad_field_and_exits_2(tmp_path: Path, clean_env):
    from agent.cli import app

    f = tmp_path / "curate.yaml"
    f.write_text("engine: {kind: spark}\n")
    r = CliRunner().invoke(app, ["--config", str(f), "tools", "--json"])
    assert r.exit_code == 2
    assert f"error: {f}: engine.kind (line 1): Input should be 'local' or 'ray'; got 'spark'" in r.output


def test_cli_config_flag_sets_the_engine_of_tool_runs(tmp_path: Path, clean_env, tiny_corpus: Path):
    """``engine: ray`` in the file reaches ``curate tool``'s ToolContext; ``--engine local`` overrides it."""
    import tools.registry
    from agent.cli import app

    seen = []
    real = tools.registry.invoke

    def spy(name, args=None, ctx=None):  # noqa: ANN001, ANN202
        seen.append(ctx.engine)
        return real(name, args, ctx.model_copy(update={"engine": "local"}))  # no Ray run needed here

    clean_env.setattr(tools.registry, "invoke", spy)
    f = tmp_path / "curate.yaml"
    f.write_text("engine: ray\n")
    args = json.dumps({"corpus": str(tiny_corpus), "k": 3})
    r = CliRunner().invoke(app, ["--config", str(f), "tool", "sample", "--args", args, "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["--config", str(f), "tool", "sample", "--args", args, "--engine", "local", "--json"])
    assert r.exit_code == 0, r.output
    assert seen == ["ray", "local"]


def test_help_still_shows_with_a_bad_config_file(tmp_path: Path, clean_env, monkeypatch: pytest.MonkeyPatch):
    from agent.cli import app

    f = tmp_path / "curate.yaml"
    f.write_text("engine: {kind: spark}\n")
    argv = ["--config", str(f), "tool", "--help"]
    monkeypatch.setattr("sys.argv", ["curate", *argv])  # the installed script sees its argv; CliRunner does not set it
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0 and "Usage" in r.output and "error:" not in r.output
    monkeypatch.setattr("sys.argv", ["curate", "--config", str(f), "tool", "sample", "--args", "{}"])
    r = CliRunner().invoke(app, ["--config", str(f), "tool", "sample", "--args", "{}"])
    assert r.exit_code == 2 and "engine.kind" in r.output
