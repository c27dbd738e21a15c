"""Proposals: a selection or mixture waiting for a person, stored as JSON in the workspace.

A record is created (upserted, idempotently by id) when a plan finishes with a selection or a
mixture; the review node interrupts on it; approval exports the selected documents (JSONL or
Parquet) and a manifest with the plan, the tools and their parameters, seeds and metrics, so the
export can be reproduced. Exporting is idempotent by proposal id: a second approval (e.g. the review
node re-running after a resume) finds the finished export and returns it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from policies.enforce import proposal_problems, weight_problems
from policies.schema import Policy
from tools.contract import ToolContext
from tools.errors import BadInput, PolicyDenied, StateConflict

Status = Literal["pending", "approved", "rejected", "exported"]
STATUSES = ("pending", "approved", "rejected", "exported")


class Evidence(BaseModel):
    """One step's evidence in a proposal: what the tool said and measured, and what it wrote."""

    model_config = ConfigDict(extra="allow")

    tool: str
    summary: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, Any] = Field(default_factory=dict)


class PlanCall(BaseModel):
    """A step that ran, as the export manifest records it (``curate tool <tool> --args <args>`` reruns it)."""

    model_config = ConfigDict(extra="allow")

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class ProposalBase(BaseModel):
    """Fields every proposal record has (records are stored as JSON; unknown keys are kept)."""

    model_config = ConfigDict(extra="allow")

    id: str
    thread_id: str = ""
    request: str = ""
    planner: str = ""
    weights: dict[str, float] = Field(default_factory=dict, description="domain -> share of the whole proposal")
    evidence: list[Evidence] = Field(default_factory=list)
    plots: list[str] = Field(default_factory=list)
    plan: list[PlanCall] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    policy: str = ""
    problems: list[str] = Field(default_factory=list)
    status: Status = "pending"
    note: str = ""
    export: dict[str, Any] | None = None
    created_at: str = ""


class SelectionProposal(ProposalBase):
    kind: Literal["selection"] = "selection"
    selection: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    n_docs: int = 0


class StagePlan(BaseModel):
    stage: int
    weights: dict[str, float]
    tokens: dict[str, int]


class MixtureProposal(ProposalBase):
    kind: Literal["mixture"] = "mixture"
    mixture: str | None = None
    method: str = ""
    stages: list[StagePlan] = Field(default_factory=list)
    pool_share: dict[str, float] = Field(default_factory=dict)
    pool_tokens: dict[str, int] = Field(default_factory=dict)
    token_budget: int = 0
    max_epochs: float | None = None
    bytes_per_token: float = 4.0
    corpus: Any = None
    seed: int = 0
    corrections: list[str] = Field(default_factory=list)
    n_docs: int = 0


def parse_proposal(rec: dict[str, Any]) -> SelectionProposal | MixtureProposal:
    """The typed view of a stored record (the UI and the CLI read fields from this, not raw keys)."""
    return (MixtureProposal if rec.get("kind") == "mixture" else SelectionProposal).model_validate(rec)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def proposal_id(thread_id: str, artifact_id: str) -> str:
    return "prop-" + hashlib.sha256(f"{thread_id}\x1f{artifact_id}".encode()).hexdigest()[:10]


class ProposalStore:
    """``<workspace>/proposals/<id>.json``, written atomically."""

    def __init__(self, workspace: str | os.PathLike):
        self.dir = Path(workspace) / "proposals"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, pid: str) -> Path:
        if not pid.replace("-", "").isalnum():
            raise BadInput(f"not a proposal id: {pid!r}")
        return self.dir / f"{pid}.json"

    def get(self, pid: str) -> dict[str, Any]:
        p = self.path(pid)
        if not p.exists():
            known = ", ".join(r["id"] for r in self.list(None)[:5])
            raise BadInput(f"no proposal {pid!r}", hint=f"known: {known}" if known else "no proposals yet")
        return json.loads(p.read_text(encoding="utf-8"))

    def exists(self, pid: str) -> bool:
        return self.path(pid).exists()

    def save(self, rec: dict[str, Any]) -> dict[str, Any]:
        rec = {**rec, "updated_at": _now()}
        p = self.path(rec["id"])
        tmp = p.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(rec, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, p)
        return rec

    def upsert(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Create, or return the stored record unchanged if it exists (its review state wins)."""
        if self.exists(rec["id"]):
            return self.get(rec["id"])
        return self.save(rec)

    def list(self, status: str | None = "pending") -> list[dict[str, Any]]:
        out = []
        for p in self.dir.glob("prop-*.json"):
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if status is None or rec.get("status") == status:
                out.append(rec)
        return sorted(out, key=lambda r: r.get("created_at", ""), reverse=True)


# --------------------------------------------------------------------------------- building


def selection_counts(tctx: ToolContext, selection_id: str) -> dict[str, int]:
    table = tctx.workspace.get(selection_id).table()
    if "domain" in table.column_names:
        doms = ["(none)" if d is None else d for d in table.column("domain").to_pylist()]
    else:
        doms = ["(none)"] * table.num_rows
    return dict(Counter(doms).most_common())


def build_proposal(
    *,
    thread_id: str,
    plan: dict[str, Any],
    tctx: ToolContext,
    policy: Policy,
) -> dict[str, Any] | None:
    """A proposal record from a finished plan, or None when no step produced a selection/mixture."""
    steps = [s for s in plan.get("steps", []) if s.get("status") == "done"]
    last = None
    for s in steps:
        arts = s.get("artifacts") or {}
        if "selection" in arts or "mixture" in arts or s.get("result", {}).get("weights"):
            last = s
    if last is None:
        return None
    arts = last.get("artifacts") or {}
    result = last.get("result") or {}
    if "selection" in arts:
        kind = "selection"
        art_id = arts["selection"]
        counts = selection_counts(tctx, art_id)
        total = sum(counts.values()) or 1
        weights = {d: n / total for d, n in counts.items()}
    else:
        kind = "mixture"
        art_id = arts.get("mixture") or f"{last['tool']}-{last.get('call_id', '')}"
        weights = {d: float(w) for d, w in (result.get("weights") or {}).items()}
        counts = {}
        mix = mixture_fields(tctx, arts.get("mixture"))
    evidence = []
    plots: list[str] = []
    for s in steps:
        r = s.get("result") or {}
        metrics = {k: v for k, v in r.items() if k not in ("summary", "artifacts", "tool", "cached")}
        evidence.append({"tool": s["tool"], "summary": s.get("summary", ""), "metrics": metrics,
                         "artifacts": s.get("artifacts") or {}})
        plots += [v for k, v in (s.get("artifacts") or {}).items() if k == "plot" or v.startswith("plot-")]
    if kind == "selection" and result.get("task_share"):  # bids: per-task shares against LESS task-max
        evidence.append({"tool": last["tool"], "summary": "share of the selection per validation task",
                         "metrics": {"task_share": result["task_share"],
                                     "task_max_share": result.get("baseline_share", {}),
                                     "task_mean_influence": result.get("task_mean_influence", {})},
                         "artifacts": {k: v for k, v in arts.items() if k == "plot"}})
    plan_calls = [{"tool": s["tool"], "args": s.get("args", {})} for s in plan.get("steps", []) if s.get("status") == "done"]
    sources = sorted({str(c["args"].get("corpus")) for c in plan_calls if c["args"].get("corpus")})
    rec = {
        "id": proposal_id(thread_id, art_id),
        "thread_id": thread_id,
        "kind": kind,
        "selection": art_id if kind == "selection" else None,
        "mixture": art_id if kind == "mixture" else None,
        "request": plan.get("request", ""),
        "planner": plan.get("planner", ""),
        "counts": counts,
        "n_docs": sum(counts.values()),
        "weights": weights,
        "evidence": evidence,
        "plots": plots,
        "plan": plan_calls,
        "sources": sources,
        "policy": policy.name,
        "problems": proposal_problems(weights=weights, plan_tools=[c["tool"] for c in plan_calls],
                                      sources=sources, policy=policy),
        "status": "pending",
        "note": "",
        "export": None,
        "created_at": _now(),
    }
    if kind == "mixture":
        rec.update(mix)
        known = set(rec.get("pool_share") or weights)
        stray = sorted(d for d in policy.domains if d != "*" and d not in known)
        if stray:  # visible, not blocking: the policy may serve other corpora too
            rec["notes"] = [f"policy {policy.name} has caps/floors for {stray}, which are not domains of this mixture"]
        for st in mix.get("stages", []):
            rec["problems"] += [f"stage {st['stage']}: {p}" for p in weight_problems(st["weights"], policy)
                                if p not in rec["problems"]]
    return rec


def mixture_fields(tctx: ToolContext, art_id: str | None) -> dict[str, Any]:
    """The per-stage plan, pool shares and provenance of a mixture artifact (empty if there is none)."""
    if not art_id or not tctx.workspace.exists(art_id):
        return {}
    art = tctx.workspace.get(art_id)
    doc = art.json()
    return {
        "method": doc.get("method", ""),
        "stages": [{"stage": st["stage"], "weights": st["weights"], "tokens": st["tokens"]} for st in doc.get("stages", [])],
        "pool_share": doc.get("pool", {}).get("share", {}),
        "pool_tokens": doc.get("pool", {}).get("tokens", {}),
        "token_budget": doc.get("token_budget", 0),
        "max_epochs": doc.get("max_epochs"),
        "bytes_per_token": doc.get("bytes_per_token", 4.0),
        "corpus": (art.manifest.get("request") or {}).get("corpus"),
        "seed": doc.get("seed", 0),
        "corrections": list(doc.get("corrections", [])),
        # documents the export will write: each stage's tokens over the domain's mean document size
        "n_docs": int(round(sum(
            n / max(doc["pool"]["tokens"].get(d, 0) / max(doc["pool"]["docs"].get(d, 1), 1), 1e-9)
            for st in doc.get("stages", []) for d, n in st["tokens"].items() if n > 0))) if doc.get("pool") else 0,
    }


# --------------------------------------------------------------------------------- deciding


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_fresh(rec: dict[str, Any], tctx: ToolContext) -> None:
    """Refuse (StateConflict) when the corpus behind a selection proposal changed since it was made:
    approving must export exactly what the reviewer saw."""
    if not rec.get("selection") or not tctx.workspace.exists(rec["selection"]):
        return
    from tools.corpus import CorpusSpec, fingerprint
    from tools.selection import recorded_fingerprint

    art = tctx.workspace.get(rec["selection"])
    if not art.manifest.get("corpus"):
        return
    corpus = CorpusSpec.model_validate(art.manifest["corpus"])
    recorded = recorded_fingerprint(art.manifest, corpus)
    current = fingerprint(corpus)
    if recorded is not None and recorded != current:
        raise StateConflict(
            f"the corpus {corpus.path} changed since proposal {rec['id']} was made (fingerprint {recorded} -> "
            f"{current}); approving would export documents the reviewer never saw",
            hint="re-run the request to get a fresh proposal",
        )


def export_proposal(
    rec: dict[str, Any], tctx: ToolContext, policy: Policy, *, fmt: str = "jsonl", out_dir: Path | None = None
) -> dict[str, Any]:
    """Export the proposal's documents + manifest; idempotent (a finished export is returned as is)."""
    out = Path(out_dir) if out_dir else tctx.workspace.root / "exports" / rec["id"]
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        return json.loads(manifest_path.read_text(encoding="utf-8"))
    check_fresh(rec, tctx)
    problems = proposal_problems(
        weights=rec.get("weights") or {}, plan_tools=[c["tool"] for c in rec.get("plan", [])],
        sources=rec.get("sources", []), policy=policy, fmt=fmt,
    )
    if problems:
        raise PolicyDenied("; ".join(problems), where=f"policy {policy.name}")
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {}
    data_path = None
    if rec.get("selection"):
        from tools.selection import export_selection

        data_path = out / f"data.{fmt}"
        # the proposal's own folder: a data file without a manifest is a crashed earlier try, replaced;
        # the corpus fingerprint check makes the export what the reviewer saw, or refuses
        info = export_selection(tctx, rec["selection"], data_path, fmt=fmt, force=True)  # type: ignore[arg-type]
        if info["missing"]:
            data_path.unlink(missing_ok=True)
            raise StateConflict(f"proposal {rec['id']}: {info['missing']} of the {info['selected']} selected ids "
                                "are no longer in the corpus; nothing was exported", hint="re-run the request")
    elif rec.get("kind") == "mixture" and rec.get("stages"):
        from agent.mixture_export import export_mixture

        data_path = out / "mixture.json"
        info = export_mixture(parse_proposal(rec), tctx, out, fmt=fmt)  # type: ignore[arg-type]
    elif rec.get("weights"):
        data_path = out / "mixture.json"
        data_path.write_text(json.dumps(rec["weights"], indent=2), encoding="utf-8")
        info = {"exported": 0, "path": str(data_path), "format": "json"}
    tools = []
    for ev in rec.get("evidence", []):
        for art_id in (ev.get("artifacts") or {}).values():
            if tctx.workspace.exists(art_id):
                m = tctx.workspace.get(art_id).manifest
                tools.append({"artifact": art_id, "tool": m.get("tool"), "version": m.get("version"),
                              "request": m.get("request"), "seed": m.get("seed"), "inputs": m.get("inputs"),
                              "metrics": m.get("metrics")})
    manifest = {
        "proposal": rec["id"],
        "thread_id": rec.get("thread_id"),
        "kind": rec.get("kind"),
        "request": rec.get("request"),
        "planner": rec.get("planner"),
        "policy": policy.name,
        "selection": rec.get("selection"),
        "counts": rec.get("counts"),
        "weights": rec.get("weights"),
        "plan": rec.get("plan"),
        "tools": tools,
        "seeds": sorted({t["seed"] for t in tools if t.get("seed") is not None}),
        "metrics": {ev["tool"]: ev.get("metrics") for ev in rec.get("evidence", [])},
        "data": str(data_path) if data_path else None,
        "rows": info.get("exported", 0),
        "missing": info.get("missing", 0),
        "duplicate_ids_skipped": info.get("duplicate_ids_skipped", 0),
        "corpus_fingerprint": info.get("corpus_fingerprint"),
        "format": info.get("format"),
        "sha256": _sha256(data_path) if data_path and data_path.exists() else None,
        "stages": info.get("stages"),
        "reproduce": [f"curate tool {c['tool']} --args '{json.dumps(c['args'])}'" for c in rec.get("plan", [])],
        "note": rec.get("note", ""),
        "exported_at": _now(),
    }
    tmp = manifest_path.with_name(f"manifest.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, manifest_path)
    return manifest


def edit_selection(rec: dict[str, Any], weights: dict[str, float], tctx: ToolContext) -> tuple[str, dict[str, int]]:
    """A new selection with per-domain counts set by ``weights`` (best-scored documents kept)."""
    import numpy as np

    from tools.corpus import CorpusSpec
    from tools.selection import write_selection

    art = tctx.workspace.get(rec["selection"])
    table = art.table()
    n = table.num_rows
    doms = ["(none)" if d is None else d for d in table.column("domain").to_pylist()] if "domain" in table.column_names else ["(none)"] * n
    score = np.asarray(table.column("score").to_pylist(), dtype=float) if "score" in table.column_names else np.zeros(n)
    avail = Counter(doms)
    total = sum(weights.values()) or 1.0
    want = {d: min(avail.get(d, 0), int(round(n * w / total))) for d, w in weights.items()}
    keep: list[int] = []
    for d, q in want.items():
        idx = [i for i, x in enumerate(doms) if x == d]
        idx.sort(key=lambda i: -score[i])
        keep += idx[:q]
    keep.sort()
    import pyarrow as pa

    sub = table.take(pa.array(keep, type=pa.int64()))
    corpus = CorpusSpec.model_validate(art.manifest["corpus"])
    counts = {d: q for d, q in want.items() if q}
    from tools.selection import recorded_fingerprint

    new_id = write_selection(
        tctx, sub, corpus, metrics={"edited_from": rec["selection"], "weights": weights, "domain_counts": counts},
        name=f"edit-{rec['id']}", corpus_fingerprint=recorded_fingerprint(art.manifest, corpus),
    )
    return new_id, counts


def decide(
    store: ProposalStore,
    pid: str,
    decision: Literal["approve", "reject", "edit"],
    *,
    tctx: ToolContext,
    policy: Policy,
    weights: dict[str, float] | list[dict[str, float]] | None = None,
    note: str = "",
    fmt: str = "jsonl",
) -> dict[str, Any]:
    """Apply a reviewer's decision; returns the updated record (``outcome`` says what happened).

    For a mixture, ``weights`` is one ``domain -> weight`` map for every stage or a list with one
    per stage; a stage that does not sum to one is renormalised and the record says so
    (``edit_notes``); caps and floors of the policy and the epoch allowance are checked, an edit
    that breaks them is refused.
    """
    rec = store.get(pid)
    if decision == "approve":
        if rec["status"] in ("exported", "approved") and rec.get("export"):
            return {**rec, "outcome": "exported"}
        if rec["status"] == "rejected":
            raise StateConflict(f"proposal {pid} was rejected; it cannot be approved")
        try:
            manifest = export_proposal(rec, tctx, policy, fmt=fmt)
        except PolicyDenied as e:
            rec = store.save({**rec, "problems": [e.message], "note": note or rec.get("note", "")})
            return {**rec, "outcome": "blocked", "reason": e.render()}
        if rec.get("kind") == "mixture":
            rec = {**rec, "n_docs": manifest["rows"]}
        rec = store.save({**rec, "status": "exported", "note": note or rec.get("note", ""), "problems": [],
                          "export": {"path": manifest["data"], "manifest": str(tctx.workspace.root / "exports" / pid / "manifest.json"),
                                     "rows": manifest["rows"], "format": manifest["format"]},
                          "approved_at": _now()})
        return {**rec, "outcome": "exported"}
    if decision == "reject":
        if rec["status"] == "exported":
            raise StateConflict(f"proposal {pid} is already exported")
        rec = store.save({**rec, "status": "rejected", "note": note})
        return {**rec, "outcome": "rejected"}
    if decision == "edit" and rec.get("kind") == "mixture" and rec.get("stages"):
        if not weights:
            raise BadInput("an edit needs per-domain weights", where="weights")
        from agent.mixture_export import edit_stages

        stages, notes = edit_stages(parse_proposal(rec), weights, policy)
        total: dict[str, int] = {}
        for st in stages:
            for d, n in st["tokens"].items():
                total[d] = total.get(d, 0) + n
        tsum = sum(total.values()) or 1
        rec = store.save({**rec, "stages": stages, "weights": {d: n / tsum for d, n in total.items()}, "edited": True,
                          "edit_notes": notes, "note": note, "status": "pending", "problems": []})
        return {**rec, "outcome": "edited"}
    if decision == "edit":
        if not weights:
            raise BadInput("an edit needs per-domain weights", where="weights")
        problems = weight_problems(weights, policy)
        if problems:
            raise BadInput("; ".join(problems), where="weights")
        if rec["status"] in ("exported", "rejected"):
            raise StateConflict(f"proposal {pid} is already {rec['status']}; it cannot be edited")
        if rec.get("kind") == "selection" and rec.get("selection"):
            new_id, counts = edit_selection(rec, weights, tctx)
            total = sum(counts.values()) or 1
            rec = store.save({**rec, "selection": new_id, "counts": counts, "n_docs": sum(counts.values()),
                              "weights": {d: c / total for d, c in counts.items()}, "edited": True,
                              "note": note, "status": "pending"})
        else:
            rec = store.save({**rec, "weights": dict(weights), "edited": True, "note": note, "status": "pending"})
        return {**rec, "outcome": "edited"}
    raise BadInput(f"must be approve, reject or edit; got {decision!r}", where="decision")
