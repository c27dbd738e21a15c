"""Judging planned calls and proposals against a policy. Plain data in, a decision out.

The agent turns a tool spec and its arguments into a :class:`PlannedCall`; this module never
imports the tools. ``judge`` returns allow, deny (with a reason a person can act on) or ask (a
person approves first); ``proposal_problems`` and ``weight_problems`` check a proposal before export.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from policies.schema import Policy

Verdict = Literal["allow", "deny", "ask"]


class PlannedCall(BaseModel):
    """One tool call the agent wants to make, as the guard sees it."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    effects: list[str] = Field(default_factory=list)
    gpu: Literal["no", "optional", "required"] = "no"
    confirmation: Literal["none", "recommended", "required"] = "none"
    family: str = "other"
    paths: list[str] = Field(default_factory=list, description="files/folders the call reads")
    k: int | None = Field(None, description="documents the call selects, if it is a selection")
    tokens: int | None = Field(None, description="token budget the call asks for, if any")


class Usage(BaseModel):
    """What the current request has spent so far."""

    tool_calls: int = 0
    llm_calls: int = 0
    docs_selected: int = 0


class Decision(BaseModel):
    verdict: Verdict
    reason: str = ""
    rule: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    real = Path(os.path.realpath(path))
    for r in roots:
        rr = Path(os.path.realpath(r))
        if real == rr or rr in real.parents:
            return True
    return False


def _glob_base(raw: str) -> Path:
    """The directory part of a glob (``data/*.jsonl`` -> ``data``), the path itself otherwise."""
    parts = Path(raw).parts
    base: list[str] = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def judge(call: PlannedCall, policy: Policy, usage: Usage | None = None, *, base: Path | None = None) -> Decision:
    """Allow, deny or ask for one planned call."""
    usage = usage or Usage()
    b = policy.budgets
    roots = policy.resolved_roots(base)
    for raw in call.paths:
        p = _glob_base(raw)
        p = p if p.is_absolute() else (base or Path.cwd()) / p
        if not _inside(p, roots):
            shown = ", ".join(str(r) for r in roots) or "(none)"
            return Decision(
                verdict="deny",
                rule="data_roots",
                reason=f"{call.tool}: reading {raw} is outside the policy's data roots ({shown})",
            )
    if usage.tool_calls + 1 > b.max_tool_calls:
        return Decision(
            verdict="deny",
            rule="budgets.max_tool_calls",
            reason=f"{call.tool}: the request already used {usage.tool_calls} of {b.max_tool_calls} tool calls",
        )
    if call.k is not None and b.max_docs_selected is not None and call.k > b.max_docs_selected:
        return Decision(
            verdict="deny",
            rule="budgets.max_docs_selected",
            reason=f"{call.tool}: k={call.k} is above the policy's budget of {b.max_docs_selected} selected documents",
        )
    if call.tokens is not None and b.max_tokens is not None and call.tokens > b.max_tokens:
        return Decision(
            verdict="deny",
            rule="budgets.max_tokens",
            reason=f"{call.tool}: {call.tokens} tokens is above the policy's budget of {b.max_tokens}",
        )
    if call.gpu == "required" and not b.gpu_allowed:
        return Decision(verdict="deny", rule="budgets.gpu_allowed", reason=f"{call.tool} needs a GPU and the policy forbids GPU use")
    if "llm_calls" in call.effects and b.max_llm_calls is not None and usage.llm_calls >= b.max_llm_calls:
        return Decision(
            verdict="deny",
            rule="budgets.max_llm_calls",
            reason=f"{call.tool}: the request already used {usage.llm_calls} of {b.max_llm_calls} LLM calls",
        )
    a = policy.approval
    if call.tool in a.tools:
        return Decision(verdict="ask", rule="approval.tools", reason=f"the policy asks a person to approve every {call.tool} call")
    hit = sorted(set(call.effects) & set(a.effects))
    if call.gpu != "no" and "gpu" in a.effects and "gpu" not in hit:
        hit.append("gpu")
    if hit:
        return Decision(
            verdict="ask", rule="approval.effects", reason=f"{call.tool} has effects {', '.join(hit)} that need approval"
        )
    if a.honour_tool_confirmation and call.confirmation == "required":
        return Decision(verdict="ask", rule="approval.confirmation", reason=f"{call.tool} asks for confirmation before it runs")
    return Decision(verdict="allow")


def weight_problems(weights: dict[str, float], policy: Policy, *, tol: float = 1e-3) -> list[str]:
    """Caps, floors, excluded domains and the sum of a set of per-domain weights (shares)."""
    out: list[str] = []
    if not weights:
        return ["no domain weights"]
    for d, w in weights.items():
        if w < 0:
            out.append(f"weight of {d} is negative ({w})")
    total = sum(weights.values())
    if abs(total - 1.0) > tol:
        out.append(f"weights sum to {total:.4f}, not 1")
    norm = {d: w / total for d, w in weights.items()} if total > 0 else weights
    for d, w in sorted(norm.items()):
        rule = policy.rule_for(d)
        if rule.cap is not None and w > rule.cap + tol:
            out.append(f"{d} takes {w:.1%}, above its cap of {rule.cap:.0%}")
        if rule.floor is not None and w + tol < rule.floor:
            out.append(f"{d} takes {w:.1%}, below its floor of {rule.floor:.0%}")
        if d in policy.export.exclude_domains and w > 0:
            out.append(f"domain {d} is excluded from export by the policy")
    for d, rule in policy.domains.items():
        if d != "*" and rule.floor and d not in norm:
            out.append(f"{d} is missing; its floor is {rule.floor:.0%}")
    return out


def proposal_problems(
    *,
    weights: dict[str, float],
    plan_tools: Iterable[str],
    sources: Iterable[str] = (),
    policy: Policy,
    fmt: str = "jsonl",
) -> list[str]:
    """Everything that blocks exporting a proposal under ``policy`` (empty = may be exported)."""
    out = weight_problems(weights, policy)
    ex = policy.export
    if fmt not in ex.formats:
        out.append(f"format {fmt} is not allowed; the policy allows {', '.join(ex.formats)}")
    tools = set(plan_tools)
    if ex.dedup_required and not (tools & set(ex.dedup_tools)):
        out.append(f"the policy requires deduplication ({' or '.join(ex.dedup_tools)}) before export")
    for src in sources:
        for bad in ex.exclude_sources:
            if bad and bad in src:
                out.append(f"source {src} is excluded from export by the policy ({bad})")
    return out
