"""profile: what is in a pool before anything is selected from it.

Rows, per-domain counts, length distributions in words and in model tokens, the exact-duplicate
rate, empty and garbled rows, invalid UTF-8 and duplicate ids, plus a histogram plot. It is the
first thing the agent runs on an unfamiliar corpus.

Notebook use::

    from tools import profile
    res = profile.run(corpus="pool.jsonl")
"""

from __future__ import annotations

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import ReadStats
from tools.profile.core import ProfileCounts, is_garbled, profile_batch, quantiles, tokenizer
from tools.profile.schema import SPEC, ProfileMetrics, ProfileRequest, ProfileResult

__all__ = ["SPEC", "ProfileCounts", "ProfileMetrics", "ProfileRequest", "ProfileResult", "is_garbled",
           "plot_lengths", "profile_batch", "quantiles", "run"]


def _count(request: ProfileRequest, ctx: ToolContext, stats: ReadStats) -> ProfileCounts:
    """Map :func:`profile_batch` over the corpus through the engine, folding results in corpus order."""
    import contextlib
    import functools

    from tools.engine import map_batches

    tokens = request.tokenizer == "default" and tokenizer() is not None
    counts = ProfileCounts(max_rows=request.max_rows)
    fn = functools.partial(profile_batch, tokens=tokens)
    with contextlib.closing(map_batches(fn, request.corpus, ctx, columns=("id", "text", "domain"), desc="profile",
                                        stats=stats)) as results:
        for r in results:
            counts.add(r)
            if counts.full:
                break
    return counts


def plot_lengths(words_by_domain: dict[str, np.ndarray], domains: dict[str, int]):  # noqa: ANN201
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    top = list(domains)[:8]
    all_len = np.concatenate(list(words_by_domain.values())) if words_by_domain else np.array([1])
    hi = max(2.0, float(np.quantile(all_len, 0.99)) if all_len.size else 2.0)
    bins = np.logspace(0, np.log10(hi + 1), 40)
    for d in top:
        v = words_by_domain.get(d)
        if v is not None and v.size:
            ax1.hist(np.maximum(v, 1), bins=bins, histtype="step", label=d, linewidth=1.4)
    ax1.set_xscale("log")
    ax1.set_xlabel("document length (words)")
    ax1.set_ylabel("documents")
    ax1.set_title("Length distribution by domain")
    if top:
        ax1.legend(fontsize=8)
    names = list(domains)[:15][::-1]
    ax2.barh(names, [domains[n] for n in names], color="#4c72b0")
    ax2.set_title("Documents per domain")
    fig.tight_layout()
    return fig


def _domain_table(domains: dict[str, int], words: dict[str, np.ndarray], n: int):  # noqa: ANN202
    import pyarrow as pa

    return pa.table({
        "domain": list(domains),
        "documents": [domains[d] for d in domains],
        "share": [domains[d] / n for d in domains],
        "words_median": [float(np.median(words[d])) if words[d].size else 0.0 for d in domains],
        "words_mean": [float(words[d].mean()) if words[d].size else 0.0 for d in domains],
    })


def _summary(m: ProfileMetrics, stats: ReadStats) -> str:
    top = ", ".join(f"{d} {c}" for d, c in list(m.domains.items())[:6])
    return (
        f"{m.rows_total} documents in {len(m.domains)} domains ({top}{', ...' if len(m.domains) > 6 else ''}). "
        f"Median {m.words.get('p50', 0):.0f} words"
        + (f" / {m.tokens.get('p50', 0):.0f} tokens" if m.tokens else "")
        + f"; p95 {m.words.get('p95', 0):.0f} words. Exact duplicates {m.exact_duplicate_rate:.1%}, "
        f"empty {m.empty_rows}, garbled {m.garbled_rows}"
        + (f", invalid UTF-8 rows {m.invalid_utf8_rows}" if m.invalid_utf8_rows else "")
        + (f", duplicate ids {m.duplicate_ids}" if m.duplicate_ids else "")
        + (f", skipped {dict(stats.skipped)}" if stats.skipped else "")
        + "."
    )


@SPEC.implement
def run(request: ProfileRequest, ctx: ToolContext) -> ProfileResult:
    stats = ReadStats()
    counts = _count(request, ctx, stats)
    domains, words = counts.domains(), counts.words()
    n = counts.seen
    metrics = ProfileMetrics(
        rows_total=n, domains=domains, exact_duplicate_rate=counts.duplicates / n if n else 0.0,
        words=quantiles(np.concatenate(list(words.values())) if words else np.zeros(0)),
        tokens=quantiles(counts.tokens()), empty_rows=counts.empty, garbled_rows=counts.garbled,
        invalid_utf8_rows=stats.invalid_utf8_rows, duplicate_ids=stats.duplicate_ids,
    )
    rows = RowCounts(rows_in=n + sum(stats.skipped.values()), rows_out=n, skipped=dict(stats.skipped))
    read = {f"read_{k}": v for k, v in stats.as_dict().items() if k != "rows"}
    with ctx.artifact("table", "profile", metrics=metrics.manifest(rows=n, **read), rows=rows) as w:
        w.table(_domain_table(domains, words, n))
    table_id = w.id
    fig = plot_lengths(words, domains)
    with ctx.artifact("plot", "histogram", metrics={"title": "length distribution by domain"}) as w:
        w.figure(fig)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return ProfileResult.of(metrics, summary=_summary(metrics, stats), artifacts={"table": table_id, "plot": w.id},
                            rows=rows, score_columns=[])
