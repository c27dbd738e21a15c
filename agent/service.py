"""One object every front end drives: the chat UI, the CLI, notebooks and the proposal queue.

``AgentService`` compiles the graph with a SQLite checkpointer in the workspace (threads survive
restarts), runs requests and streams :class:`AgentEvent`s, resumes the review interrupt with a
person's decision, and lists threads, history and proposals.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from agent.context import CurateContext
from agent.events import AgentEvent
from agent.nodes.common import content_text
from agent.plan_model import PlanStep, read_plan
from tools.contract import ProgressEvent, ToolSpec
from tools.errors import BadInput, CurateError

DEFAULT_CONCURRENT_RUNS = 4
"""Requests that run at once (CURATE_CHAT_WORKERS); one more gets a "busy" error event at once."""
SQLITE_BUSY_TIMEOUT_S = 60.0


class AgentService:
    def __init__(
        self,
        *,
        workspace: Path | None = None,
        policy: str | None = None,
        llm_base_url: str | None = None,
        llm_model: str | None = None,
        llm_api_key: str | None = None,
        planner: Literal["auto", "llm", "json", "offline"] = "auto",
        specs: list[ToolSpec] | None = None,
        max_steps: int | None = None,
        max_concurrent: int | None = None,
        engine: Literal["local", "ray"] | None = None,
    ):
        from langgraph.checkpoint.sqlite import SqliteSaver

        from agent.graph import build_graph

        self.ctx = CurateContext.from_env(
            workspace=workspace, policy=policy, base_url=llm_base_url, model=llm_model, api_key=llm_api_key,
            planner=None if planner == "auto" else planner, max_steps=max_steps, engine=engine,
        )
        self.workspace = Path(self.ctx.workspace).absolute()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.ctx = self.ctx.with_(workspace=self.workspace)
        # several processes (CLI runs, the chat, notebooks) share this file: WAL (set by setup()) plus a
        # busy timeout, so a writer waits for another instead of failing with "database is locked"
        self._conn = sqlite3.connect(str(self.workspace / "threads.sqlite"), check_same_thread=False,
                                     timeout=SQLITE_BUSY_TIMEOUT_S)
        self._conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        self.checkpointer = SqliteSaver(self._conn)
        self.checkpointer.setup()
        self.graph = build_graph(self.checkpointer, specs=specs)
        self.specs = specs
        self._lock = threading.RLock()
        self.max_concurrent = max_concurrent or int(os.environ.get("CURATE_CHAT_WORKERS", DEFAULT_CONCURRENT_RUNS))
        self._slots = threading.BoundedSemaphore(self.max_concurrent)
        self._running: set[str] = set()  # thread ids with a run in progress (one run per thread at a time)

    # ------------------------------------------------------------------------------- helpers

    @property
    def policy(self):  # noqa: ANN201
        from agent.adapters import active_policy

        return active_policy(self.ctx)

    def tool_context(self):  # noqa: ANN201
        from agent.adapters import tool_context

        return tool_context(self.ctx, self.policy)

    def store(self):  # noqa: ANN201
        from agent.proposals import ProposalStore

        return ProposalStore(self.tool_context().workspace.root)

    @staticmethod
    def _config(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------------------- running

    def stream(self, thread_id: str, message: str, *, corpus: str | None = None, target: str | None = None,
               k: int | None = None) -> Iterator[AgentEvent]:
        """Run one request; events as they happen, ending with ``done``. ``k`` overrides the planner's k."""
        payload: dict[str, Any] = {"messages": [HumanMessage(content=message)]}
        inputs: dict[str, Any] = {n: str(v) for n, v in (("corpus", corpus), ("target", target)) if v}
        if k is not None:
            inputs["k"] = int(k)
        if inputs:
            payload["inputs"] = inputs
        yield from self._run(thread_id, payload)

    def resume(self, thread_id: str) -> Iterator[AgentEvent]:
        """Continue a run that stopped mid-way (a crash, a killed process) from its last checkpoint."""
        yield from self._run(thread_id, None)

    def review(
        self,
        thread_id: str,
        proposal_id: str,
        decision: Literal["approve", "reject", "edit"],
        *,
        weights: dict[str, float] | None = None,
        note: str = "",
    ) -> Iterator[AgentEvent]:
        """Resume the thread's review (or call-approval) interrupt with a decision."""
        from langgraph.types import Command

        answer = {"decision": decision, "note": note, **({"weights": weights} if weights else {})}
        for intr in self._interrupts(thread_id):
            if isinstance(intr.value, dict) and intr.value.get("id") == proposal_id:
                yield from self._run(thread_id, Command(resume=answer))
                return
        # not waiting in the graph (an older proposal, or decided from the queue): apply directly
        from agent.nodes.review import review as _unused  # noqa: F401 - same decision path
        from agent.proposals import decide

        try:
            out = decide(self.store(), proposal_id, decision, tctx=self.tool_context(), policy=self.policy,
                         weights=weights, note=note)
        except CurateError as e:
            yield AgentEvent(kind="error", thread_id=thread_id, text=e.render(), error_kind=e.kind)
            yield AgentEvent(kind="done", thread_id=thread_id, text="error")
            return
        yield AgentEvent(kind="message", thread_id=thread_id, text=_outcome_text(out), proposal=out)
        yield AgentEvent(kind="done", thread_id=thread_id, text=out["outcome"])

    def _last_calls(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The last AI message's tool calls in the stored state: a resumed run (an approval) whose plan
        update was streamed before the interrupt."""
        state = self.graph.get_state(config)
        ai = next((x for x in reversed(state.values.get("messages", [])) if isinstance(x, AIMessage)), None)
        return list(ai.tool_calls) if ai else []

    def _interrupts(self, thread_id: str) -> list[Any]:
        state = self.graph.get_state(self._config(thread_id))
        return [i for t in state.tasks for i in (t.interrupts or ())]

    def _run(self, thread_id: str, payload: Any) -> Iterator[AgentEvent]:
        config = self._config(thread_id)
        calls: dict[str, dict[str, Any]] = {}
        running: dict[str, str] = {}  # tool name -> call id currently running
        last_plan_text = ""
        pending_calls: list[dict[str, Any]] = []  # tool calls of the plan node's last update
        status = "complete"
        planner = None
        busy = self._claim(thread_id)
        if busy:
            yield AgentEvent(kind="error", thread_id=thread_id, text=busy, error_kind="busy")
            yield AgentEvent(kind="done", thread_id=thread_id, text="busy")
            return
        try:
            try:
                for mode, chunk in self.graph.stream(payload, config, context=self.ctx, stream_mode=["updates", "custom"]):
                    if mode == "custom":
                        if isinstance(chunk, dict) and chunk.get("type") == "tool_progress":
                            tool = chunk.get("tool")
                            yield AgentEvent(kind="tool_progress", thread_id=thread_id, tool=tool,
                                             call_id=running.get(tool or ""),
                                             progress=ProgressEvent.model_validate(chunk["progress"]))
                        continue
                    for node, upd in chunk.items():
                        if node == "__interrupt__":
                            for intr in upd:
                                status = "pending review"
                                yield self._interrupt_event(thread_id, intr.value)
                            continue
                        upd = upd or {}
                        plan = read_plan(upd)
                        if plan is not None:
                            planner = plan.planner
                        for m in upd.get("messages", []) or []:
                            if node == "plan" and isinstance(m, AIMessage) and m.tool_calls:
                                pending_calls = list(m.tool_calls)
                                for tc in m.tool_calls:
                                    calls[tc["id"]] = {"tool": tc["name"], "args": tc.get("args") or {}}
                                text = plan.text if plan is not None else ""
                                if text and text != last_plan_text:
                                    last_plan_text = text
                                    yield AgentEvent(kind="plan", thread_id=thread_id, text=text, planner=planner)
                            elif isinstance(m, ToolMessage):
                                yield self._tool_end(thread_id, m, calls)
                                running.pop(m.name or "", None)
                            elif (isinstance(m, AIMessage) and node == "plan" and plan is not None
                                  and plan.question is not None):
                                status = "question"
                                yield AgentEvent(kind="question", thread_id=thread_id, text=content_text(m.content),
                                                 planner=planner, choices=plan.question.choices)
                            elif isinstance(m, AIMessage):
                                yield AgentEvent(kind="message", thread_id=thread_id, text=content_text(m.content),
                                                 planner=planner)
                        if node == "guard" and not upd.get("messages"):
                            # the calls the guard let through: those of the plan node's last update (not read
                            # back from the checkpointer, whose writes may still be in flight)
                            for tc in pending_calls or self._last_calls(config):
                                calls[tc["id"]] = {"tool": tc["name"], "args": tc.get("args") or {},
                                                   "t0": time.perf_counter()}
                                running[tc["name"]] = tc["id"]
                                yield AgentEvent(kind="tool_start", thread_id=thread_id, tool=tc["name"],
                                                 call_id=tc["id"], args=tc.get("args") or {}, status="pending")
                            pending_calls = []
            except CurateError as e:
                status = "error"
                yield AgentEvent(kind="error", thread_id=thread_id, text=e.render(), error_kind=e.kind)
            except Exception as e:  # noqa: BLE001 - an unreachable LLM, a bug: a banner, the thread is kept
                status = "error"
                yield AgentEvent(kind="error", thread_id=thread_id, text=self._explain(e))
        finally:
            self._release(thread_id)
        yield AgentEvent(kind="done", thread_id=thread_id, text=status, planner=planner)

    def _claim(self, thread_id: str) -> str | None:
        """Take one of the run slots for this thread, or say why not (a "busy" message, at once)."""
        with self._lock:
            if thread_id in self._running:
                return (f"busy: thread {thread_id} is already running a request; wait for it to finish, "
                        "or start a new thread")
            if not self._slots.acquire(blocking=False):
                return (f"busy: {self.max_concurrent} requests are running, the most this assistant runs at once "
                        "(CURATE_CHAT_WORKERS); try again in a moment")
            self._running.add(thread_id)
            return None

    def _release(self, thread_id: str) -> None:
        with self._lock:
            self._running.discard(thread_id)
            self._slots.release()

    def busy(self) -> dict[str, int]:
        """Runs in progress and the limit (for the UI and tests)."""
        with self._lock:
            return {"running": len(self._running), "limit": self.max_concurrent}

    def _explain(self, e: Exception) -> str:
        name = type(e).__name__
        if "Connection" in name or "Timeout" in name or "APIStatusError" in name or name.startswith("API"):
            return (f"the LLM endpoint {self.ctx.base_url} did not answer ({name}: {e}). The thread is kept: "
                    "retry, or use the offline planner (planner='offline').")
        return f"{name}: {e}. The thread is kept and can be resumed."

    def _tool_end(self, thread_id: str, m: ToolMessage, calls: dict[str, dict[str, Any]]) -> AgentEvent:
        info = calls.get(m.tool_call_id, {})
        art = m.artifact if isinstance(m.artifact, dict) else {}
        ok = m.status != "error"
        dur = art.get("duration_s")
        if dur is None and "t0" in info:
            dur = time.perf_counter() - info["t0"]
        return AgentEvent(
            kind="tool_end", thread_id=thread_id, tool=m.name or info.get("tool"), call_id=m.tool_call_id,
            args=info.get("args"), status="done" if ok else "error", duration_s=dur,
            summary=art.get("summary") if ok else content_text(m.content),
            artifacts=art.get("artifacts", {}) if ok else {},
        )

    def _interrupt_event(self, thread_id: str, value: Any) -> AgentEvent:
        value = value if isinstance(value, dict) else {"value": value}
        if value.get("type") == "proposal":
            rec = value.get("proposal") or {}
            return AgentEvent(kind="proposal", thread_id=thread_id, status="pending", proposal=rec,
                              text=f"Proposal {rec.get('id')} awaits review (approve, edit or reject).")
        calls = value.get("calls", [])
        reasons = "; ".join(c.get("reason", "") for c in calls)
        rec = {"id": value.get("id"), "kind": "approval", "status": "pending", "calls": calls,
               "policy": value.get("policy")}
        return AgentEvent(kind="proposal", thread_id=thread_id, status="pending", proposal=rec,
                          text=f"Approval needed before running {', '.join(c['tool'] for c in calls)}: {reasons}")

    # ------------------------------------------------------------------------------- queries

    def threads(self) -> list[dict[str, Any]]:
        with self.checkpointer.lock:  # one connection shared by the run threads
            rows = self._conn.execute(
                "SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id"
            ).fetchall()
        out = []
        for (tid,) in rows:
            state = self.graph.get_state(self._config(tid))
            first = next((m for m in state.values.get("messages", []) if isinstance(m, HumanMessage)), None)
            title = content_text(first.content)[:80] if first is not None else tid
            out.append({"id": tid, "title": title, "updated_at": state.created_at})
        return sorted(out, key=lambda r: r["updated_at"] or "", reverse=True)

    def history(self, thread_id: str) -> list[AgentEvent]:
        state = self.graph.get_state(self._config(thread_id))
        events: list[AgentEvent] = []
        calls: dict[str, dict[str, Any]] = {}
        plan = read_plan(state.values)
        planner = plan.planner if plan is not None else None
        for m in state.values.get("messages", []):
            if isinstance(m, HumanMessage):
                events.append(AgentEvent(kind="message", thread_id=thread_id, role="user", text=content_text(m.content)))
            elif isinstance(m, AIMessage) and m.tool_calls:
                if content_text(m.content):
                    events.append(AgentEvent(kind="plan", thread_id=thread_id, text=content_text(m.content)))
                for tc in m.tool_calls:
                    calls[tc["id"]] = {"tool": tc["name"], "args": tc.get("args") or {}}
            elif isinstance(m, ToolMessage):
                events.append(self._tool_end(thread_id, m, calls))
            elif isinstance(m, AIMessage):
                events.append(AgentEvent(kind="message", thread_id=thread_id, role="assistant",
                                         text=content_text(m.content), planner=planner))
        for t in state.tasks:
            for intr in t.interrupts or ():
                events.append(self._interrupt_event(thread_id, intr.value))
        return events

    def proposals(self, status: str | None = "pending") -> list[dict[str, Any]]:
        return self.store().list(status)

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        return self.store().get(proposal_id)

    def validate_edit(self, proposal_id: str, weights: dict[str, float]) -> list[str]:
        from policies.enforce import weight_problems

        rec = self.store().get(proposal_id)
        problems = weight_problems(weights, self.policy)
        if rec.get("kind") == "selection":
            known = set(rec.get("counts") or {})
            problems += [f"{d} is not in the selection" for d in weights if d not in known and weights[d] > 0]
        return problems

    def settings(self) -> dict[str, Any]:
        from tools.registry import names

        pol = self.policy
        return {
            "planner": self.ctx.effective_planner(),
            "planner_setting": self.ctx.planner,
            "llm_configured": self.ctx.llm_configured,
            "llm_base_url": self.ctx.base_url,
            "llm_model": self.ctx.model,
            "policy": pol.name,
            "policy_ref": self.ctx.policy,
            "data_roots": [str(p) for p in pol.resolved_roots()],
            "workspace": str(self.workspace),
            "engine": self.ctx.engine,
            "tools": names(),
        }

    def dry_run(self, message: str, *, corpus: str | None = None, target: str | None = None,
                k: int | None = None) -> dict[str, Any]:
        """The plan (and the policy's verdict on each step) without running anything: the plan node's own
        planner functions (:func:`agent.nodes.plan.plan_request`), so this is the plan a run would start."""
        from agent.adapters import build_tools, planned_call
        from agent.nodes.plan import llm_reply, plan_request, plan_text, planner_kind
        from policies.enforce import Usage, judge
        from tools.registry import list_specs

        specs = {s.name: s for s in (self.specs or list_specs())}
        inputs: dict[str, Any] = {n: v for n, v in (("corpus", corpus), ("target", target)) if v}
        if k is not None:
            inputs["k"] = int(k)
        state: dict[str, Any] = {"inputs": inputs, "artifacts": {}}
        kind, label = planner_kind(self.ctx)
        question = None
        if kind == "llm":  # a native tool-call planner decides step by step; show its first step
            reply = llm_reply(self.ctx, specs, build_tools(list(specs.values())), [HumanMessage(content=message)],
                              state, self.policy.name)
            steps = [PlanStep(id=str(tc.get("id") or ""), tool=tc["name"], args=tc["args"]) for tc in reply.tool_calls]
            text = plan_text(label, steps) if steps else content_text(reply.content)
        else:  # a plan, a question (its candidate steps pending) or an off-topic answer
            planned = plan_request(message, specs, state, self.ctx)
            label, steps, text, question = planned.label, planned.steps, planned.text, planned.question
        decisions = [judge(planned_call(specs[s.tool], s.args), self.policy, Usage(tool_calls=i)).model_dump()
                     for i, s in enumerate(steps) if s.tool in specs]
        return {"planner": label, "text": text,
                "steps": [s.model_dump(mode="json", include={"tool", "args", "status"}) for s in steps],
                "question": question.model_dump() if question is not None else None, "policy": decisions}


def _outcome_text(out: dict[str, Any]) -> str:
    from agent import prompts

    pid = out["id"]
    if out["outcome"] == "exported":
        exp = out.get("export") or {}
        return prompts.REVIEW_APPROVED.format(id=pid, rows=exp.get("rows"), path=exp.get("path"),
                                              manifest=exp.get("manifest"))
    if out["outcome"] == "rejected":
        return prompts.REVIEW_REJECTED.format(id=pid, note=f" ({out.get('note')})" if out.get("note") else "")
    if out["outcome"] == "edited":
        return prompts.REVIEW_EDITED.format(id=pid, counts=out.get("counts") or out.get("weights"))
    return prompts.REVIEW_BLOCKED.format(id=pid, policy=out.get("policy"), problems=out.get("reason", ""))


__all__ = ["AgentService", "BadInput"]
