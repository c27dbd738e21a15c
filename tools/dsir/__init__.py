"""dsir: hashed n-gram importance resampling (Xie, Santurkar, Ma, Liang; NeurIPS 2023).

``run`` follows the paper's steps: (1) hashed n-gram models of the target(s), (2) the raw model from
one read of the pool, (3) importance log weights log p_target(x) - log p_raw(x) per document, (4)
Gumbel top-k resampling of k documents, (5) the scores artifact and the selection with its KL
reduction. The pool is read once: :func:`tools.engine.map_batches` runs the pure per-batch
:func:`featurize_batch` in worker processes and gathers the features in corpus order; this process
writes their bucket ids to a scratch file in the workspace (2 bytes per n-gram), so the raw model,
the log weights and the selected documents' features all come from that one read. Memory: about 9 bytes per document
(float32 log weight per target, int32 length, eligibility), plus one batch. On ``engine="ray"`` the
target and pool featurizing and the scoring (:func:`score_batch`) run as Ray tasks; the fit sums
the per-batch bucket counts the workers return, in corpus order, so the weights and the selection
equal the local engine's. The featurize pass keeps its finished batches (Ray: shards) in the
workspace (``tools.engine.Resume``), so a run killed midway recomputes only the rest; they are
dropped once the scores artifact is written.

Defaults differ from the reference package in two places, both switchable:
- ``hash="fast"`` (``"sha256"`` reproduces the reference's bucket ids and float64 log weights);
- ``target_prior="auto"``: the target model is the posterior mean under a Dirichlet prior centred on
  the raw model, with the prior strength fitted by empirical Bayes. With the reference's
  ``log(p + 1e-8)`` floor a target of a few hundred documents leaves most buckets empty, and every
  n-gram it never saw costs about -9 nats, so the weight mostly counts unseen n-grams (it prefers
  short, generic documents). ``"none"`` restores the reference behaviour.
Length: log weights are sums over a document's n-grams, as in the paper; ``length_normalize=True``
ranks by the per-n-gram mean instead. ``min_example_length="auto"`` is the reference's 100 words or
the target's 5th-percentile length when shorter, and ``length_model`` adds log p_T(len)/q(len) to
the weight (``core.length_rule``); parity: ``min_example_length=100, target_prior="none"``.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import NO_DOMAIN, CorpusSpec, ReadStats
from tools.dsir import core
from tools.dsir.core import DSIRModel, FeatureConfig, fit_model, gumbel_topk
from tools.dsir.schema import SPEC, DSIRMetrics, DSIRRequest, DSIRResult
from tools.engine import Pool, drop_resume, map_batches, map_items
from tools.errors import BadInput, field_error
from tools.selection import format_domain_counts, record_selection, selection_table

__all__ = ["SPEC", "DSIRMetrics", "DSIRRequest", "DSIRResult", "run", "core", "featurize_batch", "score_batch"]

_BATCH_ROWS = 8192
_PRIOR_DOCS = 5000  # target documents used to fit the prior strength
_RESUME = "dsir.featurize"
"""The pool's featurize pass keeps finished batches (tools.engine.Resume): a killed run resumes there."""


# ------------------------------------------------------------------------------- per batch


@dataclass
class Featurized:
    """What a worker returns for one batch: its features and bucket counts (+ ids/domains passed through)."""

    feats: core.BatchFeatures
    counts: np.ndarray
    ids: Any = None
    domains: Any = None


def featurize_batch(cfg: FeatureConfig, batch: Any, *, keep_ids: bool = True) -> Featurized:
    """A pure per-batch function (runs in a worker): hashed n-gram features of the batch's texts."""
    feats = core._featurizer(cfg)(batch.column("text").to_pylist())
    names = batch.schema.names
    return Featurized(feats, feats.counts(cfg.num_buckets),
                      batch.column("id") if keep_ids and "id" in names else None,
                      batch.column("domain") if keep_ids and "domain" in names else None)


def _budget(request: DSIRRequest) -> int | None:
    v = request.num_tokens_to_fit
    if v == "auto":
        return 100_000 * request.num_buckets
    if v == "all":
        return None
    return int(v)


def _cut_counts(totals: np.ndarray, budget: int | None, used: int) -> int:
    """How many documents of a batch the fit takes: up to and including the one that passes the budget."""
    if budget is None:
        return totals.size
    cum = used + np.cumsum(totals)
    over = np.flatnonzero(cum > budget)
    return totals.size if over.size == 0 else int(over[0]) + 1


@contextmanager
def _field(where: str) -> Iterator[None]:
    """Re-raise the reader's BadInput (which names the file) as an error of this request field."""
    try:
        yield
    except BadInput as e:
        raise BadInput(f"{e.message} ({e.where})" if e.where else e.message, where=where, hint=e.hint) from None


def _check(request: DSIRRequest) -> list[CorpusSpec]:
    targets = request.target if isinstance(request.target, list) else [request.target]
    if not targets:
        raise field_error("dsir", "target", "at least one target corpus", [])
    if request.target_proportions is not None:
        if not request.separate_targets:
            raise field_error("dsir", "target_proportions", "used only with separate_targets=true",
                              request.target_proportions)
        if len(request.target_proportions) != len(targets) or min(request.target_proportions) < 0 \
                or sum(request.target_proportions) <= 0:
            raise field_error("dsir", "target_proportions",
                              f"{len(targets)} non-negative numbers with a positive sum", request.target_proportions)
    return targets


# ------------------------------------------------------------------------- 1. target models


@dataclass
class Targets:
    counts: list[np.ndarray]  # bucket counts per target
    docs: list[int]  # documents read per target
    sample: list[core.BatchFeatures]  # features of the first documents (prior fit)
    model_counts: np.ndarray  # (T, B): one row per target model
    props: np.ndarray  # (T,) mixture of the targets


def _count_target(spec: CorpusSpec, where: str, cfg: FeatureConfig, pool: Pool, ctx: ToolContext,
                  budget: int | None) -> tuple[np.ndarray, int, core.BatchFeatures]:
    """Bucket counts of a target corpus, read in order until ``budget`` n-gram counts are passed.

    Also returns the features of its first ``_PRIOR_DOCS`` documents (to fit the prior strength).
    """
    counts = np.zeros(cfg.num_buckets, dtype=np.int64)
    docs = used = 0
    kept: list[core.BatchFeatures] = []
    fn = functools.partial(featurize_batch, cfg, keep_ids=False)
    with _field(where), contextlib.closing(map_batches(fn, spec, ctx, columns=("text",), batch_rows=_BATCH_ROWS,
                                                       check_ids=False, pool=pool)) as results:
        for r in results:
            feats, c = r.feats, r.counts
            totals = feats.ngram_totals()
            take = _cut_counts(totals, budget, used)
            if take < feats.n_docs:
                mask = np.zeros(feats.n_docs, dtype=bool)
                mask[:take] = True
                c = feats.counts(cfg.num_buckets, mask)
                feats = feats.head(take)
            counts += c
            used += int(totals[:take].sum())
            if docs < _PRIOR_DOCS:
                kept.append(feats.head(_PRIOR_DOCS - docs))
            docs += take
            if take < totals.size:
                break
    if counts.sum() == 0:
        raise BadInput(f"the target has {docs} documents but no words to count ({spec.path})", where=where)
    return counts, docs, core.BatchFeatures.concat(kept)


def target_models(request: DSIRRequest, targets: list[CorpusSpec], cfg: FeatureConfig, pool: Pool,
                  ctx: ToolContext, budget: int | None) -> Targets:
    """Step 1: the target's hashed n-gram counts (one model per target with ``separate_targets``)."""
    counts, docs, sample = [], [], []
    for i, spec in enumerate(targets):
        where = "dsir.target" + (f"[{i}]" if len(targets) > 1 else "")
        c, n, f = _count_target(spec, where, cfg, pool, ctx, budget if request.separate_targets else None)
        counts.append(c)
        docs.append(n)
        sample.append(f)
    if request.separate_targets:
        model_counts = np.stack(counts)
        props = (np.asarray(request.target_proportions, dtype=np.float64) if request.target_proportions
                 else model_counts.sum(1).astype(np.float64))
        props = props / props.sum()
    else:
        model_counts = np.sum(counts, axis=0)[None, :]
        props = np.ones(1)
    return Targets(counts, docs, sample, model_counts, props)


# --------------------------------------------------------------------------- 2. the raw model


@dataclass
class PoolPass:
    raw_fit: np.ndarray  # bucket counts the raw model is fitted on (up to the token budget)
    raw_all: np.ndarray  # bucket counts of the whole pool (for the KL evidence)
    totals: np.ndarray  # n-gram count per document (int32)
    sizes: list[int]  # documents per batch
    files: list[str]  # scratch file per batch (bucket ids)
    side_path: Path  # ids and domains, in pool order
    domains: Counter = field(default_factory=Counter)

    @property
    def n(self) -> int:
        return int(self.totals.size)


def read_pool(request: DSIRRequest, cfg: FeatureConfig, pool: Pool, ctx: ToolContext, scratch: Path,
              budget: int | None, stats: ReadStats) -> PoolPass:
    """Step 2: one read of the pool. Workers featurize; this process keeps the books in pool order."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    raw_fit = np.zeros(cfg.num_buckets, dtype=np.int64)
    raw_all = np.zeros(cfg.num_buckets, dtype=np.int64)
    totals_per_batch: list[np.ndarray] = []
    files: list[str] = []
    side_path = scratch / "ids.parquet"
    side_writer = None
    domains: Counter = Counter()
    used = 0
    names = core.scratch_files(scratch)
    fn = functools.partial(featurize_batch, cfg)
    try:
        with _field("dsir.corpus"):
            for r in map_batches(fn, request.corpus, ctx, columns=("id", "text", "domain"), batch_rows=_BATCH_ROWS,
                                 desc="dsir: featurize pool", stats=stats, pool=pool, resume=_RESUME):
                feats = r.feats
                side = pa.table({"id": r.ids, "domain": r.domains})
                if side_writer is None:
                    side_writer = pq.ParquetWriter(side_path, side.schema)
                side_writer.write_table(side)
                for item in pc.value_counts(r.domains).to_pylist():
                    domains[item["values"]] += int(item["counts"])
                path = next(names)
                core.save_features(path, feats)
                files.append(path)
                raw_all += r.counts
                totals = feats.ngram_totals()
                if budget is None or used <= budget:
                    take = _cut_counts(totals, budget, used)
                    if take == feats.n_docs:
                        raw_fit += r.counts
                    else:
                        mask = np.zeros(feats.n_docs, dtype=bool)
                        mask[:take] = True
                        raw_fit += feats.counts(cfg.num_buckets, mask)
                    used += int(totals[:take].sum())
                totals_per_batch.append(totals.astype(np.int32))
    finally:
        if side_writer is not None:
            side_writer.close()
    return PoolPass(raw_fit, raw_all, np.concatenate(totals_per_batch), [t.size for t in totals_per_batch], files,
                    side_path, domains)


# ---------------------------------------------------------------------- 3. importance weights


def score_batch(log_diff: np.ndarray, feats: core.BatchFeatures) -> np.ndarray:
    """A pure per-batch function (runs on a worker): the batch's log importance weights (n, T)."""
    return feats.doc_dot(log_diff)


def log_weights(model: DSIRModel, raw: PoolPass, cfg: FeatureConfig, pool: Pool, ctx: ToolContext,
                out_dtype: type) -> np.ndarray:
    """Step 3: log p_target(x) - log p_raw(x) for every pool document (n, T), from the scratch features.

    Local engine: the pool's workers read the scratch files. ``engine="ray"``: this process reads
    them and Ray tasks score them (the model is sent once; only features and weights travel), so the
    scoring needs no filesystem shared with the workers.
    """
    T = model.log_diff.shape[0]
    log_w = np.empty((raw.n, T), dtype=out_dtype)
    pos = 0
    if ctx.engine == "ray":
        weights = map_items(functools.partial(score_batch, model.log_diff),
                            (core.load_features(f, cfg.ngrams) for f in raw.files), ctx)
    else:
        weights = pool.starmap(core._worker_dot, ((f, cfg.ngrams, model.log_diff) for f in raw.files))
    with ctx.progress("dsir: weights", total=raw.n, unit="docs") as bar:
        for w in weights:
            log_w[pos : pos + w.shape[0]] = w
            pos += w.shape[0]
            bar.update(w.shape[0])
    return log_w


# -------------------------------------------------------------------------------- 4. resample


def resample(request: DSIRRequest, rank_w: np.ndarray, eligible: np.ndarray, props: np.ndarray,
             side_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: k documents by Gumbel top-k over the (eligible) log weights: (rows, target of each)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    T = rank_w.shape[1]
    if request.hash == "sha256":  # parity mode: the reference's stream over rows in file order
        return gumbel_topk(rank_w, request.k, eligible=eligible, top_k=request.top_k,
                           proportions=props if T > 1 else None, seed=request.seed)
    # draw in id order, so the picks do not depend on how the pool's rows are ordered
    by_id = np.asarray(pc.sort_indices(pq.read_table(side_path, columns=["id"]).column("id")), dtype=np.int64)
    p_id, owner = gumbel_topk(rank_w[by_id], request.k, eligible=eligible[by_id], top_k=request.top_k,
                              proportions=props if T > 1 else None, seed=request.seed)
    return by_id[p_id], owner


# ------------------------------------------------------------------------- 5. scores artifact


@dataclass
class Picked:
    ids: np.ndarray  # object (k,): the picks' ids, in pick order
    domains: np.ndarray  # object (k,)
    counts: np.ndarray  # bucket counts of the picks (KL evidence)


def write_scores(ctx: ToolContext, request: DSIRRequest, raw: PoolPass, cfg: FeatureConfig, model: DSIRModel,
                 log_w: np.ndarray, props: np.ndarray, lengths: np.ndarray, eligible: np.ndarray,
                 picks: np.ndarray, out_dtype: type) -> tuple[str, list[str], Picked]:
    """Step 5: the scores artifact (every pool document), and the picks' ids, domains and features."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    T = log_w.shape[1]
    if T == 1:
        mix = log_w[:, 0]
        cols = ["dsir_log_weight"]
    else:
        lp = np.log(np.maximum(props, 1e-300))
        mix = np.logaddexp.reduce(log_w.astype(np.float64) + lp[None, :], axis=1).astype(out_dtype)
        cols = ["dsir_log_weight"] + [f"dsir_log_weight_t{t}" for t in range(T)]
    by_row = np.argsort(picks, kind="stable")  # pick ranks in row order
    picks_sorted = picks[by_row]
    sel_ids = np.empty(picks.size, dtype=object)
    sel_dom = np.empty(picks.size, dtype=object)
    sel_counts = np.zeros(cfg.num_buckets, dtype=np.int64)
    metrics = {"columns": cols, "hash": request.hash, "ngrams": cfg.ngrams, "num_buckets": cfg.num_buckets,
               "target_prior": model.prior}
    with ctx.artifact("scores", "dsir", metrics=metrics, rows=RowCounts(rows_in=raw.n, rows_out=raw.n)) as w:
        writer = None
        pos = 0
        batch_iter = pq.ParquetFile(raw.side_path).iter_batches(batch_size=_BATCH_ROWS)
        buf = pa.table({"id": pa.array([], pa.string()), "domain": pa.array([], pa.string())})
        for f, n in zip(raw.files, raw.sizes, strict=True):
            while buf.num_rows < n:
                buf = pa.concat_tables([buf, pa.Table.from_batches([next(batch_iter)])])
            side, buf = buf.slice(0, n), buf.slice(n)
            sl = slice(pos, pos + n)
            data = {"id": side.column("id"), "dsir_log_weight": pa.array(mix[sl])}
            if T > 1:
                for t in range(T):
                    data[f"dsir_log_weight_t{t}"] = pa.array(log_w[sl, t])
            data["dsir_length"] = pa.array(lengths[sl])
            data["dsir_eligible"] = pa.array(eligible[sl])
            tbl = pa.table(data)
            if writer is None:
                writer = pq.ParquetWriter(w.path("data.parquet"), tbl.schema, compression="zstd")
            writer.write_table(tbl)
            lo, hi = np.searchsorted(picks_sorted, [pos, pos + n])
            local = picks_sorted[lo:hi] - pos
            if local.size:
                order = by_row[lo:hi]
                sel_ids[order] = np.asarray(side.column("id").take(local).to_pylist(), dtype=object)
                sel_dom[order] = np.asarray(side.column("domain").take(local).to_pylist(), dtype=object)
                mask = np.zeros(n, dtype=bool)
                mask[local] = True
                sel_counts += core._worker_counts(f, cfg.ngrams, cfg.num_buckets, mask)
            pos += n
        if writer is not None:
            writer.close()
    return w.id, cols, Picked(sel_ids, sel_dom, sel_counts)


# ------------------------------------------------------------------------------------- run


@SPEC.implement
def run(request: DSIRRequest, ctx: ToolContext) -> DSIRResult:
    import pyarrow as pa

    targets = _check(request)
    cfg = FeatureConfig(ngrams=request.ngrams, num_buckets=request.num_buckets, hash=request.hash)
    budget = _budget(request)
    out_dtype = np.float64 if request.hash == "sha256" else np.float32
    scratch = ctx.workspace.tmp("dsir")  # pid in the name: swept only once this process is dead
    stats = ReadStats()
    try:
        with Pool(ctx.workers()) as pool:
            tgt = target_models(request, targets, cfg, pool, ctx, budget)  # 1
            raw = read_pool(request, cfg, pool, ctx, scratch, budget, stats)  # 2
            sample = tgt.sample if request.separate_targets else [core.BatchFeatures.concat(tgt.sample).head(_PRIOR_DOCS)]
            model = fit_model(raw.raw_fit, tgt.model_counts, prior=request.target_prior,
                              laplace=request.target_laplace_smoothing, target_docs=sample)
            log_w = log_weights(model, raw, cfg, pool, ctx, out_dtype)  # 3
            rule = core.length_rule(log_w, raw.totals, sample, cfg.ngrams, min_example_length=request.min_example_length,
                                    length_model=request.length_model == "on" or (
                                        request.length_model == "auto" and request.target_prior != "none"))
            log_w = rule.log_w
            rank_w = (log_w / np.maximum(raw.totals, 1)[:, None]).astype(out_dtype) if request.length_normalize \
                else log_w
            lengths, eligible = rule.lengths, rule.eligible
            n_pool, n_elig = raw.n, int(eligible.sum())
            if request.k > n_elig:
                raise field_error(
                    "dsir", "k",
                    f"at most the {n_elig} eligible documents (of {n_pool}; min_example_length="
                    f"{rule.floor} words excludes {n_pool - n_elig}; lower it to admit more)",
                    request.k,
                )
            picks, owner = resample(request, rank_w, eligible, tgt.props, raw.side_path)  # 4
            scores_id, cols, picked = write_scores(ctx, request, raw, cfg, model, log_w, tgt.props, lengths,
                                                   eligible, picks, out_dtype)  # 5
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    drop_resume(ctx, _RESUME)  # the scores artifact is written: the next run starts afresh

    # -- 6. the selection with its evidence ------------------------------------------------------------
    metrics = _evidence(request.k, tgt, raw, model, rule, rank_w, owner, picked, cols)
    has_domain = any(d != NO_DOMAIN for d in raw.domains)
    table = selection_table(list(picked.ids), weight=np.ones(picks.size),
                            score=rank_w[picks, owner].astype(np.float64),
                            domain=[str(d) for d in picked.domains] if has_domain else None)
    if len(tgt.props) > 1:
        table = table.append_column("target", pa.array(owner.astype(np.int32)))
    skipped = dict(stats.skipped)
    if n_pool - n_elig:
        skipped["dsir_too_short"] = n_pool - n_elig
    rows = RowCounts(rows_in=n_pool + sum(stats.skipped.values()), rows_out=int(picks.size), skipped=skipped)
    sel = record_selection(ctx, table, request.corpus, pool_domains=dict(raw.domains) if has_domain else None,
                           metrics=metrics.manifest(scores=scores_id), rows=rows)
    summary = _summary(request, cfg, n_pool, tgt, model, rule, metrics, sel.domain_counts,
                       rule.describe(request.k, rank_w)[2]) + f" Selection {sel.id}; scores {scores_id}."
    return DSIRResult.of(metrics, summary=summary, artifacts={"selection": sel.id, "scores": scores_id}, rows=rows,
                         k=int(picks.size), pool_size=n_pool, domain_counts=sel.domain_counts)


def _evidence(k: int, tgt: Targets, raw: PoolPass, model: DSIRModel, rule: core.LengthRule, rank_w: np.ndarray,
              owner: np.ndarray, picked: Picked, cols: list[str]) -> DSIRMetrics:
    """The selection's evidence: KL reduction on the hashed n-grams, the length floor's effect, the targets."""
    from tools.metrics import kl_divergence, kl_reduction

    pool_cut, top_cut, _ = rule.describe(k, rank_w)
    return DSIRMetrics(
        eligible=int(rule.eligible.sum()), min_example_length=rule.floor, length_model=rule.length_model,
        filtered_share=pool_cut, filtered_top_share=top_cut,
        kl_reduction=kl_reduction(picked.counts, raw.raw_all, np.stack(tgt.counts)),
        kl_target_raw=float(np.mean([kl_divergence(t, raw.raw_all) for t in tgt.counts])),
        target_prior=model.prior, target_docs=tgt.docs, target_proportions=tgt.props.tolist(),
        picks_per_target=[int((owner == t).sum()) for t in range(len(tgt.props))],
        raw_fit_ngrams=int(raw.raw_fit.sum()), score_columns=cols + ["dsir_length", "dsir_eligible"],
    )


def _summary(request: DSIRRequest, cfg: FeatureConfig, n_pool: int, tgt: Targets, model: DSIRModel,
             rule: core.LengthRule, m: DSIRMetrics, counts: dict[str, int], cut_txt: str) -> str:
    prior_txt = ("reference 1e-8 floor" if model.prior[0] is None
                 else "Dirichlet prior " + "/".join(f"{a:.3g}" for a in model.prior))
    props = m.target_proportions
    tgt_txt = f"{len(props)} targets ({', '.join(f'{p:.0%}' for p in props)})" if len(props) > 1 else \
        f"target of {sum(tgt.docs)} docs"
    return (
        f"DSIR selected {sum(m.picks_per_target)} of {n_pool} documents ({m.eligible} with >= {rule.floor} words"
        f"{', the target-derived floor' if rule.auto_floor else ''}{'; length-aware weights' if rule.length_model else ''}) "
        f"for a {tgt_txt}; {'top-k' if request.top_k else 'Gumbel top-k'}, {cfg.ngrams}-grams, "
        f"{cfg.num_buckets} buckets, {request.hash} hash, {prior_txt}, seed {request.seed}. "
        f"KL reduction {m.kl_reduction:.3f} nats (KL target||pool {m.kl_target_raw:.3f})."
        + (f" Domains: {format_domain_counts(counts)}." if counts else "")
        + (f" {cut_txt}" if cut_txt else "")
    )
