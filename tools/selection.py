"""What every selector shares: writing the selection artifact, domain counts, exporting the data.

A selection artifact is always a Parquet file with an ``id`` column, plus ``weight``, ``score`` and
``domain`` where the selector has them; its manifest names the corpus it selects from, so the
selected documents can be exported with their text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tools.contract import RowCounts, ToolContext
from tools.corpus import CorpusSpec, read_batches
from tools.errors import BadInput


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
    c = Counter("(none)" if d is None else d for d in domains)
    return dict(c.most_common())


def write_selection(
    ctx: ToolContext,
    table: pa.Table,
    corpus: CorpusSpec,
    *,
    metrics: dict[str, Any] | None = None,
    rows: RowCounts | None = None,
    name: str = "selection",
) -> str:
    if "id" not in table.column_names:
        raise ValueError("a selection table needs an 'id' column")
    with ctx.artifact(
        "selection", name, metrics=metrics, rows=rows, extra={"corpus": corpus.model_dump(mode="json")}
    ) as w:
        w.table(table)
    return w.id


def format_domain_counts(counts: dict[str, int], top: int = 6) -> str:
    items = list(counts.items())
    shown = ", ".join(f"{d} {n}" for d, n in items[:top])
    return shown + (f", +{len(items) - top} more" if len(items) > top else "")


def export_selection(
    ctx: ToolContext,
    selection_id: str,
    to: str | Path,
    *,
    fmt: Literal["jsonl", "parquet"] = "jsonl",
    corpus: CorpusSpec | None = None,
) -> dict[str, Any]:
    """Write the selected documents (with text) to ``to``; returns counts for the manifest."""
    art = ctx.workspace.get(selection_id)
    if art.kind != "selection":
        raise BadInput(f"{selection_id} is a {art.kind} artifact, not a selection")
    sel = art.table()
    if corpus is None:
        spec = art.manifest.get("corpus")
        if not spec:
            raise BadInput(f"{selection_id} does not record its corpus; pass corpus=")
        corpus = CorpusSpec.model_validate(spec)
    wanted: dict[str, int] = {i: n for n, i in enumerate(sel.column("id").to_pylist())}
    extra = {c: sel.column(c).to_pylist() for c in sel.column_names if c not in ("id", "domain")}
    to = Path(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_name(to.name + ".part")
    found: set[str] = set()
    writer = None
    with open(tmp, "w", encoding="utf-8") if fmt == "jsonl" else _nullctx() as fh:
        for batch in read_batches(corpus, ("id", "text", "domain"), allowed_roots=ctx.data_roots, check_ids=False):
            ids = batch.column("id").to_pylist()
            keep = [i for i, d in enumerate(ids) if d in wanted and d not in found]
            if not keep:
                continue
            sub = batch.take(pa.array(keep)).to_pydict()
            rows = []
            for j in range(len(keep)):
                doc_id = sub["id"][j]
                found.add(doc_id)
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
    if writer is not None:
        writer.close()
    tmp.replace(to)
    return {"exported": len(found), "missing": len(wanted) - len(found), "path": str(to), "format": fmt}


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None
