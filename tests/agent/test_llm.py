from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent.context import CurateContext
from agent.llm import llamacpp_command, load_chat_model, tool_parser_for, vllm_command
from tools.errors import BadInput, ResourceUnavailable


@pytest.mark.parametrize(
    ("model", "parser"),
    [
        ("Qwen/Qwen2.5-7B-Instruct", "hermes"),
        ("Qwen/Qwen3-8B", "hermes"),
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3_coder"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3_json"),
        ("meta-llama/Llama-3.2-3B-Instruct", "llama3_json"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
        ("NousResearch/Hermes-3-Llama-3.1-8B", "hermes"),
        ("ibm-granite/granite-3.1-8b-instruct", "granite"),
    ],
)
def test_tool_parser_per_family(model: str, parser: str):
    assert tool_parser_for(model) == parser


def test_unknown_family_asks_for_a_parser():
    with pytest.raises(BadInput, match="--tool-call-parser"):
        tool_parser_for("some/unknown-model")


def test_vllm_command_turns_tool_calling_on():
    cmd = vllm_command("meta-llama/Llama-3.1-8B-Instruct", port=8123, tensor_parallel=4, served_name="llama")
    argv = cmd.argv
    assert argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert "--enable-auto-tool-choice" in argv
    assert argv[argv.index("--tool-call-parser") + 1] == "llama3_json"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--served-model-name") + 1] == "llama"
    assert "--chat-template" in argv  # llama3_json needs vLLM's tool template
    assert cmd.base_url == "http://127.0.0.1:8123/v1" and cmd.model == "llama"
    single = vllm_command("Qwen/Qwen2.5-7B-Instruct").argv
    assert "--tensor-parallel-size" not in single and "--chat-template" not in single
    with pytest.raises(BadInput):
        vllm_command("Qwen/Qwen2.5-7B-Instruct", tensor_parallel=0)


def test_llamacpp_command(tmp_path: Path):
    cmd = llamacpp_command(tmp_path / "m.gguf", port=9001, n_threads=2)
    assert cmd.argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert cmd.argv[cmd.argv.index("--host") + 1] == "127.0.0.1"
    assert cmd.base_url == "http://127.0.0.1:9001/v1" and cmd.model == "m"


def test_llm_serve_cli_prints_the_vllm_command():
    import json

    from typer.testing import CliRunner

    from agent.cli import app

    r = CliRunner().invoke(app, ["llm", "serve", "--engine", "vllm", "--model", "Qwen/Qwen2.5-7B-Instruct",
                                 "--tensor-parallel", "2", "--print-command"])
    assert r.exit_code == 0, r.output
    argv = json.loads(r.output)["command"]
    assert "--enable-auto-tool-choice" in argv and "hermes" in argv and "2" in argv


def test_context_from_env_and_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm: {base_url: http://h:1/v1, model: from-file}\nplanner: json\npolicy: strict\n")
    monkeypatch.setenv("CURATE_CONFIG", str(cfg))
    ctx = CurateContext.from_env()
    assert ctx.base_url == "http://h:1/v1" and ctx.model == "from-file" and ctx.planner == "json"
    assert ctx.policy == "strict" and ctx.effective_planner() == "json"
    monkeypatch.setenv("CURATE_LLM_MODEL", "from-env")
    assert CurateContext.from_env().model == "from-env"
    assert CurateContext.from_env(model="override").model == "override"
    monkeypatch.delenv("CURATE_CONFIG")
    monkeypatch.chdir(tmp_path)
    bare = CurateContext.from_env()
    assert bare.effective_planner() == "offline" and not bare.llm_configured


def test_load_chat_model_is_one_openai_compatible_client():
    with pytest.raises(ResourceUnavailable, match="CURATE_LLM_BASE_URL"):
        load_chat_model(CurateContext(base_url=None))
    m = load_chat_model(CurateContext(base_url="http://127.0.0.1:9/v1", model="x", api_key=None))
    assert type(m).__name__ == "ChatOpenAI"
    assert m.model_name == "x" and m.temperature == 0.0
