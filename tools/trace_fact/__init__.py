"""trace_fact: FASTTRACK's online tracing (Chen, Kang, Yu, Jia; Findings of EMNLP 2024).

``run`` reads the facts, loads the ``fact_index`` artifact (or builds it from ``corpus`` first; the
build is a cached tool run, so a second trace reuses it), retrieves candidate leaves per fact
(:func:`.core.candidate_clusters`: fuzzy keyword/label matches, the index's term index, centroid
similarity of the query embedding), reads the texts of the candidate documents only, and verifies
every (fact, document) pair. ``verifier="auto"`` uses the tool LLM when one is configured and the
OFFLINE FALLBACK otherwise (subject and object expressed, :mod:`.match`); the result says which.

Artifacts: ``traces`` (Parquet, one row per verified candidate: ``query_id``, ``id``, ``verdict``
(supports / rejected / unverified), ``span``, ``cluster`` (leaf node id), ``cluster_path``, ``reason``,
``highlight`` (the document as escaped HTML with the span in ``<mark>``), ``keyword_score``,
``centroid_sim``, ``via``, ``verifier``) and ``table`` named ``facts`` (one row per fact: counts,
candidate clusters, and why the set is empty when it is).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.trace_fact import core, match
from tools.trace_fact.schema import (
    SPEC,
    FactItem,
    FactSummary,
    TraceFactMetrics,
    TraceFactRequest,
    TraceFactResult,
)

__all__ = ["SPEC", "TraceFactMetrics", "TraceFactRequest", "TraceFactResult", "run", "core", "match", "read_facts"]

OFFLINE_NOTE = ("offline FALLBACK verifier (no LLM): a document counts as supporting when it expresses both the "
                "fact's subject and object in separate mentions (aliases, case, punctuation, light morphology "
                "normalised), and its evidence is close to the best among the fact's candidates (a full name "
                "beats a last name alone); it cannot tell relations between the same two entities apart")


def read_facts(queries: Any, where: str = "trace_fact.queries") -> list[core.Fact]:
    """Facts from a list (strings or FactItem) or a JSONL path; a bad line is a BadInput naming it."""
    from pydantic import ValidationError

    from tools.errors import BadInput

    items: list[tuple[str, FactItem]] = []
    if isinstance(queries, list):
        for i, q in enumerate(queries):
            items.append((f"{where}[{i}]", FactItem.model_validate(q)))
    else:
        path = Path(queries)
        if not path.is_file():
            raise BadInput(f"must be a list of facts or a JSONL file; got {queries!r}", where=where)
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                loc = f"{path} line {n}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadInput(f"is not JSON ({e.msg})", where=loc) from None
                if isinstance(obj, str):
                    obj = {"query": obj}
                try:
                    items.append((loc, FactItem.model_validate(obj)))
                except ValidationError as e:
                    fields = ", ".join(".".join(map(str, x["loc"])) for x in e.errors())
                    raise BadInput(f"must be an object with a 'query' string; bad field(s): {fields}",
                                   where=loc) from None
        if not items:
            raise BadInput(f"{path} holds no facts", where=where)
    facts, seen = [], set()
    for k, (loc, it) in enumerate(items):
        if not it.query or not it.query.strip():
            raise BadInput("is an empty fact (query must be a non-empty statement)", where=loc)
        fid = it.id or f"q{k}"
        if fid in seen:
            raise BadInput(f"repeats the fact id {fid!r}", where=loc)
        seen.add(fid)
        facts.append(core.make_fact(fid, it.query.strip(), it.subject, it.object, it.relation))
    return facts


def _highlight(text: str, span: str) -> str:
    """The document as escaped HTML with the supporting span in <mark> (the UI shows it as is)."""
    if not span:
        return ""
    i = text.find(span)
    if i < 0:
        i = text.lower().find(span.lower())
    if i < 0:
        return html.escape(text)
    return (html.escape(text[:i]) + "<mark>" + html.escape(text[i : i + len(span)]) + "</mark>"
            + html.escape(text[i + len(span) :]))


def _index_for(request: TraceFactRequest, ctx: ToolContext) -> str:
    """The index artifact id: given, or built from the corpus by the fact_index tool (a cached run)."""
    if request.index is not None:
        return request.index
    from tools import fact_index

    res = fact_index.run({"corpus": request.corpus.model_dump(mode="json"), "embeddings": request.embeddings,
                          "model": request.model, "max_leaf": request.max_leaf, "seed": request.seed}, ctx)
    return res.artifacts["index"]


def _make_verifier(request: TraceFactRequest, ctx: ToolContext) -> tuple[core.Verifier, str]:
    from tools.errors import ResourceUnavailable
    from tools.fact_index import has_llm

    want = request.verifier
    if want == "auto":
        want = "llm" if has_llm(ctx) else "offline"
    if want == "offline":
        return core.OfflineVerifier(partial_names=request.partial_names, require_relation=request.require_relation,
                                    min_evidence_ratio=request.min_evidence_ratio,
                                    last_resort=request.last_resort), OFFLINE_NOTE
    if not has_llm(ctx):
        raise ResourceUnavailable("verifier='llm' needs a tool LLM", hint="set CURATE_TOOL_LLM_BASE_URL and "
                                  "CURATE_TOOL_LLM_MODEL (or CURATE_LLM_*), or use verifier='offline'")

    def ask(prompts: list[str]) -> list[Any]:
        return ctx.llm.json(prompts, core.VERDICT_SCHEMA, system=core.VERIFY_SYSTEM,  # type: ignore[attr-defined]
                            max_tokens=64 + 96 * request.batch_size)

    return core.LLMVerifier(ask, batch_size=request.batch_size, max_rounds=request.max_rounds), \
        "LLM verifier: strict yes/no JSON with the supporting span, checked against the document"


def _trace(request: TraceFactRequest, ctx: ToolContext, facts: list[core.Fact], idx: Any, verifier: core.Verifier
           ) -> tuple[core.TraceOutput, list[int], str, Callable[[list[int]], list[str]]]:
    """Retrieve candidate leaves per fact and verify every candidate document: (the trace, the facts it
    checked (the offline verifier needs a subject and an object), why centroids were skipped or "", the
    text reader)."""
    from tools.corpus import as_corpus, read_batches
    from tools.embeddings import text_vectors

    tree = idx.tree
    leaves = tree.leaves()
    leaf_labels = [idx.labels[int(lf)] + idx.llm_labels[int(lf)] for lf in leaves]
    vocab, terms = idx.term_index()

    def term_leaves(word: str) -> np.ndarray:
        i = vocab.get(word)
        if i is None:
            return np.zeros(0, dtype=np.int64)
        return terms.indices[terms.indptr[i] : terms.indptr[i + 1]]

    query_vecs = None
    centroid_note = ""
    if request.centroid_top > 0:
        if idx.model:
            query_vecs = text_vectors([f.query for f in facts], ctx, model=idx.model)
        else:
            centroid_note = "centroid similarity skipped: the index's vectors have no known model"
    members = [np.arange(int(tree.start[lf]), int(tree.end[lf]), dtype=np.int64) for lf in leaves]
    corpus = as_corpus(request.corpus.model_dump(mode="json") if request.corpus is not None else idx.corpus)

    def text_of(rows: list[int]) -> list[str]:
        want = {idx.ids[r] for r in rows}
        got: dict[str, str] = {}
        for b in read_batches(corpus, ("id", "text"), allowed_roots=ctx.data_roots):
            for i, t in zip(b.column("id").to_pylist(), b.column("text").to_pylist(), strict=True):
                if i in want:
                    got[i] = t or ""
        return [got.get(idx.ids[r], "") for r in rows]

    checkable = [i for i, f in enumerate(facts) if verifier.name != "offline" or (f.subject and f.object)]
    out = core.trace(
        [facts[i] for i in checkable], leaf_labels, tree.centroid[leaves], members, text_of, verifier,
        query_vecs[checkable] if query_vecs is not None else None,
        fuzzy_threshold=request.fuzzy_threshold, max_keyword_clusters=request.max_keyword_clusters,
        max_keyword_share=request.max_keyword_share, centroid_top=request.centroid_top if query_vecs is not None
        else 0, min_centroid_sim=request.min_centroid_sim, min_score_ratio=request.min_score_ratio,
        term_leaves=term_leaves,
    )
    return out, checkable, centroid_note, text_of


def _traces_table(out: core.TraceOutput, sub: list[core.Fact], idx: Any, verifier: core.Verifier,
                  shown: dict[int, str]) -> Any:
    """One row per verified candidate; ``shown`` holds the texts of the supporting documents."""
    import pyarrow as pa

    tree = idx.tree
    leaf_node = [int(lf) for lf in tree.leaves()]
    cand_info = [{c.leaf: c for c in cs} for cs in out.candidates]
    cols: dict[str, list] = {k: [] for k in ("query_id", "id", "verdict", "span", "cluster", "cluster_path",
                                             "reason", "highlight", "keyword_score", "centroid_sim", "via",
                                             "verifier")}
    for r in out.rows:
        c = cand_info[r.fact][r.leaf]
        node = leaf_node[r.leaf]
        cols["query_id"].append(sub[r.fact].id)
        cols["id"].append(idx.ids[r.doc])
        cols["verdict"].append(r.verdict)
        cols["span"].append(r.span)
        cols["cluster"].append(node)
        cols["cluster_path"].append("/".join(map(str, tree.path(node))))
        cols["reason"].append(r.reason)
        cols["highlight"].append(_highlight(shown.get(r.doc, ""), r.span) if r.verdict == "supports" else "")
        cols["keyword_score"].append(float(c.keyword_score))
        cols["centroid_sim"].append(float(c.centroid_sim))
        cols["via"].append(c.via)
        cols["verifier"].append(verifier.name)
    return pa.table({
        "query_id": pa.array(cols["query_id"], type=pa.string()), "id": pa.array(cols["id"], type=pa.string()),
        "verdict": pa.array(cols["verdict"], type=pa.string()), "span": pa.array(cols["span"], type=pa.string()),
        "cluster": pa.array(cols["cluster"], type=pa.int64()),
        "cluster_path": pa.array(cols["cluster_path"], type=pa.string()),
        "reason": pa.array(cols["reason"], type=pa.string()),
        "highlight": pa.array(cols["highlight"], type=pa.string()),
        "keyword_score": pa.array(cols["keyword_score"], type=pa.float64()),
        "centroid_sim": pa.array(cols["centroid_sim"], type=pa.float64()),
        "via": pa.array(cols["via"], type=pa.string()), "verifier": pa.array(cols["verifier"], type=pa.string()),
    })


def _fact_summaries(request: TraceFactRequest, facts: list[core.Fact], checkable: list[int],
                    out: core.TraceOutput, leaf_node: list[int], centroid_note: str) -> list[FactSummary]:
    """Counts, candidate clusters and, for an empty set, why, for every fact (checked or not)."""
    counts: dict[int, dict[str, int]] = {}
    for r in out.rows:
        d = counts.setdefault(r.fact, {"supports": 0, "rejected": 0, "unverified": 0})
        d[r.verdict] += 1
    k_of = {fi: k for k, fi in enumerate(checkable)}
    summaries: list[FactSummary] = []
    for i, f in enumerate(facts):
        k = k_of.get(i)
        if k is None:
            summaries.append(FactSummary(id=f.id, why_empty="the offline verifier needs the subject and object; "
                                         "none could be found in the statement (give them as fields, or configure "
                                         "an LLM)"))
            continue
        c = counts.get(k, {"supports": 0, "rejected": 0, "unverified": 0})
        clusters = [leaf_node[x.leaf] for x in out.candidates[k]]
        why = None
        if not clusters:
            why = ("no candidate cluster: no keyword matched a cluster label or vocabulary, and no centroid "
                   f"was within cosine {request.min_centroid_sim}" + (f" ({centroid_note})" if centroid_note
                                                                       else ""))
        elif c["supports"] == 0:
            why = (f"all {out.pairs_per_fact[k]} candidate documents in {len(clusters)} clusters were "
                   + ("rejected" if c["unverified"] == 0 else f"rejected or unverified ({c['unverified']})"))
        summaries.append(FactSummary(id=f.id, supporting=c["supports"], candidates=out.pairs_per_fact[k],
                                     rejected=c["rejected"], unverified=c["unverified"], clusters=clusters,
                                     why_empty=why))
    return summaries


def _facts_table(facts: list[core.Fact], summaries: list[FactSummary]) -> Any:
    import pyarrow as pa

    text = {"query_id": [f.id for f in facts], "query": [f.query for f in facts],
            "subject": [f.subject for f in facts], "object": [f.object for f in facts]}
    return pa.table({
        **{k: pa.array(v, type=pa.string()) for k, v in text.items()},
        "extracted": pa.array([f.extracted for f in facts], type=pa.bool_()),
        **{k: pa.array([getattr(s, k) for s in summaries], type=pa.int64())
           for k in ("supporting", "candidates", "rejected", "unverified")},
        "clusters": pa.array([s.clusters for s in summaries], type=pa.list_(pa.int64())),
        "why_empty": pa.array([s.why_empty for s in summaries], type=pa.string()),
    })


@SPEC.implement
def run(request: TraceFactRequest, ctx: ToolContext) -> TraceFactResult:
    from tools.fact_index import load_index

    facts = read_facts(request.queries)
    index_id = _index_for(request, ctx)  # the offline stage: a fact_index artifact (built here when absent)
    idx = load_index(index_id, ctx)
    verifier, note = _make_verifier(request, ctx)
    out, checkable, centroid_note, text_of = _trace(request, ctx, facts, idx, verifier)  # retrieve, verify
    texts_needed = sorted({r.doc for r in out.rows if r.verdict == "supports"})
    shown = dict(zip(texts_needed, text_of(texts_needed), strict=True)) if texts_needed else {}
    traces = _traces_table(out, [facts[i] for i in checkable], idx, verifier, shown)
    leaf_node = [int(lf) for lf in idx.tree.leaves()]
    summaries = _fact_summaries(request, facts, checkable, out, leaf_node, centroid_note)

    metrics = TraceFactMetrics(
        facts=len(facts), facts_supported=sum(1 for s in summaries if s.supporting),
        supporting_docs=sum(s.supporting for s in summaries), candidate_docs=int(sum(out.pairs_per_fact)),
        verifier=verifier.name, llm_calls=int(verifier.calls), llm_budget=getattr(ctx, "max_llm_calls", None),
        index=index_id, facts_without_candidates=sum(1 for s in summaries if s.why_empty
                                                     and s.why_empty.startswith("no candidate")),
        batch_size=request.batch_size, centroid=centroid_note or "used",
    )
    rows = RowCounts(rows_in=len(facts), rows_out=len(traces))
    with ctx.artifact("traces", "traces", metrics=metrics.manifest(), rows=rows, extra={"index": index_id}) as w:
        w.table(traces)
    with ctx.artifact("table", "facts", metrics=metrics.manifest(), rows=rows) as wf:
        wf.table(_facts_table(facts, summaries))
    m = metrics
    budget_txt = f" of a budget of {m.llm_budget}" if m.llm_budget is not None else ""
    summary = (
        f"Traced {m.facts} facts over index {index_id} ({len(leaf_node)} clusters): {m.facts_supported} have "
        f"supporting documents ({m.supporting_docs} in all, from {m.candidate_docs} candidates); "
        f"{m.facts - m.facts_supported} have none ({m.facts_without_candidates} with no candidate cluster). Verifier: "
        + ("offline fallback (subject and object must both appear; no LLM)" if verifier.name == "offline"
           else f"LLM, {m.llm_calls} calls{budget_txt}, batches of {request.batch_size}")
        + f". Traces {w.id}; per-fact table {wf.id}."
    )
    per = ", ".join(f"{s.id} {s.supporting}/{s.candidates}" for s in summaries[:6])
    summary += f" Per fact (supporting/candidates): {per}{', ...' if len(summaries) > 6 else ''}."
    return TraceFactResult.of(metrics, summary=summary, artifacts={"traces": w.id, "facts": wf.id}, rows=rows,
                              verifier_note=note, per_fact=summaries[:50])
