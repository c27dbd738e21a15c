"""Runs a tool: validates the request, checks the policy's data roots, caches, times, records.

This is the bookkeeping every tool shares (datatrove's "the base keeps the books"), so tool modules
hold only their algorithm. Every front end (CLI, agent, UI, notebook) reaches tools through here.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from tools.artifacts import stable_hash, utcnow
from tools.errors import BadInput, refuse_bool_numbers
from tools.refs import fingerprint_input, iter_refs, resolve_input, resolve_refs

if TYPE_CHECKING:  # pragma: no cover - the contract imports this module, never the other way round
    from tools.contract import ToolContext, ToolRequest, ToolResult, ToolSpec

SUMMARY_MAX_CHARS = 600
TOOL_LOCK = threading.RLock()
"""Tool bodies run one at a time per process: the chat serves several sessions from threads, and
matplotlib (its mathtext parser), torch thread settings and model caches are not thread-safe.
Planning, LLM calls, cache hits, streaming and review still overlap; re-entrant, so a tool may
call another through the registry."""


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
    llm_calls: int = 0
    llm_cached: int = 0


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
    refuse_bool_numbers(spec.name, spec.request_model, data)
    try:
        return spec.request_model.model_validate(data)
    except ValidationError as e:
        raise validation_to_bad_input(spec.name, e) from None


def input_fingerprints(request: ToolRequest, ctx: ToolContext) -> dict[str, str]:
    """Check and fingerprint every input the request references (found by type: :mod:`tools.refs`).

    Each corpus, artifact id and path is resolved through :func:`tools.refs.resolve_input`, which
    refuses paths outside the data roots (after resolving symlinks) whatever their suffix.
    """
    out: dict[str, str] = {}
    for found in iter_refs(request):
        resolved = resolve_input(found.value, ctx, field=f"{ctx.tool}.{found.path}", ref=found.ref)
        out[found.path] = fingerprint_input(resolved)
    return out


def execute(spec: ToolSpec, request: Any, ctx: ToolContext, kwargs: dict[str, Any]) -> ToolResult:
    req = build_request(spec, request, kwargs)
    run_ctx = ctx.model_copy(update={"tool": spec.name})
    run_ctx._workspace = ctx._workspace
    run_ctx._llm = None  # each run counts its own LLM calls against the budget
    spec.check_engine(run_ctx)  # before the run cache: a cached result must not hide a refused engine
    req = resolve_refs(req, run_ctx, spec.name)  # a corpus naming a selection: its source, restricted to its ids
    inputs = input_fingerprints(req, run_ctx)
    req_dump = req.model_dump(mode="json")
    # a GPU-optional tool may compute differently on a GPU (fp16, or prrc_rate's auto rater): the device
    # kind is part of what the run was, so a CPU run is not served as the answer on a GPU machine
    device_kind = run_ctx.resolve_device().split(":")[0] if spec.gpu != "no" else None
    run_key = stable_hash(spec.name, spec.version, req_dump, inputs, *([device_kind] if device_kind else []))
    ws = run_ctx.workspace
    if run_ctx.use_cache:
        rec = ws.run_record(run_key)
        if rec is not None and not rec.get("partial"):  # a run that stopped early is redone (see below)
            res = spec.result_model.model_validate(rec["result"])
            return res.model_copy(update={"cached": True, "llm_calls": 0})
    seed = getattr(req, "seed", None)
    info = RunInfo(spec.name, spec.version, req_dump, inputs, seed, run_key, utcnow())
    run_ctx._run = info
    t0 = time.perf_counter()
    with TOOL_LOCK:  # a tool owns the process while it runs (matplotlib, torch threads, model caches)
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
        update={"tool": spec.name, "artifacts": arts, "summary": summary, "duration_s": time.perf_counter() - t0,
                "llm_calls": info.llm_calls}
    )
    # A result with ``partial=True`` stopped early (e.g. the policy's LLM call budget ran out). Its
    # artifacts stay in the workspace and its record is kept for provenance, but marked, so the same
    # request runs again instead of returning the unfinished result; the LLM response cache makes the
    # answers already paid for free on that rerun.
    ws.save_run(
        run_key,
        {"tool": spec.name, "version": spec.version, "request": req_dump, "inputs": inputs,
         "started_at": info.started_at, "ended_at": utcnow(), "llm_calls": info.llm_calls,
         "llm_cached": info.llm_cached, "partial": bool(getattr(result, "partial", False)),
         "result": result.model_dump(mode="json")},
    )
    return result


@contextmanager
def open_artifact(
    ctx: ToolContext,
    kind: str,
    name: str | None,
    *,
    metrics: dict[str, Any] | None,
    rows: dict[str, Any],
    extra: dict[str, Any] | None,
) -> Iterator[Any]:
    """Write one artifact of the running tool; its manifest records the run (see :class:`RunInfo`)."""
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
        "rows": rows,
        "llm_calls": info.llm_calls,
        **(extra or {}),
    }
    with ctx.workspace.write(kind, key, manifest) as writer:
        yield writer
        manifest["ended_at"] = utcnow()
        manifest["llm_calls"] = info.llm_calls
    info.artifacts[label] = writer.id
