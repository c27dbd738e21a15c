"""prrc_rate: PRRC grades from the configured LLM on a sample, distilled into a rater for the pool.

``run`` draws a seeded sample (by id, so row order does not matter), asks ``ctx.llm`` for one JSON
grade per (document, dimension) in batches, and keeps only answers that parse strictly (see
:mod:`tools.prrc_rate.core`); rejected answers are counted per dimension. When the policy's
``max_llm_calls`` is smaller than what the sample needs, the tool rates what the budget allows
(cached answers cost nothing) and reports how many sample documents were left unrated. The rating
requests run as chunks on the context's engine (:func:`rate_on_engine`: local worker processes, or
Ray tasks with ``engine="ray"``), each with its own client on the run's endpoint, cache and budget. Ratings are
written as an artifact before distillation starts, so nothing rated is lost if a later step fails.

Without an LLM the tool says so, and distils from ``ratings`` the user supplies instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import ReadStats, read_batches
from tools.errors import BadInput, ResourceUnavailable
from tools.prrc_rate import core
from tools.prrc_rate.schema import (
    SPEC,
    PRRCDistilMetrics,
    PRRCRateMetrics,
    PRRCRateRequest,
    PRRCRateResult,
    PRRCRatingMetrics,
)

__all__ = ["SPEC", "PRRCDistilMetrics", "PRRCRateMetrics", "PRRCRateRequest", "PRRCRateResult", "PRRCRatingMetrics",
           "run", "core"]

_CHUNK = 32  # prompts per ctx.llm.json call


def _hash_order(ids: list[str], seed: int) -> np.ndarray:
    h = [int.from_bytes(hashlib.blake2b(f"{seed}\x00{i}".encode(), digest_size=8).digest(), "little") for i in ids]
    return np.argsort(np.asarray(h, dtype=np.uint64), kind="stable")


def rate_with_budget(llm: Any, prompts: list[str], *, system: str, max_tokens: int) -> list[Any]:
    """``ctx.llm.json`` over ``prompts`` in chunks; an answer is None where the call budget ran out.

    A chunk that would exceed the budget is refused before anything is sent; then the prompts go one
    at a time, so cached ones (free) are still answered and only the uncached rest is left out.
    """
    from tools.llm import LLMBudgetExceeded

    out: list[Any] = [None] * len(prompts)
    i = 0
    while i < len(prompts):
        left = None if llm.max_calls is None else llm.max_calls - llm.calls
        size = _CHUNK if left is None else max(1, min(_CHUNK, left))
        chunk = prompts[i : i + size]
        try:
            out[i : i + len(chunk)] = llm.json(chunk, core.RATING_SCHEMA, system=system, max_tokens=max_tokens)
        except LLMBudgetExceeded:
            for j, p in enumerate(chunk):
                try:
                    out[i + j] = llm.json([p], core.RATING_SCHEMA, system=system, max_tokens=max_tokens)[0]
                except LLMBudgetExceeded:
                    out[i + j] = None
        i += len(chunk)
    return out


def _rate_chunk(item: tuple) -> tuple[list[Any], int, int]:
    """Engine task: one chunk of prompts through a client of its own on the run's endpoint and response
    cache, allowed ``allowance`` requests (None: no budget). Returns (answers, sent, cached)."""
    from tools.llm import ResponseCache, ToolLLM

    config, cache_root, prompts, max_tokens, allowance = item
    llm = ToolLLM(config, cache=ResponseCache(Path(cache_root)) if cache_root else None, max_calls=allowance)
    answers = rate_with_budget(llm, prompts, system=core.SYSTEM, max_tokens=max_tokens)
    return answers, llm.calls, llm.cached


def rate_on_engine(ctx: ToolContext, prompts: list[str], *, max_tokens: int,
                   on_done: Callable[[int], None] | None = None) -> list[Any]:
    """:func:`rate_with_budget` over ``prompts`` in chunks on the context's engine (local processes or Ray).

    Each chunk is a task with a client of its own; the budget stays the run's: with ``max_llm_calls``
    set, a first pass answers only from the response cache (sending nothing), then the first uncached
    prompts that fit the calls left are sent, each chunk allowed its prompts' share of them. The
    answers, and which prompts are left unrated, are therefore the same on every engine and worker count.
    """
    from tools.engine import map_items

    llm = ctx.llm
    cache_root = str(llm.cache.root) if llm.cache is not None else None
    out: list[Any] = [None] * len(prompts)

    def send(idx: list[int], allowance: Callable[[int, list[int]], int | None]) -> None:
        parts = [idx[s : s + _CHUNK] for s in range(0, len(idx), _CHUNK)]
        items = [(llm.config, cache_root, [prompts[i] for i in c], max_tokens, allowance(k, c))
                 for k, c in enumerate(parts)]
        # locally the chunks run in this process: requests are I/O, the client's threads already overlap
        # them, and ``concurrency`` stays the cap the endpoint was configured for; on Ray each task has
        # its own client, so up to (tasks in flight) x concurrency requests reach the endpoint at once
        for c, (answers, sent, cached) in zip(parts, map_items(_rate_chunk, items, ctx, workers=1), strict=True):
            llm.book(sent, cached)
            got = 0
            for i, a in zip(c, answers, strict=True):
                out[i] = a
                got += a is not None
            if on_done is not None:
                on_done(got)

    if llm.max_calls is None:
        send(list(range(len(prompts))), lambda k, c: None)
        return out
    send(list(range(len(prompts))), lambda k, c: 0)  # cached answers only: free
    left = max(0, llm.max_calls - llm.calls)
    todo = [i for i, a in enumerate(out) if a is None]
    chosen = todo[:left]
    spare = left - len(chosen)  # calls for repair rounds, shared out evenly
    n_parts = max(1, -(-len(chosen) // _CHUNK))
    if chosen:
        send(chosen, lambda k, c: len(c) + spare // n_parts + (k < spare % n_parts))
    return out


def _read_ratings(ref: str, ctx: ToolContext, dims: list[str]) -> dict[str, dict[str, float]]:
    from tools.meta_rater import read_score_tables

    t = read_score_tables(ref, ctx, "prrc_rate", field="ratings")
    have = [d for d in dims if d in t.column_names]
    if not have:
        raise BadInput(f"has none of the dimension columns {', '.join(dims)} (numeric columns: "
                       f"{', '.join(c for c in t.column_names if c != 'id')})", where="prrc_rate.ratings")
    ids = t.column("id").to_pylist()
    out: dict[str, dict[str, float]] = {}
    for d in have:
        vals = np.asarray(t.column(d).cast("float64").to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = np.isfinite(vals) & ((vals < 1) | (vals > 5))
        if bad.any():
            raise BadInput(f"column {d!r} has {int(bad.sum())} grades outside 1-5 (e.g. {vals[bad][0]:g})",
                           where="prrc_rate.ratings")
        out[d] = {i: float(v) for i, v in zip(ids, vals, strict=True) if np.isfinite(v)}
    return out


@dataclass
class _Ratings:
    """Grades per dimension and document id, with what the parser rejected and what the budget left out."""

    source: str
    dims: list[str]
    grades: dict[str, dict[str, float]] = field(default_factory=dict)
    justification: dict[str, dict[str, str]] = field(default_factory=dict)
    garbage: dict[str, int] = field(default_factory=dict)
    not_rated: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _rate_sample(request: PRRCRateRequest, ctx: ToolContext, dims: list[str], ids: list[str],
                 texts: list[str | None], usable: list[int]) -> _Ratings:
    """A seeded sample (by id) graded by the LLM, one prompt per (dimension, document); strict parsing."""
    if not ctx.has_llm:
        from tools.llm import HOW_TO_CONFIGURE

        raise ResourceUnavailable(
            "no LLM is configured, so prrc_rate cannot rate documents; pass ratings= (a file with 'id' and "
            "one column per dimension, grades 1-5) to distil from ratings you have", hint=HOW_TO_CONFIGURE)
    sample = [usable[j] for j in _hash_order([ids[i] for i in usable], request.seed)[: request.sample_size]]
    sample.sort(key=lambda i: ids[i])
    n = len(sample)
    prompts = [core.prompt(d, texts[i], request.max_chars) for d in dims for i in sample]
    with ctx.progress("prrc_rate: LLM ratings", total=len(prompts), unit="ratings") as bar:
        answers = rate_on_engine(ctx, prompts, max_tokens=request.max_tokens, on_done=bar.update)
    r = _Ratings("llm", dims)
    for k, d in enumerate(dims):
        r.grades[d], r.justification[d] = {}, {}
        for i, a in zip(sample, answers[k * n : (k + 1) * n], strict=True):
            if a is None:
                r.not_rated[d] = r.not_rated.get(d, 0) + 1
                continue
            score, just, err = core.parse_rating(a.raw) if a.ok else (None, None, a.error)
            if score is None:
                r.garbage[d] = r.garbage.get(d, 0) + 1
                r.errors.setdefault(d, str(err)[:160])
                continue
            r.grades[d][ids[i]] = float(score)
            r.justification[d][ids[i]] = just
    return r


def _write_ratings(ctx: ToolContext, r: _Ratings, metrics: PRRCRatingMetrics) -> tuple[str, list[str]]:
    """The ratings artifact (grades, and the LLM's justifications); returns its id and the rated ids."""
    import pyarrow as pa

    rated_ids = sorted(set().union(*[set(g) for g in r.grades.values()])) if r.grades else []
    cols: dict[str, Any] = {"id": pa.array(rated_ids, pa.string())}
    for d in r.dims:
        cols[d] = pa.array([r.grades[d].get(i, np.nan) for i in rated_ids], pa.float64())
        if d in r.justification:
            cols[f"{d}_justification"] = pa.array([r.justification[d].get(i) for i in rated_ids], pa.string())
    with ctx.artifact("scores", "prrc_ratings", metrics=metrics.manifest(parse_errors=r.errors),
                      rows=RowCounts(rows_in=len(rated_ids), rows_out=len(rated_ids))) as w:
        w.table(pa.table(cols))
    return w.id, rated_ids


@dataclass
class _Distilled:
    """The distilled rater's pool scores (``prrc_<dim>`` -> one value per ``pool_ids``) and its quality."""

    pool_ids: list[str] = field(default_factory=list)
    pool_skipped: dict[str, int] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    spearman: dict[str, float | None] = field(default_factory=dict)
    within: dict[str, float | None] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    device: str | None = None


def _distil_encoder(request: PRRCRateRequest, ctx: ToolContext, dims: list[str], ratings: dict[str, dict[str, float]],
                    ids: list[str], texts: list[str | None]) -> _Distilled:
    """Fine-tune the encoder on every distillable dimension at once; scores every corpus row."""
    from tools.prrc_rate.finetune import distil_encoder

    known = set(ids)
    skipped: dict[str, str] = {}
    keep: list[str] = []
    for d in dims:
        try:
            core.check_distillable(np.array([v for i, v in ratings[d].items() if i in known]))
            keep.append(d)
        except ValueError as e:
            skipped[d] = str(e)
    if not keep:
        return _Distilled(pool_ids=ids, skipped=skipped)
    text_of = dict(zip(ids, texts, strict=True))
    rated_ids = sorted({i for d in keep for i in ratings[d] if i in known})
    Y = np.array([[ratings[d].get(i, np.nan) for d in keep] for i in rated_ids], dtype=np.float64)
    device = ctx.resolve_device()
    res = distil_encoder([text_of[i] or "" for i in rated_ids], Y, [t or "" for t in texts], ids=rated_ids,
                         model=request.encoder_model, device=device, epochs=request.encoder_epochs,
                         seed=request.seed, progress=ctx.progress, threads=ctx.num_workers)
    return _Distilled(
        pool_ids=ids, scores={f"prrc_{d}": res.predict_pool[:, j] for j, d in enumerate(keep)},
        spearman={d: None if np.isnan(res.spearman[j]) else res.spearman[j] for j, d in enumerate(keep)},
        within={d: res.within_one[j] for j, d in enumerate(keep)}, skipped=skipped, device=res.device)


def _distil_embeddings(request: PRRCRateRequest, ctx: ToolContext, kind: str, dims: list[str],
                       ratings: dict[str, dict[str, float]]) -> _Distilled:
    """Ridge or logistic on the pool's embeddings, one rater per dimension."""
    from tools.embeddings import pool_vectors

    pv = pool_vectors(request.corpus, ctx, embeddings=request.embeddings, missing="skip")
    out = _Distilled(pool_ids=pv.ids, pool_skipped=pv.skipped)
    pos = {d: i for i, d in enumerate(pv.ids)}
    for d in dims:
        have = [i for i in ratings[d] if i in pos]
        try:
            res = core.distil(pv.vectors[[pos[i] for i in have]], np.array([ratings[d][i] for i in have]),
                              pv.vectors, model=kind, seed=request.seed, ids=have)
        except ValueError as e:
            out.skipped[d] = str(e)
            continue
        out.scores[f"prrc_{d}"] = res.predict_pool
        out.spearman[d] = None if np.isnan(res.spearman) else res.spearman
        out.within[d] = res.within_one
    return out


def _write_scores(ctx: ToolContext, dist: _Distilled, metrics: PRRCDistilMetrics, kind: str) -> dict[str, str]:
    """The pool scores, their histograms and the top/bottom documents per dimension."""
    import pyarrow as pa

    from tools.meta_rater import plots

    out, pool_ids = dist.scores, dist.pool_ids
    with ctx.artifact("scores", "prrc_scores", metrics=metrics.manifest(model=kind, device=dist.device),
                      rows=RowCounts(rows_in=len(pool_ids), rows_out=len(pool_ids), skipped=dist.pool_skipped)) as w:
        w.table(pa.table({"id": pa.array(pool_ids, pa.string()), **{k: pa.array(v) for k, v in out.items()}}))
    artifacts = {"scores": w.id}
    fig = plots.histograms(out, bins=30, title="distilled PRRC grades")
    with ctx.artifact("plot", "plot_histograms") as pw:
        pw.figure(fig)
    plots.close(fig)
    artifacts["plot_histograms"] = pw.id
    order = {k: np.lexsort((np.arange(len(v)), -v)) for k, v in out.items()}
    n_ext = min(10, len(pool_ids) // 2)
    ext = {"dimension": [], "position": [], "id": [], "score": []}
    for k, o in order.items():
        for pos_name, sel in (("top", o[:n_ext]), ("bottom", o[len(o) - n_ext:][::-1])):
            for r in sel:
                ext["dimension"].append(k)
                ext["position"].append(pos_name)
                ext["id"].append(pool_ids[r])
                ext["score"].append(float(out[k][r]))
    with ctx.artifact("table", "extremes", metrics={"note": "top- and bottom-rated document ids"}) as ew:
        ew.table(pa.table(ext))
    artifacts["extremes"] = ew.id
    return artifacts


def _summary(m: PRRCRateMetrics, dims: list[str], n_rated: int, kind: str, pool_rows: int) -> str:
    parts = [f"{d} {m.rated[d]}" + (f" (mean {m.mean_rating[d]:.2f})" if d in m.mean_rating else "") for d in dims]
    return (
        (f"LLM rated {n_rated} sampled documents: " if m.source == "llm" else
         f"Distilled from {n_rated} supplied ratings: ") + ", ".join(parts) + "."
        + (f" Rejected answers: {', '.join(f'{d} {n}' for d, n in m.garbage.items())}." if m.garbage else "")
        + (f" Call budget left unrated: {', '.join(f'{d} {n}' for d, n in m.not_rated.items())}." if m.not_rated
           else "")
        + (f" Distilled {kind} rater, out-of-fold: " + ", ".join(
            f"{d} Spearman {m.spearman[d]:.2f}, within one grade {m.within_one[d]:.0%}" if m.spearman[d] is not None
            else f"{d} within one grade {m.within_one[d]:.0%}" for d in m.spearman)
           + f"; scored {pool_rows} documents." if m.spearman else "")
        + (f" Not distilled: {', '.join(m.distill_skipped)}." if m.distill_skipped else "")
    )


@SPEC.implement
def run(request: PRRCRateRequest, ctx: ToolContext) -> PRRCRateResult:
    dims = list(dict.fromkeys(request.dimensions))
    stats = ReadStats()
    ids, texts = [], []
    for b in read_batches(request.corpus, ("id", "text"), allowed_roots=ctx.data_roots, stats=stats):
        ids += b.column("id").to_pylist()
        texts += b.column("text").to_pylist()
    skipped = dict(stats.skipped)
    usable = [i for i, t in enumerate(texts) if t and t.strip()]
    if len(usable) < len(ids):
        skipped["prrc_empty_text"] = len(ids) - len(usable)
    if not usable:
        raise BadInput(f"all {len(ids)} documents have empty or whitespace-only text", where="prrc_rate.corpus")

    # 1. ratings: the LLM's on a sample, or the file supplied; written before anything else can fail
    if request.ratings is not None:
        grades = _read_ratings(request.ratings, ctx, dims)
        r = _Ratings("ratings", [d for d in dims if d in grades], grades)
    else:
        r = _rate_sample(request, ctx, dims, ids, texts, usable)
    dims, ratings = r.dims, r.grades
    rated = {d: len(ratings[d]) for d in dims}
    rating = PRRCRatingMetrics(
        source=r.source, rated=rated, garbage=r.garbage, not_rated=r.not_rated, partial=bool(r.not_rated),
        mean_rating={d: float(np.mean(list(ratings[d].values()))) for d in dims if ratings[d]})
    ratings_id, rated_ids = _write_ratings(ctx, r, rating)
    artifacts = {"ratings": ratings_id}

    # 2. distillation: a rater trained on the ratings scores the whole pool
    kind = request.distill_model
    if kind == "auto":
        kind = "encoder" if ctx.resolve_device().startswith("cuda") else "ridge"
    dist = _Distilled()
    if request.distill and any(rated.values()):
        dist = (_distil_encoder(request, ctx, dims, ratings, ids, texts) if kind == "encoder"
                else _distil_embeddings(request, ctx, kind, dims, ratings))
    elif not request.distill:
        dist.skipped = {d: "distill=false" for d in dims}
    distil = PRRCDistilMetrics(spearman=dist.spearman, within_one=dist.within, distill_skipped=dist.skipped,
                               distilled_with=kind if dist.scores else None, distill_device=dist.device)
    if dist.scores:
        artifacts.update(_write_scores(ctx, dist, distil, kind))

    pool_rows = len(dist.pool_ids) if dist.scores else 0
    rows = RowCounts(rows_in=len(ids) + sum(stats.skipped.values()), rows_out=pool_rows or len(rated_ids),
                     skipped=skipped)
    metrics = PRRCRateMetrics(**dict(rating), **dict(distil))
    return PRRCRateResult.of(metrics, summary=_summary(metrics, dims, len(rated_ids), kind, pool_rows),
                             artifacts=artifacts, rows=rows, score_columns=list(dist.scores))
