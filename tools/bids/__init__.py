"""bids: balanced influence-based data selection over an influence matrix (I/O and bookkeeping).

Inputs: an ``influence`` artifact (``data.npy`` N x M float32 + ``ids.parquet`` + ``columns.parquet``
with each column's task), or a ``.npy`` / ``.parquet`` matrix with ``val_tasks``. Row ids come from
the matrix (artifact ids or a Parquet ``id`` column), else from ``corpus`` in its row order, else row
numbers. The summary compares the selection with LESS's one-shot task-max on the same matrix, with
both described on the normalised matrix (a row belongs to the task where its task-mean z is highest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.bids import core
from tools.bids.schema import SPEC, BIDSMetrics, BIDSRequest, BIDSResult
from tools.contract import RowCounts, ToolContext
from tools.errors import BadInput, field_error
from tools.refs import resolve_input

__all__ = ["SPEC", "BIDSMetrics", "BIDSRequest", "BIDSResult", "run", "core", "load_influence"]

_TOOL = "bids"


@dataclass
class Influence:
    """A loaded influence matrix (possibly memory-mapped) with what is known about rows and columns."""

    A: np.ndarray
    ids: list[str] | None
    tasks: list[str | None] | None
    source: str


def load_influence(value: str, ctx: ToolContext, *, field: str = "bids.influence") -> Influence:
    """Resolve an artifact id / .npy / .parquet into an :class:`Influence` (no copy for .npy/artifacts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = resolve_input(value, ctx, field=field)
    if not isinstance(target, Path):  # an artifact
        if target.kind != "influence":
            raise BadInput(f"must be an influence artifact; got {target.id} ({target.kind})", where=field)
        A = target.array()
        ids_f, cols_f = target.file("ids.parquet"), target.file("columns.parquet")
        ids = pq.read_table(ids_f, columns=["id"]).column("id").to_pylist() if ids_f.exists() else None
        tasks = pq.read_table(cols_f, columns=["task"]).column("task").to_pylist() if cols_f.exists() else None
        return Influence(A, ids, tasks, target.id)
    suffix = target.suffix.lower()
    if suffix == ".npy":
        try:
            A = np.load(target, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise BadInput(f"is not a readable .npy matrix ({target}): {e}", where=field) from None
        return Influence(A, None, None, str(target))
    if suffix == ".parquet":
        try:
            t = pq.read_table(target)
        except (pa.ArrowInvalid, OSError) as e:
            raise BadInput(f"is not a readable Parquet file ({target}): {e}", where=field) from None
        ids = None
        if "id" in t.column_names:
            ids = [str(x) for x in t.column("id").to_pylist()]
            t = t.drop(["id"])
        bad = [f.name for f in t.schema if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))]
        if bad:
            raise BadInput(f"Parquet columns other than 'id' must be numeric (one per validation instance); "
                           f"non-numeric: {bad[:5]} ({target})", where=field)
        if t.num_columns == 0:
            raise BadInput(f"has no validation columns ({target})", where=field)
        A = np.column_stack([t.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in t.column_names])
        return Influence(A, ids, None, str(target))
    raise BadInput(f"must be an influence artifact id, a .npy or a .parquet file; got {target.name}", where=field)


def _check_finite(A: np.ndarray, field: str) -> None:
    for lo in range(0, A.shape[0], 8192):
        blk = np.asarray(A[lo : lo + 8192])
        bad = ~np.isfinite(blk)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            n = int(bad.sum())
            raise BadInput(f"must hold finite numbers; row {lo + r}, column {c} is {blk[r, c]} "
                           f"({n} non-finite entries in rows {lo}..{lo + blk.shape[0] - 1})", where=field)


def _tasks(request: BIDSRequest, inf: Influence, M: int) -> list[str]:
    if request.val_tasks is not None:
        tasks: list = list(request.val_tasks)
        where = "val_tasks"
    elif inf.tasks is not None:
        tasks, where = inf.tasks, "influence"
    else:
        raise field_error(_TOOL, "val_tasks", f"a task label for each of the {M} validation columns "
                          "(the matrix carries none)", None)
    if len(tasks) != M:
        raise field_error(_TOOL, where, f"one task label per validation column ({M} columns)",
                          f"{len(tasks)} labels")
    missing = [i for i, t in enumerate(tasks) if t is None or not str(t).strip()]
    if missing:
        raise field_error(_TOOL, where, "a non-empty task label for every validation column",
                          f"{len(missing)} columns without a label, first {missing[:5]}")
    return [str(t) for t in tasks]


def _row_ids(request: BIDSRequest, inf: Influence, N: int, ctx: ToolContext):  # noqa: ANN202
    """Ids and domains (or None) of the matrix rows, checked against the corpus when one is given."""
    from tools.corpus import read_batches

    if inf.ids is not None and len(inf.ids) != N:
        raise field_error(_TOOL, "influence", f"as many row ids as matrix rows ({N})", f"{len(inf.ids)} ids")
    if request.corpus is None:
        return (inf.ids if inf.ids is not None else [str(i) for i in range(N)]), None
    ids: list[str] = []
    doms: list[str] = []
    try:
        for b in read_batches(request.corpus, ("id", "domain"), allowed_roots=ctx.data_roots):
            ids.extend(b.column("id").to_pylist())
            doms.extend(b.column("domain").to_pylist())
    except BadInput as e:
        raise BadInput(f"{e.message} ({e.where})" if e.where else e.message, where="bids.corpus") from None
    if inf.ids is None:
        if len(ids) != N:
            raise field_error(_TOOL, "corpus", f"one row per influence matrix row ({N} rows, in the same "
                              "order)", f"{len(ids)} rows")
        return ids, doms
    pos = {d: i for i, d in enumerate(ids)}
    absent = [d for d in inf.ids if d not in pos]
    if absent:
        raise field_error(_TOOL, "corpus", "a pool holding every row id of the influence matrix",
                          f"{len(absent)} ids missing, e.g. {absent[:3]}")
    return list(inf.ids), [doms[pos[d]] for d in inf.ids]


def _plot(ctx: ToolContext, names: list[str], share: np.ndarray, base: np.ndarray, label: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2), 3.2))
    x = np.arange(len(names))
    ax.bar(x - 0.2, share, 0.4, label=label)
    ax.bar(x + 0.2, base, 0.4, label="task-max (LESS)")
    ax.axhline(1 / len(names), color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylabel("share of the budget")
    ax.set_title("per-task share of the selection")
    ax.legend(frameon=False)
    with ctx.artifact("plot", "task_shares", metrics={"tasks": names}) as w:
        w.figure(fig)
    plt.close(fig)
    return w.id


def _fmt(d: dict[str, float], pct: bool = True) -> str:
    return ", ".join(f"{k} {v:.0%}" if pct else f"{k} {v:+.2f}" for k, v in list(d.items())[:6])


def _check_matrix(inf: Influence) -> np.ndarray:
    """The matrix as float32, refused with the field's name unless 2-d, numeric and finite."""
    A = inf.A
    if A.ndim != 2 or A.shape[0] < 2 or A.shape[1] < 1:
        raise field_error(_TOOL, "influence", "a 2-d matrix with at least 2 rows and 1 column", A.shape)
    if not np.issubdtype(A.dtype, np.number):
        raise field_error(_TOOL, "influence", "a numeric matrix", str(A.dtype))
    _check_finite(A, "bids.influence")
    return A if A.dtype == np.float32 else np.asarray(A, dtype=np.float32)


def _describe(norm: core.Normalized, codes: np.ndarray, names: list[str], sel: core.Selection,
              base: core.Selection) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Both selections described on the normalised matrix (kept columns), over tasks that kept a column."""
    present, kc = np.unique(codes[norm.kept], return_inverse=True)
    tnames = [names[i] for i in present]
    TI = core.task_influence(norm.Z, kc, len(tnames))
    return (tnames, core.task_report(norm.Z, kc, len(tnames), sel.indices, TI),
            core.task_report(norm.Z, kc, len(tnames), base.indices, TI))


def _per_task(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def _zscore(A: np.ndarray, names: list[str], codes: np.ndarray, counts: np.ndarray,
            unequal_ratio: float) -> tuple[core.Normalized, list[str]]:
    """Every validation column z-scored over the pool, with warnings about what BIDS assumes."""
    warnings: list[str] = []
    if counts.max() > unequal_ratio * counts.min():
        warnings.append(f"unequal validation columns per task ({', '.join(f'{n} {c}' for n, c in zip(names, counts, strict=True))}"
                        f"); BIDS assumes equal counts, so larger tasks weigh more")
    norm = core.zscore_columns(A)
    if norm.kept.size == 0:
        raise field_error(_TOOL, "influence", "at least one validation column whose values vary over the rows",
                          "every column is constant")
    if norm.dropped.size:
        lost = sorted(set(names) - {names[c] for c in codes[norm.kept]})
        warnings.append(f"{norm.dropped.size} zero-variance columns dropped"
                        + (f"; tasks left without columns: {lost}" if lost else ""))
    return norm, warnings


def _table(sel: core.Selection, ids: list[str], doms: list[str] | None, owners: list[str]):  # noqa: ANN202
    """The selection in pick order: id, weight 1, score, domain, rank, matrix row and owning task."""
    import pyarrow as pa

    from tools.selection import selection_table

    idx = sel.indices
    table = selection_table([ids[i] for i in idx], weight=np.ones(len(idx)), score=sel.scores,
                            domain=[doms[i] for i in idx] if doms is not None else None)
    table = table.append_column("rank", pa.array(np.arange(len(idx), dtype=np.int32)))
    table = table.append_column("row", pa.array(idx.astype(np.int64)))
    return table.append_column("task", pa.array(owners, pa.string()))


@SPEC.implement
def run(request: BIDSRequest, ctx: ToolContext) -> BIDSResult:
    from tools.selection import record_selection

    inf = load_influence(request.influence, ctx)
    A = _check_matrix(inf)
    N, M = A.shape
    tasks = _tasks(request, inf, M)
    ids, doms = _row_ids(request, inf, N, ctx)
    k = request.k if request.k is not None else max(1, round(request.fraction * N))
    if k > N:
        raise field_error(_TOOL, "k", f"at most the {N} rows of the influence matrix", k)

    names, codes = core.task_codes(tasks)
    counts = np.bincount(codes, minlength=len(names))
    norm, warnings = _zscore(A, names, codes, counts, request.unequal_ratio)  # 1. z-score every column
    # 2. select (BIDS or a baseline), and LESS's one-shot task-max on the raw matrix to compare with
    with ctx.progress(f"bids: {request.method} selection of {k}", total=1) as bar:
        sel = core.select(A, k, method=request.method, codes=codes, normalize=request.normalize,
                          mode=request.mode, task_agg=request.task_agg, norm=norm)
        base = sel if request.method == "task_max" and not request.normalize else \
            core.select(A, k, method="task_max", codes=codes, normalize=False)
        bar.update(1)
    # 3. describe both per task
    tnames, rep, rep_b = _describe(norm, codes, names, sel, base)
    metrics = BIDSMetrics(
        method=request.method, mode=request.mode, normalize=request.normalize, val_columns=M, influence=inf.source,
        tasks=names, task_columns=dict(zip(names, counts.tolist(), strict=True)),
        task_share=_per_task(tnames, rep["share"]), task_mean_influence=_per_task(tnames, rep["mean_influence"]),
        influence_spread=float(np.ptp(rep["mean_influence"])), baseline_share=_per_task(tnames, rep_b["share"]),
        baseline_mean_influence=_per_task(tnames, rep_b["mean_influence"]),
        baseline_spread=float(np.ptp(rep_b["mean_influence"])), dropped_columns=norm.dropped.tolist(),
        warnings=warnings,
    )

    table = _table(sel, ids, doms, [tnames[o] for o in rep["owner"]])
    label = {"bids": f"BIDS ({request.mode})", "task_max": "task-max", "instance_max": "instance-max",
             "sum": "sum"}[request.method] + ("" if request.normalize else ", raw")
    plot_id = _plot(ctx, tnames, rep["share"], rep_b["share"], label)
    rows = RowCounts(rows_in=N, rows_out=k)
    rec = record_selection(ctx, table, request.corpus, pool_domains=doms, rows=rows,
                           metrics=metrics.manifest(k=k, pool=N, plot=plot_id))
    summary = (
        f"{label} selected {k} of {N} rows on {M} validation columns over {len(names)} tasks. "
        f"Shares: {_fmt(metrics.task_share)}; mean normalised influence {_fmt(metrics.task_mean_influence, False)} "
        f"(spread {metrics.influence_spread:.2f}). "
        f"One-shot task-max: {_fmt(metrics.baseline_share)} (spread {metrics.baseline_spread:.2f}). "
        + (" ".join(w[:140] for w in warnings) + " " if warnings else "")
        + f"Selection {rec.id}; plot {plot_id}."
    )
    return BIDSResult.of(metrics, summary=summary, artifacts={"selection": rec.id, "plot": plot_id}, rows=rows,
                         k=k, pool_size=N, domain_counts=rec.domain_counts)
