"""Property-based fuzzing (Hypothesis) of the reader and of tool arguments: whatever the bytes or the
values, the outcome is a table or a typed error (BadInput/PolicyDenied), never another exception."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.corpus import ReadStats, read_table
from tools.errors import BadInput, CurateError

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                             st.dictionaries(st.text(max_size=5), c, max_size=3)),
                           max_leaves=6)
records = st.dictionaries(st.sampled_from(["id", "text", "domain", "body", "n"]), json_values, max_size=4)
lines = st.one_of(records.map(json.dumps), st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                  st.just(""), st.just("{"), st.just("[1, 2]"))


@FAST
@given(body=st.lists(lines, max_size=12), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".tsv"]),
       skip=st.booleans())
def test_any_text_file_reads_or_is_bad_input(tmp_path_factory, body, suffix, skip):
    p = tmp_path_factory.mktemp("fz") / f"c{suffix}"
    p.write_text("\n".join(body) + "\n", encoding="utf-8", errors="surrogatepass")
    stats = ReadStats()
    try:
        t = read_table({"path": str(p), "on_error": "skip" if skip else "raise"}, stats=stats)
    except BadInput as e:
        assert str(p) in e.render() or p.name in e.render()
        return
    assert t.num_rows == stats.rows > 0
    assert all(isinstance(x, str) for x in t.column("text").to_pylist()), "text is always a string"
    assert len(set(t.column("id").to_pylist())) + stats.duplicate_ids == t.num_rows


@FAST
@given(data=st.binary(min_size=0, max_size=400), suffix=st.sampled_from([".parquet", ".arrow", ".jsonl", ".csv"]))
def test_any_bytes_read_or_are_bad_input(tmp_path_factory, data, suffix):
    p = tmp_path_factory.mktemp("fb") / f"c{suffix}"
    p.write_bytes(data)
    try:
        t = read_table(str(p))
    except BadInput:
        return
    assert t.num_rows > 0


@FAST
@given(texts=st.lists(st.one_of(st.text(max_size=30), st.none(), st.integers()), min_size=1, max_size=20))
def test_parquet_text_column_types(tmp_path_factory, texts):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path_factory.mktemp("fp") / "c.parquet"
    try:
        table = pa.table({"text": texts})
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return  # a column of mixed types (or a huge int) cannot be written
    pq.write_table(table, p)
    stats = ReadStats()
    try:
        t = read_table({"path": str(p), "on_error": "skip"}, stats=stats)
    except BadInput:
        assert all(not isinstance(x, str) for x in texts)  # nothing readable: "no documents"
        return
    n_str = sum(isinstance(x, str) or x is None for x in texts)
    assert t.num_rows == n_str and stats.skipped.get("non_string_text", 0) == len(texts) - n_str


arg_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=3), st.dictionaries(st.text(max_size=4),
                                                                                        json_scalars, max_size=2))


@pytest.mark.parametrize("tool", ["profile", "sample", "dsir", "tsds"])
def test_tool_arguments_validate_or_are_field_errors(tool):
    from tools import registry
    from tools.runtime import build_request

    spec = registry.bind(registry.get(tool)) if hasattr(registry, "bind") else registry.get(tool)
    names = list(spec.request_model.model_fields) + ["zzz_unknown"]

    @FAST
    @given(args=st.dictionaries(st.sampled_from(names), arg_values, max_size=5))
    def check(args):
        try:
            build_request(spec, args, {})
        except BadInput as e:
            assert e.render().startswith(f"{tool}") or f"{tool}." in e.render(), e.render()
        except CurateError as e:  # pragma: no cover - a policy or state error from validation would be wrong
            raise AssertionError(f"validation raised {type(e).__name__}") from e

    check()


@FAST
@given(name=st.text(alphabet=string.ascii_letters + string.digits + "./-_~", min_size=1, max_size=30))
def test_artifact_refs_stay_inside_the_workspace(tmp_path_factory, name):
    from tools.artifacts import Workspace

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    try:
        art = ws.get(name)
    except BadInput:
        return
    assert ws.artifacts_dir in art.path.parents  # pragma: no cover - nothing exists to be found
