"""sample: random and domain-stratified samples, the baseline every selector is compared with.

Stream the pool's ids once, keep the k smallest seeded keys (overall, or per domain; see ``core``),
and write them as the selection, smallest key first.

Notebook use::

    from tools import sample
    res = sample.run(corpus="pool.jsonl", k=1000, mode="stratified")
    res = sample.run(corpus="pool.jsonl", fraction=0.05)   # 5% of the pool
"""

from __future__ import annotations

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import ReadStats, read_batches
from tools.errors import BadInput
from tools.sample.core import SmallestKeys, allocate, uniform_keys
from tools.sample.schema import SPEC, SampleMetrics, SampleRequest, SampleResult
from tools.selection import format_domain_counts, record_selection, selection_table

__all__ = ["SPEC", "SampleMetrics", "SampleRequest", "SampleResult", "SmallestKeys", "allocate", "run",
           "uniform_keys"]


def _pool_size(request: SampleRequest, ctx: ToolContext) -> int:
    """Rows of the pool (of ``request.domains`` when given): a fraction needs it before the sampling pass."""
    wanted = set(request.domains) if request.domains else None
    n = 0
    with ctx.progress("sample: counting", unit="docs") as bar:
        for batch in read_batches(request.corpus, ("id", "domain"), allowed_roots=ctx.data_roots, stats=ReadStats()):
            doms = batch.column("domain").to_pylist()
            n += len(doms) if wanted is None else sum(d in wanted for d in doms)
            bar.update(batch.num_rows)
    return n


def _smallest_keys(request: SampleRequest, ctx: ToolContext, stats: ReadStats, k: int) -> SmallestKeys:
    """One pass over the pool (only ``request.domains`` when given), keeping the k smallest keys."""
    wanted = set(request.domains) if request.domains else None
    keys = SmallestKeys(k, by_domain=request.mode == "stratified")
    with ctx.progress("sample", unit="docs") as bar:
        for batch in read_batches(request.corpus, ("id", "domain"), allowed_roots=ctx.data_roots, stats=stats):
            ids, doms = batch.column("id").to_pylist(), batch.column("domain").to_pylist()
            if wanted is not None:
                keep = [j for j, d in enumerate(doms) if d in wanted]
                ids, doms = [ids[j] for j in keep], [doms[j] for j in keep]
            keys.add(ids, doms, uniform_keys(ids, request.seed))
            bar.update(batch.num_rows)
    return keys


@SPEC.implement
def run(request: SampleRequest, ctx: ToolContext) -> SampleResult:
    stats = ReadStats()
    k = request.k
    if k is None:  # a share of the pool: count it first (ids and domains only)
        k = max(1, round(request.fraction * _pool_size(request, ctx)))
    keys = _smallest_keys(request, ctx, stats, k)
    pool = sum(keys.sizes.values())
    if pool == 0:
        raise BadInput(f"no documents in domains {sorted(request.domains or [])}", where="sample.domains")
    if k > pool:
        raise BadInput(f"must be at most the pool size {pool}; got {k}", where="sample.k")
    quota = allocate(dict(keys.sizes), k, request.allocation) if request.mode == "stratified" else None
    ids, doms, key = keys.take(quota)

    metrics = SampleMetrics(mode=request.mode)
    rows = RowCounts(rows_in=stats.rows, rows_out=len(ids), skipped=dict(stats.skipped))
    table = selection_table(ids, weight=np.ones(len(ids)), score=key, domain=doms)
    sel = record_selection(ctx, table, request.corpus, pool_domains=dict(keys.sizes), metrics=metrics.manifest(),
                           rows=rows)
    summary = (
        f"Sampled {len(ids)} of {pool} documents ({request.mode}"
        + (f", {request.allocation}" if request.mode == "stratified" else "")
        + f", seed {request.seed}"
        + (f"; {request.fraction:.4g} of the pool" if request.fraction is not None else "")
        + f"). Domains: {format_domain_counts(sel.domain_counts)}. Selection {sel.id}."
    )
    return SampleResult.of(metrics, summary=summary, artifacts={"selection": sel.id}, rows=rows, k=len(ids),
                           pool_size=pool, domain_counts=sel.domain_counts)
