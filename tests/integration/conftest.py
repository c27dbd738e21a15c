"""What the integration tests share: a real llama.cpp server with SmolLM2-135M on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import free_port


def smollm2_server(n_ctx: int) -> Iterator[object]:
    """Start the server (or skip when llama-cpp-python or the model is missing); yield its command."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install '.[local-llm]')")
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] extras are not installed")
    from agent.llm import llamacpp_command, smollm2_gguf, start_server
    from tools.errors import ResourceUnavailable

    try:
        gguf = smollm2_gguf()
    except ResourceUnavailable as e:
        pytest.skip(str(e))
    cmd = llamacpp_command(gguf, port=free_port(), n_ctx=n_ctx, n_threads=2, served_name="smollm2")
    proc = start_server(cmd, wait_s=180)
    try:
        yield cmd
    finally:
        proc.terminate()
        proc.wait(timeout=30)
