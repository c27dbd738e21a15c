"""Agent events -> chat messages, without Gradio: the part of the UI that unit tests can read.

A :class:`ChatView` holds one thread's chat as Gradio "messages" dicts and applies
:class:`~agent.events.AgentEvent` objects to it in order: the plan becomes a message, every tool
call a collapsible box (``metadata`` title, status pending -> done, duration, a log line) that is
updated in place, progress rewrites the box's log, a failed tool becomes a box whose title says it
failed, proposals and the final answer are messages, errors go to a banner.

Everything that comes from the agent or the data passes through :func:`plain` first, so it renders
as text: HTML is escaped and markdown punctuation is backslash-escaped, so nothing in a document
can inject markup, links, images or scripts into the page.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from typing import Any

from agent.events import AgentEvent

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$=:])")
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]")
LOG_CHARS = 110
ARG_CHARS = 600


def code(text: Any, limit: int | None = 400) -> str:
    """A path or id as an inline code span: shown verbatim, and the renderer escapes HTML in it."""
    s = " ".join(str(text or "").replace("`", "'").split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return f"`{s}`"


def plain(text: Any, limit: int | None = None) -> str:
    """Text from the agent or the data, made safe to show as text in a markdown chat bubble."""
    s = "" if text is None else str(text)
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    s = html.escape(s, quote=False)
    # html.escape turned < > & into entities; escape markdown syntax (entities' & and ; are fine)
    return _MD_SPECIAL.sub(r"\\\1", s)


def safe_name(name: Any) -> str:
    """A tool or artifact name for a title: only [A-Za-z0-9_.-]."""
    return _NAME_OK.sub("_", str(name or "tool"))[:64]


def one_line(text: Any, limit: int = LOG_CHARS) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def progress_line(p: Any) -> str:
    """'embedding: 1,200/3,000 docs (450/s)' from a ProgressEvent (model or dict)."""
    d = p.model_dump() if hasattr(p, "model_dump") else dict(p or {})
    n, total, unit = d.get("n", 0), d.get("total"), d.get("unit") or "it"
    s = f"{d.get('desc') or 'working'}: {n:,}"
    if total:
        s += f"/{total:,} {unit} ({100.0 * n / total:.0f}%)"
    else:
        s += f" {unit}"
    if d.get("rate"):
        s += f", {d['rate']:,.0f} {unit}/s"
    return s


def format_args(args: dict[str, Any] | None) -> str:
    if not args:
        return ""
    return json.dumps(args, ensure_ascii=False, default=str, sort_keys=True)


def _typed(rec: dict[str, Any] | None) -> Any:
    """The proposal's typed record (agent.proposals), or None for an event that carries no record."""
    if not rec or not rec.get("id"):
        return None
    from pydantic import ValidationError

    from agent.proposals import parse_proposal

    try:
        return parse_proposal(rec)
    except ValidationError:
        return None


def proposal_weights(rec: dict[str, Any] | None) -> dict[str, float]:
    """Domain -> share of the proposal: its weights, else its selection's domain counts normalised."""
    typed = _typed(rec)
    if typed is not None and typed.weights:
        return dict(typed.weights)
    counts = proposal_counts(rec)
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def proposal_counts(rec: dict[str, Any] | None) -> dict[str, int]:
    """Domain -> documents of a selection proposal (a mixture proposal has none)."""
    typed = _typed(rec)
    return dict(getattr(typed, "counts", {}) or {})


def export_path(rec: dict[str, Any] | None) -> str | None:
    """Where an approved proposal's data was exported."""
    typed = _typed(rec)
    path = (typed.export or {}).get("path") if typed is not None else None
    return path if isinstance(path, str) and path else None


def evidence_artifact_ids(rec: dict[str, Any] | None) -> list[str]:
    """Artifact ids named anywhere in a proposal's evidence (and its selection)."""
    rec = rec or {}
    ids: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if re.fullmatch(r"[a-z]+-[0-9a-f]{8,}", v):
                ids.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    for key in ("selection", "mixture", "plots"):  # named outright: take them as they are
        v = rec.get(key)
        for x in (v if isinstance(v, list | tuple) else [v]):
            if isinstance(x, str) and x:
                ids.append(x)
    for key in ("selection_id", "artifact", "artifacts", "evidence"):  # free-form: ids by their shape
        walk(rec.get(key))
    return list(dict.fromkeys(ids))


class ChatView:
    """One thread's chat as Gradio messages, built by applying agent events in order."""

    def __init__(self, messages: list[dict[str, Any]] | None = None):
        self.messages: list[dict[str, Any]] = list(messages or [])
        self.banner: str | None = None
        self.artifacts: dict[str, str] = {}  # label -> artifact id, in order of appearance
        self.proposals: dict[str, dict[str, Any]] = {}  # proposal id -> record
        self.planner: str | None = None
        self.choices: list[str] = []  # the open question's options (tool names): buttons under the chat
        self._tools: dict[str, int] = {}  # call id -> message index
        self._args: dict[int, dict[str, Any] | None] = {}  # message index -> the call's arguments
        self._phases: dict[int, dict[str, int]] = {}  # tool box index -> phase desc -> child index
        self._first_phase: dict[int, tuple[str, str]] = {}  # tool box index -> (first desc, its last line)
        self._n_calls = 0

    # -- helpers ------------------------------------------------------------------------------------

    def add_user(self, text: str) -> None:
        self.choices = []
        self.messages.append({"role": "user", "content": plain(text)})

    def _say(self, content: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if metadata:
            msg["metadata"] = metadata
        self.messages.append(msg)
        return msg

    def _tool_idx(self, ev: AgentEvent) -> int:
        key = ev.call_id or f"{ev.tool}"
        idx = self._tools.get(key)
        if idx is None:  # a progress or end without a start: open a box for it
            self._n_calls += 1
            key = ev.call_id or f"{ev.tool}-{self._n_calls}"
            self._say(self._tool_body(ev.args, None, None),
                      {"title": f"🛠️ {safe_name(ev.tool)}", "status": "pending", "id": f"tool-{key}"})
            idx = self._tools[key] = len(self.messages) - 1
        return idx

    @staticmethod
    def _tool_body(args: dict[str, Any] | None, progress: str | None, result: str | None,
                   artifacts: dict[str, str] | None = None) -> str:
        parts = []
        a = format_args(args)
        if a:
            parts.append("arguments: " + plain(a, ARG_CHARS))
        if progress:
            parts.append(plain(progress))
        if result:
            parts.append(plain(result))
        if artifacts:
            parts.append("artifacts: " + ", ".join(f"{plain(k)} → {plain(v)}" for k, v in artifacts.items()))
        return "\n\n".join(parts) or "…"

    def _phase(self, idx: int, desc: str, line: str) -> None:
        """A tool that reports progress under more than one description (embed the pool, embed the
        target, solve) gets a nested box per phase (``parent_id`` = the tool box); one phase stays
        on the tool box's log line only."""
        first = self._first_phase.get(idx)
        phases = self._phases.setdefault(idx, {})
        if first is None:
            self._first_phase[idx] = (desc, line)
            return
        if not phases and desc == first[0]:
            self._first_phase[idx] = (desc, line)
            return
        parent = self.messages[idx]["metadata"]["id"]
        if not phases:  # a second phase began: give the first one its own (finished) box too
            phases[first[0]] = self._child(parent, first[0], first[1], len(phases))
        if desc not in phases:
            for child in phases.values():
                self.messages[child]["metadata"]["status"] = "done"
            phases[desc] = self._child(parent, desc, line, len(phases))
        child = self.messages[phases[desc]]
        child["metadata"]["log"] = one_line(line)
        child["content"] = plain(line)

    def _child(self, parent: str, desc: str, line: str, n: int) -> int:
        self._say(plain(line), {"title": f"⏳ {plain(desc, 80)}", "status": "pending", "id": f"{parent}-{n}",
                                "parent_id": parent, "log": one_line(line)})
        return len(self.messages) - 1

    def _note_artifacts(self, arts: dict[str, str] | None, tool: str | None = None) -> None:
        for name, art_id in (arts or {}).items():
            if not art_id:
                continue
            label = f"{safe_name(tool)}.{safe_name(name)}: {art_id}" if tool else f"{safe_name(name)}: {art_id}"
            if art_id not in self.artifacts.values():
                self.artifacts[label] = str(art_id)

    # -- events -------------------------------------------------------------------------------------

    def apply(self, ev: AgentEvent) -> None:
        k = ev.kind
        if ev.proposal and k != "proposal":  # e.g. the review's outcome message carries the updated record
            rec = ev.proposal
            if rec.get("id"):
                self.proposals[str(rec["id"])] = rec
        if k == "plan":
            self.planner = ev.planner or self.planner
            who = f" (planner: {plain(ev.planner)})" if ev.planner else ""
            self._say(f"**Plan**{who}\n\n{plain(ev.text)}")
        elif k == "question":
            self.choices = [str(c) for c in ev.choices]
            who = f" (planner: {plain(ev.planner)})" if ev.planner else ""
            pick = f"\n\nChoose below or answer in words: {plain(', '.join(self.choices))}" if self.choices else ""
            self._say(f"**Question**{who}\n\n{plain(ev.text)}{pick}")
        elif k == "tool_start":
            self._n_calls += 1
            key = ev.call_id or f"{ev.tool}-{self._n_calls}"
            self._say(self._tool_body(ev.args, None, None),
                      {"title": f"🛠️ {safe_name(ev.tool)}", "status": "pending", "id": f"tool-{key}"})
            self._tools[key] = len(self.messages) - 1
            self._args[len(self.messages) - 1] = ev.args
            if not ev.call_id:
                self._tools[str(ev.tool)] = len(self.messages) - 1
        elif k == "tool_progress":
            idx = self._tool_idx(ev)
            msg = self.messages[idx]
            line = progress_line(ev.progress) if ev.progress is not None else one_line(ev.text)
            msg["metadata"]["log"] = one_line(line)
            msg["content"] = self._tool_body(ev.args or self._args.get(idx), line, None)
            desc = (ev.progress.desc if ev.progress is not None else "") or ""
            self._phase(idx, desc, line)
        elif k == "tool_end":
            idx = self._tool_idx(ev)
            msg = self.messages[idx]
            md = msg["metadata"]
            failed = ev.status == "error"
            summary = ev.summary or ev.text or ("failed" if failed else "done")
            md["status"] = "done"
            if ev.duration_s is not None:
                md["duration"] = round(float(ev.duration_s), 2)
            md["log"] = one_line(summary)
            for child in self._phases.get(idx, {}).values():
                self.messages[child]["metadata"]["status"] = "done"
            if failed:
                md["title"] = f"❌ {safe_name(ev.tool)} failed"
            msg["content"] = self._tool_body(ev.args or self._args.get(idx), None,
                                             ("error: " if failed else "") + summary, ev.artifacts)
            self._note_artifacts(ev.artifacts, ev.tool)
        elif k == "proposal":
            rec = ev.proposal or {}
            pid = str(rec.get("id") or ev.call_id or f"proposal-{len(self.proposals) + 1}")
            self.proposals[pid] = rec
            weights = proposal_weights(rec)
            status = rec.get("status") or "pending"
            lines = [f"**Proposal {plain(pid)}** ({plain(rec.get('kind') or 'selection')}, {plain(status)})"]
            if ev.text:
                lines.append(plain(ev.text))
            if weights:
                lines.append("weights: " + plain(", ".join(f"{d} {w:.3f}" for d, w in weights.items())))
            path = export_path(rec)
            if path:
                lines.append(f"exported to: {code(path)}")
            elif status == "pending":
                lines.append("Open the **Review** tab to approve, edit or reject it.")
            self._say("\n\n".join(lines))
            self._note_artifacts({f"evidence{i}": a for i, a in enumerate(evidence_artifact_ids(rec))}, "proposal")
        elif k == "message" and (getattr(ev, "role", None) == "user" or ev.tool == "user"):  # a replayed user turn
            last_user = next((m for m in reversed(self.messages) if m["role"] == "user"), None)
            if not (last_user and last_user["content"] == plain(ev.text) and self.messages[-1] is last_user):
                self.add_user(ev.text)
        elif k == "message":
            self._say(plain(ev.text))
        elif k == "error":
            self.banner = ev.text or "the agent reported an error"
            self._say(f"⚠️ {plain(self.banner)}")
        elif k == "done":  # a box still spinning at the end did not report back
            for m in self.messages:
                md = m.get("metadata") or {}
                if md.get("status") == "pending":
                    md["status"] = "done"
                    md["log"] = md.get("log") or "no result reported"

    def extend(self, events: Iterable[AgentEvent]) -> ChatView:
        for ev in events:
            self.apply(ev)
        return self


def history_view(events: Iterable[AgentEvent]) -> ChatView:
    """A thread re-rendered from its stored events (an old error's banner is not shown again)."""
    view = ChatView().extend(events)
    view.banner = None
    return view
