"""A selection artifact read as a corpus: the source corpus's rows restricted to the selected ids."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from tools import profile, quality_signals, sample
from tools.contract import ToolContext
from tools.corpus import CorpusSpec, fingerprint, read_table
from tools.errors import BadInput, PolicyDenied, StateConflict
from tools.refs import resolve_selection
from tools.selection import export_selection

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex the jovial judge".split()


def _rows(n: int = 90) -> list[dict]:
    """Columns named unlike the defaults, so the selection must carry the source's mapping."""
    return [{"doc": f"r{i:03d}", "body": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(5 + i % 23)),
             "src": ["web", "code", "books", None][i % 4]} for i in range(n)]


def _source(tmp_path, name: str = "pool.jsonl") -> dict:
    path = write_jsonl(tmp_path / "data" / name, _rows())
    return {"path": str(path), "text_field": "body", "id_field": "doc", "domain_field": "src"}


def _select(ctx: ToolContext, corpus: dict, k: int = 25, seed: int = 3) -> str:
    return sample.run({"corpus": corpus, "k": k, "seed": seed}, ctx).artifacts["selection"]


def test_reading_a_selection_gives_exactly_its_rows_in_source_order(tmp_path, ctx):
    src = _source(tmp_path)
    sid = _select(ctx, src)
    chosen = set(ctx.workspace.get(sid).table()["id"].to_pylist())
    spec = resolve_selection(CorpusSpec(path=sid), ctx)
    assert (spec.path, spec.text_field, spec.domain_field) == (src["path"], "body", "src")
    got = read_table(spec, batch_rows=4)  # many source batches, each with few selected rows
    want = [r for r in _rows() if r["doc"] in chosen]
    assert got["id"].to_pylist() == [r["doc"] for r in want]
    assert got["text"].to_pylist() == [r["body"] for r in want]
    assert got["domain"].to_pylist() == [r["src"] or "(none)" for r in want]
    assert all(b.num_rows <= 4 for b in read_table(spec, batch_rows=4).to_batches())
    # the cache key covers the selection: not the source's fingerprint, not another selection's
    other = resolve_selection(CorpusSpec(path=_select(ctx, src, seed=4)), ctx)
    assert len({fingerprint(spec), fingerprint(other), fingerprint(CorpusSpec(**src))}) == 3
    assert "selection" not in CorpusSpec(**src).model_dump()  # plain corpora dump (and hash) as before


@pytest.mark.parametrize("tool", ["profile", "quality_signals"])
def test_a_tool_on_a_selection_equals_the_tool_on_its_exported_rows(tmp_path, ctx, tool):
    sid = _select(ctx, _source(tmp_path), k=30)
    exported = tmp_path / "out" / "selected.jsonl"
    export_selection(ctx, sid, exported)
    if tool == "profile":
        on_sel = profile.run({"corpus": sid, "tokenizer": "words"}, ctx)
        on_file = profile.run({"corpus": str(exported), "tokenizer": "words"}, ctx)
        assert on_sel.rows_total == on_file.rows_total == 30
        assert on_sel.domains == on_file.domains and sum(on_sel.domains.values()) == 30
        assert on_sel.words == on_file.words and on_sel.exact_duplicate_rate == on_file.exact_duplicate_rate
    else:
        on_sel = quality_signals.run({"corpus": sid}, ctx)
        on_file = quality_signals.run({"corpus": str(exported)}, ctx)
        assert on_sel.documents == on_file.documents == 30
        assert on_sel.signal_means == on_file.signal_means
        assert on_sel.gopher_fail_counts == on_file.gopher_fail_counts
        a = ctx.workspace.get(on_sel.artifacts["scores"]).table()
        b = ctx.workspace.get(on_file.artifacts["scores"]).table()
        assert a.to_pylist() == b.to_pylist()
    assert on_sel.artifacts != on_file.artifacts


def test_a_selection_of_a_selection_reads_and_exports_its_rows(tmp_path, ctx):
    first = _select(ctx, _source(tmp_path), k=40)
    second = _select(ctx, first, k=10, seed=9)
    inner = set(ctx.workspace.get(first).table()["id"].to_pylist())
    ids = ctx.workspace.get(second).table()["id"].to_pylist()
    assert set(ids) <= inner
    res = profile.run({"corpus": second, "tokenizer": "words"}, ctx)
    assert res.rows_total == 10
    info = export_selection(ctx, second, tmp_path / "out" / "second.jsonl")
    assert info["exported"] == 10 and info["missing"] == 0


def test_the_data_roots_apply_to_the_selection_source(tmp_path):
    src = _source(tmp_path)
    ws = tmp_path / ".curate"
    sid = _select(ToolContext(workspace_dir=ws, show_progress=False), src)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    strict = ToolContext(workspace_dir=ws, show_progress=False, data_roots=[elsewhere])
    with pytest.raises(PolicyDenied, match="outside the allowed data roots"):
        profile.run({"corpus": sid, "tokenizer": "words"}, strict)
    # the workspace is not a data root, but the source's folder is: allowed
    ok = ToolContext(workspace_dir=ws, show_progress=False, data_roots=[tmp_path / "data"])
    assert profile.run({"corpus": sid, "tokenizer": "words"}, ok).rows_total == 25


def test_a_source_changed_since_the_selection_is_refused(tmp_path, ctx):
    src = _source(tmp_path)
    sid = _select(ctx, src)
    assert profile.run({"corpus": sid, "tokenizer": "words"}, ctx).rows_total == 25  # now cached
    with open(src["path"], "a", encoding="utf-8") as fh:
        fh.write('{"doc": "new", "body": "a document added later", "src": "web"}\n')
    with pytest.raises(StateConflict, match="changed since") as err:
        profile.run({"corpus": sid, "tokenizer": "words"}, ctx)
    assert err.value.where == "profile.corpus"


def test_unknown_or_wrong_artifact_is_bad_input_naming_the_field(tmp_path, ctx):
    with pytest.raises(BadInput, match="no selection 'selection-0123456789ab'") as err:
        profile.run({"corpus": "selection-0123456789ab", "tokenizer": "words"}, ctx)
    assert err.value.where == "profile.corpus"
    prof = profile.run({"corpus": _source(tmp_path), "tokenizer": "words"}, ctx)
    table_id = next(a for a in prof.artifacts.values() if not a.startswith("selection-"))
    with pytest.raises(BadInput, match="not a selection|a corpus is a path or a selection id") as err:
        quality_signals.run({"corpus": table_id}, ctx)
    assert err.value.where == "quality_signals.corpus"
    with pytest.raises(BadInput, match="not a resolved selection"):  # outside the runtime: no workspace to look in
        read_table(CorpusSpec(path="x.jsonl", selection="selection-0123456789ab"))


def test_the_object_form_names_the_selection_next_to_its_source(tmp_path, ctx):
    src = _source(tmp_path)
    sid = _select(ctx, src)
    res = profile.run({"corpus": {"path": src["path"], "selection": sid}, "tokenizer": "words"}, ctx)
    assert res.rows_total == 25
    other = write_jsonl(tmp_path / "data" / "other.jsonl", _rows(10))
    with pytest.raises(BadInput, match="selects from") as err:
        profile.run({"corpus": {"path": str(other), "selection": sid}, "tokenizer": "words"}, ctx)
    assert err.value.where == "profile.corpus"
