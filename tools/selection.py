"""What every selector shares: writing the selection artifact, domain counts, exporting the data.

A selection artifact is always a Parquet file with an ``id`` column, plus ``weight``, ``score`` and
``domain`` where the selector has them; its manifest names the corpus it selects from, so the
selected documents can be exported with their text.
"""

from __future__ import annotations

import fnmatch
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tools.contract import RowCounts, ToolContext
from tools.corpus import NO_DOMAIN, CorpusSpec, fingerprint, read_batches, recorded_fingerprint, resolve_files
from tools.errors import BadInput, StateConflict


def selection_table(
    ids: Sequence[str],
    *,
    weight: np.ndarray | Sequence[float] | None = None,
    score: np.ndarray | Sequence[float] | None = None,
    domain: Sequence[str | None] | None = None,
) -> pa.Table:
    cols: dict[str, Any] = {"id": pa.array(list(ids), type=pa.string())}
    if weight is not None:
        cols["weight"] = pa.array(np.asarray(weight, dtype=np.float64))
    if score is not None:
        cols["score"] = pa.array(np.asarray(score, dtype=np.float64))
    if domain is not None:
        cols["domain"] = pa.array(list(domain), type=pa.string())
    return pa.table(cols)


def domain_counts(domains: Sequence[str | None]) -> dict[str, int]:
    c = Counter(NO_DOMAIN if d is None else d for d in domains)
    return dict(c.most_common())


def write_selection(
    ctx: ToolContext,
    table: pa.Table,
    corpus: CorpusSpec,
    *,
    metrics: dict[str, Any] | None = None,
    rows: RowCounts | None = None,
    name: str = "selection",
    corpus_fingerprint: str | None = None,
) -> str:
    if "id" not in table.column_names:
        raise ValueError("a selection table needs an 'id' column")
    # the corpus as it was when the selection was made: export refuses a corpus that changed since
    fp = corpus_fingerprint or _run_fingerprint(ctx, corpus) or fingerprint(corpus)
    with ctx.artifact(
        "selection", name, metrics=metrics, rows=rows,
        extra={"corpus": corpus.model_dump(mode="json"), "corpus_fingerprint": fp},
    ) as w:
        w.table(table)
    return w.id


@dataclass(frozen=True)
class SelectionRecord:
    """A written selection: its artifact id, documents per domain, and each domain's share of the pool."""

    id: str
    domain_counts: dict[str, int]
    pool_share: dict[str, float]


def selected_domain_counts(table: pa.Table) -> dict[str, int]:
    """Documents per domain in a selection table: the ``weight`` column's sum (draw counts) when the
    weights are whole numbers, else rows; most first. Missing domains count as :data:`NO_DOMAIN`."""
    if "domain" not in table.column_names:
        return {}
    doms = table.column("domain").to_pylist()
    w = np.asarray(table.column("weight").to_numpy(zero_copy_only=False), dtype=np.float64) \
        if "weight" in table.column_names else None
    if w is None or not np.all(w == np.round(w)):
        w = np.ones(len(doms))
    c: Counter = Counter()
    for d, x in zip(doms, w, strict=True):
        c[NO_DOMAIN if d is None else d] += int(x)
    return dict(c.most_common())


def pool_shares(pool_domains: Sequence[str | None] | dict[str, int]) -> dict[str, float]:
    """Each domain's share of the pool (from the pool's domain per document, or counts per domain)."""
    counts = dict(pool_domains) if isinstance(pool_domains, dict) else domain_counts(pool_domains)
    total = sum(counts.values())
    return {d: n / total for d, n in sorted(counts.items(), key=lambda t: -t[1])} if total else {}


def record_selection(
    ctx: ToolContext,
    table: pa.Table,
    corpus: CorpusSpec | None,
    *,
    pool_domains: Sequence[str | None] | dict[str, int] | None = None,
    metrics: dict[str, Any] | None = None,
    rows: RowCounts | None = None,
    name: str = "selection",
) -> SelectionRecord:
    """:func:`write_selection` plus the bookkeeping every selector repeats: the selection's domain
    counts and the pool's domain shares, computed once and written into the manifest's metrics.

    ``corpus=None``: rows known only by id (e.g. an influence matrix without its corpus); the
    selection is written without a corpus, so it cannot be exported.
    """
    counts = selected_domain_counts(table)
    share = pool_shares(pool_domains) if pool_domains is not None else {}
    full = {**(metrics or {}), "domain_counts": counts, "pool_domain_share": share}
    if corpus is not None:
        return SelectionRecord(write_selection(ctx, table, corpus, metrics=full, rows=rows, name=name), counts, share)
    if "id" not in table.column_names:
        raise ValueError("a selection table needs an 'id' column")
    with ctx.artifact("selection", name, metrics=full, rows=rows) as w:
        w.table(table)
    return SelectionRecord(w.id, counts, share)


def _run_fingerprint(ctx: ToolContext, corpus: CorpusSpec) -> str | None:
    """The fingerprint the run took of this corpus before reading it (so an edit mid-run is caught)."""
    info = getattr(ctx, "_run", None)
    if info is None:
        return None
    return recorded_fingerprint({"request": info.request, "inputs": info.inputs}, corpus)


def format_domain_counts(counts: dict[str, int], top: int = 6) -> str:
    items = list(counts.items())
    shown = ", ".join(f"{d} {n}" for d, n in items[:top])
    return shown + (f", +{len(items) - top} more" if len(items) > top else "")


def check_destination(to: str | Path, *, force: bool = False, sources: Sequence[CorpusSpec] = (),
                      field: str = "--to") -> Path:
    """Where an export may write: not a folder, not under a file, never a source corpus; no overwrite
    of an existing file unless ``force``."""
    to = Path(to)
    if to.is_dir():
        raise BadInput("is a folder; name the file to write, e.g. DIR/selection.jsonl", where=f"{field} {to}")
    for parent in to.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInput(f"{parent} is a file, so nothing can be written under it", where=f"{field} {to}")
            break
    real = os.path.realpath(to)
    for spec in sources:
        try:
            files = [os.path.realpath(f) for f, _ in resolve_files(spec)]
        except BadInput:
            files = []
        raw = os.path.expanduser(spec.path)
        folder = raw if os.path.isdir(raw) else None
        inside = folder is not None and real.startswith(os.path.realpath(folder) + os.sep)
        globbed = any(ch in raw for ch in "*?[") and fnmatch.fnmatch(os.path.abspath(to), os.path.abspath(raw))
        if real in files or inside or globbed:
            raise BadInput(f"would write into the source corpus {spec.path}; choose a path outside it "
                           "(--force does not override this)", where=f"{field} {to}")
    if to.exists() and not force:
        raise BadInput("exists; pass --force to replace it (atomically)", where=f"{field} {to}")
    return to


@contextmanager
def atomic_output(to: Path, *, force: bool = False) -> Iterator[Path]:
    """A temp path next to ``to``, moved into place only if the block finishes; never a half file.

    Without ``force`` the move is a hard link, which fails if someone created ``to`` meanwhile.
    """
    try:
        to.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BadInput("a parent of this path is a file", where=str(to)) from None
    tmp = to.with_name(f".{to.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        if not tmp.exists():
            tmp.write_bytes(b"")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, to)
        else:
            try:
                os.link(tmp, to)
            except FileExistsError:
                raise BadInput("exists; pass --force to replace it (atomically)", where=str(to)) from None
            except OSError:  # a file system without hard links
                if to.exists():
                    raise BadInput("exists; pass --force to replace it (atomically)", where=str(to)) from None
                os.replace(tmp, to)
    except IsADirectoryError:
        raise BadInput("is a folder; name the file to write", where=str(to)) from None
    finally:
        tmp.unlink(missing_ok=True)


def export_selection(
    ctx: ToolContext,
    selection_id: str,
    to: str | Path,
    *,
    fmt: Literal["jsonl", "parquet"] = "jsonl",
    corpus: CorpusSpec | None = None,
    force: bool = False,
    reresolve: bool = False,
) -> dict[str, Any]:
    """Write the selected documents (with text) to ``to``; returns counts for the manifest.

    The corpus must still be the one the selection was made from (its fingerprint: files, sizes,
    mtimes); otherwise :class:`StateConflict`, unless ``reresolve`` (then the current text of the
    selected ids is written, and the result says so). One row per selected id: the first document
    with that id in corpus order (later duplicates are counted, not written). ``exported`` is the
    number of rows written.
    """
    art = ctx.workspace.get(selection_id)
    if art.kind != "selection":
        raise BadInput(f"{selection_id} is a {art.kind} artifact, not a selection")
    if fmt not in ("jsonl", "parquet"):
        raise BadInput(f"must be jsonl or parquet; got {fmt!r}", where="format")
    sel = art.table()
    if corpus is None:
        spec = art.manifest.get("corpus")
        if not spec:
            raise BadInput(f"{selection_id} does not record its corpus; pass corpus=")
        corpus = CorpusSpec.model_validate(spec)
    to = check_destination(to, force=force, sources=[corpus])
    recorded = recorded_fingerprint(art.manifest, corpus)
    current = fingerprint(corpus)
    changed = recorded is not None and recorded != current
    if changed and not reresolve:
        raise StateConflict(
            f"the corpus {corpus.path} changed since {selection_id} was made (fingerprint {recorded} -> "
            f"{current}): files were edited, added or removed, so the export would not be what was selected",
            hint="re-run the selection, or pass --re-resolve to export the current text of the selected ids",
        )
    sel_ids = sel.column("id").to_pylist()
    wanted: dict[str, int] = {}
    for n, i in enumerate(sel_ids):
        wanted.setdefault(i, n)
    extra = {c: sel.column(c).to_pylist() for c in sel.column_names if c not in ("id", "domain")}
    found: set[str] = set()
    duplicates = 0
    written = 0
    with atomic_output(to, force=force) as tmp:
        writer = None
        try:
            with open(tmp, "w", encoding="utf-8") if fmt == "jsonl" else _nullctx() as fh:
                for batch in read_batches(corpus, ("id", "text", "domain"), allowed_roots=ctx.data_roots,
                                          check_ids=False, raw_domain=True):
                    ids = batch.column("id").to_pylist()
                    keep = []
                    for i, d in enumerate(ids):
                        if d in wanted:
                            if d in found:
                                duplicates += 1
                            else:
                                found.add(d)
                                keep.append(i)
                    if not keep:
                        continue
                    sub = batch.take(pa.array(keep)).to_pydict()
                    rows = []
                    for j in range(len(keep)):
                        doc_id = sub["id"][j]
                        rec = {"id": doc_id, "text": sub["text"][j], "domain": sub["domain"][j]}
                        for c, vals in extra.items():
                            rec[c] = vals[wanted[doc_id]]
                        rows.append(rec)
                    if fmt == "jsonl":
                        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                    else:
                        t = pa.Table.from_pylist(rows)
                        if writer is None:
                            writer = pq.ParquetWriter(tmp, t.schema, compression="zstd")
                        writer.write_table(t.cast(writer.schema))
                    written += len(rows)
        finally:
            if writer is not None:
                writer.close()
        if fmt == "parquet" and writer is None:  # nothing matched: still a valid (empty) file
            pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                                     "domain": pa.array([], pa.string())}), tmp)
        if fingerprint(corpus) != current:
            raise StateConflict(f"the corpus {corpus.path} changed while it was being exported; nothing was written",
                                hint="export again")
    info: dict[str, Any] = {
        "exported": written, "selected": len(wanted), "missing": len(wanted) - len(found),
        "duplicate_ids_skipped": duplicates, "selection_rows": len(sel_ids),
        "path": str(to), "format": fmt, "corpus_fingerprint": current,
    }
    if changed:
        info["re_resolved"] = True
        info["warning"] = (f"the corpus changed since the selection was made (fingerprint {recorded} -> {current}); "
                           "exported the current text of the selected ids")
    return info


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None
