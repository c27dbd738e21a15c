"""``curate doctor`` against real local servers: an OpenAI-compatible /v1/models, a free port, a Chroma server."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent import config
from agent.cli import app
from tests.conftest import free_port


class ModelsServer:
    """A real HTTP server on 127.0.0.1 answering ``GET /v1/models`` as vLLM does; records auth headers."""

    def __init__(self, models: list[str], key: str | None = None):
        server = self
        self.auth: list[str | None] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002, ANN201
                pass

            def do_GET(self):  # noqa: ANN201, N802
                server.auth.append(self.headers.get("Authorization"))
                if key is not None and self.headers.get("Authorization") != f"Bearer {key}":
                    self.send_response(401)
                    self.end_headers()
                    return
                if self.path.rstrip("/") != "/v1/models":
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in models]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in (*config.ENV_VARS, config.ENV_CONFIG, "DOCTOR_TEST_KEY"):
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    monkeypatch.setattr(config, "_applied", {})
    return monkeypatch


@pytest.fixture
def models_server():  # noqa: ANN201
    made: list[ModelsServer] = []

    def make(models: list[str], key: str | None = None) -> ModelsServer:
        made.append(ModelsServer(models, key))
        return made[-1]

    yield make
    for s in made:
        s.close()


QUICK = ["--skip", "torch", "--skip", "embed_model"]


def doctor(*args: str) -> tuple[int, dict]:
    r = CliRunner().invoke(app, [*args, "doctor", "--json", "--timeout", "5", *QUICK])
    return r.exit_code, json.loads(r.stdout)


def rows(payload: dict) -> dict[str, dict]:
    return {c["service"]: c for c in payload["checks"]}


def test_configured_llm_answers_and_what_runs_where(tmp_path: Path, clean_env, models_server):
    srv = models_server(["Qwen/Qwen2.5-7B-Instruct", "small"], key="sk-doctor")
    f = tmp_path / "curate.yaml"
    f.write_text(f"llm: {{base_url: '{srv.url}', model: Qwen/Qwen2.5-7B-Instruct, api_key_env: DOCTOR_TEST_KEY}}\n"
                 f"vector_store: {{path: '{tmp_path / 'store'}'}}\n")
    clean_env.setenv("DOCTOR_TEST_KEY", "sk-doctor")
    code, out = doctor("--config", str(f))
    assert code == 0, out
    r = rows(out)
    assert list(r) == ["llm", "tool_llm", "vector_store", "engine"]
    assert r["llm"]["status"] == "ok" and r["llm"]["source"] == str(f)
    assert "Qwen/Qwen2.5-7B-Instruct" in r["llm"]["detail"] and r["llm"]["latency_ms"] is not None
    assert srv.auth == ["Bearer sk-doctor"], "the key comes from the variable the file names"
    assert r["tool_llm"]["status"] == "off" and "planner's" in r["tool_llm"]["detail"]
    assert r["vector_store"]["configured"] == f"embedded at {tmp_path / 'store'}" and r["vector_store"]["status"] == "ok"
    assert r["engine"]["configured"] == "local" and "CPUs" in r["engine"]["detail"] and "GPU" in r["engine"]["detail"]
    assert out["ok"] is True and out["config_file"] == str(f)
    assert "sk-doctor" not in json.dumps(out), "keys are never printed"


def test_a_model_the_server_does_not_serve_is_a_warning(clean_env, models_server):
    srv = models_server(["other-model"])
    clean_env.setenv("CURATE_LLM_BASE_URL", srv.url)
    clean_env.setenv("CURATE_LLM_MODEL", "missing-model")
    code, out = doctor()
    llm = rows(out)["llm"]
    assert code == 0 and llm["status"] == "warn" and llm["source"] == "env"
    assert "not 'missing-model'" in llm["detail"] and "other-model" in llm["hint"]


def test_a_refused_key_says_how_to_fix_it(clean_env, models_server):
    srv = models_server(["m"], key="right")
    clean_env.setenv("CURATE_LLM_BASE_URL", srv.url)
    code, out = doctor()
    llm = rows(out)["llm"]
    assert code == 4 and llm["status"] == "down" and "HTTP 401" in llm["detail"] and "api_key_env" in llm["hint"]


@pytest.fixture(params=["ray installed", "ray missing"])
def ray_presence(request, clean_env) -> bool:
    """Both worlds: the default CI install has no ray, the [ray] extra has it."""
    if request.param == "ray installed":
        pytest.importorskip("ray")
        return True
    clean_env.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    return False


def test_down_services_are_rows_and_a_nonzero_exit(tmp_path: Path, clean_env, models_server, ray_presence):
    srv = models_server(["m"])
    dead = free_port()  # nothing listens here
    f = tmp_path / "curate.yaml"
    f.write_text(f"llm: {{base_url: '{srv.url}'}}\n"
                 f"tool_llm: {{base_url: 'http://127.0.0.1:{dead}/v1'}}\n"
                 f"vector_store: {{host: 127.0.0.1, port: {dead}}}\n"
                 f"engine: {{kind: ray, ray_address: '127.0.0.1:{dead}'}}\n")
    code, out = doctor("--config", str(f))
    r = rows(out)
    assert code == 4 and out["ok"] is False
    assert r["llm"]["status"] == "ok"
    for name in ("tool_llm", "vector_store", "engine"):
        assert r[name]["status"] == "down", r[name]
        assert "connection refused" in r[name]["detail"] and r[name]["hint"], r[name]
        assert r[name]["source"] == str(f)
    assert f"127.0.0.1:{dead}/v1/models" in r["tool_llm"]["detail"]
    assert "chroma run" in r["vector_store"]["hint"] and "ray start --head" in r["engine"]["hint"]
    # the same report as a table for people
    res = CliRunner().invoke(app, ["--config", str(f), "doctor", "--timeout", "5", *QUICK])
    assert res.exit_code == 4
    assert "down: tool_llm, vector_store, engine" in res.stdout and "connection refused" in res.stdout


def test_a_bad_config_file_names_the_field(tmp_path: Path, clean_env):
    f = tmp_path / "curate.yaml"
    f.write_text("vector_store: {host: chroma-box, prot: 8001}\n")
    r = CliRunner().invoke(app, ["--config", str(f), "doctor", *QUICK])
    assert r.exit_code == 2
    assert f"{f}: vector_store.prot (line 1): unknown field (known: url, host, port, ssl, path)" in r.output


def test_unknown_check_name_is_bad_input(clean_env):
    r = CliRunner().invoke(app, ["doctor", "--skip", "gpu"])
    assert r.exit_code == 2 and "--skip: unknown check gpu" in r.output


@pytest.mark.slow
def test_real_chroma_server_torch_and_the_default_model(tmp_path: Path, clean_env, chroma_server):
    f = tmp_path / "curate.yaml"
    f.write_text(f"vector_store: {{host: 127.0.0.1, port: {chroma_server.port}}}\n")
    r = CliRunner().invoke(app, ["--config", str(f), "doctor", "--json", "--timeout", "10"])
    out = json.loads(r.stdout)
    c = rows(out)
    assert r.exit_code == 0, out
    assert c["vector_store"]["status"] == "ok" and "heartbeat ok" in c["vector_store"]["detail"]
    assert c["vector_store"]["configured"] == f"chroma server {chroma_server.url}"
    assert c["torch"]["status"] == "ok" and c["torch"]["configured"] in ("cpu", "cuda")
    assert c["embed_model"]["status"] == "ok" and "384-d" in c["embed_model"]["detail"]
    # the tools use the same server: the vector store opens an HttpClient to it
    from tools import vectorstore as vs
    from tools.contract import ToolContext

    client = vs.open_store(ToolContext(workspace_dir=tmp_path / "ws"))
    assert type(client).__name__ != "PersistentClient" and client.heartbeat()


def test_an_unset_key_variable_is_reported(tmp_path: Path, clean_env, models_server):
    srv = models_server(["m"])
    f = tmp_path / "curate.yaml"
    f.write_text(f"llm: {{base_url: '{srv.url}', api_key_env: DOCTOR_TEST_KEY}}\n")
    code, out = doctor("--config", str(f))
    llm = rows(out)["llm"]
    assert code == 0 and llm["status"] == "ok" and "DOCTOR_TEST_KEY (api_key_env) is not set" in llm["detail"]
    assert srv.auth == [None]


def test_ray_address_reachability(clean_env, ray_presence):
    with socket.socket() as listener:  # something listening where RAY_ADDRESS points
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        clean_env.setenv("CURATE_ENGINE", "ray")
        clean_env.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        code, out = doctor()
    eng = rows(out)["engine"]
    assert eng["configured"] == f"ray at 127.0.0.1:{port}" and "accepts connections" in eng["detail"]
    assert eng["source"] == "env"
    if ray_presence:
        assert code == 0 and eng["status"] == "ok"
    else:  # the cluster answers but this machine cannot join it: both facts, one row
        assert code == 4 and eng["status"] == "down"
        assert "ray is not installed" in eng["detail"] and "[ray]" in eng["hint"]
    # engine local with a dead RAY_ADDRESS: worth a warning, not a failure (nothing uses it)
    clean_env.setenv("CURATE_ENGINE", "local")
    clean_env.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    code, out = doctor()
    eng = rows(out)["engine"]
    assert code == 0 and eng["status"] == "warn" and "unused" in eng["configured"]
