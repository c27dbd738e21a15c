"""Bad-input classes: each writes a broken corpus (or argument) and says what a clean refusal is."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import write_jsonl


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], str]  # tmp dir -> the corpus value to pass
    codes: tuple[int, ...]  # exit codes that count as a clean refusal
    match: str | tuple[str, ...] | None = None  # a substring (one of these) the error line must carry
    policy: bool = False  # run with a policy whose data root is tmp/data


def _good_rows(n: int = 30) -> list[dict]:
    return [{"id": f"g{i}", "text": f"integer prime equation proof item {i} " * 3, "domain": "math"} for i in range(n)]


def _data(tmp: Path) -> Path:
    d = tmp / "data"
    d.mkdir(parents=True, exist_ok=True)
    return d


def missing(tmp: Path) -> str:
    return str(_data(tmp) / "nope.jsonl")


def empty(tmp: Path) -> str:
    p = _data(tmp) / "empty.jsonl"
    p.write_text("")
    return str(p)


def malformed_line(tmp: Path) -> str:
    p = write_jsonl(_data(tmp) / "bad.jsonl", _good_rows())
    with open(p, "a") as fh:
        fh.write('{"id": "x", "text": "unterminated\n')
    return str(p)


def missing_text_field(tmp: Path) -> str:
    return str(write_jsonl(_data(tmp) / "notext.jsonl", [{"id": f"n{i}", "body": "x"} for i in range(5)]))


def non_string_text(tmp: Path) -> str:
    rows = _good_rows()
    rows[4]["text"] = 12345
    return str(write_jsonl(_data(tmp) / "nonstr.jsonl", rows))


def binary_garbage(tmp: Path) -> str:
    p = _data(tmp) / "garbage.jsonl"
    p.write_bytes(bytes(range(256)) * 20)
    return str(p)


def corrupt_parquet(tmp: Path) -> str:
    p = _data(tmp) / "corrupt.parquet"
    p.write_bytes(b"PAR1" + os.urandom(300))
    return str(p)


def truncated_parquet(tmp: Path) -> str:
    p = _data(tmp) / "trunc.parquet"
    pq.write_table(pa.Table.from_pylist(_good_rows(200)), p)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    return str(p)


def corrupt_arrow(tmp: Path) -> str:
    p = _data(tmp) / "corrupt.arrow"
    p.write_bytes(b"\xff\xff\xff\xff\x40\x00\x00\x00" + os.urandom(200))
    return str(p)


def csv_with_nul(tmp: Path) -> str:
    p = _data(tmp) / "nul.csv"
    p.write_bytes(b"id,text\n1,fine text\n2,bro\x00ken\n")
    return str(p)


def csv_wrong_fields(tmp: Path) -> str:
    p = _data(tmp) / "fields.csv"
    p.write_text("id,text\n1,fine text\n2,a,b,c\n")
    return str(p)


def symlink_outside(tmp: Path) -> str:
    d = _data(tmp) / "linked"
    d.mkdir()
    write_jsonl(d / "a.jsonl", _good_rows())
    write_jsonl(tmp / "outside" / "secret.jsonl", [{"id": "s", "text": "SECRET"}])
    os.symlink(tmp / "outside" / "secret.jsonl", d / "z.jsonl")
    return str(d)


def passwd_link(tmp: Path) -> str:
    d = _data(tmp) / "pw"
    d.mkdir()
    write_jsonl(d / "a.jsonl", _good_rows())
    os.symlink("/etc/passwd", d / "passwd.csv")
    return str(d)


def hf_escape(tmp: Path) -> str:
    d = _data(tmp) / "hf"
    d.mkdir()
    t = pa.Table.from_pylist([{"text": "SECRET"}])
    (tmp / "outside").mkdir(exist_ok=True)
    with pa.OSFile(str(tmp / "outside" / "data.arrow"), "wb") as sink, pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    (d / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../../outside/data.arrow"}]}))
    return str(d)


def outside_root(tmp: Path) -> str:
    return str(write_jsonl(tmp / "outside" / "plain.jsonl", _good_rows()))


CORPUS_CASES = [
    Case("missing_file", missing, (2,), "no such file"),
    Case("empty_file", empty, (2,), ("no documents", "(0 documents)")),
    Case("malformed_jsonl", malformed_line, (2,), "bad.jsonl:31"),
    Case("missing_text_field", missing_text_field, (2,), "text field"),
    Case("non_string_text", non_string_text, (2,), "must be a string"),
    Case("binary_garbage", binary_garbage, (2,), "garbage.jsonl"),
    Case("corrupt_parquet", corrupt_parquet, (2,), "corrupt"),
    Case("truncated_parquet", truncated_parquet, (2,), "corrupt"),
    Case("corrupt_arrow", corrupt_arrow, (2,), "corrupt"),
    Case("csv_nul", csv_with_nul, (0, 2)),  # Python's csv reads NUL; the text keeps it (profile flags it)
    Case("csv_wrong_fields", csv_wrong_fields, (2,), "fields.csv:3"),
    Case("symlink_outside_root", symlink_outside, (3,), "outside the allowed data roots", policy=True),
    Case("passwd_link", passwd_link, (3,), "outside the allowed data roots", policy=True),
    Case("hf_state_escape", hf_escape, (3,), "outside the dataset folder", policy=True),
    Case("path_outside_root", outside_root, (3,), "outside", policy=True),
]
