"""Runs a tool: validates the request, checks the policy's data roots, caches, times, records.

This is the bookkeeping every tool shares (datatrove's "the base keeps the books"), so tool modules
hold only their algorithm. Every front end (CLI, agent, UI, notebook) reaches tools through here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tools.artifacts import stable_hash, utcnow
from tools.contract import RowCounts, ToolContext, ToolRequest, ToolResult, ToolSpec
from tools.corpus import CorpusSpec, check_allowed, fingerprint, resolve_files
from tools.errors import BadInput

SUMMARY_MAX_CHARS = 600


@dataclass
class RunInfo:
    tool: str
    version: str
    request: dict[str, Any]
    inputs: dict[str, str]
    seed: int | None
    run_key: str
    started_at: str
    artifacts: dict[str, str] = field(default_factory=dict)


def validation_to_bad_input(tool: str, err: ValidationError) -> BadInput:
    """pydantic's field errors in our one message shape: ``tool.field: must …; got …``."""
    lines = []
    for e in err.errors()[:6]:
        loc = ".".join(str(p) for p in e.get("loc", ())) or "request"
        msg = e.get("msg", "invalid")
        got = e.get("input")
        shown = repr(got)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{tool}.{loc}: {msg[0].lower() + msg[1:] if msg else msg}; got {shown}")
    return BadInput("; ".join(lines))


def build_request(spec: ToolSpec, request: Any, kwargs: dict[str, Any]) -> ToolRequest:
    if isinstance(request, spec.request_model) and not kwargs:
        return request
    data: dict[str, Any] = {}
    if isinstance(request, BaseModel):
        data = request.model_dump()
    elif isinstance(request, dict):
        data = dict(request)
    elif request is not None:
        raise BadInput(f"{spec.name}: request must be a {spec.request_model.__name__} or a dict")
    data.update(kwargs)
    try:
        return spec.request_model.model_validate(data)
    except ValidationError as e:
        raise validation_to_bad_input(spec.name, e) from None


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel) and not isinstance(value, CorpusSpec):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def input_fingerprints(request: ToolRequest, ctx: ToolContext) -> dict[str, str]:
    """Fingerprint every input the request names; refuse inputs outside the data roots."""
    ws = ctx.workspace
    out: dict[str, str] = {}
    for path, value in _walk(request, ""):
        if isinstance(value, CorpusSpec):
            resolve_files(value, ctx.data_roots)  # raises PolicyDenied / BadInput early
            out[path] = fingerprint(value)
        elif isinstance(value, str) and value:
            if ws.exists(value):
                out[path] = value
            elif ("/" in value or value.endswith((".npy", ".jsonl", ".parquet", ".json"))) and os.path.exists(value):
                p = Path(value)
                inside_ws = ws.root in Path(os.path.realpath(p)).parents
                if ctx.data_roots is not None and not inside_ws:
                    check_allowed(p, ctx.data_roots)
                st = p.stat()
                out[path] = stable_hash(os.path.realpath(p), st.st_size, st.st_mtime_ns)[:16]
    return out


def execute(spec: ToolSpec, request: Any, ctx: ToolContext | None, kwargs: dict[str, Any]) -> ToolResult:
    req = build_request(spec, request, kwargs)
    base = ctx if ctx is not None else ToolContext()
    run_ctx = base.model_copy(update={"tool": spec.name})
    run_ctx._workspace = base._workspace
    inputs = input_fingerprints(req, run_ctx)
    req_dump = req.model_dump(mode="json")
    run_key = stable_hash(spec.name, spec.version, req_dump, inputs)
    ws = run_ctx.workspace
    if run_ctx.use_cache:
        rec = ws.run_record(run_key)
        if rec is not None:
            res = spec.result_model.model_validate(rec["result"])
            return res.model_copy(update={"cached": True})
    seed = getattr(req, "seed", None)
    info = RunInfo(spec.name, spec.version, req_dump, inputs, seed, run_key, utcnow())
    run_ctx._run = info
    t0 = time.perf_counter()
    result = spec.impl(req, run_ctx)
    if not isinstance(result, spec.result_model):
        raise TypeError(f"tool {spec.name} returned {type(result).__name__}, expected {spec.result_model.__name__}")
    arts = dict(result.artifacts)
    for label, art_id in info.artifacts.items():  # artifacts the tool wrote but did not name
        if art_id not in arts.values():
            arts[label] = art_id
    summary = result.summary
    if len(summary) > SUMMARY_MAX_CHARS:
        summary = summary[: SUMMARY_MAX_CHARS - 3] + "..."
    result = result.model_copy(
        update={"tool": spec.name, "artifacts": arts, "summary": summary, "duration_s": time.perf_counter() - t0}
    )
    ws.save_run(
        run_key,
        {"tool": spec.name, "version": spec.version, "request": req_dump, "inputs": inputs,
         "started_at": info.started_at, "ended_at": utcnow(), "result": result.model_dump(mode="json")},
    )
    return result


@contextmanager
def open_artifact(
    ctx: ToolContext,
    kind: str,
    name: str | None,
    *,
    metrics: dict[str, Any] | None,
    rows: RowCounts | None,
    extra: dict[str, Any] | None,
) -> Iterator[Any]:
    info: RunInfo | None = ctx._run
    if info is None:  # a tool's helper called outside execute(): key by a fresh nonce
        info = RunInfo(ctx.tool or "adhoc", "0", {}, {}, None, stable_hash(time.time_ns(), os.getpid()), utcnow())
        ctx._run = info
    label = name or kind
    key = stable_hash(info.run_key, label)
    manifest = {
        "name": label,
        "tool": info.tool,
        "version": info.version,
        "request": info.request,
        "inputs": info.inputs,
        "seed": info.seed,
        "started_at": info.started_at,
        "ended_at": None,
        "metrics": metrics or {},
        "rows": (rows or RowCounts()).model_dump(),
        **(extra or {}),
    }
    with ctx.workspace.write(kind, key, manifest) as writer:
        yield writer
        manifest["ended_at"] = utcnow()
    info.artifacts[label] = writer.id
