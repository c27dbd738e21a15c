"""dsir: hashed n-gram importance resampling (Xie, Santurkar, Ma, Liang; NeurIPS 2023).

``run`` reads the pool once: each batch is featurized in a worker process and its bucket ids go to
a scratch file in the workspace (2 bytes per n-gram), so the raw model, the log weights and the
selected documents' features all come from that one read. Memory: about 9 bytes per document
(float32 log weight per target, int32 length, eligibility), plus one batch.

Defaults differ from the reference package in two places, both switchable:
- ``hash="fast"`` (``"sha256"`` reproduces the reference's bucket ids and float64 log weights);
- ``target_prior="auto"``: the target model is the posterior mean under a Dirichlet prior centred on
  the raw model, with the prior strength fitted by empirical Bayes. With the reference's
  ``log(p + 1e-8)`` floor a target of a few hundred documents leaves most buckets empty, and every
  n-gram it never saw costs about -9 nats, so the weight mostly counts unseen n-grams (it prefers
  short, generic documents). ``"none"`` restores the reference behaviour.
Length: log weights are sums over a document's n-grams, as in the paper; ``length_normalize=True``
ranks by the per-n-gram mean instead. The ``min_example_length`` filter (100 words) is the
reference's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import NO_DOMAIN, CorpusSpec, ReadStats, read_batches
from tools.dsir import core
from tools.dsir.core import DSIRModel, FeatureConfig, Runner, fit_model, gumbel_topk
from tools.dsir.schema import SPEC, DSIRRequest, DSIRResult
from tools.errors import BadInput, field_error
from tools.selection import format_domain_counts, selection_table, write_selection

__all__ = ["SPEC", "DSIRRequest", "DSIRResult", "run", "core"]

_BATCH_ROWS = 8192
_PRIOR_DOCS = 5000  # target documents used to fit the prior strength


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


def _count_target(
    spec: CorpusSpec, where: str, cfg: FeatureConfig, runner: Runner, ctx: ToolContext, budget: int | None
) -> tuple[np.ndarray, int, core.BatchFeatures]:
    """Bucket counts of a target corpus, read in order until ``budget`` n-gram counts are passed.

    Also returns the features of its first ``_PRIOR_DOCS`` documents (to fit the prior strength).
    """
    counts = np.zeros(cfg.num_buckets, dtype=np.int64)
    docs = used = 0
    kept: list[core.BatchFeatures] = []
    try:
        batches = read_batches(spec, ("text",), allowed_roots=ctx.data_roots, batch_rows=_BATCH_ROWS,
                               check_ids=False)
        jobs = ((cfg, b.column("text").to_pylist(), None, True) for b in batches)
        for ntok, c, feats in runner.map(core._worker_featurize, jobs):
            totals = feats.ngram_totals()
            take = _cut_counts(totals, budget, used)
            if take < ntok.size:
                mask = np.zeros(ntok.size, dtype=bool)
                mask[:take] = True
                c = feats.counts(cfg.num_buckets, mask)
                feats = feats.head(take)
            counts += c
            used += int(totals[:take].sum())
            if docs < _PRIOR_DOCS:
                kept.append(feats.head(_PRIOR_DOCS - docs))
            docs += take
            if take < ntok.size:
                break
    except BadInput as e:
        raise BadInput(f"{e.message} ({e.where})" if e.where else e.message, where=where, hint=e.hint) from None
    if counts.sum() == 0:
        raise BadInput(f"the target has {docs} documents but no words to count ({spec.path})", where=where)
    return counts, docs, core.BatchFeatures.concat(kept)


@contextmanager
def _field(where: str) -> Iterator[None]:
    """Re-raise the reader's BadInput (which names the file) as an error of this request field."""
    try:
        yield
    except BadInput as e:
        raise BadInput(f"{e.message} ({e.where})" if e.where else e.message, where=where, hint=e.hint) from None


@SPEC.implement
def run(request: DSIRRequest, ctx: ToolContext) -> DSIRResult:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tools.metrics import kl_divergence, kl_reduction

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
    cfg = FeatureConfig(ngrams=request.ngrams, num_buckets=request.num_buckets, hash=request.hash)
    budget = _budget(request)
    out_dtype = np.float64 if request.hash == "sha256" else np.float32
    scratch = ctx.workspace.tmp("dsir")  # pid in the name: swept only once this process is dead
    stats = ReadStats()
    try:
        with Runner(ctx.workers()) as runner:
            # -- 1. target model(s) -------------------------------------------------------------
            tcounts, tdocs, tfeats = [], [], []
            for i, spec in enumerate(targets):
                where = "dsir.target" + (f"[{i}]" if len(targets) > 1 else "")
                c, n, f = _count_target(spec, where, cfg, runner, ctx, budget if request.separate_targets else None)
                tcounts.append(c)
                tdocs.append(n)
                tfeats.append(f)
            if request.separate_targets:
                model_counts = np.stack(tcounts)
                props = (np.asarray(request.target_proportions, dtype=np.float64) if request.target_proportions
                         else model_counts.sum(1).astype(np.float64))
                props = props / props.sum()
            else:
                model_counts = np.sum(tcounts, axis=0)[None, :]
                props = np.ones(1)

            # -- 2. one read of the pool: features to scratch, ids/domains to a side file ----------
            raw_fit = np.zeros(cfg.num_buckets, dtype=np.int64)
            raw_all = np.zeros(cfg.num_buckets, dtype=np.int64)
            totals_per_batch: list[np.ndarray] = []  # n-gram count per document (int32)
            files: list[str] = []
            side_path = scratch / "ids.parquet"
            side_writer = None
            domains: Counter = Counter()
            used = 0
            names = core.scratch_files(scratch)

            def jobs():  # noqa: ANN202 - generator feeding the workers, writing ids as it goes
                nonlocal side_writer
                for b in read_batches(request.corpus, ("id", "text", "domain"), allowed_roots=ctx.data_roots,
                                      stats=stats, batch_rows=_BATCH_ROWS):
                    side = pa.table({"id": b.column("id"), "domain": b.column("domain")})
                    if side_writer is None:
                        side_writer = pq.ParquetWriter(side_path, side.schema)
                    side_writer.write_table(side)
                    for item in pc.value_counts(b.column("domain")).to_pylist():
                        domains[item["values"]] += int(item["counts"])
                    path = next(names)
                    files.append(path)
                    yield cfg, b.column("text").to_pylist(), path

            with ctx.progress("dsir: featurize pool", unit="docs") as bar, _field("dsir.corpus"):
                for ntok, c, _ in runner.map(core._worker_featurize, jobs()):
                    raw_all += c
                    totals = sum(np.maximum(ntok - m + 1, 0) for m in range(1, cfg.ngrams + 1))
                    if budget is None or used <= budget:
                        take = _cut_counts(totals, budget, used)
                        if take == ntok.size:
                            raw_fit += c
                        else:
                            mask = np.zeros(ntok.size, dtype=bool)
                            mask[:take] = True
                            raw_fit += core._worker_counts(files[len(totals_per_batch)], cfg.ngrams,
                                                           cfg.num_buckets, mask)
                        used += int(totals[:take].sum())
                    totals_per_batch.append(totals.astype(np.int32))
                    bar.update(int(ntok.size))
            if side_writer is not None:
                side_writer.close()
            sizes = [t.size for t in totals_per_batch]
            n_pool = sum(sizes)

            # -- 3. models and log weights ----------------------------------------------------------
            sample = tfeats if request.separate_targets else [core.BatchFeatures.concat(tfeats).head(_PRIOR_DOCS)]
            model: DSIRModel = fit_model(raw_fit, model_counts, prior=request.target_prior,
                                         laplace=request.target_laplace_smoothing, target_docs=sample)
            totals_all = np.concatenate(totals_per_batch)
            del totals_per_batch
            lengths = core.example_lengths(totals_all, cfg.ngrams)
            T = model.log_diff.shape[0]
            log_w = np.empty((n_pool, T), dtype=out_dtype)
            pos = 0
            with ctx.progress("dsir: weights", total=n_pool, unit="docs") as bar:
                for w in runner.map(core._worker_dot, ((f, cfg.ngrams, model.log_diff) for f in files)):
                    log_w[pos : pos + w.shape[0]] = w
                    pos += w.shape[0]
                    bar.update(w.shape[0])
            rank_w = log_w
            if request.length_normalize:
                rank_w = (log_w / np.maximum(totals_all, 1)[:, None]).astype(out_dtype)

            # -- 4. resample ------------------------------------------------------------------------
            eligible = lengths >= request.min_example_length
            n_elig = int(eligible.sum())
            if request.k > n_elig:
                raise field_error(
                    "dsir", "k",
                    f"at most the {n_elig} eligible documents (of {n_pool}; min_example_length="
                    f"{request.min_example_length} words excludes {n_pool - n_elig}; lower it to admit more)",
                    request.k,
                )
            if request.hash == "sha256":  # parity mode: the reference's stream over rows in file order
                picks, owner = gumbel_topk(rank_w, request.k, eligible=eligible, top_k=request.top_k,
                                           proportions=props if T > 1 else None, seed=request.seed)
            else:  # draw in id order, so the picks do not depend on how the pool's rows are ordered
                by_id = np.asarray(pc.sort_indices(pq.read_table(side_path, columns=["id"]).column("id")),
                                   dtype=np.int64)
                p_id, owner = gumbel_topk(rank_w[by_id], request.k, eligible=eligible[by_id], top_k=request.top_k,
                                          proportions=props if T > 1 else None, seed=request.seed)
                picks = by_id[p_id]
                del by_id, p_id
            del totals_all
            by_row = np.argsort(picks, kind="stable")  # pick ranks in row order
            picks_sorted = picks[by_row]

            # -- 5. scores artifact, picked ids/domains, picked features ----------------------------
            if T == 1:
                mix = log_w[:, 0]
                cols = ["dsir_log_weight"]
            else:
                lp = np.log(np.maximum(props, 1e-300))
                mix = np.logaddexp.reduce(log_w.astype(np.float64) + lp[None, :], axis=1).astype(out_dtype)
                cols = ["dsir_log_weight"] + [f"dsir_log_weight_t{t}" for t in range(T)]
            sel_ids = np.empty(picks.size, dtype=object)
            sel_dom = np.empty(picks.size, dtype=object)
            sel_counts = np.zeros(cfg.num_buckets, dtype=np.int64)
            has_domain = any(d != NO_DOMAIN for d in domains)
            metrics_scores = {"columns": cols, "hash": request.hash, "ngrams": cfg.ngrams,
                              "num_buckets": cfg.num_buckets, "target_prior": model.prior}
            with ctx.artifact("scores", "dsir", metrics=metrics_scores,
                              rows=RowCounts(rows_in=n_pool, rows_out=n_pool)) as w:
                writer = None
                pos = 0
                pf = pq.ParquetFile(side_path)
                batch_iter = pf.iter_batches(batch_size=_BATCH_ROWS)
                buf = pa.table({"id": pa.array([], pa.string()), "domain": pa.array([], pa.string())})
                for f, n in zip(files, sizes, strict=True):
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
            scores_id = w.id
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    # -- 6. selection artifact, metrics, summary ------------------------------------------------
    klred = kl_reduction(sel_counts, raw_all, np.stack(tcounts))
    kl_tr = float(np.mean([kl_divergence(t, raw_all) for t in tcounts]))
    dom_list = [None if d is None else str(d) for d in sel_dom] if has_domain else None
    table = selection_table(list(sel_ids), weight=np.ones(picks.size), score=rank_w[picks, owner].astype(np.float64),
                            domain=dom_list)
    if T > 1:
        table = table.append_column("target", pa.array(owner.astype(np.int32)))
    counts = dict(Counter("(none)" if d is None else d for d in dom_list).most_common()) if dom_list else {}
    skipped = dict(stats.skipped)
    if n_pool - n_elig:
        skipped["dsir_too_short"] = n_pool - n_elig
    rows = RowCounts(rows_in=n_pool + sum(stats.skipped.values()), rows_out=int(picks.size), skipped=skipped)
    per_target = [int((owner == t).sum()) for t in range(T)]
    metrics = {
        "kl_reduction": klred,
        "kl_target_raw": kl_tr,
        "domain_counts": counts,
        "pool_domain_share": {("(none)" if d is None else d): c / n_pool for d, c in domains.items()}
        if has_domain else {},
        "eligible": n_elig,
        "target_prior": model.prior,
        "target_proportions": props.tolist(),
        "picks_per_target": per_target,
        "raw_fit_ngrams": int(raw_fit.sum()),
        "scores": scores_id,
    }
    sel_id = write_selection(ctx, table, request.corpus, metrics=metrics, rows=rows)
    prior_txt = ("reference 1e-8 floor" if model.prior[0] is None
                 else "Dirichlet prior " + "/".join(f"{a:.3g}" for a in model.prior))
    tgt_txt = f"{len(targets)} targets ({', '.join(f'{p:.0%}' for p in props)})" if T > 1 else \
        f"target of {sum(tdocs)} docs"
    summary = (
        f"DSIR selected {picks.size} of {n_pool} documents ({n_elig} with >= {request.min_example_length} words) "
        f"for a {tgt_txt}; {'top-k' if request.top_k else 'Gumbel top-k'}, {cfg.ngrams}-grams, "
        f"{cfg.num_buckets} buckets, {request.hash} hash, {prior_txt}, seed {request.seed}. "
        f"KL reduction {klred:.3f} nats (KL target||pool {kl_tr:.3f})."
        + (f" Domains: {format_domain_counts(counts)}." if counts else "")
        + f" Selection {sel_id}; scores {scores_id}."
    )
    return DSIRResult(
        summary=summary,
        artifacts={"selection": sel_id, "scores": scores_id},
        rows=rows,
        k=int(picks.size),
        pool_size=n_pool,
        domain_counts=counts,
        eligible=n_elig,
        kl_reduction=klred,
        kl_target_raw=kl_tr,
        target_prior=model.prior,
        target_docs=tdocs,
        target_proportions=props.tolist(),
        score_columns=cols + ["dsir_length", "dsir_eligible"],
    )
