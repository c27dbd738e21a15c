"""Corpus reading: formats, id rules, every bad-input case, bounded memory, real data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import write_jsonl
from tools.corpus import NO_DOMAIN, CorpusSpec, ReadStats, content_id, count_rows, read_batches, read_table
from tools.errors import BadInput, PolicyDenied

ROWS = [{"id": f"r{i}", "text": f"document number {i}", "domain": "a" if i % 2 else "b", "n": i} for i in range(25)]


def _all_formats(tmp_path):
    jsonl = write_jsonl(tmp_path / "c.jsonl", ROWS)
    js = tmp_path / "c.json"
    js.write_text(json.dumps(ROWS))
    pq_path = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), pq_path)
    csv = tmp_path / "c.csv"
    csv.write_text("id,text,domain,n\n" + "".join(f'{r["id"]},"{r["text"]}",{r["domain"]},{r["n"]}\n' for r in ROWS))
    return [jsonl, js, pq_path, csv]


def test_every_format_reads_the_same_rows(tmp_path):
    expected = [(r["id"], r["text"], r["domain"]) for r in ROWS]
    for path in _all_formats(tmp_path):
        t = read_table(str(path))
        got = list(zip(t["id"].to_pylist(), t["text"].to_pylist(), t["domain"].to_pylist(), strict=True))
        assert got == expected, path.suffix
        assert count_rows(str(path)) == len(ROWS)


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "hf"))
    t = read_table(str(tmp_path / "hf"))
    assert t["id"].to_pylist() == [r["id"] for r in ROWS]
    dd = datasets.DatasetDict({"train": ds, "test": ds.select(range(5))})
    dd.save_to_disk(str(tmp_path / "hfdd"))
    assert read_table({"path": str(tmp_path / "hfdd"), "split": "test"}).num_rows == 5
    assert read_table(str(tmp_path / "hfdd")).num_rows == 30


def test_directory_and_glob_and_batches(tmp_path):
    write_jsonl(tmp_path / "d" / "x.jsonl", ROWS[:10])
    write_jsonl(tmp_path / "d" / "y.jsonl", ROWS[10:])
    assert read_table(str(tmp_path / "d")).num_rows == 25
    assert read_table(str(tmp_path / "d" / "*.jsonl")).num_rows == 25
    batches = list(read_batches(str(tmp_path / "d"), batch_rows=4))
    assert max(b.num_rows for b in batches) <= 10  # files flush at most batch_rows at a time per source block
    assert sum(b.num_rows for b in batches) == 25
    t = read_table({"path": str(tmp_path / "d"), "domain_from_path": True})
    assert set(t["domain"].to_pylist()) == {"x", "y"}


def test_content_hash_ids_are_stable_and_duplicates_reported(tmp_path):
    rows = [{"text": "same"}, {"text": "other"}, {"text": "same"}]
    p = write_jsonl(tmp_path / "noid.jsonl", rows)
    st = ReadStats()
    t = read_table(str(p), stats=st)
    assert t["id"].to_pylist() == [content_id("same"), content_id("other"), content_id("same")]
    assert st.duplicate_ids == 1 and st.duplicate_examples == [content_id("same")]
    assert t["domain"].to_pylist() == [NO_DOMAIN] * 3  # the reader applies the placeholder
    assert read_table(str(p), raw_domain=True)["domain"].null_count == 3


def test_column_mapping_and_joined_text_fields(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [{"q": "What?", "a": "That.", "key": 7, "src": "x"}])
    t = read_table({"path": str(p), "text_field": ["q", "a"], "id_field": "key", "domain_field": "src"})
    assert t.to_pylist() == [{"id": "7", "text": "What?\n\nThat.", "domain": "x"}]


def test_malformed_json_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "ok2"}\n{"text": broken\n{"text": "ok3"}\n')
    with pytest.raises(BadInput) as e:
        read_table(str(p))
    assert f"{p}:3" in str(e.value) and "malformed JSON" in str(e.value)
    st = ReadStats()
    t = read_table({"path": str(p), "on_error": "skip"}, stats=st)
    assert t["text"].to_pylist() == ["ok", "ok2", "ok3"]
    assert st.skipped == {"malformed_json": 1}


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    p = tmp_path / "u.jsonl"
    p.write_bytes(b'{"text": "caf\xe9 ok"}\n{"text": "fine"}\n')
    st = ReadStats()
    t = read_table(str(p), stats=st)
    assert t["text"].to_pylist()[0] == "caf\ufffd ok"
    assert st.invalid_utf8_rows == 1


def test_missing_text_field_lists_existing_fields(tmp_path):
    p = write_jsonl(tmp_path / "f.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(BadInput) as e:
        read_table(str(p))
    msg = str(e.value)
    assert "'text' not found" in msg and "answer" in msg and "question" in msg and str(p) in msg
    pqp = tmp_path / "f.parquet"
    pq.write_table(pa.table({"body": ["x"]}), pqp)
    with pytest.raises(BadInput, match="body"):
        read_table(str(pqp))


def test_empty_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(BadInput, match="no documents"):
        read_table(str(tmp_path / "empty.jsonl"))
    with pytest.raises(BadInput, match="no such file"):
        read_table(str(tmp_path / "missing.jsonl"))
    with pytest.raises(BadInput, match="no file matches"):
        read_table(str(tmp_path / "*.nothing"))
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(BadInput, match="no data files"):
        read_table(str(tmp_path / "emptydir"))


def test_data_roots_are_enforced(tmp_path):
    p = write_jsonl(tmp_path / "in" / "c.jsonl", ROWS)
    assert read_table(str(p), allowed_roots=[tmp_path / "in"]).num_rows == 25
    with pytest.raises(PolicyDenied):
        read_table(str(p), allowed_roots=[tmp_path / "elsewhere"])
    link = tmp_path / "elsewhere"
    link.mkdir()
    (link / "sneaky.jsonl").symlink_to(p)
    with pytest.raises(PolicyDenied):
        read_table(str(link / "sneaky.jsonl"), allowed_roots=[link])


def test_csv_semicolons_no_header_and_bad_rows(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("question;answer\nWhat is 2+2?;4\nbroken row without delimiter\nWhy?;because\n")
    with pytest.raises(BadInput, match=r"s\.csv:3"):
        read_table({"path": str(p), "text_field": "question"})
    st = ReadStats()
    t = read_table({"path": str(p), "text_field": "question", "on_error": "skip"}, stats=st)
    assert t["text"].to_pylist() == ["What is 2+2?", "Why?"] and st.skipped == {"wrong_field_count": 1}
    q = tmp_path / "nh.csv"
    q.write_text("a,b\nc,d\n")
    t = read_table({"path": str(q), "has_header": False, "column_names": ["text", "label"]})
    assert t["text"].to_pylist() == ["a", "c"]


def test_mixed_fast_and_careful_blocks_keep_order(tmp_path):
    rows = [{"id": i, "text": f"t{i}"} for i in range(50)] + [{"id": "x", "text": "s"}]
    p = write_jsonl(tmp_path / "mixed.jsonl", rows)
    t = read_table(str(p))
    assert t["id"].to_pylist() == [str(i) for i in range(50)] + ["x"]


def test_reading_a_large_jsonl_keeps_memory_bounded(tmp_path):
    """A ~300 MB file read in a fresh process must not grow RSS with the file (the 2 GB bound, scaled)."""
    path = tmp_path / "big.jsonl"
    line = json.dumps({"id": "x", "text": "lorem ipsum dolor sit amet " * 40}) + "\n"
    with open(path, "w") as fh:
        chunk = line * 10_000
        for _ in range(28):
            fh.write(chunk)
    # VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child forked from a large pytest process
    # would report the parent's footprint before it ran a line of the reader
    code = textwrap.dedent(
        f"""
        from tools.corpus import read_batches
        n = sum(b.num_rows for b in read_batches({str(path)!r}, check_ids=False))
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
        print(n, int(hwm.split()[1]) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    rows, rss_mb = int(out[0]), int(out[1])
    size_mb = path.stat().st_size // (1 << 20)
    assert rows == 280_000
    assert rss_mb < 600, f"peak RSS {rss_mb} MB while reading a {size_mb} MB file"


def test_real_data_gsm8k_mmlu_and_redux(shared_raw):
    gsm = read_table({"path": str(shared_raw / "gsm8k" / "test.jsonl"), "text_field": ["question", "answer"]})
    assert gsm.num_rows == 1319 and gsm["text"][0].as_py().startswith("Janet")
    mmlu = read_table({"path": str(shared_raw / "mmlu" / "test" / "*.csv"), "text_field": "question",
                       "domain_from_path": True})
    assert mmlu.num_rows > 10_000 and "anatomy_test" in set(mmlu["domain"].to_pylist())
    st = ReadStats()
    redux = read_table({"path": str(shared_raw / "mmlu_redux"), "format": "csv", "text_field": "question",
                        "domain_from_path": True}, stats=st)
    assert st.invalid_utf8_rows >= 1  # mmlu_moral_scenarios.csv has one Mac-Roman byte
    assert redux.num_rows >= 5000 and "mmlu_moral_scenarios" in set(redux["domain"].to_pylist())
    assert all("\ufffd" not in t for t in redux["text"].to_pylist()[:50])


def test_corpus_spec_accepts_strings_and_rejects_unknown_fields():
    assert CorpusSpec.model_validate({"path": "x.jsonl"}).text_field == "text"
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="txt"):
        CorpusSpec.model_validate({"path": "x", "txt": "y"})
