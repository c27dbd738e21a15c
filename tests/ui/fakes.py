"""A scripted stand-in for agent.service.AgentService: same methods, no graph, no model.

It writes real artifacts (a selection table and a plot) into the workspace so the side panel has
something to open, and keeps proposals and per-thread history like the real service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from agent.events import AgentEvent
from tools.artifacts import Workspace, stable_hash
from tools.contract import ProgressEvent

EVIL = '<img src=x onerror="window.__pwned=1"> **bold** [link](http://example.invalid)'


class FakeService:
    def __init__(self, *, workspace: Any = None, policy: str | None = "default", llm_base_url: str | None = None,
                 llm_model: str | None = None, llm_api_key: str | None = None, planner: str = "auto",
                 data_roots: list[str] | None = None, step_delay: float = 0.0, engine: str = "local"):
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.policy = policy
        self.llm_base_url = llm_base_url
        self.llm_model = llm_model
        self.planner = planner
        self.engine = engine
        self.data_roots = data_roots or []
        self.step_delay = step_delay
        self._history: dict[str, list[AgentEvent]] = {}
        self._titles: dict[str, str] = {}
        self._proposals: dict[str, dict[str, Any]] = {}
        self._approvals: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple] = []
        self.stream_threads: list[str] = []  # the OS thread each stream ran on
        self._lock = threading.Lock()

    # -- helpers --------------------------------------------------------------------------------------

    def _emit(self, tid: str, ev: AgentEvent) -> AgentEvent:
        with self._lock:
            self._history.setdefault(tid, []).append(ev)
        if self.step_delay:
            time.sleep(self.step_delay)
        return ev

    def _artifacts(self, tid: str) -> dict[str, str]:
        ws = self.workspace
        table = pa.table({"id": [f"d{i}" for i in range(30)],
                          "domain": ["math"] * 18 + ["code"] * 9 + ["web"] * 3,
                          "score": [i / 30 for i in range(30)],
                          "text": [EVIL] + [f"doc {i}" for i in range(29)]})
        with ws.write("selection", stable_hash("sel", tid), {"tool": "fake_select", "rows": {"rows_out": 30}}) as w:
            w.table(table)
        sel = w.id
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3, 2))
        fig.add_subplot().bar(["math", "code"], [2, 1])
        with ws.write("plot", stable_hash("plot", tid), {"tool": "fake_select"}) as w2:
            w2.figure(fig)
        return {"selection": sel, "plot": w2.id}

    # -- the AgentService interface ---------------------------------------------------------------------

    def stream(self, thread_id: str, message: str, *, corpus: Any = None, target: Any = None) -> Iterator[AgentEvent]:
        self.calls.append(("stream", thread_id, message, corpus, target))
        self.stream_threads.append(threading.current_thread().name)
        self._titles.setdefault(thread_id, message[:40])
        tid = thread_id
        yield self._emit(tid, AgentEvent(kind="message", thread_id=tid, role="user", text=message))
        if "llm down" in message:
            yield self._emit(tid, AgentEvent(kind="error", thread_id=tid,
                                             text="LLM endpoint http://127.0.0.1:9/v1 is unreachable"))
            yield self._emit(tid, AgentEvent(kind="done", thread_id=tid))
            return
        if "gpu job" in message:  # a call the policy wants approved: an interrupt, not a stored proposal
            rec = {"id": f"approval-{tid}", "kind": "approval", "status": "pending",
                   "calls": [{"tool": "influence", "reason": "gpu tools need approval"}]}
            self._approvals[rec["id"]] = rec
            yield self._emit(tid, AgentEvent(kind="proposal", thread_id=tid, status="pending", proposal=rec,
                                             text="Approval needed before running influence"))
            yield self._emit(tid, AgentEvent(kind="done", thread_id=tid))
            return
        if "explode" in message:
            raise RuntimeError("service exploded")
        yield self._emit(tid, AgentEvent(kind="plan", thread_id=tid, planner="offline",
                                         text=f"1. fake_select on {corpus}\n2. broken_tool\n3. propose"))
        yield self._emit(tid, AgentEvent(kind="tool_start", thread_id=tid, tool="fake_select", call_id="c1",
                                         args={"corpus": corpus, "k": 30}, status="pending"))
        for desc, n in (("scoring", 10), ("scoring", 20), ("ranking", 30)):
            yield self._emit(tid, AgentEvent(kind="tool_progress", thread_id=tid, tool="fake_select", call_id="c1",
                                             progress=ProgressEvent(tool="fake_select", desc=desc, n=n,
                                                                    total=30, unit="docs")))
        arts = self._artifacts(tid)
        yield self._emit(tid, AgentEvent(kind="tool_end", thread_id=tid, tool="fake_select", call_id="c1",
                                         status="done", duration_s=1.25,
                                         summary="selected 30 of 3000 docs: math 18, code 9, web 3", artifacts=arts))
        yield self._emit(tid, AgentEvent(kind="tool_start", thread_id=tid, tool="broken_tool", call_id="c2",
                                         args={}, status="pending"))
        yield self._emit(tid, AgentEvent(kind="tool_end", thread_id=tid, tool="broken_tool", call_id="c2",
                                         status="error", duration_s=0.01, summary="BadInput: no such column 'x'"))
        pid = f"prop-{tid}"
        rec = {"id": pid, "thread_id": tid, "kind": "selection", "selection": arts["selection"], "mixture": None,
               "counts": {"math": 18, "code": 9, "web": 3}, "n_docs": 30,
               "weights": {"math": 0.6, "code": 0.3, "web": 0.1},
               "evidence": [{"tool": "fake_select", "summary": "selected 30 of 3000 docs",
                             "metrics": {"k": 30, "target_similarity": 0.8123}, "artifacts": arts}],
               "plots": [arts["plot"]], "plan": [{"tool": "fake_select", "args": {"k": 30}}],
               "problems": [], "status": "pending", "note": "", "export": None}
        self._proposals[pid] = rec
        yield self._emit(tid, AgentEvent(kind="proposal", thread_id=tid, proposal=dict(rec), text=EVIL))
        yield self._emit(tid, AgentEvent(kind="message", thread_id=tid, text="Done. " + EVIL))
        yield self._emit(tid, AgentEvent(kind="done", thread_id=tid))

    def review(self, thread_id: str, proposal_id: str, decision: str, *, weights: dict[str, float] | None = None,
               note: str = "") -> Iterator[AgentEvent]:
        self.calls.append(("review", thread_id, proposal_id, decision, weights, note))
        tid = thread_id
        if proposal_id in self._approvals:
            yield self._emit(tid, AgentEvent(kind="tool_start", thread_id=tid, tool="influence", call_id="g1"))
            yield self._emit(tid, AgentEvent(kind="tool_end", thread_id=tid, tool="influence", call_id="g1",
                                             status="done", summary="scored 30 docs"))
            yield self._emit(tid, AgentEvent(kind="done", thread_id=tid))
            return
        rec = self._proposals[proposal_id]
        if weights:
            rec["weights"] = dict(weights)
        rec["note"] = note
        if decision == "reject":
            rec["status"] = "rejected"
            yield self._emit(tid, AgentEvent(kind="message", thread_id=tid, text=f"Rejected {proposal_id}."))
        elif decision == "edit":
            yield self._emit(tid, AgentEvent(kind="proposal", thread_id=tid, proposal=dict(rec)))
        else:
            yield self._emit(tid, AgentEvent(kind="tool_start", thread_id=tid, tool="export", call_id="x1",
                                             args={"proposal": proposal_id}))
            path = str(Path(self.workspace.root) / "exports" / proposal_id / "data.jsonl")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("{}\n")
            rec["status"] = "exported"
            rec["export"] = {"path": path, "manifest": str(Path(path).with_name("manifest.json")), "rows": 30}  # as decide()
            yield self._emit(tid, AgentEvent(kind="tool_end", thread_id=tid, tool="export", call_id="x1",
                                             status="done", duration_s=0.2, summary=f"exported 30 docs to {path}"))
            yield self._emit(tid, AgentEvent(kind="proposal", thread_id=tid, proposal=dict(rec)))
            yield self._emit(tid, AgentEvent(kind="message", thread_id=tid, text=f"Exported to {path}"))
        yield self._emit(tid, AgentEvent(kind="done", thread_id=tid))

    def threads(self) -> list[dict[str, Any]]:
        return [{"id": t, "title": self._titles.get(t, t), "updated_at": "2026-11-23T12:00:00"} for t in self._history]

    def history(self, thread_id: str) -> list[AgentEvent]:
        return list(self._history.get(thread_id, []))

    def proposals(self, status: str | None = "pending") -> list[dict[str, Any]]:
        return [dict(r) for r in self._proposals.values() if status in (None, "all") or r["status"] == status]

    def validate_edit(self, proposal_id: str, weights: dict[str, float]) -> list[str]:
        problems = []
        total = sum(weights.values())
        if abs(total - 1.0) > 1e-6:
            problems.append(f"weights sum to {total:.3f}, not 1")
        for d, w in weights.items():
            if w > 0.7:
                problems.append(f"{d} weight {w:.2f} is over the cap 0.70")
        return problems

    def settings(self) -> dict[str, Any]:
        return {"planner": self.planner, "llm_base_url": self.llm_base_url, "llm_model": self.llm_model,
                "policy": self.policy, "data_roots": list(self.data_roots), "workspace": str(self.workspace.root),
                "engine": self.engine}
