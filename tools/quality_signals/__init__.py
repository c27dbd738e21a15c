"""quality_signals: one scores table with a column per quality signal, for filters and Meta-rater.

Heuristic columns (RedPajama-V2 / Gopher, see :mod:`tools.quality_signals.core`) are computed batch by
batch through the engine's worker pool. Optional model-based columns:

- ``dsir_<target>``: DSIR log importance weight of each document against a target corpus, per word
  (the sum grows with length, which ``word_count`` already measures), from the ``dsir`` tool's scores
  artifact (Meta-rater uses books, Wikipedia and AutoMathText targets);
- ``lm_loss``: loss per byte under a proxy LM trained on reference text (CCNet's Wikipedia-perplexity
  idea with :mod:`tools.proxy_lm`); ``causal_lm_nll``: mean token loss under a local causal LM;
- ``embed_classifier``: a logistic regression on embeddings, reference documents against a seeded
  random sample of the pool (the fastText / FineWeb-Edu-classifier idea).

Documents with empty or whitespace-only text get no row; they are counted as
``quality_signals_empty_text``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import ReadStats
from tools.errors import BadInput, ResourceUnavailable
from tools.quality_signals import core
from tools.quality_signals.schema import (
    SPEC,
    QualitySignalsMetrics,
    QualitySignalsRequest,
    QualitySignalsResult,
)

__all__ = ["SPEC", "QualitySignalsMetrics", "QualitySignalsRequest", "QualitySignalsResult", "run", "core"]


def _heuristic_batch(batch: Any, keep: tuple[str, ...]) -> dict[str, Any]:
    """Engine worker: ids, the non-empty mask and the kept signal columns of one batch."""
    import pyarrow.compute as pc

    text = pc.fill_null(batch.column("text"), "")
    empty = np.asarray(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0))
    cols = core.signals(text)
    return {"id": batch.column("id").to_pylist(), "empty": empty, **{k: cols[k] for k in keep}}


def _lm_batch(batch: Any, state: bytes) -> np.ndarray:
    """Engine worker: each document's loss per byte under the reference proxy LM."""
    from tools.proxy_lm import ProxyLM

    lm = ProxyLM.from_bytes(state)
    texts = [t or "" for t in batch.column("text").to_pylist()]
    out = np.full(len(texts), np.nan)
    ok = [i for i, t in enumerate(texts) if t.strip()]
    if ok:
        ev = lm.evaluate([texts[i] for i in ok])
        out[ok] = ev.doc_loss
    return out


def _hash_order(ids: list[str], seed: int) -> np.ndarray:
    h = [int.from_bytes(hashlib.blake2b(f"{seed}\x00{i}".encode(), digest_size=8).digest(), "little") for i in ids]
    return np.argsort(np.asarray(h, dtype=np.uint64), kind="stable")


def _reference_texts(ref: Any, ctx: ToolContext, field: str) -> list[str]:
    from tools.corpus import read_table

    try:
        texts = [t for t in read_table(ref, ("text",), allowed_roots=ctx.data_roots, check_ids=False)
                 .column("text").to_pylist() if t and t.strip()]
    except BadInput as e:
        raise BadInput(f"{e.message} ({e.where})" if e.where else e.message, where=f"quality_signals.{field}") from None
    if not texts:
        raise BadInput("has no non-empty texts", where=f"quality_signals.{field}")
    return texts


# ---------------------------------------------------------------------------------- model columns


def _dsir_columns(request: QualitySignalsRequest, ctx: ToolContext, ids: list[str]) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    from tools import dsir

    out: dict[str, np.ndarray] = {}
    for i, target in enumerate(request.dsir_targets or []):
        stem = Path(target.path).stem if hasattr(target, "path") else f"t{i}"
        name = f"dsir_{''.join(c if c.isalnum() else '_' for c in stem)}"
        if name in out:
            name = f"{name}_{i}"
        res = dsir.run({"corpus": request.corpus.model_dump(), "target": target.model_dump(), "k": 1,
                        "min_example_length": 1, "top_k": True}, ctx)
        tbl = ctx.workspace.get(res.artifacts["scores"]).table(["id", "dsir_log_weight", "dsir_length"])
        pos = np.asarray(pc.index_in(pa.array(ids, pa.string()), value_set=tbl.column("id")).fill_null(-1))
        w = np.asarray(tbl.column("dsir_log_weight").to_numpy(zero_copy_only=False), dtype=np.float64)
        w = w / np.maximum(np.asarray(tbl.column("dsir_length").to_numpy(zero_copy_only=False), np.float64), 1.0)
        out[name] = np.where(pos >= 0, w[np.maximum(pos, 0)], np.nan)
    return out


def _lm_column(request: QualitySignalsRequest, ctx: ToolContext, keep: np.ndarray) -> np.ndarray:
    """Computed over every row in corpus order (a second read); ``keep`` picks the non-empty ones."""
    from tools.engine import map_batches
    from tools.proxy_lm import ProxyConfig, ProxyLM

    ref = _reference_texts(request.lm_reference, ctx, "lm_reference")
    lm = ProxyLM(ProxyConfig(kind=request.lm_kind), seed=request.seed)
    lm.train(ref, request.lm_tokens)
    parts = list(map_batches(functools.partial(_lm_batch, state=lm.to_bytes()), request.corpus, ctx,
                             columns=("id", "text"), desc="quality_signals: reference LM loss",
                             resume="quality_signals.lm"))
    values = np.concatenate(parts) if parts else np.zeros(0)
    if values.size != keep.size:
        raise BadInput(f"the corpus changed while it was read ({keep.size} rows, then {values.size})",
                       where="quality_signals.corpus")
    return values[keep]


def _causal_lm_column(request: QualitySignalsRequest, ctx: ToolContext, texts: list[str]) -> np.ndarray:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ResourceUnavailable("causal_lm needs the 'transformers' package",
                                  hint="pip install transformers") from e
    from tools.refs import resolve_input

    path = resolve_input(request.causal_lm, ctx, field="quality_signals.causal_lm")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot load a causal LM from {path}: {e}", where="quality_signals.causal_lm") from None
    device = ctx.resolve_device()
    model = model.to(device).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    out = np.empty(len(texts))
    with ctx.progress("quality_signals: causal LM loss", total=len(texts), unit="docs") as bar, torch.no_grad():
        for s in range(0, len(texts), 16):
            enc = tok(texts[s : s + 16], return_tensors="pt", truncation=True, padding=True,
                      max_length=request.causal_lm_max_tokens).to(device)
            logits = model(**enc).logits[:, :-1].float()
            tgt = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")
            out[s : s + 16] = ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy()
            bar.update(len(texts[s : s + 16]))
    return out


def _classifier_column(request: QualitySignalsRequest, ctx: ToolContext, ids: list[str]) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from tools.embeddings import pool_vectors, text_vectors

    pv = pool_vectors(request.corpus, ctx, embeddings=request.embeddings, missing="skip")
    ref = _reference_texts(request.classifier_reference, ctx, "classifier_reference")
    rv = text_vectors(ref, ctx, model=pv.model)
    if rv.shape[1] != pv.vectors.shape[1]:
        raise BadInput(f"reference vectors have dimension {rv.shape[1]}, the pool's {pv.vectors.shape[1]}",
                       where="quality_signals.embeddings")
    neg = _hash_order(pv.ids, request.seed)[: min(request.classifier_negatives, len(pv.ids))]
    X = np.vstack([rv, pv.vectors[neg]])
    y = np.r_[np.ones(len(rv)), np.zeros(neg.size)]
    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    folds = int(min(5, len(rv), neg.size))
    acc = float(np.mean(cross_val_score(clf, X, y, cv=StratifiedKFold(folds, shuffle=True,
                                                                      random_state=request.seed)))) \
        if folds >= 2 else float("nan")
    clf.fit(X, y)
    prob = clf.predict_proba(pv.vectors)[:, 1]
    pos = {d: i for i, d in enumerate(pv.ids)}
    return np.asarray([prob[pos[d]] if d in pos else np.nan for d in ids]), acc


# ---------------------------------------------------------------------------------- run


@SPEC.implement
def run(request: QualitySignalsRequest, ctx: ToolContext) -> QualitySignalsResult:
    import pyarrow as pa

    from tools.engine import drop_resume, map_batches

    # -- 1. heuristic columns, batch by batch on the engine --------------------------------------------
    keep = tuple(request.signals) if request.signals else core.SIGNALS
    need = tuple(dict.fromkeys(keep + (tuple(c for _, c, _, _ in core.GOPHER_RULES) if request.gopher_pass else ())))
    stats = ReadStats()
    parts = list(map_batches(functools.partial(_heuristic_batch, keep=need), request.corpus, ctx,
                             columns=("id", "text"), desc="quality_signals: heuristics", stats=stats,
                             resume="quality_signals.heuristics"))
    all_ids = [i for p in parts for i in p["id"]]
    empty = np.concatenate([p["empty"] for p in parts]) if parts else np.zeros(0, bool)
    mask = ~empty
    ids = [d for d, m in zip(all_ids, mask, strict=True) if m]
    if not ids:
        raise BadInput(f"all {len(all_ids)} documents have empty or whitespace-only text",
                       where="quality_signals.corpus")
    cols = {k: np.concatenate([p[k] for p in parts])[mask] for k in need}
    out: dict[str, np.ndarray] = {k: cols[k] for k in keep}
    # -- 2. the Gopher rules -----------------------------------------------------------------------------
    fails, pass_frac = _gopher(cols, out) if request.gopher_pass else ({}, None)
    # -- 3. model-based columns ----------------------------------------------------------------------------
    acc = _model_columns(request, ctx, ids, mask, out)

    # -- 4. the scores table and its plot --------------------------------------------------------------
    skipped = dict(stats.skipped)
    if empty.any():
        skipped["quality_signals_empty_text"] = int(empty.sum())
    rows = RowCounts(rows_in=len(all_ids) + sum(stats.skipped.values()), rows_out=len(ids), skipped=skipped)
    names = list(out)
    metrics = QualitySignalsMetrics(
        documents=len(ids), gopher_fail_counts=fails, gopher_pass_fraction=pass_frac,
        signal_means={k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in out.items()},
        classifier_cv_accuracy=None if acc is None or not np.isfinite(acc) else acc,
    )
    with ctx.artifact("scores", "quality_signals", metrics=metrics.manifest(columns=names), rows=rows) as w:
        w.table(pa.table({"id": pa.array(ids, pa.string()), **{k: pa.array(v) for k, v in out.items()}}))
    plot_id = _plot(ctx, out)
    for name in ("quality_signals.heuristics", "quality_signals.lm"):  # the artifact is written: done
        drop_resume(ctx, name)
    return QualitySignalsResult.of(metrics, summary=_summary(metrics, out, len(all_ids), acc) + f" Scores {w.id}.",
                                   artifacts={"scores": w.id, "plot_histograms": plot_id}, rows=rows,
                                   score_columns=names)


def _gopher(cols: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> tuple[dict[str, int], float]:
    """Adds ``gopher_pass`` (1 = passes every rule) to ``out``; (documents failing each rule, pass share)."""
    f = core.gopher_failures(cols)
    passed = ~np.any(np.stack(list(f.values())), axis=0)
    out["gopher_pass"] = passed.astype(np.float64)
    return {k: int(v.sum()) for k, v in f.items() if v.any()}, float(passed.mean())


def _model_columns(request: QualitySignalsRequest, ctx: ToolContext, ids: list[str], mask: np.ndarray,
                   out: dict[str, np.ndarray]) -> float | None:
    """Adds the requested DSIR, proxy-LM, classifier and causal-LM columns to ``out``; the classifier's
    held-out accuracy (None without a classifier)."""
    out.update(_dsir_columns(request, ctx, ids))
    if request.lm_reference is not None:
        out["lm_loss"] = _lm_column(request, ctx, mask)
    acc = None
    if request.classifier_reference is not None:
        out["embed_classifier"], acc = _classifier_column(request, ctx, ids)
    if request.causal_lm is not None:
        from tools.corpus import read_table

        tt = read_table(request.corpus, ("id", "text"), allowed_roots=ctx.data_roots)
        by_id = dict(zip(tt.column("id").to_pylist(), tt.column("text").to_pylist(), strict=True))
        out["causal_lm_nll"] = _causal_lm_column(request, ctx, [by_id[d] for d in ids])
    return acc


def _plot(ctx: ToolContext, out: dict[str, np.ndarray]) -> str:
    """Histograms of the headline heuristics and every model-based column; the plot artifact id."""
    from tools.meta_rater import plots

    names = list(out)
    shown = [k for k in ("word_count", "mean_word_length", "unigram_entropy", "stop_word_fraction",
                         "frac_words_no_alpha", "frac_lines_duplicated", "frac_chars_top_2gram",
                         "frac_chars_dup_5gram") if k in out] + [k for k in names if k.startswith(("dsir_", "lm_", "embed_",
                                                                                                 "causal_"))]
    fig = plots.histograms({k: out[k] for k in (shown or names[:12])}, title="quality signals")
    with ctx.artifact("plot", "plot_histograms") as pw:
        pw.figure(fig)
    plots.close(fig)
    return pw.id


def _summary(m: QualitySignalsMetrics, out: dict[str, np.ndarray], n_read: int, acc: float | None) -> str:
    top_fail = sorted(m.gopher_fail_counts.items(), key=lambda kv: -kv[1])[:3]
    pass_frac = m.gopher_pass_fraction
    return (
        f"Scored {m.documents} documents with {len(out)} quality signals"
        + (f" ({n_read - m.documents} empty documents skipped)" if n_read > m.documents else "") + "."
        + (f" Gopher rules pass {pass_frac:.0%}; most failed: {', '.join(f'{k} {v}' for k, v in top_fail)}."
           if pass_frac is not None and top_fail else (" All pass the Gopher rules." if pass_frac is not None else ""))
        + (f" Median word count {np.median(out['word_count']):.0f}." if "word_count" in out else "")
        + (f" Embedding classifier held-out accuracy {acc:.2f}." if acc is not None and np.isfinite(acc) else "")
    )
