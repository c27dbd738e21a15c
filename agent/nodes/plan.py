"""The plan node: turn a request into tool calls (one step per round), then answer.

Three planners share this node. ``offline`` (no LLM: semantic router + argument extraction) and
``json`` (a JSON plan from a local model, validated, one repair) plan every step up front and the
node hands them out one at a time; ``llm`` (native tool calls) asks the model each round. When a
plan ends with a selection or mixture, the node files a proposal (an idempotent upsert) and the
graph goes on to the review node.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agent import prompts
from agent.adapters import active_policy, tool_context
from agent.nodes.common import (
    content_text,
    context_of,
    kind_of,
    new_usage,
    planner_label,
    thread_id,
    trailing_tool_messages,
)
from agent.proposals import ProposalStore, build_proposal
from tools.contract import ToolSpec

FAMILY_KINDS = {"selection": {"selection"}, "scores": {"scores"}, "mixture": {"mixture"},
                "index": {"index", "embeddings"}}


def _fmt_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in args.items())


def plan_text(plan: dict[str, Any]) -> str:
    lines = [prompts.PLAN_HEADER.format(planner_label=planner_label(plan))]
    for i, s in enumerate(plan["steps"], 1):
        lines.append(f"{i}. {s['tool']}({_fmt_args(s['args'])})")
    if plan["planner"] == "offline":
        lines.append(prompts.OFFLINE_NOTE)
    return "\n".join(lines)


def _step(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call_{uuid.uuid4().hex[:12]}", "tool": tool, "args": args, "status": "planned"}


# ------------------------------------------------------------------------------------ planners


def offline_decision(request: str, specs: dict[str, ToolSpec], state: dict[str, Any]) -> Any:
    """The offline planner's decision (plan, question or off-topic); a reply to a pending question
    (the thread's last plan asked one) is read as its answer."""
    from agent.offline import OfflinePlanner, answer_to_question

    inputs = state.get("inputs") or {}
    prev = state.get("plan") or {}
    force = None
    if prev.get("question") and prev.get("done") and not prev.get("answered"):
        request, force = answer_to_question(prev["question"], request, specs)
    return OfflinePlanner(specs).decide(request, inputs=inputs, artifacts=dict(state.get("artifacts") or {}),
                                        force=force), request


def offline_steps(request: str, specs: dict[str, ToolSpec], state: dict[str, Any]) -> tuple[list[dict], str | None]:
    """Steps from the offline planner; or the question / answer given instead of a plan."""
    decision, _ = offline_decision(request, specs, state)
    if decision.kind == "plan":
        return [_step(s["tool"], s["args"]) for s in decision.steps], None
    if decision.kind == "ask":
        return [], decision.question
    return [], prompts.OFF_TOPIC.format(tools=", ".join(specs))


def llm_system_prompt(specs: list[ToolSpec], inputs: dict[str, Any], artifacts: dict[str, str], policy: str) -> str:
    """The native tool-call planner's system prompt: rules, chaining (consumes -> produces), examples."""
    from agent.jsonplan import chaining_text, examples_text

    return prompts.SYSTEM_PROMPT.format(
        chaining=chaining_text(specs), examples=examples_text(specs),
        corpus=inputs.get("corpus") or "(not given)", target=inputs.get("target") or "(not given)",
        artifacts=json.dumps(artifacts), policy=policy)


def json_steps(request: str, specs: dict[str, ToolSpec], state: dict[str, Any], ctx: Any) -> tuple[list[dict], str | None, int]:
    from agent.jsonplan import plan_with_llm
    from agent.llm import load_chat_model

    steps, errors, calls = plan_with_llm(load_chat_model(ctx), request, list(specs.values()), state.get("inputs") or {},
                                          strict=getattr(ctx, "plan_schema", "strict") == "strict")
    if errors and not steps:
        return [], "The JSON plan was not valid after one repair round: " + "; ".join(errors[:5]), calls
    return [_step(s.tool, s.args) for s in steps], None, calls


# ---------------------------------------------------------------------------------------- node


def make_plan(specs: dict[str, ToolSpec], tools: list[Any]):  # noqa: ANN201
    def plan(state: dict[str, Any], runtime: Any = None) -> dict[str, Any]:
        ctx = context_of(runtime)
        messages = state["messages"]
        last = messages[-1]
        if isinstance(last, HumanMessage):
            return _start(state, ctx, content_text(last.content))
        return _continue(state, ctx)

    def _start(state: dict[str, Any], ctx: Any, request: str) -> dict[str, Any]:
        kind = ctx.effective_planner()
        label = "offline" if kind == "offline" else f"{kind}:{ctx.model or 'default'}"
        policy = active_policy(ctx)
        plan: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "planner": label, "request": request, "steps": [],
                                "dynamic": kind == "llm", "done": False, "text": ""}
        usage = new_usage()
        base = {"policy_name": policy.name}
        inputs = state.get("inputs") or {}
        if inputs.get("steps"):  # a structured request file: the steps are the plan
            from agent.jsonplan import validate_steps

            label = plan["planner"] = "request-file"
            given, errors = validate_steps({"steps": inputs["steps"]}, specs, inputs)
            steps = [] if errors else [_step(s.tool, s.args) for s in given]
            why = ("The request file's steps are not valid: " + "; ".join(errors)) if errors else None
        elif kind == "offline":
            decision, planned_request = offline_decision(request, specs, state)
            steps, why = [_step(s["tool"], s["args"]) for s in decision.steps], None
            if decision.kind != "plan":
                return {**base, **_ask_or_answer(state, ctx, plan, usage, decision, planned_request)}
        elif kind == "json":
            steps, why, calls = json_steps(request, specs, state, ctx)
            usage["llm_calls"] += calls
        else:
            return {**base, **_llm_round(state, ctx, plan, usage)}
        if inputs.get("k"):  # an explicit k (request file, UI) wins over what the planner read
            for st in steps:
                if specs[st["tool"]].family == "selection" and "k" in specs[st["tool"]].request_model.model_fields:
                    st["args"]["k"] = int(inputs["k"])
        plan["steps"] = steps
        plan["text"] = plan_text(plan) if steps else why or ""
        if not steps:
            return {**base, **_finish(state, ctx, plan, usage, answer=why or "")}
        return {**base, **_hand_out(state, ctx, plan, usage, first=True)}

    def _ask_or_answer(state: dict[str, Any], ctx: Any, plan: dict[str, Any], usage: dict[str, int], decision: Any,
                       request: str) -> dict[str, Any]:
        """A clarifying question (the candidate steps kept as pending) or the off-topic answer; no tool runs."""
        plan["done"] = True
        if decision.kind == "ask":
            plan["question"] = decision.question_record(request)
            plan["steps"] = [{**_step(s["tool"], s["args"]), "status": "pending"} for s in decision.steps]
            plan["text"] = decision.question
        else:
            plan["text"] = prompts.OFF_TOPIC.format(tools=", ".join(specs))
        return {"plan": plan, "usage": usage, "messages": [AIMessage(content=plan["text"])]}

    def _record(state: dict[str, Any], plan: dict[str, Any], usage: dict[str, int]) -> dict[str, str]:
        """Fold the trailing tool messages into the plan's steps; returns new artifact ids by kind."""
        by_id = {s["id"]: s for s in plan["steps"]}
        new_arts: dict[str, str] = {}
        for tm in trailing_tool_messages(state["messages"]):
            step = by_id.get(tm.tool_call_id)
            if step is None:
                continue
            art = tm.artifact if isinstance(tm.artifact, dict) else {}
            if tm.status == "error":
                step["status"] = "denied" if art.get("denied") else "error"
                step["error"] = art.get("reason") or content_text(tm.content)[:500]
                continue
            step["status"] = "done"
            step["summary"] = art.get("summary", "")
            step["artifacts"] = art.get("artifacts", {})
            step["duration_s"] = art.get("duration_s")
            step["result"] = {k: v for k, v in art.items() if k not in ("summary",)}
            for aid in step["artifacts"].values():
                new_arts[kind_of(aid)] = aid
            if isinstance(art.get("k"), int):
                usage["docs_selected"] += art["k"]
            if isinstance(art.get("llm_calls"), int):  # a tool's own LLM calls count against the policy too
                usage["llm_calls"] += art["llm_calls"]
        return new_arts

    def _continue(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
        plan = json.loads(json.dumps(state.get("plan") or {}))
        usage = {**new_usage(), **(state.get("usage") or {})}
        if not plan:
            return {}
        new_arts = _record(state, plan, usage)
        merged = {**(state.get("artifacts") or {}), **new_arts}
        st = {**state, "artifacts": merged}
        out: dict[str, Any] = {"artifacts": new_arts} if new_arts else {}
        if plan.get("dynamic"):
            return {**out, **_llm_round(st, ctx, plan, usage)}
        failed = [s for s in plan["steps"] if s["status"] in ("error", "denied")]
        if failed:
            return {**out, **_finish(st, ctx, plan, usage)}
        return {**out, **_hand_out(st, ctx, plan, usage, first=False)}

    def _hand_out(state: dict[str, Any], ctx: Any, plan: dict[str, Any], usage: dict[str, int], *, first: bool) -> dict[str, Any]:
        nxt = next((s for s in plan["steps"] if s["status"] == "planned"), None)
        if nxt is None:
            return _finish(state, ctx, plan, usage)
        arts = state.get("artifacts") or {}
        nxt["args"] = {k: (arts.get(v[1:], v) if isinstance(v, str) and v.startswith("$") else v)
                       for k, v in nxt["args"].items()}
        nxt["status"] = "running"
        usage["rounds"] += 1
        msg = AIMessage(content=plan["text"] if first else "",
                        tool_calls=[{"name": nxt["tool"], "args": nxt["args"], "id": nxt["id"], "type": "tool_call"}])
        return {"messages": [msg], "plan": plan, "usage": usage}

    def _llm_round(state: dict[str, Any], ctx: Any, plan: dict[str, Any], usage: dict[str, int]) -> dict[str, Any]:
        from agent.llm import load_chat_model

        if usage["rounds"] >= ctx.max_steps:
            return _finish(state, ctx, plan, usage, answer=prompts.STEP_BUDGET.format(n=ctx.max_steps))
        policy = active_policy(ctx)
        b = policy.budgets
        if b.max_llm_calls is not None and usage["llm_calls"] >= b.max_llm_calls:
            return _finish(state, ctx, plan, usage, answer=f"Stopped: the policy's budget of {b.max_llm_calls} LLM calls is used up.")
        inputs = state.get("inputs") or {}
        system = SystemMessage(llm_system_prompt(list(specs.values()), inputs, state.get("artifacts") or {},
                                                 policy.name))
        model = load_chat_model(ctx).bind_tools(tools)
        reply = model.invoke([system, *state["messages"]])
        usage["llm_calls"] += 1
        usage["rounds"] += 1
        if not reply.tool_calls:
            return _finish(state, ctx, plan, usage, answer=content_text(reply.content))
        for tc in reply.tool_calls:
            plan["steps"].append({"id": tc["id"], "tool": tc["name"], "args": tc.get("args") or {}, "status": "running"})
        plan["text"] = plan_text(plan)
        return {"messages": [reply], "plan": plan, "usage": usage}

    def _finish(state: dict[str, Any], ctx: Any, plan: dict[str, Any], usage: dict[str, int], *, answer: str = "") -> dict[str, Any]:
        policy = active_policy(ctx)
        tctx = tool_context(ctx, policy)
        plan["done"] = True
        out: dict[str, Any] = {"plan": plan, "usage": usage}
        lines: list[str] = []
        if answer:
            lines.append(answer)
        failed = any(s["status"] in ("error", "denied") for s in plan["steps"])
        if not plan.get("dynamic") and plan["steps"]:
            head = prompts.ANSWER_STOPPED if failed else prompts.ANSWER_DONE
            lines.append(head.format(planner_label=planner_label(plan)))
            for s in plan["steps"]:
                if s["status"] == "done":
                    lines.append(prompts.ANSWER_STEP.format(tool=s["tool"], summary=s.get("summary", "")))
                elif s["status"] in ("error", "denied"):
                    lines.append(prompts.ANSWER_FAILED.format(tool=s["tool"], reason=s.get("error", "")))
        rec = None if failed else build_proposal(thread_id=thread_id(), plan=plan, tctx=tctx, policy=policy)
        if rec is not None:
            rec = ProposalStore(tctx.workspace.root).upsert(rec)
            plan["proposal_id"] = rec["id"]
            plan["reviewed"] = rec["status"] != "pending"
            lines.append(prompts.ANSWER_PROPOSAL.format(id=rec["id"], kind=rec["kind"], n=rec["n_docs"]))
            if rec.get("problems"):
                lines.append(prompts.ANSWER_PROPOSAL_PROBLEMS.format(problems="; ".join(rec["problems"])))
            out["proposals"] = [{"id": rec["id"], "status": rec["status"], "kind": rec["kind"]}]
        out["messages"] = [AIMessage(content="\n".join(lines) or "Nothing to do.")]
        return out

    return plan
