"""The run cache keys GPU-optional tools by device kind: a CPU run is not the answer on a GPU."""

from __future__ import annotations

from tools.contract import ToolContext, ToolRequest, ToolResult, ToolSpec


class EchoRequest(ToolRequest):
    x: int = 1


def _tool(gpu: str):
    spec = ToolSpec(name=f"echo_{gpu}", description="echo", request_model=EchoRequest, result_model=ToolResult,
                    gpu=gpu)
    return spec.implement(lambda req, ctx: ToolResult(summary=f"{req.x} on {ctx.resolve_device()}"))


def test_gpu_optional_runs_are_cached_per_device_kind(tmp_path):
    tool = _tool("optional")
    cpu = ToolContext(workspace_dir=tmp_path / "w", show_progress=False, device="cpu")
    assert tool({"x": 1}, cpu).summary == "1 on cpu"
    assert tool({"x": 1}, cpu).cached
    gpu = cpu.model_copy(update={"device": "cuda"})  # explicit: resolve_device does not probe torch
    first = tool({"x": 1}, gpu)
    assert not first.cached and first.summary == "1 on cuda"
    assert tool({"x": 1}, cpu.model_copy(update={"device": "cuda:1"})).cached  # the kind, not the index


def test_cpu_only_tools_ignore_the_device(tmp_path):
    tool = _tool("no")
    cpu = ToolContext(workspace_dir=tmp_path / "w", show_progress=False, device="cpu")
    tool({"x": 2}, cpu)
    assert tool({"x": 2}, cpu.model_copy(update={"device": "cuda"})).cached
