"""sample: random and domain-stratified samples, the baseline every selector is compared with.

Each document gets a uniform key from a hash of (seed, id), and a sample is the k smallest keys
(overall, or per domain). That makes a sample a pure function of the seed and the ids: independent of
row order and of how the corpus is sharded, and computable in one streaming pass.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tools.contract import RowCounts, SelectionResult, ToolContext, ToolRequest, ToolSpec
from tools.corpus import CorpusArg, ReadStats, read_batches
from tools.errors import BadInput
from tools.selection import format_domain_counts, selection_table, write_selection

# ------------------------------------------------------------------------------------- schema


class SampleRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the pool to sample from")
    k: int = Field(description="number of documents to sample", ge=1)
    mode: Literal["random", "stratified"] = Field(
        "random", description="'random': uniform without replacement; 'stratified': per-domain quotas"
    )
    allocation: Literal["proportional", "equal"] = Field(
        "proportional", description="stratified quotas: proportional to domain size, or equal per domain"
    )
    domains: list[str] | None = Field(None, description="only sample from these domains")
    seed: int = Field(0, description="random seed")


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {"k": 10}


SPEC = ToolSpec(
    name="sample",
    conformance="tools.sample:conformance_case",
    description="Draw a random or domain-stratified sample of k documents with a seed: the baseline "
    "to compare every selector with.",
    request_model=SampleRequest,
    result_model=SelectionResult,
    family="selection",
    deterministic=True,
    examples=(
        "take a random sample of 1000 documents",
        "give me a stratified sample of 500 documents balanced across domains",
        "randomly pick 2000 examples as a baseline",
        "sample 300 documents from each domain equally",
    ),
)

# --------------------------------------------------------------------------------------- core


def uniform_keys(ids: list[str], seed: int) -> np.ndarray:
    """A uniform(0,1) key per id, a pure function of (seed, id)."""
    prefix = f"{seed}\x1f".encode()
    out = np.empty(len(ids), dtype=np.float64)
    for i, doc_id in enumerate(ids):
        h = hashlib.blake2b(prefix + doc_id.encode("utf-8", "replace"), digest_size=8).digest()
        out[i] = (int.from_bytes(h, "little") >> 11) * (1.0 / (1 << 53))
    return out


def allocate(sizes: dict[str, int], k: int, how: Literal["proportional", "equal"]) -> dict[str, int]:
    """Per-domain quotas summing to min(k, total), never above a domain's size (largest remainder)."""
    total = sum(sizes.values())
    k = min(k, total)
    quota = dict.fromkeys(sizes, 0)
    remaining = k
    open_ = {d for d, n in sizes.items() if n > 0}
    while remaining > 0 and open_:
        if how == "equal":
            share = {d: remaining / len(open_) for d in open_}
        else:
            mass = sum(sizes[d] - quota[d] for d in open_)
            share = {d: remaining * (sizes[d] - quota[d]) / mass for d in open_}
        base = {d: min(int(np.floor(share[d])), sizes[d] - quota[d]) for d in open_}
        given = sum(base.values())
        for d in open_:
            quota[d] += base[d]
        remaining -= given
        if remaining > 0:
            order = sorted(open_, key=lambda d: (-(share[d] - np.floor(share[d])), d))
            for d in order:
                if remaining == 0:
                    break
                if quota[d] < sizes[d]:
                    quota[d] += 1
                    remaining -= 1
        open_ = {d for d in open_ if quota[d] < sizes[d]}
    return quota


@SPEC.implement
def run(request: SampleRequest, ctx: ToolContext) -> SelectionResult:
    stats = ReadStats()
    wanted = set(request.domains) if request.domains else None
    # per-domain max-heaps of the k smallest keys (stored negated)
    heaps: dict[str, list[tuple[float, str]]] = {}
    sizes: Counter = Counter()
    cap = request.k
    with ctx.progress("sample", unit="docs") as bar:
        for batch in read_batches(request.corpus, ("id", "domain"), allowed_roots=ctx.data_roots, stats=stats):
            ids = batch.column("id").to_pylist()
            doms = ["(none)" if d is None else d for d in batch.column("domain").to_pylist()]
            keys = uniform_keys(ids, request.seed)
            for doc_id, dom, key in zip(ids, doms, keys, strict=True):
                if wanted is not None and dom not in wanted:
                    continue
                group = dom if request.mode == "stratified" else "*"
                sizes[dom] += 1
                h = heaps.setdefault(group, [])
                item = (-key, doc_id, dom)
                if len(h) < cap:
                    heapq.heappush(h, item)
                elif item > h[0]:
                    heapq.heapreplace(h, item)
            bar.update(len(ids))
    pool = sum(sizes.values())
    if pool == 0:
        raise BadInput(f"no documents in domains {sorted(wanted or [])}", where="sample.domains")
    if request.k > pool:
        raise BadInput(f"must be at most the pool size {pool}; got {request.k}", where="sample.k")
    if request.mode == "stratified":
        quota = allocate(dict(sizes), request.k, request.allocation)
        chosen = []
        for d, h in heaps.items():
            chosen += sorted(h, reverse=True)[: quota.get(d, 0)]
    else:
        chosen = sorted(heaps["*"], reverse=True)
    chosen.sort(key=lambda t: -t[0])
    ids = [c[1] for c in chosen]
    doms = [c[2] for c in chosen]
    table = selection_table(ids, weight=np.ones(len(ids)), score=[-c[0] for c in chosen], domain=doms)
    counts = dict(Counter(doms).most_common())
    rows = RowCounts(rows_in=stats.rows, rows_out=len(ids), skipped=dict(stats.skipped))
    pool_share = {d: sizes[d] / pool for d in sizes}
    metrics = {"domain_counts": counts, "pool_domain_share": pool_share, "mode": request.mode}
    sel_id = write_selection(ctx, table, request.corpus, metrics=metrics, rows=rows)
    summary = (
        f"Sampled {len(ids)} of {pool} documents ({request.mode}"
        + (f", {request.allocation}" if request.mode == "stratified" else "")
        + f", seed {request.seed}). Domains: {format_domain_counts(counts)}. Selection {sel_id}."
    )
    return SelectionResult(
        summary=summary,
        artifacts={"selection": sel_id},
        rows=rows,
        k=len(ids),
        pool_size=pool,
        domain_counts=counts,
    )
