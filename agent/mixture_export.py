"""Approving a mixture proposal: per-stage documents sampled by the token plan, and a mixture file.

Documents are drawn per domain in one seeded order (a permutation of the domain's documents, then a
fresh permutation for each further epoch), and stages consume that order one after another, so
stage 2 gets unseen documents before any repeats. A stage takes documents of a domain until their
estimated tokens (UTF-8 bytes / ``bytes_per_token``) reach the stage's allowance. ``mixture.json``
holds what a training job reads: per stage the domain weights, the tokens and the data file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from policies.enforce import weight_problems
from policies.schema import Policy
from tools.contract import ToolContext
from tools.errors import BadInput

if TYPE_CHECKING:  # pragma: no cover - proposals imports this module (to export), never the other way round
    from agent.proposals import MixtureProposal


def _pool_index(prop: MixtureProposal, tctx: ToolContext) -> dict[str, list[tuple[str, int]]]:
    from tools.corpus import read_batches

    by_dom: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for b in read_batches(prop.corpus, ("id", "text", "domain"), allowed_roots=tctx.data_roots):
        for i, t, d in zip(b.column("id").to_pylist(), b.column("text").to_pylist(), b.column("domain").to_pylist(),
                           strict=True):
            by_dom[d].append((i, len((t or "").encode("utf-8"))))
    for d in by_dom:
        by_dom[d].sort()  # id order: the draw does not depend on the file's row order
    return by_dom


def plan_documents(prop: MixtureProposal, pool: dict[str, list[tuple[str, int]]]) -> list[dict[str, list[str]]]:
    """Per stage, domain -> ids (a repeat of a document appears again in a later position)."""
    rng = np.random.default_rng(prop.seed)
    streams: dict[str, Any] = {}
    out: list[dict[str, list[str]]] = []

    def stream(d: str):  # noqa: ANN202 - an endless seeded walk over the domain's documents
        docs = pool.get(d, [])
        if not docs:
            return
        while True:
            for j in rng.permutation(len(docs)):
                yield docs[j]

    for st in prop.stages:
        picks: dict[str, list[str]] = {}
        for d in sorted(st.tokens):
            want = st.tokens[d]
            if want <= 0:
                continue
            if d not in streams:
                streams[d] = stream(d)
            got, ids = 0.0, []
            for doc_id, nbytes in streams[d]:
                ids.append(doc_id)
                got += nbytes / prop.bytes_per_token
                if got >= want:
                    break
            picks[d] = ids
        out.append(picks)
    return out


def export_mixture(prop: MixtureProposal, tctx: ToolContext, out: Path, *, fmt: str = "jsonl") -> dict[str, Any]:
    if prop.corpus is None:
        raise BadInput("the mixture proposal does not name its corpus", where=prop.id)
    pool = _pool_index(prop, tctx)
    plan = plan_documents(prop, pool)
    wanted: dict[str, list[tuple[int, int]]] = defaultdict(list)  # id -> [(stage, position)]
    for s, picks in enumerate(plan):
        pos = 0
        for _d, ids in picks.items():
            for i in ids:
                wanted[i].append((s, pos))
                pos += 1
    rows: list[list[dict[str, Any] | None]] = [[None] * sum(len(v) for v in p.values()) for p in plan]
    from tools.corpus import read_batches

    for b in read_batches(prop.corpus, ("id", "text", "domain"), allowed_roots=tctx.data_roots):
        for i, t, d in zip(b.column("id").to_pylist(), b.column("text").to_pylist(), b.column("domain").to_pylist(),
                           strict=True):
            for s, pos in wanted.get(i, ()):
                rows[s][pos] = {"id": i, "domain": d, "text": t, "stage": s + 1}
    stages = []
    total = 0
    for s, (st, r) in enumerate(zip(prop.stages, rows, strict=True)):
        name = f"stage-{s + 1:02d}.{fmt}"
        kept = [x for x in r if x is not None]
        _write(out / name, kept, fmt)
        counts: dict[str, int] = defaultdict(int)
        for x in kept:
            counts[x["domain"]] += 1
        stages.append({"stage": st.stage, "weights": st.weights, "tokens": st.tokens, "documents": dict(counts),
                       "data": name})
        total += len(kept)
    mixture = {"proposal": prop.id, "domains": sorted(prop.pool_share), "stages": stages,
               "token_budget": prop.token_budget, "bytes_per_token": prop.bytes_per_token, "seed": prop.seed}
    (out / "mixture.json").write_text(json.dumps(mixture, indent=2), encoding="utf-8")
    return {"exported": total, "path": str(out / "mixture.json"), "format": fmt, "stages": stages}


def _write(path: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(
            [("id", pa.string()), ("domain", pa.string()), ("text", pa.string()), ("stage", pa.int32())])), tmp)
    else:
        with open(tmp, "w", encoding="utf-8") as fh:
            for x in rows:
                fh.write(json.dumps(x, ensure_ascii=False) + "\n")
    tmp.replace(path)


def edit_stages(prop: MixtureProposal, weights: dict[str, float] | list[dict[str, float]], policy: Policy
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """New per-stage weights and tokens from a reviewer's edit; returns (stages, notes)."""
    per = weights if isinstance(weights, list) else [weights] * len(prop.stages)
    if len(per) != len(prop.stages):
        raise BadInput(f"must give one weight map per stage ({len(prop.stages)}); got {len(per)}", where="weights")
    domains = set(prop.pool_share) or {d for st in prop.stages for d in st.weights}
    notes: list[str] = []
    stages = []
    used: dict[str, float] = defaultdict(float)
    problems: list[str] = []
    for st, w in zip(prop.stages, per, strict=True):
        if not isinstance(w, dict) or not w:
            raise BadInput(f"stage {st.stage}: must be a domain -> weight map; got {w!r}", where="weights")
        unknown = sorted(set(w) - domains)
        if unknown:
            raise BadInput(f"stage {st.stage}: unknown domains {unknown}; the domains are {sorted(domains)}",
                           where="weights")
        bad = {d: v for d, v in w.items() if not isinstance(v, int | float) or v < 0}
        if bad:
            raise BadInput(f"stage {st.stage}: weights must be non-negative numbers; got {bad}", where="weights")
        s = float(sum(w.values()))
        if s <= 0:
            raise BadInput(f"stage {st.stage}: the weights sum to 0", where="weights")
        full = {d: float(w.get(d, 0.0)) / s for d in sorted(domains)}
        if abs(s - 1.0) > 1e-4:  # not just the table's 6-decimal rounding
            notes.append(f"stage {st.stage}: the edited weights summed to {s:.4f}; renormalised to 1")
        problems += [f"stage {st.stage}: {p}" for p in weight_problems(full, policy)]
        budget = sum(st.tokens.values())
        tokens = {d: int(round(v * budget)) for d, v in full.items()}
        for d, n in tokens.items():
            used[d] += n
        stages.append({"stage": st.stage, "weights": full, "tokens": tokens})
    if prop.max_epochs is not None and prop.pool_tokens:
        over = [f"{d} ({used[d]:.0f} tokens > {prop.max_epochs:g} x {prop.pool_tokens.get(d, 0)})" for d in sorted(used)
                if used[d] > prop.max_epochs * prop.pool_tokens.get(d, 0) + len(prop.stages)]
        if over:
            problems.append("more than the epoch cap of the data: " + ", ".join(over))
    if problems:
        raise BadInput("; ".join(problems), where="weights")
    return stages, notes
