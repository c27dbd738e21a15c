"""Corpus specs and the one way to read documents: streamed Arrow record batches.

Every tool reads through :func:`read_batches`, which maps source columns onto the canonical ``id``,
``text`` and ``domain`` columns, gives every row a stable id (the id column, else a content hash),
and keeps memory bounded by the batch size whatever the file size. Bad input is reported with the
file and line; with ``on_error="skip"`` bad rows are skipped and counted by reason instead.
"""

from __future__ import annotations

import csv
import glob as globlib
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_serializer

from tools.errors import BadInput, CurateError, PolicyDenied

Format = Literal["auto", "jsonl", "json", "parquet", "csv", "tsv", "hf"]
SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".arrow": "hf",
}
CANONICAL = ("id", "text", "domain")
NO_DOMAIN = "(none)"
"""The domain of a document whose corpus gives none: what every count, share and selection shows."""
DEFAULT_BATCH_ROWS = 8192
_JSONL_BLOCK_BYTES = 8 << 20


class CorpusSpec(BaseModel):
    """A pool of documents on disk plus how its columns map onto ``id``/``text``/``domain``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="file, directory or glob (JSONL, JSON, Parquet, CSV/TSV, HF dataset on disk)")
    format: Format = Field("auto", description="file format; 'auto' detects it from the suffix")
    text_field: str | list[str] = Field(
        "text", description="column holding the text; a list of columns is joined with blank lines"
    )
    id_field: str | None = Field("id", description="column holding a stable id; a content hash when absent")
    domain_field: str | None = Field("domain", description="column holding a domain label, if any")
    domain_from_path: bool = Field(False, description="use each file's name (without suffix) as the domain")
    extra_fields: list[str] = Field(default_factory=list, description="other columns to carry along")
    split: str | None = Field(None, description="split of a saved Hugging Face DatasetDict")
    delimiter: str | None = Field(None, description="CSV delimiter; sniffed when None")
    has_header: bool = Field(True, description="CSV files start with a header row")
    column_names: list[str] | None = Field(None, description="CSV column names when there is no header")
    on_error: Literal["raise", "skip"] = Field("raise", description="malformed rows: raise, or skip and count")
    selection: str | None = Field(
        None, description="read only the documents of this selection artifact (its id; the runtime resolves it "
        "to the artifact's folder and ``path`` to the corpus it selects from)",
    )

    @model_serializer(mode="wrap")
    def _without_unset_selection(self, handler: Any) -> Any:
        """A spec that names no selection dumps as before the field existed: run keys, manifests and
        fingerprints of plain corpora stay what they were."""
        data = handler(self)
        if isinstance(data, dict) and data.get("selection", "") is None:
            del data["selection"]
        return data

    def label(self) -> str:
        return f"{selection_id(self.selection)} of {self.path}" if self.selection else self.path


def selection_id(selection: str) -> str:
    """The artifact id in a spec's ``selection`` (an id, or the artifact's folder once resolved)."""
    return Path(selection).name


def _coerce_corpus(value: Any) -> Any:
    if isinstance(value, (str, os.PathLike)):
        return {"path": os.fspath(value)}
    return value


_CORPUS_SCHEMA = {
    "anyOf": [
        {"type": "string", "description": "path, directory or glob of the documents, or the id of a selection "
                                            "made earlier (selection-<12 hex>): the documents it selected"},
        {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "text_field": {"type": "string"},
                "id_field": {"type": "string"},
                "domain_field": {"type": "string"},
                "selection": {"type": "string", "description": "read only the documents of this selection id"},
            },
            "required": ["path"],
        },
    ]
}

CorpusArg = Annotated[CorpusSpec, BeforeValidator(_coerce_corpus), WithJsonSchema(_CORPUS_SCHEMA)]
"""A request field holding a corpus: a path string, a selection id, or ``{path, text_field, id_field, domain_field}``."""


def as_corpus(value: CorpusSpec | str | os.PathLike | dict) -> CorpusSpec:
    if isinstance(value, CorpusSpec):
        return value
    return CorpusSpec.model_validate(_coerce_corpus(value))


@dataclass
class ReadStats:
    """What a read saw: rows yielded, rows skipped by reason, repaired text, duplicate ids."""

    rows: int = 0
    skipped: Counter = field(default_factory=Counter)
    invalid_utf8_rows: int = 0
    duplicate_ids: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "skipped": dict(self.skipped),
            "invalid_utf8_rows": self.invalid_utf8_rows,
            "duplicate_ids": self.duplicate_ids,
            "duplicate_examples": self.duplicate_examples[:5],
            "files": len(self.files),
        }


# ----------------------------------------------------------------------------------------- files


def _is_hf_dir(p: Path) -> bool:
    return p.is_dir() and (
        (p / "dataset_info.json").exists() or (p / "state.json").exists() or (p / "dataset_dict.json").exists()
    )


def _read_json_file(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"not a readable JSON file ({type(e).__name__})", where=str(p)) from None


def _inside_dir(base: Path, name: Any, where: Path, what: str) -> Path:
    """``base/name`` if it stays inside ``base`` after resolving symlinks; a ``..`` escape is refused."""
    if not isinstance(name, str) or not name or os.path.isabs(name):
        raise BadInput(f"{what} must be a relative path inside the dataset folder; got {name!r}", where=str(where))
    cand = base / name
    real_base = os.path.realpath(base)
    real = os.path.realpath(cand)
    if real != real_base and not real.startswith(real_base + os.sep):
        raise PolicyDenied(f"{what} {name!r} points outside the dataset folder {base}", where=str(where))
    return cand


def _hf_arrow_files(p: Path, split: str | None) -> list[Path]:
    """The Arrow files of a saved dataset (or of its splits); every one stays inside the folder."""
    if (p / "dataset_dict.json").exists():
        meta = _read_json_file(p / "dataset_dict.json")
        splits = meta.get("splits") if isinstance(meta, dict) else None
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise BadInput("dataset_dict.json: 'splits' must be a list of split names", where=str(p))
        if split is not None:
            if split not in splits:
                raise BadInput(f"split {split!r} not found; splits are {splits}", where=str(p))
            splits = [split]
        files: list[Path] = []
        for s in splits:
            files += _hf_arrow_files(_inside_dir(p, s, p / "dataset_dict.json", "split"), None)
        return files
    state = p / "state.json"
    if state.exists():
        meta = _read_json_file(state)
        entries = meta.get("_data_files", []) if isinstance(meta, dict) else None
        if not isinstance(entries, list) or not all(isinstance(d, dict) for d in entries):
            raise BadInput("state.json: '_data_files' must be a list of {filename: ...}", where=str(state))
        names = [d.get("filename") for d in entries]
        if names:
            return [_inside_dir(p, n, state, "_data_files entry") for n in names]
    return sorted(p.glob("*.arrow"))


def _walk_files(root: Path) -> list[Path]:
    """Every non-hidden data file under ``root`` (symlinked folders followed once, loops cut)."""
    out: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for n in filenames:
            if not n.startswith(".") and Path(n).suffix.lower() in SUFFIX_FORMATS:
                f = Path(dirpath) / n
                if f.is_file():
                    out.append(f)
    return sorted(out)


def resolve_files(spec: CorpusSpec, allowed_roots: Sequence[Path] | None = None) -> list[tuple[Path, str]]:
    """The files a spec names, with their formats, in a stable order."""
    raw = os.path.expanduser(spec.path)
    if any(ch in raw for ch in "*?["):
        candidates = [Path(p) for p in sorted(globlib.glob(raw, recursive=True))]
        if not candidates:
            raise BadInput("no file matches this glob", where=raw)
    else:
        candidates = [Path(raw)]
    out: list[tuple[Path, str]] = []
    for c in candidates:
        if not c.exists():
            raise BadInput("no such file or directory", where=str(c))
        if allowed_roots is not None:
            check_allowed(c, allowed_roots)
        if _is_hf_dir(c) or spec.format == "hf" and c.is_dir():
            out += [(f, "hf") for f in _hf_arrow_files(c, spec.split)]
        elif c.is_dir():
            for f in _walk_files(c):
                fmt = spec.format if spec.format != "auto" else SUFFIX_FORMATS[f.suffix.lower()]
                out.append((f, fmt))
        else:
            fmt = spec.format
            if fmt == "auto":
                fmt = SUFFIX_FORMATS.get(c.suffix.lower(), "")
                if not fmt:
                    raise BadInput(
                        "cannot tell the format from the suffix; pass format= "
                        "(jsonl, json, parquet, csv, tsv, hf)",
                        where=str(c),
                    )
            out.append((c, fmt))
    if not out:
        raise BadInput("no data files found (looked for .jsonl .json .parquet .csv .tsv .arrow)", where=raw)
    if allowed_roots is not None:  # per file, after every symlink: a link inside a root may point anywhere
        for f, _ in out:
            check_allowed(f, allowed_roots)
    return out


def check_allowed(path: Path, allowed_roots: Sequence[Path]) -> None:
    """Refuse a path outside the policy's data roots (symlinks resolved first)."""
    real = Path(os.path.realpath(path))
    for root in allowed_roots:
        r = Path(os.path.realpath(root))
        if real == r or r in real.parents:
            return
    roots = ", ".join(str(r) for r in allowed_roots) or "(none)"
    via = f" (a link to {real})" if os.path.islink(path) or str(real) != os.path.abspath(path) else ""
    raise PolicyDenied(f"reading {path}{via} is outside the allowed data roots: {roots}")


def fingerprint(spec: CorpusSpec) -> str:
    """Identity of the input: resolved files (path, size, mtime) plus the column mapping; for a selection
    read as a corpus, also the selection's artifact id (artifacts are immutable, so the id is its content)."""
    h = hashlib.sha256(spec.model_dump_json(exclude={"selection"}).encode())
    if spec.selection:
        h.update(f"|selection:{selection_id(spec.selection)}".encode())
    for f, fmt in resolve_files(spec):
        st = f.stat()
        h.update(f"{os.path.realpath(f)}|{st.st_size}|{st.st_mtime_ns}|{fmt}".encode())
    return h.hexdigest()[:16]


def recorded_fingerprint(manifest: dict[str, Any], corpus: CorpusSpec) -> str | None:
    """The corpus fingerprint a selection recorded when it was made (older artifacts: from its inputs)."""
    fp = manifest.get("corpus_fingerprint")
    if fp:
        return str(fp)
    request, inputs = manifest.get("request") or {}, manifest.get("inputs") or {}
    want = corpus.model_dump(mode="json")
    for key, value in inputs.items():
        spec = request.get(key)
        try:
            if spec is not None and as_corpus(spec).model_dump(mode="json") == want:
                return str(value)
        except (ValueError, TypeError):
            continue
    return None


def content_id(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


# ---------------------------------------------------------------------------------- record level


def _field_names(keys: Sequence[Any], max_fields: int = 64, max_len: int = 64) -> list[str] | None:
    """Field names fit to print in an error, or None when they look like data rather than names."""
    names = [str(k) for k in keys]
    if len(names) > max_fields or any(len(n) > max_len or any(c in n for c in ":/\\\n") for n in names):
        return None
    return names


class _Rows:
    """Turns source records (dicts or Arrow tables) into canonical Arrow batches."""

    def __init__(self, spec: CorpusSpec, columns: Sequence[str], stats: ReadStats, batch_rows: int):
        self.spec = spec
        self.columns = list(columns)
        self.stats = stats
        self.batch_rows = batch_rows
        self.text_fields = [spec.text_field] if isinstance(spec.text_field, str) else list(spec.text_field)
        self.seen_ids: set[str] | None = set()
        self._buf: dict[str, list] = {c: [] for c in self.columns}

    def _fail(self, msg: str, where: str, reason: str) -> None:
        if self.spec.on_error == "skip":
            self.stats.skipped[reason] += 1
            return
        raise BadInput(msg, where=where)

    def _missing_text(self, keys: Sequence[str], where: str) -> None:
        missing = [f for f in self.text_fields if f not in keys]
        names = _field_names(keys)
        if names is None:  # a header that is data (a file that is not a table): never echo it
            raise BadInput(
                f"text field {missing[0]!r} not found; the first row does not look like field names "
                f"({len(keys)} columns)", where=where, hint="pass text_field=, or has_header=False with column_names=",
            )
        raise BadInput(
            f"text field {missing[0]!r} not found; the fields that exist are {sorted(names)}",
            where=where,
            hint=f"pass text_field= one of: {', '.join(names)}" if names else None,
        )

    def add_record(self, rec: Any, where: str, domain_hint: str | None) -> Iterator[pa.RecordBatch]:
        if not isinstance(rec, dict):
            self._fail(f"expected a JSON object, got {type(rec).__name__}", where, "not_an_object")
            return
        parts = []
        for f in self.text_fields:
            if f not in rec:
                if self.spec.on_error == "skip" and self.stats.rows > 0:
                    self.stats.skipped["missing_text_field"] += 1
                    return
                self._missing_text(list(rec.keys()), where)
            v = rec[f]
            if v is not None and not isinstance(v, str):
                # the rule: text is a string (null reads as empty); a number, list or object is a bad
                # row (raised, or skipped and counted as non_string_text), never silently stringified
                self._fail(f"text field {f!r} must be a string; got {type(v).__name__}", where, "non_string_text")
                return
            parts.append("" if v is None else v)
        text = parts[0] if len(parts) == 1 else "\n\n".join(p for p in parts if p)
        yield from self._push(text, rec.get(self.spec.id_field) if self.spec.id_field else None,
                              self._domain(rec.get(self.spec.domain_field) if self.spec.domain_field else None,
                                           domain_hint), rec)

    def _domain(self, value: Any, hint: str | None) -> str | None:
        if self.spec.domain_from_path:
            return hint
        return None if value is None else str(value)

    def _push(self, text: str, raw_id: Any, domain: str | None, rec: dict) -> Iterator[pa.RecordBatch]:
        doc_id = content_id(text) if raw_id is None or raw_id == "" else str(raw_id)
        if self.seen_ids is not None:
            if doc_id in self.seen_ids:
                self.stats.duplicate_ids += 1
                if len(self.stats.duplicate_examples) < 5:
                    self.stats.duplicate_examples.append(doc_id)
            else:
                self.seen_ids.add(doc_id)
                if len(self.seen_ids) > 20_000_000:  # bound memory on huge corpora
                    self.seen_ids = None
        b = self._buf
        for c in self.columns:
            if c == "id":
                b[c].append(doc_id)
            elif c == "text":
                b[c].append(text)
            elif c == "domain":
                b[c].append(domain)
            else:
                v = rec.get(c)
                b[c].append(v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v))
        self.stats.rows += 1
        if len(b["id"] if "id" in b else next(iter(b.values()))) >= self.batch_rows:
            yield self.flush()

    def flush(self) -> pa.RecordBatch:
        arrays = []
        for c in self.columns:
            vals = self._buf[c]
            if c in CANONICAL:
                arrays.append(pa.array(vals, type=pa.string()))
            else:
                try:
                    arrays.append(pa.array(vals))
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    arrays.append(pa.array([None if v is None else str(v) for v in vals], type=pa.string()))
        self._buf = {c: [] for c in self.columns}
        return pa.RecordBatch.from_arrays(arrays, names=self.columns)

    def pending(self) -> int:
        return len(next(iter(self._buf.values()))) if self._buf else 0


def _decode(raw: bytes, stats: ReadStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_rows += 1
        return raw.decode("utf-8", errors="replace")


def _fast_jsonl_table(block: bytes, spec: CorpusSpec, columns: Sequence[str]) -> pa.Table | None:
    """Parse a block of whole JSON lines with Arrow's C++ reader; None means "use the careful path".

    Anything unusual (malformed or non-object lines, invalid UTF-8, a missing or non-string text,
    blank lines, mixed types) falls back to the per-line path, which reports file and line.
    """
    import pyarrow.json as pj

    if not isinstance(spec.text_field, str) or b"\n\n" in block or block.startswith(b"\n"):
        return None
    try:
        block.decode("utf-8")  # Arrow's JSON reader does not validate UTF-8 itself
    except UnicodeDecodeError:
        return None
    wanted = _source_columns(spec, columns)
    for id_type in (pa.string(), pa.int64()):
        fields = []
        for c in wanted:
            t = id_type if c == spec.id_field else pa.string()
            fields.append(pa.field(c, t))
        opts = pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
        try:
            table = pj.read_json(
                io.BytesIO(block),
                parse_options=opts,
                read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(block) + 1)),
                # the system allocator hands large blocks back at once; jemalloc's lazy purge lets RSS
                # grow with the file on a busy machine
                memory_pool=pa.system_memory_pool(),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError, pa.ArrowNotImplementedError):
            continue
        if table.column(spec.text_field).null_count:
            return None
        return table
    return None


def _push_table(rows: _Rows, table: pa.Table, hint: str) -> Iterator[pa.RecordBatch]:
    """Canonicalise a parsed table and yield it in batches (after whatever is buffered)."""
    spec = rows.spec
    if rows.pending():
        yield rows.flush()
    n = table.num_rows
    texts = table.column(spec.text_field)
    if spec.id_field and spec.id_field in table.column_names:
        ids_arr = table.column(spec.id_field).cast(pa.string())
        ids = ids_arr.to_pylist()
        if ids_arr.null_count:
            tl = texts.to_pylist()
            ids = [content_id(tl[i]) if v is None or v == "" else v for i, v in enumerate(ids)]
    else:
        ids = [content_id(t) for t in texts.to_pylist()]
    if rows.seen_ids is not None:
        seen = rows.seen_ids
        before = len(seen)
        seen.update(ids)
        dups = n - (len(seen) - before)
        if dups:
            rows.stats.duplicate_ids += dups
            if len(rows.stats.duplicate_examples) < 5:
                counts = Counter(ids)
                rows.stats.duplicate_examples += [i for i, c in counts.items() if c > 1][:5]
        if len(seen) > 20_000_000:
            rows.seen_ids = None
    cols = []
    for c in rows.columns:
        if c == "id":
            cols.append(pa.array(ids, type=pa.string()))
        elif c == "text":
            cols.append(texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts)
        elif c == "domain":
            if spec.domain_from_path:
                cols.append(pa.array([hint] * n, type=pa.string()))
            elif spec.domain_field and spec.domain_field in table.column_names:
                cols.append(table.column(spec.domain_field).combine_chunks())
            else:
                cols.append(pa.nulls(n, type=pa.string()))
        elif c in table.column_names:
            cols.append(table.column(c).combine_chunks())
        else:
            cols.append(pa.nulls(n, type=pa.string()))
    rows.stats.rows += n
    batch = pa.RecordBatch.from_arrays(cols, names=rows.columns)
    for start in range(0, n, rows.batch_rows):
        yield batch.slice(start, rows.batch_rows)


def _iter_jsonl(path: Path, rows: _Rows, stats: ReadStats, hint: str) -> Iterator[pa.RecordBatch]:
    loads = json.loads
    line_no = 0
    fast = True
    with open(path, "rb") as fh:
        carry = b""
        while True:
            block = fh.read(_JSONL_BLOCK_BYTES)
            if not block:
                whole = carry + (b"\n" if carry and not carry.endswith(b"\n") else b"")
                carry = b""
            else:
                block = carry + block
                cut = block.rfind(b"\n")
                if cut < 0:
                    carry = block
                    continue
                whole = block[: cut + 1]
                carry = block[cut + 1 :]
            if whole:
                n_lines = whole.count(b"\n")
                table = _fast_jsonl_table(whole, rows.spec, rows.columns) if fast else None
                if table is not None and table.num_rows == n_lines:
                    yield from _push_table(rows, table, hint)
                    line_no += n_lines
                else:
                    for raw in whole.split(b"\n")[:-1]:
                        line_no += 1
                        if not raw.strip():
                            continue
                        text = _decode(raw, stats)
                        try:
                            rec = loads(text)
                        except json.JSONDecodeError as e:
                            rows._fail(f"malformed JSON ({e.msg} at column {e.colno})", f"{path}:{line_no}",
                                       "malformed_json")
                            continue
                        yield from rows.add_record(rec, f"{path}:{line_no}", hint)
            if not block:
                break


def _iter_json(path: Path, rows: _Rows, stats: ReadStats, hint: str) -> Iterator[pa.RecordBatch]:
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"{") and b"\n{" in open(path, "rb").read(1 << 20):
        yield from _iter_jsonl(path, rows, stats, hint)  # JSON Lines saved as .json
        return
    text = _decode(path.read_bytes(), stats)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"malformed JSON ({e.msg})", where=f"{path}:{e.lineno}") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if "data" in data and isinstance(data["data"], list):
            data = data["data"]
        elif len(lists) == 1:
            data = data[lists[0]]
        elif all(isinstance(v, dict) for v in data.values()):
            data = [{"id": k, **v} if "id" not in v else v for k, v in data.items()]
        else:
            raise BadInput("expected a list of records (or {'data': [...]})", where=str(path))
    if not isinstance(data, list):
        raise BadInput("expected a list of records", where=str(path))
    for i, rec in enumerate(data):
        yield from rows.add_record(rec, f"{path}:record {i}", hint)


def _sniff_delimiter(sample: str, default: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return default


def _iter_csv(path: Path, rows: _Rows, stats: ReadStats, hint: str, tsv: bool) -> Iterator[pa.RecordBatch]:
    spec = rows.spec
    with open(path, "rb") as fh:
        sample_bytes = fh.read(65536)
    sample = sample_bytes.decode("utf-8", errors="replace")
    delim = spec.delimiter or ("\t" if tsv else _sniff_delimiter(sample.split("\n", 1)[0] + "\n", ","))
    csv.field_size_limit(1 << 30)

    with open(path, "rb") as fh:
        def lines() -> Iterator[str]:
            for raw in fh:
                yield _decode(raw, stats)

        reader = csv.reader(lines(), delimiter=delim)
        header = None
        if spec.column_names:
            header = list(spec.column_names)
            if spec.has_header:
                next(reader, None)
        elif spec.has_header:
            header = next(reader, None)
            if header is None:
                return
            header = [h.strip().lstrip("\ufeff").lstrip("#") or f"col{i}" for i, h in enumerate(header)]
        line_no = 1 if spec.has_header else 0
        for rec in reader:
            line_no = reader.line_num
            if not rec or all(not c for c in rec):
                continue
            names = header or [f"col{i}" for i in range(len(rec))]
            if len(rec) != len(names):
                rows._fail(
                    f"expected {len(names)} fields (delimiter {delim!r}), found {len(rec)}",
                    f"{path}:{line_no}",
                    "wrong_field_count",
                )
                continue
            yield from rows.add_record(dict(zip(names, rec, strict=True)), f"{path}:{line_no}", hint)


def _iter_arrow_table_batches(
    batches: Iterator[pa.RecordBatch], path: Path, rows: _Rows, hint: str
) -> Iterator[pa.RecordBatch]:
    """Parquet / Arrow sources: vectorised column mapping, no per-row dicts."""
    for rb in batches:
        names = rb.schema.names
        missing = [f for f in rows.text_fields if f not in names]
        if missing:
            rows._missing_text(names, str(path))
        recs = rb.to_pydict()
        n = rb.num_rows
        for i in range(n):
            rec = {k: recs[k][i] for k in names}
            yield from rows.add_record(rec, f"{path}:row {i}", hint)


def _iter_file(path: Path, fmt: str, rows: _Rows, stats: ReadStats) -> Iterator[pa.RecordBatch]:
    hint = path.stem if fmt != "hf" else path.parent.name
    if fmt == "jsonl":
        yield from _iter_jsonl(path, rows, stats, hint)
    elif fmt == "json":
        yield from _iter_json(path, rows, stats, hint)
    elif fmt in ("csv", "tsv"):
        yield from _iter_csv(path, rows, stats, hint, tsv=fmt == "tsv")
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        wanted = [c for c in _source_columns(rows.spec, rows.columns) if c in names]
        missing = [f for f in rows.text_fields if f not in names]
        if missing:
            rows._missing_text(names, str(path))
        yield from _iter_arrow_table_batches(pf.iter_batches(batch_size=rows.batch_rows, columns=wanted), path, rows, hint)
    elif fmt == "hf":
        with pa.memory_map(str(path)) as src:
            try:
                reader = pa.ipc.open_stream(src)
            except pa.ArrowInvalid:
                reader = pa.ipc.open_file(src)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                batches = iter(reader)
            yield from _iter_arrow_table_batches(batches, path, rows, hint)
    else:  # pragma: no cover - resolve_files only yields known formats
        raise BadInput(f"unknown format {fmt!r}", where=str(path))


def _source_columns(spec: CorpusSpec, columns: Sequence[str]) -> list[str]:
    cols = [spec.text_field] if isinstance(spec.text_field, str) else list(spec.text_field)
    if spec.id_field:
        cols.append(spec.id_field)
    if spec.domain_field:
        cols.append(spec.domain_field)
    cols += [c for c in columns if c not in CANONICAL]
    return list(dict.fromkeys(cols))


# -------------------------------------------------------------------------------------- public


def read_batches(
    corpus: CorpusSpec | str | dict,
    columns: Sequence[str] = CANONICAL,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    stats: ReadStats | None = None,
    allowed_roots: Sequence[Path] | None = None,
    check_ids: bool = True,
    raw_domain: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Stream the corpus as Arrow batches with canonical columns (``id``, ``text``, ``domain``, extras).

    Memory is bounded by ``batch_rows`` (plus one 8 MiB read block), not by the file size.
    A missing domain reads as :data:`NO_DOMAIN` (``raw_domain=True``: as null, what the file holds).
    Raises :class:`BadInput` for an empty corpus, a missing text field or a malformed row.
    """
    spec = as_corpus(corpus)
    stats = stats if stats is not None else ReadStats()
    if spec.selection:
        yield from _read_selected(spec, columns, batch_rows=batch_rows, stats=stats, allowed_roots=allowed_roots,
                                  raw_domain=raw_domain)
        return
    cols = list(dict.fromkeys(list(columns) + list(spec.extra_fields)))
    rows = _Rows(spec, cols, stats, batch_rows)
    if not check_ids:
        rows.seen_ids = None
    files = resolve_files(spec, allowed_roots)
    fill = None if raw_domain or "domain" not in cols else cols.index("domain")
    for path, fmt in files:
        stats.files.append(str(path))
        try:
            for batch in _iter_file(path, fmt, rows, stats):
                yield batch if fill is None else _fill_domain(batch, fill)
        except CurateError:
            raise
        except _READ_ERRORS as e:  # corrupt or truncated Parquet/Arrow, a CSV with NUL bytes, ...
            raise unreadable(path, fmt, e) from None
    if rows.pending():
        batch = rows.flush()
        yield batch if fill is None else _fill_domain(batch, fill)
    if stats.rows == 0:
        skipped = f" ({dict(stats.skipped)} skipped)" if stats.skipped else ""
        raise BadInput(f"the corpus has no documents{skipped}", where=spec.path)


_READ_ERRORS = (pa.ArrowException, OSError, csv.Error, ValueError, EOFError, UnicodeError, OverflowError)


def selected_ids(spec: CorpusSpec) -> pa.Array:
    """The distinct ids of the selection a resolved spec names (its folder in the workspace)."""
    from tools.artifacts import MANIFEST, Artifact

    folder = Path(spec.selection or "")
    if not (folder / MANIFEST).is_file():
        raise BadInput(f"{spec.selection!r} is not a resolved selection: a corpus that names a selection by id "
                       "is read through the tool runtime, which finds it in the workspace", where="selection")
    art = Artifact(folder)
    if art.kind != "selection":
        raise BadInput(f"{art.id} is a {art.kind} artifact, not a selection", where="selection")
    import pyarrow.compute as pc

    return pc.unique(art.table(["id"]).column("id").combine_chunks().cast(pa.string()))


def _read_selected(spec: CorpusSpec, columns: Sequence[str], *, batch_rows: int, stats: ReadStats,
                   allowed_roots: Sequence[Path] | None, raw_domain: bool) -> Iterator[pa.RecordBatch]:
    """The source corpus's documents whose ids the selection holds, in the source's order, each id once
    (its first document, as an export writes it). Memory: the selection's ids plus one batch.

    ``stats`` counts what is yielded (rows, and later documents with an already yielded id as
    duplicates); the source's files are listed. A selection's weights (draw counts) are not applied:
    a document drawn twice is read once.
    """
    import pyarrow.compute as pc

    wanted = selected_ids(spec)
    source = spec.model_copy(update={"selection": None})
    cols = list(dict.fromkeys(list(columns) + list(spec.extra_fields)))
    read_cols = cols if "id" in cols else ["id", *cols]
    inner = ReadStats()
    found: set[str] = set()
    buf: list[pa.RecordBatch] = []
    buffered = 0

    def flush() -> Iterator[pa.RecordBatch]:
        nonlocal buf, buffered
        parts, buf, buffered = buf, [], 0
        try:
            table = pa.Table.from_batches(parts).combine_chunks()
        except pa.ArrowInvalid:  # files whose extra columns differ in type: yield them as they are
            yield from parts
            return
        yield from table.to_batches(max_chunksize=batch_rows)

    for batch in read_batches(source, read_cols, batch_rows=batch_rows, stats=inner, allowed_roots=allowed_roots,
                              check_ids=False, raw_domain=raw_domain):
        ids = batch.column("id")
        hits = pc.indices_nonzero(pc.is_in(ids, value_set=wanted))
        keep = []
        for i, doc_id in zip(hits.to_pylist(), ids.take(hits).to_pylist(), strict=True):
            if doc_id in found:
                stats.duplicate_ids += 1
                if len(stats.duplicate_examples) < 5:
                    stats.duplicate_examples.append(doc_id)
                continue
            found.add(doc_id)
            keep.append(i)
        if not keep:
            continue
        sub = batch.take(pa.array(keep, type=pa.int64()))
        buf.append(sub if read_cols is cols else sub.select(cols))
        buffered += len(keep)
        stats.rows += len(keep)
        if buffered >= batch_rows:
            yield from flush()
    stats.files += inner.files
    if buf:
        yield from flush()
    if stats.rows == 0:
        raise BadInput(f"none of the {len(wanted)} ids of {selection_id(spec.selection or '')} are in the corpus",
                       where=spec.path)


def unreadable(path: Path | str, fmt: str, e: BaseException) -> BadInput:
    """A file the reader cannot parse, said without echoing its contents (quoted values are elided)."""
    import re

    msg = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", str(e).splitlines()[0] if str(e) else "")
    msg = msg[:160] + ("…" if len(msg) > 160 else "")
    return BadInput(f"cannot read this {fmt} file; it may be corrupt or truncated ({type(e).__name__}: {msg})",
                    where=str(path))


def _fill_domain(batch: pa.RecordBatch, i: int) -> pa.RecordBatch:
    col = batch.column(i)
    if not col.null_count:
        return batch
    import pyarrow.compute as pc

    return batch.set_column(i, "domain", pc.fill_null(col, NO_DOMAIN))


def read_table(corpus: CorpusSpec | str | dict, columns: Sequence[str] = CANONICAL, **kw: Any) -> pa.Table:
    """Read a whole corpus into one table: for small inputs such as target sets."""
    batches = list(read_batches(corpus, columns, **kw))
    return pa.Table.from_batches(batches)


def count_rows(corpus: CorpusSpec | str | dict) -> int:
    """Count rows without materialising them (metadata for Parquet/Arrow, a line scan for JSONL)."""
    spec = as_corpus(corpus)
    if spec.selection:
        return sum(b.num_rows for b in read_batches(spec, ("id",)))
    total = 0
    for path, fmt in resolve_files(spec):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                total += pq.ParquetFile(path).metadata.num_rows
            except _READ_ERRORS as e:
                raise unreadable(path, fmt, e) from None
        elif fmt == "jsonl":
            with open(path, "rb") as fh:
                n = 0
                last = b"\n"
                while chunk := fh.read(_JSONL_BLOCK_BYTES):
                    n += chunk.count(b"\n") - chunk.count(b"\n\n")
                    last = chunk[-1:]
                total += n + (0 if last == b"\n" else 1)
        else:
            one = spec.model_copy(update={"path": str(path), "format": fmt})
            total += sum(b.num_rows for b in read_batches(one, ("id",), check_ids=False))
    return total


def peek_fields(corpus: CorpusSpec | str | dict) -> list[str]:
    """The field names of the first record: for error messages and the UI's column picker."""
    spec = as_corpus(corpus)
    path, fmt = resolve_files(spec)[0]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).schema_arrow.names
        except _READ_ERRORS as e:
            raise unreadable(path, fmt, e) from None
    if fmt == "jsonl":
        with open(path, "rb") as fh:
            for raw in fh:
                if raw.strip():
                    try:
                        rec = json.loads(raw.decode("utf-8", "replace"))
                        return list(rec) if isinstance(rec, dict) else []
                    except json.JSONDecodeError:
                        return []
    return []
