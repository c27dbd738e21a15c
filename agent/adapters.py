"""The registry's tools as LangChain tools, and tool specs as the guard's ``PlannedCall``s.

Every tool runs through ``tools.registry.invoke`` with a ``ToolContext`` built from the runtime
context (the engine: ``ray`` for the tools whose spec lists it) and the active policy (data roots,
workspace); progress goes to LangGraph's ``custom``
stream. What comes back to the model is the tool's short summary and its artifact ids, quoted as
data; the full (small) result rides along as the ToolMessage's ``artifact`` for the agent's books.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from langchain_core.tools import StructuredTool

from agent import prompts
from agent.context import CurateContext, resolve_workspace
from policies.enforce import PlannedCall
from policies.schema import Policy, load_policy
from tools.contract import ProgressEvent, ToolContext, ToolSpec
from tools.errors import CurateError
from tools.refs import is_artifact_id, ref_fields


@cache
def _policy_cached(ref: str, mtime: float) -> Policy:
    return load_policy(ref)


def active_policy(ctx: CurateContext) -> Policy:
    p = Path(ctx.policy)
    mtime = p.stat().st_mtime if p.suffix and p.exists() else 0.0
    return _policy_cached(ctx.policy, mtime)


def current_context() -> CurateContext:
    try:
        from langgraph.runtime import get_runtime

        ctx = get_runtime(CurateContext).context
        if ctx is not None:
            return ctx
    except Exception:  # noqa: BLE001 - outside a graph run
        pass
    return CurateContext.from_env()


def _writer():  # noqa: ANN202
    try:
        from langgraph.config import get_stream_writer

        return get_stream_writer()
    except Exception:  # noqa: BLE001 - outside a graph run
        return None


def tool_context(ctx: CurateContext, policy: Policy, *, tool: str = "", writer: Any = None,
                 engines: tuple[str, ...] = ("local",)) -> ToolContext:
    """The context one tool runs with. ``engines`` are those the tool supports (its spec's): the run's
    engine (``ctx.engine``) when the tool supports it, else local (a tool without Ray support still runs)."""

    def on_progress(ev: ProgressEvent) -> None:
        if writer is not None:
            writer({"type": "tool_progress", "tool": tool or ev.tool, "progress": ev.model_dump(mode="json")})

    return ToolContext(
        workspace_dir=resolve_workspace(ctx, policy),
        data_roots=policy.resolved_roots(),
        max_llm_calls=policy.budgets.max_llm_calls,
        show_progress=False,
        on_progress=on_progress if writer is not None else None,
        engine=ctx.engine if ctx.engine in engines else "local",
    )


def result_record(result: Any) -> dict[str, Any]:
    """The small record the agent keeps of one tool run (no document text)."""
    rec = result.model_dump(mode="json")
    for key, value in list(rec.items()):
        if isinstance(value, list) and len(value) > 50:
            rec[key] = value[:50]
    return rec


def format_result(rec: dict[str, Any]) -> str:
    """What the model reads: the summary and artifact ids, quoted as data."""
    body = rec.get("summary", "")
    if rec.get("artifacts"):
        body += "\nartifacts: " + json.dumps(rec["artifacts"])
    return prompts.TOOL_RESULT.format(body=body.replace("</data>", "</ data>"))


def render_error(e: Exception) -> str:
    """A failing tool comes back to the model as a message, never as a crash of the graph."""
    if isinstance(e, CurateError):
        return f"error ({e.kind}): {e.render()}"
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        probs = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()[:5])
        return f"error (bad_input): invalid arguments: {probs}"
    return f"error ({type(e).__name__}): {e}"


def make_tool(spec: ToolSpec) -> StructuredTool:
    def run(**kwargs: Any) -> tuple[str, dict[str, Any]]:
        from tools.registry import invoke

        ctx = current_context()
        policy = active_policy(ctx)
        writer = _writer()
        args = {k: (v.model_dump(mode="json") if hasattr(v, "model_dump") else v) for k, v in kwargs.items()}
        if writer is not None:
            writer({"type": "tool_start", "tool": spec.name, "args": args})
        tctx = tool_context(ctx, policy, tool=spec.name, writer=writer, engines=tuple(spec.engines))
        result = invoke(spec.name, args, tctx)
        rec = result_record(result)
        return format_result(rec), rec

    return StructuredTool.from_function(
        func=run,
        name=spec.name,
        description=spec.description,
        args_schema=spec.request_model,
        response_format="content_and_artifact",
    )


def build_tools(specs: list[ToolSpec] | None = None) -> list[StructuredTool]:
    if specs is None:
        from tools.registry import list_specs

        specs = list_specs()
    return [make_tool(s) for s in specs]


def call_paths(spec: ToolSpec, args: dict[str, Any]) -> list[str]:
    """Files a call would read: the values of its typed reference fields (:mod:`tools.refs`), found by
    type, whatever their names or suffixes; artifact ids are not paths."""
    refs = ref_fields(spec.request_model)
    out: list[str] = []

    def add(value: Any, kind: str) -> None:
        if isinstance(value, dict) and isinstance(value.get("path"), str):
            out.append(value["path"])
        elif isinstance(value, (list, tuple)):
            for v in value:
                add(v, kind)
        elif isinstance(value, str) and value and kind != "artifact":
            if kind == "artifact_or_path" and is_artifact_id(value):
                return
            if kind == "corpus" and is_artifact_id(value) and not os.path.lexists(value):
                return  # a selection named as the corpus: the runtime checks its source files against the roots
            if kind == "model" and not os.path.lexists(os.path.expanduser(value)):
                return  # a model name, not a path
            out.append(value)

    for name, value in args.items():
        if name in refs:
            add(value, refs[name].kind)
    return out


def planned_call(spec: ToolSpec, args: dict[str, Any]) -> PlannedCall:
    k = args.get("k")
    tokens = next((v for n, v in args.items() if "token" in n and isinstance(v, int)), None)
    return PlannedCall(
        tool=spec.name,
        args=args,
        effects=sorted(spec.effects) + (["gpu"] if spec.gpu == "required" and "gpu" not in spec.effects else []),
        gpu=spec.gpu,
        confirmation=spec.confirmation,
        family=spec.family,
        paths=call_paths(spec, args),
        k=k if isinstance(k, int) and spec.family == "selection" else None,
        tokens=tokens,
    )
