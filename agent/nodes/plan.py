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
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agent import prompts
from agent.adapters import active_policy, tool_context
from agent.chain import placeholder_kind
from agent.nodes.common import (
    content_text,
    context_of,
    kind_of,
    new_usage,
    planner_label,
    thread_id,
    trailing_tool_messages,
)
from agent.plan_model import Plan, PlanQuestion, PlanStep, read_plan
from agent.proposals import ProposalStore, build_proposal
from tools.contract import ToolSpec

FAMILY_KINDS = {"selection": {"selection"}, "scores": {"scores"}, "mixture": {"mixture"},
                "index": {"index", "embeddings"}}


def _fmt_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in args.items())


def plan_text(planner: str, steps: list[PlanStep]) -> str:
    lines = [prompts.PLAN_HEADER.format(planner_label=planner_label(planner))]
    for i, s in enumerate(steps, 1):
        lines.append(f"{i}. {s.tool}({_fmt_args(s.args)})")
    if planner == "offline":
        lines.append(prompts.OFFLINE_NOTE)
    return "\n".join(lines)


def _step(tool: str, args: dict[str, Any], status: Literal["planned", "pending"] = "planned") -> PlanStep:
    return PlanStep(id=f"call_{uuid.uuid4().hex[:12]}", tool=tool, args=args, status=status)


# ------------------------------------------------------------------------------------ planners


@dataclass
class Planned:
    """What the planner made of a request before anything runs: the graph's plan node starts from it and
    the service's dry run shows it, so a dry run shows the plan the graph would run."""

    label: str
    """"offline", "json:<model>" or "request-file" """
    kind: Literal["plan", "ask", "none"]
    steps: list[PlanStep] = field(default_factory=list)
    """the steps: status "planned", or "pending" under a question"""
    text: str = ""
    """the plan as text; or the question, the off-topic answer, or why there is no plan"""
    question: PlanQuestion | None = None
    request: str = ""
    """the request as planned (an answer to the thread's question is read into the original request)"""
    llm_calls: int = 0


def planner_kind(ctx: Any) -> tuple[str, str]:
    """(kind, label) of the planner the context selects."""
    kind = ctx.effective_planner()
    return kind, "offline" if kind == "offline" else f"{kind}:{ctx.model or 'default'}"


def offline_decision(request: str, specs: dict[str, ToolSpec], state: dict[str, Any]) -> Any:
    """The offline planner's decision (plan, question or off-topic); a reply to a pending question
    (the thread's last plan asked one) is read as its answer."""
    from agent.offline import OfflinePlanner, answer_to_question

    inputs = state.get("inputs") or {}
    prev = read_plan(state)
    force = None
    if prev is not None and prev.question is not None and prev.done:
        request, force = answer_to_question(prev.question.model_dump(), request, specs)
    return OfflinePlanner(specs).decide(request, inputs=inputs, artifacts=dict(state.get("artifacts") or {}),
                                        force=force), request


def json_steps(request: str, specs: dict[str, ToolSpec], state: dict[str, Any], ctx: Any
               ) -> tuple[list[PlanStep], str | None, int]:
    from agent.jsonplan import plan_with_llm
    from agent.llm import load_chat_model

    steps, errors, calls = plan_with_llm(load_chat_model(ctx), request, list(specs.values()), state.get("inputs") or {},
                                          strict=getattr(ctx, "plan_schema", "strict") == "strict",
                                          artifacts=dict(state.get("artifacts") or {}))
    if errors and not steps:
        return [], "The JSON plan was not valid after one repair round: " + "; ".join(errors[:5]), calls
    return [_step(s.tool, s.args) for s in steps], None, calls


def plan_request(request: str, specs: dict[str, ToolSpec], state: dict[str, Any], ctx: Any) -> Planned:
    """The whole plan for a request from a request file's steps, the offline planner or the JSON planner
    (the native tool-call planner decides round by round: :func:`llm_reply`)."""
    kind, label = planner_kind(ctx)
    inputs = state.get("inputs") or {}
    why, calls = None, 0
    if inputs.get("steps"):  # a structured request file: the steps are the plan
        from agent.jsonplan import validate_steps

        label = "request-file"
        given, errors = validate_steps({"steps": inputs["steps"]}, specs, inputs)
        steps = [] if errors else [_step(s.tool, s.args) for s in given]
        why = ("The request file's steps are not valid: " + "; ".join(errors)) if errors else None
    elif kind == "offline":
        decision, request = offline_decision(request, specs, state)
        if decision.kind == "ask":
            return Planned(label, "ask", [_step(s["tool"], s["args"], "pending") for s in decision.steps],
                           decision.question, PlanQuestion.model_validate(decision.question_record(request)), request)
        if decision.kind == "none":
            return Planned(label, "none", text=prompts.OFF_TOPIC.format(tools=", ".join(specs)), request=request)
        steps = [_step(s["tool"], s["args"]) for s in decision.steps]
    elif kind == "json":
        steps, why, calls = json_steps(request, specs, state, ctx)
    else:
        raise ValueError(f"planner {kind!r} plans round by round; use llm_reply")
    if inputs.get("k"):  # an explicit k (request file, UI) wins over what the planner read
        for st in steps:
            if specs[st.tool].family == "selection" and "k" in specs[st.tool].request_model.model_fields:
                st.args["k"] = int(inputs["k"])
                st.args.pop("fraction", None)  # one budget: the explicit count
    text = plan_text(label, steps) if steps else why or ""
    return Planned(label, "plan", steps, text, request=request, llm_calls=calls)


def llm_system_prompt(specs: list[ToolSpec], inputs: dict[str, Any], artifacts: dict[str, str], policy: str) -> str:
    """The native tool-call planner's system prompt: rules, chaining (consumes -> produces), examples."""
    from agent.jsonplan import chaining_text, examples_text

    return prompts.SYSTEM_PROMPT.format(
        chaining=chaining_text(specs), examples=examples_text(specs),
        corpus=inputs.get("corpus") or "(not given)", target=inputs.get("target") or "(not given)",
        artifacts=json.dumps(artifacts), policy=policy)


def llm_reply(ctx: Any, specs: dict[str, ToolSpec], tools: list[Any], messages: list[Any], state: dict[str, Any],
              policy: str) -> AIMessage:
    """One round of the native tool-call planner: the model's next tool calls (or its answer)."""
    from agent.llm import load_chat_model

    system = SystemMessage(llm_system_prompt(list(specs.values()), state.get("inputs") or {},
                                             state.get("artifacts") or {}, policy))
    return load_chat_model(ctx).bind_tools(tools).invoke([system, *messages])


# ---------------------------------------------------------------------------------------- node


def make_plan(specs: dict[str, ToolSpec], tools: list[Any]):  # noqa: ANN201
    """The plan node: a new request is planned; after tool results, the next step is handed out."""
    node = PlanNode(specs, tools)

    def plan(state: dict[str, Any], runtime: Any = None) -> dict[str, Any]:
        ctx = context_of(runtime)
        last = state["messages"][-1]
        if isinstance(last, HumanMessage):
            return node.start(state, ctx, content_text(last.content))
        return node.resume(state, ctx)

    return plan


class PlanNode:
    def __init__(self, specs: dict[str, ToolSpec], tools: list[Any]):
        self.specs, self.tools = specs, tools

    def start(self, state: dict[str, Any], ctx: Any, request: str) -> dict[str, Any]:
        kind, label = planner_kind(ctx)
        base = {"policy_name": active_policy(ctx).name}
        dynamic = kind == "llm" and not (state.get("inputs") or {}).get("steps")  # a request file's steps are fixed
        plan = Plan(id=uuid.uuid4().hex[:12], planner=label, request=request, dynamic=dynamic)
        usage = new_usage()
        if dynamic:
            return {**base, **self.llm_round(state, ctx, plan, usage)}
        planned = plan_request(request, self.specs, state, ctx)
        plan.planner = planned.label
        usage["llm_calls"] += planned.llm_calls
        if planned.kind != "plan":
            return {**base, **self.ask_or_answer(plan, usage, planned)}
        plan.steps, plan.text = planned.steps, planned.text
        if not planned.steps:
            return {**base, **self.finish(state, ctx, plan, usage, answer=planned.text)}
        return {**base, **self.hand_out(state, ctx, plan, usage, first=True)}

    def ask_or_answer(self, plan: Plan, usage: dict[str, int], planned: Planned) -> dict[str, Any]:
        """A clarifying question (the candidate steps kept as pending) or the off-topic answer; no tool runs."""
        plan.done = True
        if planned.question is not None:
            plan.question = planned.question
            plan.steps = planned.steps
        plan.text = planned.text
        return {"plan": plan.dump(), "usage": usage, "messages": [AIMessage(content=plan.text)]}

    def resume(self, state: dict[str, Any], ctx: Any) -> dict[str, Any]:
        """After tool results: record them, then the next step (or the next LLM round, or the answer)."""
        plan = read_plan(state)  # a fresh copy: the state's dict is never changed in place
        usage = {**new_usage(), **(state.get("usage") or {})}
        if plan is None:
            return {}
        new_arts = record_results(state, plan, usage)
        st = {**state, "artifacts": {**(state.get("artifacts") or {}), **new_arts}}
        out: dict[str, Any] = {"artifacts": new_arts} if new_arts else {}
        if plan.dynamic:
            return {**out, **self.llm_round(st, ctx, plan, usage)}
        if plan.failed:
            return {**out, **self.finish(st, ctx, plan, usage)}
        return {**out, **self.hand_out(st, ctx, plan, usage, first=False)}

    def hand_out(self, state: dict[str, Any], ctx: Any, plan: Plan, usage: dict[str, int], *,
                 first: bool) -> dict[str, Any]:
        """The next planned step as a tool call, its ``$kind`` arguments resolved to this thread's artifacts."""
        nxt = plan.next_planned()
        if nxt is None:
            return self.finish(state, ctx, plan, usage)
        arts = state.get("artifacts") or {}
        nxt.args = {k: arts.get(kind, v) if (kind := placeholder_kind(v)) else v for k, v in nxt.args.items()}
        nxt.status = "running"
        usage["rounds"] += 1
        msg = AIMessage(content=plan.text if first else "",
                        tool_calls=[{"name": nxt.tool, "args": nxt.args, "id": nxt.id, "type": "tool_call"}])
        return {"messages": [msg], "plan": plan.dump(), "usage": usage}

    def llm_round(self, state: dict[str, Any], ctx: Any, plan: Plan, usage: dict[str, int]) -> dict[str, Any]:
        if usage["rounds"] >= ctx.max_steps:
            return self.finish(state, ctx, plan, usage, answer=prompts.STEP_BUDGET.format(n=ctx.max_steps))
        policy = active_policy(ctx)
        b = policy.budgets
        if b.max_llm_calls is not None and usage["llm_calls"] >= b.max_llm_calls:
            return self.finish(state, ctx, plan, usage,
                               answer=f"Stopped: the policy's budget of {b.max_llm_calls} LLM calls is used up.")
        reply = llm_reply(ctx, self.specs, self.tools, state["messages"], state, policy.name)
        usage["llm_calls"] += 1
        usage["rounds"] += 1
        if not reply.tool_calls:
            return self.finish(state, ctx, plan, usage, answer=content_text(reply.content))
        for tc in reply.tool_calls:
            plan.steps.append(PlanStep(id=str(tc.get("id") or ""), tool=tc["name"], args=tc.get("args") or {},
                                       status="running"))
        plan.text = plan_text(plan.planner, plan.steps)
        return {"messages": [reply], "plan": plan.dump(), "usage": usage}

    def finish(self, state: dict[str, Any], ctx: Any, plan: Plan, usage: dict[str, int], *,
               answer: str = "") -> dict[str, Any]:
        """The closing answer; a plan that ends in a selection or mixture files its proposal."""
        policy = active_policy(ctx)
        tctx = tool_context(ctx, policy)
        plan.done = True
        out: dict[str, Any] = {"usage": usage}
        lines: list[str] = [answer] if answer else []
        failed = plan.failed
        if not plan.dynamic and plan.steps:
            lines += step_lines(plan, failed)
        rec = None if failed else build_proposal(thread_id=thread_id(), plan=plan.dump(), tctx=tctx, policy=policy)
        if rec is not None:
            rec = ProposalStore(tctx.workspace.root).upsert(rec)
            plan.proposal_id = rec["id"]
            plan.reviewed = rec["status"] != "pending"
            lines.append(prompts.ANSWER_PROPOSAL.format(id=rec["id"], kind=rec["kind"], n=rec["n_docs"]))
            if rec.get("problems"):
                lines.append(prompts.ANSWER_PROPOSAL_PROBLEMS.format(problems="; ".join(rec["problems"])))
            out["proposals"] = [{"id": rec["id"], "status": rec["status"], "kind": rec["kind"]}]
        out["plan"] = plan.dump()
        out["messages"] = [AIMessage(content="\n".join(lines) or "Nothing to do.")]
        return out


def step_lines(plan: Plan, failed: bool) -> list[str]:
    """The answer's lines for a finished (or stopped) up-front plan: one per step done or failed."""
    lines = [(prompts.ANSWER_STOPPED if failed else prompts.ANSWER_DONE).format(planner_label=planner_label(plan.planner))]
    for s in plan.steps:
        if s.status == "done":
            lines.append(prompts.ANSWER_STEP.format(tool=s.tool, summary=s.summary))
        elif s.failed:
            lines.append(prompts.ANSWER_FAILED.format(tool=s.tool, reason=s.error))
    return lines


def record_results(state: dict[str, Any], plan: Plan, usage: dict[str, int]) -> dict[str, str]:
    """Fold the trailing tool messages into the plan's steps; returns new artifact ids by kind."""
    by_id = {s.id: s for s in plan.steps}
    new_arts: dict[str, str] = {}
    for tm in trailing_tool_messages(state["messages"]):
        step = by_id.get(tm.tool_call_id)
        if step is None:
            continue
        art = tm.artifact if isinstance(tm.artifact, dict) else {}
        if tm.status == "error":
            step.status = "denied" if art.get("denied") else "error"
            step.error = str(art.get("reason") or content_text(tm.content)[:500])
            continue
        step.status = "done"
        step.summary = str(art.get("summary") or "")
        step.artifacts = {str(k): str(v) for k, v in (art.get("artifacts") or {}).items()}
        step.duration_s = art.get("duration_s")
        step.result = {k: v for k, v in art.items() if k not in ("summary",)}
        for aid in step.artifacts.values():
            new_arts[kind_of(aid)] = aid
        if isinstance(art.get("k"), int):
            usage["docs_selected"] += art["k"]
        if isinstance(art.get("llm_calls"), int):  # a tool's own LLM calls count against the policy too
            usage["llm_calls"] += art["llm_calls"]
    return new_arts
