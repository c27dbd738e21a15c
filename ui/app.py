"""The Gradio app: a chat that streams the agent, the thread's artifacts, and proposal review.

``build_app(service)`` returns the Blocks; ``launch(...)`` binds 127.0.0.1 by default, with optional
auth (``--auth user:pass`` or ``CURATE_AUTH``) and no share link unless asked. The UI talks to the
agent only through :class:`agent.service.AgentService` (stream, review, threads, history,
proposals, validate_edit, settings) and reads artifacts from the workspace for tables and plots.

Per-browser-session state (the thread id and its rendered chat) lives in ``gr.State``, so two
sessions never see each other's threads. The service itself is process-wide: a change in the
Settings tab replaces it for every session, which suits a tool run by one person on localhost.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import copy
import queue
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from ui import plots
from ui.render import (
    ChatView,
    code,
    evidence_artifact_ids,
    export_path,
    history_view,
    plain,
    proposal_counts,
    proposal_weights,
)

MAX_UPLOAD_MB = float(os.environ.get("CURATE_UPLOAD_MAX_MB", "20"))
CHAT_HANDLERS = 64
MAX_CHOICES = 3
"""Buttons for the options of a planner's clarifying question."""
"""Chat requests the queue hands to the service at once; the service runs CURATE_CHAT_WORKERS of them."""
UPLOAD_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
CORPUS_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".jsonl.gz", ".txt")
MAX_CORPUS_CHOICES = 300
PLANNERS = ("auto", "offline", "llm", "json")
ENGINES = ("local", "ray")
"""Where tools that support it run (``CurateContext.engine``): this machine's process pool, or Ray."""
PREVIEW_ROWS = 200
CELL_CHARS = 300

CSS = """
#banner { background: #fdecea; border: 1px solid #f5c2c0; border-radius: 6px; padding: 4px 12px; }
#review-result { min-height: 1.5em; }
"""

_SENTINEL = object()


# ------------------------------------------------------------------------------------------ service


class ServiceHolder:
    """The process-wide service, replaceable from the Settings tab."""

    def __init__(self, service: Any, factory: Callable[..., Any] | None = None):
        self.service = service
        self.factory = factory
        self.lock = threading.Lock()

    def get(self) -> Any:
        return self.service

    def recreate(self, **kwargs: Any) -> Any:
        if self.factory is None:
            raise RuntimeError("this app was started with a fixed service; settings cannot be changed here")
        new = self.factory(**kwargs)
        with self.lock:
            old, self.service = self.service, new
        close = getattr(old, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - the old service is being dropped anyway
                pass
        return new


def _default_factory(**kwargs: Any) -> Any:
    from agent.cli_common import make_service

    return make_service(**kwargs)


def pump(make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Run a service generator to completion on one dedicated thread and relay its items.

    Gradio advances a sync generator from whichever worker thread is free; the agent's generator
    (LangGraph, SQLite) must stay on one thread, and it must finish (and checkpoint) even if the
    browser goes away. Exceptions are re-raised in the caller.
    """
    q: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            for item in make():
                q.put(("item", item))
        except BaseException as e:  # noqa: BLE001 - relayed to the caller
            q.put(("error", e))
        finally:
            q.put(("end", None))

    threading.Thread(target=run, name="agent-stream", daemon=True).start()
    while True:
        kind, value = q.get()
        if kind == "item":
            yield value
        elif kind == "error":
            raise value
        else:
            return


# ------------------------------------------------------------------------------------ small helpers


def new_session() -> dict[str, Any]:
    return {"thread_id": None, "view": ChatView()}


def _msgs(view: ChatView) -> list[dict[str, Any]]:
    """A snapshot of the chat for one yield (the view keeps changing while the agent streams)."""
    return copy.deepcopy(view.messages)


def new_thread_id() -> str:
    return "t-" + uuid.uuid4().hex[:12]


def banner_update(text: str | None) -> Any:
    if not text:
        return gr.update(value="", visible=False)
    return gr.update(value=f"⚠️ **Error:** {plain(text)}", visible=True)


def _settings(svc: Any) -> dict[str, Any]:
    try:
        st = dict(svc.settings() or {})
    except Exception:  # noqa: BLE001
        return {}
    engine = getattr(getattr(svc, "ctx", None), "engine", None)
    if engine is not None:
        st.setdefault("engine", engine)
    return st


def workspace_root(svc: Any) -> Path:
    """Where uploads go: the service's workspace directory."""
    ws = getattr(svc, "workspace", None)
    if isinstance(ws, str | os.PathLike):
        return Path(ws)
    if ws is not None and isinstance(getattr(ws, "root", None), str | os.PathLike):
        return Path(ws.root)
    root = _settings(svc).get("workspace")
    if root:
        return Path(root)
    from tools.artifacts import Workspace

    return Workspace().root


def _workspace(svc: Any) -> Any:
    """The artifact store the tools write to (the policy may put it elsewhere than the service's)."""
    make = getattr(svc, "tool_context", None)
    if callable(make):
        try:
            return make().workspace
        except Exception:  # noqa: BLE001
            pass
    ws = getattr(svc, "workspace", None)
    if ws is not None and hasattr(ws, "get"):
        return ws
    from tools.artifacts import Workspace

    return Workspace(workspace_root(svc))


def data_roots(svc: Any) -> list[Path]:
    roots = _settings(svc).get("data_roots") or []
    if isinstance(roots, str | Path):
        roots = [roots]
    return [Path(r) for r in roots]


SKIP_DIRS = {"node_modules", "__pycache__", "site-packages", "venv", "artifacts", "tmp"}
MAX_DEPTH = 4


def _data_files(root: Path) -> Iterator[Path]:
    """Data files under ``root``, shallow first; hidden and tool folders are not entered."""
    base = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
                             and len(here.parts) - base < MAX_DEPTH)
        for f in sorted(filenames):
            if f.lower().endswith(CORPUS_SUFFIXES) and not f.startswith("."):
                yield here / f


def _inside(path: Path, roots: list[Path]) -> bool:
    p = path.resolve()
    return any(p == r or r in p.parents for r in (x.expanduser().resolve() for x in roots))


def corpus_choices(svc: Any) -> list[tuple[str, str]]:
    """Data files under the policy's data roots, plus this workspace's uploads when the policy lets
    the tools read them, as (label, path)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    roots = data_roots(svc)
    uploads = workspace_root(svc) / "uploads"
    sources = [(r.expanduser(), False) for r in roots]
    if uploads.is_dir() and _inside(uploads, roots):
        sources.insert(0, (uploads, True))
    for root, is_uploads in sources:
        if root.is_file():
            cands: Iterator[Path] = iter([root])
        elif root.is_dir():
            cands = _data_files(root)
        else:
            continue
        for p in cands:
            key = str(p.resolve())
            if key in seen:
                continue
            seen.add(key)
            if is_uploads:
                label = f"upload: {p.name}"
            else:
                label = str(p.relative_to(root.parent)) if root.is_dir() else p.name
            out.append((label, str(p)))
            if len(out) >= MAX_CORPUS_CHOICES:
                return out
    return out


def thread_choices(svc: Any) -> list[tuple[str, str]]:
    try:
        threads = svc.threads() or []
    except Exception:  # noqa: BLE001
        return []
    out = []
    for t in threads:
        tid = str(t.get("id"))
        title = " ".join(str(t.get("title") or tid).split())[:60]
        when = str(t.get("updated_at") or "")[:16].replace("T", " ")
        out.append((f"{title} · {when}" if when else title, tid))
    return out


def _proposals(svc: Any, status: str | None = "pending") -> list[dict[str, Any]]:
    try:
        return list(svc.proposals(status))
    except Exception:  # noqa: BLE001
        return []


def find_proposal(svc: Any, pid: str, view: ChatView | None = None) -> dict[str, Any] | None:
    """A proposal record from the service's store, else one this session's chat announced (a call
    that needs approval is an interrupt, not a stored proposal)."""
    getter = getattr(svc, "proposal", None)
    if callable(getter):
        try:
            rec = getter(pid)
            if rec:
                return dict(rec)
        except Exception:  # noqa: BLE001 - fall back to listing
            pass
    for status in ("pending", None):
        for rec in _proposals(svc, status):
            if str(rec.get("id")) == str(pid):
                return rec
    if view is not None and str(pid) in view.proposals:
        return view.proposals[str(pid)]
    return None


def proposal_choices(svc: Any, view: ChatView | None = None) -> list[tuple[str, str]]:
    out = []
    recs = _proposals(svc, "pending")
    stored = {str(r.get("id")) for r in recs}
    if view is not None:
        recs += [r for pid, r in view.proposals.items()
                 if pid not in stored and (r.get("status") or "pending") == "pending" and r.get("kind") == "approval"]
    for rec in recs:
        pid = str(rec.get("id"))
        counts = proposal_counts(rec)
        n = f", {sum(counts.values()):,} docs" if counts else ""
        out.append((f"{pid} ({rec.get('kind') or 'proposal'}{n})", pid))
    return out


def latest_pending(view: ChatView, choices: list[tuple[str, str]]) -> str | None:
    """This thread's newest pending proposal, to have the Review tab ready on it."""
    ids = {v for _, v in choices}
    for pid in reversed(list(view.proposals)):
        if pid in ids:
            return pid
    return None


def proposal_stages(rec: dict[str, Any] | None) -> list[Any] | None:
    """The per-stage plans of a mixture proposal (typed), or None for other proposals."""
    if not rec or rec.get("kind") != "mixture" or not rec.get("stages"):
        return None
    from agent.proposals import parse_proposal

    return list(parse_proposal(rec).stages)


def weights_frame(rec: dict[str, Any] | None) -> Any:
    import pandas as pd

    stages = proposal_stages(rec)
    if stages:  # a mixture: one editable column per stage, the pool's shares beside them
        pool = (rec or {}).get("pool_share") or {}
        doms = sorted(set(pool) | {d for st in stages for d in st.weights})
        cols = [f"stage {st.stage}" for st in stages]
        rows = [{"domain": d, **{c: round(st.weights.get(d, 0.0), 6) for c, st in zip(cols, stages, strict=True)},
                 "pool share": round(float(pool.get(d, 0.0)), 6)} for d in doms]
        return pd.DataFrame(rows, columns=["domain", *cols, "pool share"])
    weights = proposal_weights(rec)
    counts = proposal_counts(rec)
    rows = [{"domain": d, "weight": round(w, 6), "documents": int(counts.get(d, 0))} for d, w in weights.items()]
    return pd.DataFrame(rows, columns=["domain", "weight", "documents"])


def frame_weights(df: Any) -> dict[str, float]:
    """Domain -> weight from the edited table; raises ValueError naming a bad cell."""
    if df is None:
        return {}
    rows = df.to_dict("records") if hasattr(df, "to_dict") else [dict(zip(df["headers"], r, strict=False)) for r in df["data"]]
    out: dict[str, float] = {}
    for r in rows:
        d = str(r.get("domain") or "").strip()
        if not d:
            continue
        try:
            out[d] = float(r.get("weight"))
        except (TypeError, ValueError):
            raise ValueError(f"weight of {d!r} is not a number: {r.get('weight')!r}") from None
    return out


def frame_stage_weights(df: Any) -> list[dict[str, float]] | None:
    """Per-stage domain -> weight from the edited mixture table (None when it has no stage columns)."""
    if df is None:
        return None
    headers = list(df.columns) if hasattr(df, "columns") else list(df["headers"])
    rows = df.to_dict("records") if hasattr(df, "to_dict") else [dict(zip(headers, r, strict=False)) for r in df["data"]]
    cols = [str(c) for c in headers if str(c).startswith("stage ")]
    if not cols:
        return None
    out: list[dict[str, float]] = [{} for _ in cols]
    for r in rows:
        d = str(r.get("domain") or "").strip()
        if not d:
            continue
        for j, c in enumerate(cols):
            try:
                out[j][d] = float(r.get(c))
            except (TypeError, ValueError):
                raise ValueError(f"{c} weight of {d!r} is not a number: {r.get(c)!r}") from None
    return out


def weights_changed(a: dict[str, float], b: dict[str, float], tol: float = 1e-6) -> bool:
    return set(a) != set(b) or any(abs(a[k] - b[k]) > tol for k in a)


def _metrics_md(rec: dict[str, Any]) -> str:
    """A proposal's review text, read from the typed record (agent.proposals.parse_proposal); a call
    approval (an interrupt, not a stored proposal) shows its header only."""
    from agent.proposals import parse_proposal

    lines = [f"**{plain(rec.get('id'))}**: {plain(rec.get('kind') or 'proposal')}, status {plain(rec.get('status') or 'pending')},"
             f" thread {plain(rec.get('thread_id') or '?')}"]
    if rec.get("kind") not in ("selection", "mixture"):
        return lines[0]
    prop = parse_proposal(rec)
    if prop.evidence:
        lines.append("**Evidence**")
        for step in prop.evidence[:12]:
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in list(step.metrics.items())[:12] if not isinstance(v, dict | list))
            head = f"{step.tool}: " if step.tool else ""
            lines.append(f"- {plain(head + step.summary, 400)}"
                         + (f" ({plain(shown, 400)})" if shown else ""))
    if prop.problems:
        lines.append("**Policy problems**\n\n" + "\n".join(f"- {plain(p, 300)}" for p in prop.problems))
    if prop.plan:  # the done steps, as the manifest records them: tool and args
        lines.append("**Plan**: " + plain("; ".join(c.tool for c in prop.plan), 600))
    if prop.note:
        lines.append("**Note**: " + plain(prop.note, 600))
    path = export_path(rec)
    if path:
        lines.append(f"**Exported to**: {code(path)}")
    return "\n\n".join(lines)


def _artifact_choices(view: ChatView) -> list[tuple[str, str]]:
    return [(label, art_id) for label, art_id in view.artifacts.items()]


def newest_result(choices: list[tuple[str, str]]) -> str | None:
    """The artifact to open in the side panel: the newest selection or mixture, else the newest."""
    ids = [v for _, v in choices]
    for art_id in reversed(ids):
        if art_id.startswith(("selection-", "mixture-")):
            return art_id
    return ids[-1] if ids else None


def preview_frame(table: Any) -> Any:
    df = table.slice(0, PREVIEW_ROWS).to_pandas()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: (s if len(s := str(v)) <= CELL_CHARS else s[: CELL_CHARS - 1] + "…"))
    return df


# ----------------------------------------------------------------------------------------- the app


class Handlers:
    """The event handlers, over a :class:`ServiceHolder`; plain methods so tests can drive them."""

    def __init__(self, holder: ServiceHolder):
        self.holder = holder

    def svc(self) -> Any:
        return self.holder.get()

    def send(self, message: str, corpus: str | None, target: str | None, session: dict[str, Any]):  # noqa: ANN202
        text = (message or "").strip()
        session = session or new_session()
        view: ChatView = session["view"]
        if not text:
            yield _msgs(view), gr.skip(), gr.skip(), session, gr.skip(), gr.skip(), gr.skip()
            return
        tid = session.get("thread_id") or new_thread_id()
        session["thread_id"] = tid
        view.banner = None
        view.add_user(text)
        yield _msgs(view), "", banner_update(None), session, gr.skip(), gr.skip(), gr.skip()
        s = self.svc()
        try:
            for ev in pump(lambda: s.stream(tid, text, corpus=corpus or None, target=target or None)):
                view.apply(ev)
                yield _msgs(view), gr.skip(), banner_update(view.banner), session, gr.skip(), gr.skip(), gr.skip()
        except Exception as e:  # noqa: BLE001 - any failure becomes a banner; the thread is kept
            view.banner = f"the agent stopped: {type(e).__name__}: {e}"
            view.messages.append({"role": "assistant", "content": f"⚠️ {plain(view.banner)}"})
        props = proposal_choices(s, view)
        arts = _artifact_choices(view)
        yield (_msgs(view), gr.skip(), banner_update(view.banner), session,
               gr.update(choices=arts, value=newest_result(arts)), gr.update(choices=thread_choices(s), value=tid),
               gr.update(choices=props, value=latest_pending(view, props)))

    def choice_buttons(self, session: dict[str, Any] | None):  # noqa: ANN202
        """One button per option of the planner's open question (hidden when there is none)."""
        view = (session or {}).get("view")
        choices = list(getattr(view, "choices", []) or [])[:MAX_CHOICES]
        return [gr.update(visible=i < len(choices), value=choices[i] if i < len(choices) else "")
                for i in range(MAX_CHOICES)]

    def pick_choice(self, choice: str, corpus: str | None, target: str | None, session: dict[str, Any]):  # noqa: ANN202
        """A choice button answers the question with its tool name (the planner then runs that tool)."""
        yield from self.send(choice, corpus, target, session)

    def new_thread(self, session: dict[str, Any]):  # noqa: ANN202
        session = new_session()
        return [], session, banner_update(None), gr.update(choices=[], value=None), gr.update(value=None)

    def open_thread(self, tid: str | None, session: dict[str, Any]):  # noqa: ANN202
        session = session or new_session()
        if not tid or tid == session.get("thread_id"):
            return _msgs(session["view"]), session, gr.skip(), gr.skip()
        try:
            view = history_view(self.svc().history(tid))
        except Exception as e:  # noqa: BLE001
            return _msgs(session["view"]), session, banner_update(f"could not open thread {tid}: {e}"), gr.skip()
        session = {"thread_id": tid, "view": view}
        return _msgs(view), session, banner_update(None), gr.update(choices=_artifact_choices(view), value=None)

    def refresh_lists(self, session: dict[str, Any]):  # noqa: ANN202
        s = self.svc()
        tid = (session or {}).get("thread_id")
        view = (session or {}).get("view")
        return (gr.update(choices=thread_choices(s), value=tid), gr.update(choices=proposal_choices(s, view)),
                gr.update(choices=corpus_choices(s)), gr.update(choices=corpus_choices(s)))

    def show_artifact(self, art_id: str | None):  # noqa: ANN202
        empty = tuple(gr.update(value=None, visible=False) for _ in range(4))
        if not art_id:
            return ("", *empty)
        try:
            ws = _workspace(self.svc())
            art = ws.get(art_id)
            m = art.manifest
        except Exception as e:  # noqa: BLE001
            return (f"cannot open {plain(art_id)}: {plain(e)}", *empty)
        rows = m.get("rows") or {}
        info = [f"**{plain(art.id)}**: {plain(m.get('kind'))} from {plain(m.get('tool') or '?')}"]
        if rows:
            info.append("rows: " + plain(", ".join(f"{k} {v}" for k, v in rows.items() if not isinstance(v, dict))))
        metrics = m.get("metrics") or {}
        if metrics:
            info.append("metrics: " + plain(", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in list(metrics.items())[:12]
                if not isinstance(v, dict | list)), 800))
        info.append(f"path: {code(art.path)}")
        files = set(m.get("files") or [])
        table = fig = img = None
        if "data.parquet" in files:
            try:
                table = preview_frame(art.table())
            except Exception:  # noqa: BLE001
                table = None
        fig = plots.artifact_figure(art)
        pca = plots.selection_map(art, ws)
        try:
            img = plots.artifact_image(art)
        except Exception:  # noqa: BLE001
            img = None
        return ("\n\n".join(info),
                gr.update(value=table, visible=table is not None),
                gr.update(value=fig, visible=fig is not None),
                gr.update(value=pca, visible=pca is not None),
                gr.update(value=img, visible=img is not None))

    def show_proposal(self, pid: str | None, session: dict[str, Any] | None = None):  # noqa: ANN202
        if not pid:  # cleared (e.g. after a decision): keep the decision's result on screen
            return "", None, gr.update(value=None, visible=False), gr.update(value=None, visible=False), gr.skip()
        s = self.svc()
        rec = find_proposal(s, pid, (session or {}).get("view"))
        if rec is None:
            return f"proposal {plain(pid)} not found", None, gr.update(visible=False), gr.update(visible=False), ""
        ws = _workspace(s)
        fig = None
        if rec.get("selection"):
            try:
                fig = plots.artifact_figure(ws.get(rec["selection"]))  # selection vs pool vs target
            except Exception:  # noqa: BLE001
                fig = None
        stages = proposal_stages(rec)
        if fig is None and stages:
            fig = plots.stage_mix_figure(rec.get("pool_share") or {}, [st.weights for st in stages],
                                         f"{rec.get('method') or 'mixture'}: weights per stage beside the pool")
        if fig is None:
            fig = plots.weights_figure(proposal_weights(rec), "proposed weights")
        images = []
        for art_id in evidence_artifact_ids(rec):
            try:
                im = plots.artifact_image(ws.get(art_id))
            except Exception:  # noqa: BLE001
                im = None
            if im is not None:
                images.append((im, art_id))
        return (_metrics_md(rec), weights_frame(rec), gr.update(value=fig, visible=fig is not None),
                gr.update(value=images or None, visible=bool(images)), "")

    def review(self, decision: str, pid: str | None, df: Any, note: str, session: dict[str, Any]):  # noqa: ANN202
        session = session or new_session()
        view: ChatView = session["view"]

        def result(text: str):  # noqa: ANN202
            return (text, _msgs(view), session, banner_update(view.banner), gr.skip(), gr.skip())

        if not pid:
            yield result("Choose a pending proposal first.")
            return
        s = self.svc()
        rec = find_proposal(s, pid, view)
        if rec is None:
            yield result(f"Proposal {plain(pid)} is no longer available.")
            return
        if proposal_stages(rec):
            yield from self._review_mixture(decision, pid, rec, df, note, session)
            return
        try:
            edited = frame_weights(df)
        except ValueError as e:
            yield result(f"**Edit not accepted**: {plain(e)}")
            return
        original = proposal_weights(rec)
        changed = bool(edited) and weights_changed(edited, original)
        if decision == "edit" and not changed:
            yield result("Nothing to save: the weights are unchanged.")
            return
        if changed and decision in ("approve", "edit"):
            try:
                problems = list(s.validate_edit(pid, edited) or [])
            except Exception as e:  # noqa: BLE001
                problems = [f"could not validate: {e}"]
            if problems:
                yield result("**Edit not accepted** (policy):\n\n" + "\n".join(f"- {plain(p)}" for p in problems))
                return
        tid = str(rec.get("thread_id") or session.get("thread_id") or "")
        if tid and tid != session.get("thread_id"):
            try:
                view = history_view(s.history(tid))
            except Exception:  # noqa: BLE001
                view = ChatView()
            session = {"thread_id": tid, "view": view}
        view.banner = None
        verb = {"approve": "Approving", "reject": "Rejecting", "edit": "Saving the edit of"}[decision]
        yield result(f"{verb} {plain(pid)}…")
        try:
            for ev in pump(lambda: s.review(tid, pid, decision, weights=edited if changed else None, note=note or "")):
                view.apply(ev)
                yield result(f"{verb} {plain(pid)}…")
        except Exception as e:  # noqa: BLE001
            view.banner = f"review failed: {type(e).__name__}: {e}"
            yield (f"**Review failed**: {plain(e)}", _msgs(view), session, banner_update(view.banner),
                   gr.update(choices=proposal_choices(s, view)), gr.skip())
            return
        outcome = {"approve": "approved", "reject": "rejected", "edit": "pending"}[decision]
        if rec.get("kind") == "approval" and str(pid) in view.proposals:  # an interrupt, now answered
            view.proposals[str(pid)] = {**view.proposals[str(pid)], "status": outcome}
        after = find_proposal(s, pid, view) or view.proposals.get(str(pid)) or {}
        path = export_path(after) or export_path(view.proposals.get(str(pid)))
        status = after.get("status") or outcome
        lines = [f"**{plain(pid)}**: {plain(status)}"]
        if path:
            lines.append(f"Exported to: {code(path)}")
            manifest = (after.get("export") or {}).get("manifest") if isinstance(after.get("export"), dict) else None
            if manifest:
                lines.append(f"Manifest: {code(manifest)}")
        if view.banner:
            lines.append(f"⚠️ {plain(view.banner)}")
        yield ("\n\n".join(lines), _msgs(view), session, banner_update(view.banner),
               gr.update(choices=proposal_choices(s, view), value=None if decision != "edit" else pid),
               gr.update(choices=_artifact_choices(view)))

    def _review_mixture(self, decision: str, pid: str, rec: dict[str, Any], df: Any, note: str,
                        session: dict[str, Any]):  # noqa: ANN202
        """Review of a mixture: per-stage edits checked against the policy, renormalised with a note."""
        from agent.mixture_export import edit_stages
        from agent.proposals import parse_proposal
        from tools.errors import BadInput

        view: ChatView = session["view"]

        def result(text: str, done: bool = False):  # noqa: ANN202
            if not done:
                return (text, _msgs(view), session, banner_update(view.banner), gr.skip(), gr.skip())
            return (text, _msgs(view), session, banner_update(view.banner),
                    gr.update(choices=proposal_choices(s, view), value=None if decision != "edit" else pid),
                    gr.update(choices=_artifact_choices(view)))

        s = self.svc()
        try:
            edited = frame_stage_weights(df)
        except ValueError as e:
            yield result(f"**Edit not accepted**: {plain(e)}")
            return
        original = [st.weights for st in (proposal_stages(rec) or [])]
        changed = edited is not None and (len(edited) != len(original) or any(
            weights_changed({d: v for d, v in e.items() if v or d in o}, o) for e, o in zip(edited, original, strict=False)))
        if decision == "edit" and not changed:
            yield result("Nothing to save: the weights are unchanged.")
            return
        notes: list[str] = []
        if changed and decision in ("approve", "edit"):
            try:
                _, notes = edit_stages(parse_proposal(rec), edited, s.policy)  # type: ignore[arg-type]
            except BadInput as e:
                yield result("**Edit not accepted** (policy):\n\n" + "\n".join(
                    f"- {plain(p)}" for p in e.message.split("; ")))
                return
        tid = str(rec.get("thread_id") or session.get("thread_id") or "")
        steps = ([("edit", edited)] if changed and decision != "reject" else []) + (
            [(decision, None)] if decision != "edit" else [])
        for step, weights in steps:
            verb = {"approve": "Approving", "reject": "Rejecting", "edit": "Saving the edit of"}[step]
            yield result(f"{verb} {plain(pid)}…")
            try:
                for ev in pump(lambda st=step, w=weights: s.review(tid, pid, st, weights=w, note=note or "")):
                    view.apply(ev)
            except Exception as e:  # noqa: BLE001
                view.banner = f"review failed: {type(e).__name__}: {e}"
                yield result(f"**Review failed**: {plain(e)}", done=True)
                return
        after = find_proposal(s, pid, view) or {}
        lines = [f"**{plain(pid)}**: {plain(after.get('status') or '?')}"]
        lines += [f"ℹ️ {plain(n)}" for n in notes]
        path = export_path(after)
        if path:
            lines.append(f"Exported to: {code(path)}")
            manifest = (after.get("export") or {}).get("manifest") if isinstance(after.get("export"), dict) else None
            if manifest:
                lines.append(f"Manifest: {code(manifest)}")
        yield result("\n\n".join(lines), done=True)

    def upload(self, file: Any):  # noqa: ANN202
        s = self.svc()
        if not file:
            return "", gr.skip(), gr.skip()
        src = Path(file if isinstance(file, str) else getattr(file, "name", file))
        size = src.stat().st_size
        if size > MAX_UPLOAD_MB * 1024 * 1024:
            return f"**Upload refused**: {size / 1e6:.1f} MB is over the {MAX_UPLOAD_MB:g} MB limit.", gr.skip(), gr.skip()
        name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in src.name).lstrip(".") or "upload"
        if not name.lower().endswith(UPLOAD_SUFFIXES):
            return f"**Upload refused**: {plain(name)} is not one of {', '.join(UPLOAD_SUFFIXES)}.", gr.skip(), gr.skip()
        dest_dir = workspace_root(s) / "uploads"
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / name
        tmp = dest_dir / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        choices = corpus_choices(s)
        stored = f"Stored {plain(name)} ({size:,} bytes) in the workspace: {code(dest)}"
        if str(dest) not in [v for _, v in choices]:
            return (stored + f"\n\n**Not usable yet**: the policy does not let the tools read {code(dest_dir)}; "
                    "add it to the policy's data roots.", gr.skip(), gr.skip())
        return stored, gr.update(choices=choices, value=str(dest)), gr.update(choices=choices)

    def settings_md(self) -> str:
        st = _settings(self.svc())
        if not st:
            return "settings unavailable"
        lines = []
        for k, v in st.items():
            if "key" in k.lower() and v:
                v = "(set)"
            lines.append(f"- **{plain(k)}**: {plain(v, 400)}")
        return "\n".join(lines)

    def apply_settings(self, planner: str, base_url: str, model: str, api_key: str, policy: str,  # noqa: ANN202
                       engine: str = "local"):
        # the new service keeps this one's workspace (threads, artifacts, proposals stay reachable)
        kwargs: dict[str, Any] = {"planner": planner or "auto", "workspace": workspace_root(self.svc()),
                                  "engine": engine if engine in ENGINES else "local"}
        if base_url.strip():
            kwargs["llm_base_url"] = base_url.strip()
        if model.strip():
            kwargs["llm_model"] = model.strip()
        if api_key.strip():
            kwargs["llm_api_key"] = api_key.strip()
        if policy.strip():
            kwargs["policy"] = policy.strip()
        try:
            self.holder.recreate(**kwargs)
        except Exception as e:  # noqa: BLE001
            return self.settings_md(), f"**Settings not applied**: {plain(type(e).__name__)}: {plain(e)}", gr.skip(), gr.skip()
        choices = corpus_choices(self.svc())
        return (self.settings_md(), "Settings applied: new requests use them.", gr.update(choices=choices),
                gr.update(choices=choices))

    def on_load(self, session: dict[str, Any]):  # noqa: ANN202
        s = self.svc()
        st = _settings(s)
        choices = corpus_choices(s)
        return (gr.update(choices=thread_choices(s)), gr.update(choices=proposal_choices(s)),
                gr.update(choices=choices), gr.update(choices=choices), self.settings_md(),
                gr.update(value=p if (p := str(st.get("planner_setting") or st.get("planner") or "auto")) in PLANNERS
                          else "auto"),
                gr.update(value=str(st.get("llm_base_url") or st.get("llm_endpoint") or "")),
                gr.update(value=str(st.get("llm_model") or "")),
                gr.update(value=str(st.get("policy_ref") or st.get("policy") or "")),
                gr.update(value=e if (e := str(st.get("engine") or "local")) in ENGINES else "local"))


def _bind_review(review: Callable[..., Iterator[Any]], decision: str) -> Callable[..., Iterator[Any]]:
    def handler(pid: str | None, df: Any, note: str, session: dict[str, Any]) -> Iterator[Any]:
        yield from review(decision, pid, df, note, session)

    handler.__name__ = f"review_{decision}"
    return handler


def build_app(
    service: Any = None,
    *,
    service_factory: Callable[..., Any] | None = None,
) -> gr.Blocks:
    """The Blocks app over an AgentService (or anything with its methods).

    ``service_factory(**settings)`` builds a replacement service for the Settings tab; by default
    it constructs :class:`agent.service.AgentService`.
    """
    if service is None:
        service = (service_factory or _default_factory)()
    holder = ServiceHolder(service, service_factory or _default_factory)
    h = Handlers(holder)
    choices0 = corpus_choices(service)  # also what the server accepts from API clients

    # ---------------------------------------------------------------------------------- layout

    with gr.Blocks(title="Curation assistant", fill_width=True) as demo:
        session = gr.State(new_session())
        gr.Markdown("## Curation assistant\nAsk for a selection, a quality score or a mixture; "
                    "watch each tool run; review the proposal before anything is exported.")
        banner = gr.Markdown(visible=False, elem_id="banner")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tabs(elem_id="tabs"):
                    with gr.Tab("Chat", id="chat-tab", elem_id="chat-tab"):
                        chatbot = gr.Chatbot(
                            label="Chat", height=560, elem_id="chat", sanitize_html=True, render_markdown=True,
                            allow_tags=False, feedback_options=None, buttons=["copy"], group_consecutive_messages=False,
                            placeholder="Try: *select 100 documents like my target set with dsir*",
                        )
                        with gr.Row():
                            msg = gr.Textbox(label="Message", placeholder="Ask the assistant…", show_label=False, scale=5,
                                             elem_id="msg", max_lines=6)
                            send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send-btn")
                        with gr.Row():
                            choice_btns = [gr.Button("", visible=False, size="sm", elem_id=f"choice-{i}")
                                           for i in range(MAX_CHOICES)]
                        with gr.Row():
                            corpus = gr.Dropdown(label="Pool (from the policy's data roots)", choices=choices0,
                                                 value=None, elem_id="corpus", allow_custom_value=False)
                            target = gr.Dropdown(label="Target set (optional)", choices=choices0, value=None,
                                                 elem_id="target", allow_custom_value=False)
                        with gr.Accordion(f"Upload a small file (≤ {MAX_UPLOAD_MB:g} MB)", open=False):
                            up = gr.File(label="JSONL, JSON, CSV, TSV, Parquet or text", file_types=list(UPLOAD_SUFFIXES),
                                         type="filepath", elem_id="upload")
                            up_status = gr.Markdown()
                    with gr.Tab("Review", id="review-tab", elem_id="review-tab"):
                        with gr.Row():
                            prop_dd = gr.Dropdown(label="Pending proposals", choices=[], value=None,
                                                  elem_id="proposal-dd", scale=4)
                            prop_refresh = gr.Button("Refresh", scale=1, elem_id="proposal-refresh")
                        prop_info = gr.Markdown(elem_id="proposal-info")
                        with gr.Row():
                            weights_df = gr.Dataframe(
                                headers=["domain", "weight", "documents"], datatype=["str", "number", "number"],
                                interactive=True, static_columns=[0],
                                label="Weights (edit the weight or stage columns; documents and pool share are for "
                                "reference; a stage that does not sum to 1 is renormalised, with a note)",
                                elem_id="weights",
                            )
                            weights_plot = gr.Plot(label="Domain mix / proposed weights", visible=False)
                        evidence = gr.Gallery(label="Evidence plots", visible=False, columns=2, height=320)
                        note = gr.Textbox(label="Note for the record", lines=2, elem_id="note")
                        with gr.Row():
                            approve_btn = gr.Button("Approve and export", variant="primary", elem_id="approve-btn")
                            edit_btn = gr.Button("Save edited weights", elem_id="edit-btn")
                            reject_btn = gr.Button("Reject", variant="stop", elem_id="reject-btn")
                        review_out = gr.Markdown(elem_id="review-result")
                    with gr.Tab("Settings", id="settings-tab", elem_id="settings-tab"):
                        settings_view = gr.Markdown(elem_id="settings-view")
                        planner = gr.Radio(list(PLANNERS), value="auto", label="Planner",
                                           info="auto: the LLM when an endpoint is set, else offline")
                        base_url = gr.Textbox(label="LLM endpoint (OpenAI-compatible base URL)",
                                              placeholder="http://127.0.0.1:8000/v1")
                        model = gr.Textbox(label="LLM model name")
                        api_key = gr.Textbox(label="API key (kept in this process only)", type="password")
                        policy = gr.Textbox(label="Policy (bundled name or YAML path)")
                        engine = gr.Radio(list(ENGINES), value="local", label="Engine", elem_id="engine",
                                          info="where tools that support it run: this machine, or Ray "
                                               "(RAY_ADDRESS / the config file's engine.ray_address, else a local Ray)")
                        apply_btn = gr.Button("Apply settings", elem_id="apply-settings")
                        settings_status = gr.Markdown()
            with gr.Column(scale=2):
                with gr.Row():
                    thread_dd = gr.Dropdown(label="Threads", choices=[], value=None, elem_id="thread-dd", scale=4)
                    new_btn = gr.Button("New thread", scale=1, elem_id="new-thread")
                refresh_btn = gr.Button("Refresh lists", size="sm")
                art_dd = gr.Dropdown(label="Artifacts of this thread", choices=[], value=None, elem_id="artifact-dd")
                art_info = gr.Markdown(elem_id="artifact-info")
                art_table = gr.Dataframe(label="Table (first rows)", visible=False, interactive=False, max_height=320,
                                         elem_id="artifact-table")
                art_plot = gr.Plot(label="Plot", visible=False, elem_id="artifact-plot")
                art_map = gr.Plot(label="Map of the documents", visible=False, elem_id="artifact-map")
                art_image = gr.Image(label="Plot artifact", visible=False, type="pil", interactive=False,
                                     elem_id="artifact-image")

        # ----------------------------------------------------------------------------- wiring

        hidden = {"api_visibility": "undocumented"}
        chat_outputs = [chatbot, msg, banner, session, art_dd, thread_dd, prop_dd]
        chat_inputs = [msg, corpus, target, session]
        # the service runs at most CURATE_CHAT_WORKERS requests at once and answers "busy" beyond that, so
        # the queue lets them through at once instead of holding them silently
        msg.submit(h.send, chat_inputs, chat_outputs, api_name="chat", concurrency_limit=CHAT_HANDLERS,
                   concurrency_id="chat").then(h.choice_buttons, [session], choice_btns, **hidden)
        send_btn.click(h.send, chat_inputs, chat_outputs, concurrency_limit=CHAT_HANDLERS, concurrency_id="chat",
                       **hidden).then(h.choice_buttons, [session], choice_btns, **hidden)
        for btn in choice_btns:  # the planner's question: one click answers it with that tool
            btn.click(h.pick_choice, [btn, corpus, target, session], chat_outputs, concurrency_limit=CHAT_HANDLERS,
                      concurrency_id="chat", **hidden).then(h.choice_buttons, [session], choice_btns, **hidden)
        new_btn.click(h.new_thread, [session], [chatbot, session, banner, art_dd, thread_dd], **hidden)
        thread_dd.input(h.open_thread, [thread_dd, session], [chatbot, session, banner, art_dd], **hidden)
        refresh_btn.click(h.refresh_lists, [session], [thread_dd, prop_dd, corpus, target], **hidden)
        art_dd.change(h.show_artifact, [art_dd], [art_info, art_table, art_plot, art_map, art_image], api_name="artifact")
        prop_outputs = [prop_info, weights_df, weights_plot, evidence, review_out]
        prop_dd.change(h.show_proposal, [prop_dd, session], prop_outputs, api_name="proposal")
        prop_refresh.click(lambda sess: gr.update(choices=proposal_choices(h.svc(), (sess or {}).get("view"))),
                           [session], [prop_dd], **hidden)
        review_outputs = [review_out, chatbot, session, banner, prop_dd, art_dd]
        review_inputs = [prop_dd, weights_df, note, session]
        for btn, decision in ((approve_btn, "approve"), (edit_btn, "edit"), (reject_btn, "reject")):
            btn.click(_bind_review(h.review, decision), review_inputs, review_outputs,
                      api_name=f"review_{decision}", concurrency_limit=4)
        up.upload(h.upload, [up], [up_status, corpus, target], **hidden)
        apply_btn.click(h.apply_settings, [planner, base_url, model, api_key, policy, engine],
                        [settings_view, settings_status, corpus, target], **hidden)
        demo.load(h.on_load, [session], [thread_dd, prop_dd, corpus, target, settings_view, planner, base_url, model,
                                       policy, engine], **hidden)
    demo.holder = holder  # type: ignore[attr-defined]
    demo.handlers = h  # type: ignore[attr-defined]
    return demo


# ------------------------------------------------------------------------------------------ launch


def parse_auth(auth: str | tuple[str, str] | None) -> tuple[str, str] | None:
    """'user:pass' (from --auth or CURATE_AUTH) -> (user, pass); None when not set."""
    if auth is None:
        auth = os.environ.get("CURATE_AUTH") or None
    if auth is None or isinstance(auth, tuple):
        return auth
    user, sep, pw = str(auth).partition(":")
    if not sep or not user or not pw:
        raise ValueError("auth must look like user:password")
    return user, pw


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: str | tuple[str, str] | None = None,
    share: bool = False,
    service: Any = None,
    **kwargs: Any,
) -> gr.Blocks:
    """Start the app. Local-only by default; ``share=True`` is the only way to get a public link."""
    demo = build_app(service)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        auth=parse_auth(auth),
        share=bool(share),
        max_file_size=f"{MAX_UPLOAD_MB:g}mb",
        css=CSS,
        footer_links=["api"],
        ssr_mode=False,
        **kwargs,
    )
    return demo
