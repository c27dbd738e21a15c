"""Export never destroys or misreports: no writing over a source or an existing file without --force,
the corpus must be the one the selection saw, counts are what was written."""

from __future__ import annotations

import json
import os

from tests.conftest import write_jsonl
from tests.reliability.conftest import assert_clean_error


def _select(cli, corpus, k=10) -> str:
    out = cli("tool", "sample", "--args", json.dumps({"corpus": str(corpus), "k": k, "seed": 1}), "--json")
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)["artifact_ids"]["selection"]


def _parts(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_export_refuses_the_source_corpus_even_with_force(cli, pool):
    sel = _select(cli, pool)
    before = pool.read_bytes()
    for extra in ((), ("--force",)):
        assert_clean_error(cli("artifacts", "export", sel, "--to", str(pool), *extra), 2, "source corpus")
    assert pool.read_bytes() == before and not _parts(pool.parent)
    # a folder corpus: a new file inside it would join the corpus
    folder_sel = _select(cli, pool.parent)
    assert_clean_error(cli("artifacts", "export", folder_sel, "--to", str(pool.parent / "new.jsonl")), 2,
                       "source corpus")
    assert sorted(p.name for p in pool.parent.iterdir()) == ["pool.jsonl"]


def test_export_refuses_an_existing_file_unless_force(cli, pool, tmp_path):
    sel = _select(cli, pool)
    dest = tmp_path / "out" / "sel.jsonl"
    dest.parent.mkdir()
    dest.write_text("keep me\n")
    assert_clean_error(cli("artifacts", "export", sel, "--to", str(dest)), 2, "--force")
    assert dest.read_text() == "keep me\n"
    out = cli("artifacts", "export", sel, "--to", str(dest), "--force")
    assert out.code == 0, out.stderr
    rows = [json.loads(x) for x in dest.read_text().splitlines()]
    assert len(rows) == json.loads(out.stdout)["exported"] == 10 and not _parts(tmp_path / "out")


def test_export_to_a_folder_or_under_a_file_is_an_error_line(cli, pool, tmp_path):
    sel = _select(cli, pool)
    (tmp_path / "adir").mkdir()
    assert_clean_error(cli("artifacts", "export", sel, "--to", str(tmp_path / "adir")), 2, "is a folder")
    (tmp_path / "afile").write_text("x")
    assert_clean_error(cli("artifacts", "export", sel, "--to", str(tmp_path / "afile" / "x.jsonl")), 2, "is a file")
    assert not _parts(tmp_path) and (tmp_path / "afile").read_text() == "x"
    # the non-selection path (a table export) follows the same rules
    assert_clean_error(cli("artifacts", "export", sel, "--no-text", "--to", str(tmp_path / "adir")), 2, "is a folder")


def test_export_refuses_a_corpus_changed_since_the_selection(cli, pool, tmp_path):
    sel = _select(cli, pool)
    rows = [json.loads(x) for x in pool.read_text().splitlines()]
    rows[3]["text"] = "EDITED after the selection"
    write_jsonl(pool, rows)
    st = pool.stat()
    os.utime(pool, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    dest = tmp_path / "sel.jsonl"
    assert_clean_error(cli("artifacts", "export", sel, "--to", str(dest)), 5, "changed since")
    assert not dest.exists()
    out = cli("artifacts", "export", sel, "--to", str(dest), "--re-resolve")
    assert out.code == 0 and "warning:" in out.stdout
    assert json.loads(out.stdout[out.stdout.index("{"):])["re_resolved"] is True


def test_counts_match_what_is_written_with_duplicate_ids(cli, tmp_path):
    rows = [{"id": f"d{i % 7}", "text": f"doc {i}", "domain": "a"} for i in range(20)]  # ids repeat
    corpus = write_jsonl(tmp_path / "data" / "dup.jsonl", rows)
    sel = _select(cli, corpus, k=12)
    dest = tmp_path / "dup_sel.jsonl"
    out = cli("artifacts", "export", sel, "--to", str(dest))
    assert out.code == 0, out.stderr
    info = json.loads(out.stdout)
    written = dest.read_text().splitlines()
    assert info["exported"] == len(written) == len({json.loads(x)["id"] for x in written})
    assert info["exported"] + info["missing"] == info["selected"]


def test_parquet_export_round_trip(cli, pool, tmp_path):
    import pyarrow.parquet as pq

    sel = _select(cli, pool, k=5)
    dest = tmp_path / "sel.parquet"
    out = cli("artifacts", "export", sel, "--to", str(dest), "--format", "parquet")
    assert out.code == 0, out.stderr
    assert pq.read_table(dest).num_rows == json.loads(out.stdout)["exported"] == 5


def _proposal(tmp_path, sel: str, n: int) -> str:
    from agent.proposals import ProposalStore

    rec = {"id": "prop-0123456789", "thread_id": "t-1", "kind": "selection", "selection": sel, "mixture": None,
           "request": "r", "counts": {"a": n}, "n_docs": n, "weights": {"a": 1.0}, "evidence": [], "plan": [],
           "sources": [], "status": "pending", "note": "", "export": None, "created_at": "2026-01-01T00:00:00Z"}
    ProposalStore(tmp_path / ".curate").save(rec)
    return rec["id"]


def test_approval_exports_what_the_reviewer_saw_or_refuses(cli, pool, tmp_path):
    sel = _select(cli, pool)
    pid = _proposal(tmp_path, sel, 10)
    pool.write_text(pool.read_text().replace("document 1 ", "EDITED 1 "))
    st = pool.stat()
    os.utime(pool, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert_clean_error(cli("review", "approve", pid, "--policy", "default"), 5, "never saw")
    assert json.loads(cli("review", "show", pid).stdout)["status"] == "pending"
    assert not (tmp_path / ".curate" / "exports" / pid / "manifest.json").exists()


def test_review_state_conflicts_exit_5(cli, pool, tmp_path):
    sel = _select(cli, pool)
    pid = _proposal(tmp_path, sel, 10)
    out = cli("review", "reject", pid, "--note", "no")
    assert out.code == 0, out.stderr
    assert_clean_error(cli("review", "approve", pid), 5, "rejected")
    assert_clean_error(cli("review", "edit", pid, "--weights", '{"a": 1}'), 5, "already rejected")


def test_approval_of_an_unchanged_corpus_exports_every_selected_row(cli, tmp_path):
    rows = [{"id": f"d{i % 9}", "text": f"doc {i}", "domain": "a"} for i in range(30)]  # duplicate ids
    corpus = write_jsonl(tmp_path / "data" / "dup.jsonl", rows)
    sel = _select(cli, corpus, k=9)
    pid = _proposal(tmp_path, sel, 9)
    out = cli("review", "approve", pid, "--json")
    assert out.code == 0, out.stderr
    m = json.loads((tmp_path / ".curate" / "exports" / pid / "manifest.json").read_text())
    lines = (tmp_path / ".curate" / "exports" / pid / "data.jsonl").read_text().splitlines()
    assert m["rows"] == len(lines) == len({json.loads(x)["id"] for x in lines})
    assert m["missing"] == 0 and m["corpus_fingerprint"]
    again = cli("review", "approve", pid, "--json")  # idempotent
    assert again.code == 0 and (tmp_path / ".curate" / "exports" / pid / "data.jsonl").read_text().splitlines() == lines
