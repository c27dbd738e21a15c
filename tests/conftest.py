"""Shared fixtures: an isolated workspace per test, small corpora, the shared real-data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_RAW = Path(os.environ.get("CURATE_SHARED_RAW", REPO.parent / "shared" / "data" / "raw"))


def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ANN201
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path, monkeypatch):  # noqa: ANN001, ANN202
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    for var in ("CURATE_LLM_BASE_URL", "CURATE_LLM_MODEL", "CURATE_LLM_API_KEY", "CURATE_CHROMA_URL",
                "CURATE_TOOL_LLM_BASE_URL", "CURATE_TOOL_LLM_MODEL", "CURATE_TOOL_LLM_API_KEY",
                # an in-process `curate --debug` sets CURATE_DEBUG for its process; it must not leak into
                # the next test's subprocesses (they would print tracebacks)
                "CURATE_DEBUG", "CURATE_POLICY", "CURATE_ENGINE",
                # an in-process `curate --config F` copies the file's values into unset variables
                "CURATE_CONFIG", "CURATE_CHROMA_PATH", "CURATE_PLANNER", "CURATE_PLAN_SCHEMA", "CURATE_LLM_TIMEOUT",
                "CURATE_TOOL_LLM_CONCURRENCY", "CURATE_TOOL_LLM_TIMEOUT", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def ctx(tmp_path):  # noqa: ANN001, ANN201
    from tools.contract import ToolContext

    return ToolContext(workspace_dir=tmp_path / ".curate", show_progress=False)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:  # noqa: ANN001
    rows = []
    topics = {
        "math": "the integer equation has a prime root and we solve the polynomial",
        "code": "the function returns a list and the loop will append each item",
        "cooking": "stir the butter and flour then bake the dough in the oven",
    }
    for d, base in topics.items():
        for i in range(12):
            rows.append({"id": f"{d}-{i}", "text": f"{base} number {i} {d}", "domain": d})
    return write_jsonl(tmp_path / "tiny.jsonl", rows)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    from tools.demo_data import generate

    d = tmp_path_factory.mktemp("demo")
    generate(d, n_docs=3000, n_target=150, seed=0)
    return d


@pytest.fixture
def shared_raw() -> Path:
    if not SHARED_RAW.exists():
        pytest.skip(f"shared real-data folder not found at {SHARED_RAW}")
    return SHARED_RAW


class OpenAIStub:
    """A real OpenAI-compatible chat-completions server on 127.0.0.1 driven by a responder function.

    ``responder(messages, params) -> str`` gives each reply's content; ``requests`` records every
    request body received (so tests can count calls); ``url`` is the ``/v1`` base URL.
    """

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stub = self
        self.requests: list[dict] = []
        self.responder = lambda messages, params: '{"ok": true}'
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002, ANN201
                pass

            def do_POST(self):  # noqa: ANN201, N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub._lock:
                    stub.requests.append(body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self.send_response(404)
                    self.end_headers()
                    return
                params = {k: v for k, v in body.items() if k not in ("messages", "model")}
                try:
                    content = stub.responder(body.get("messages", []), params)
                except Exception as e:  # noqa: BLE001 - a responder error is a 500, as a real server's
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"message": str(e)}}).encode())
                    return
                out = json.dumps({
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if "messages" in r]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def openai_server():  # noqa: ANN201
    """A local OpenAI-compatible server (see :class:`OpenAIStub`); set ``.responder`` in the test."""
    stub = OpenAIStub()
    try:
        yield stub
    finally:
        stub.close()


def free_port() -> int:
    """A port nothing listens on (for servers the tests start on 127.0.0.1, and for dead endpoints)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChromaServer:
    def __init__(self, port: int, proc: object):
        self.port, self.proc, self.url = port, proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def chroma_server(tmp_path):  # noqa: ANN001, ANN201
    """A real ``chroma run`` on 127.0.0.1 and a free port, answering heartbeats; stopped after the test."""
    import shutil
    import subprocess
    import sys
    import time

    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not os.path.exists(exe):
        pytest.skip("the chroma CLI is not installed")
    import chromadb

    port = free_port()
    log = open(tmp_path / "chroma.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([exe, "run", "--path", str(tmp_path / "served"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while True:
        try:
            chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
            break
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"chroma run did not come up: {(tmp_path / 'chroma.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield ChromaServer(port, proc)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
