"""Typed references: every path a request names is checked against the data roots, whatever its suffix."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydantic import Field

from tests.conftest import write_jsonl
from tools.contract import RowCounts, ToolContext, ToolRequest, ToolResult, ToolSpec
from tools.corpus import CorpusArg
from tools.errors import BadInput, PolicyDenied
from tools.refs import (
    ArtifactOrPath,
    ArtifactRef,
    InputPath,
    Ref,
    artifact_of,
    iter_refs,
    ref_fields,
    resolve_input,
)


class ReadsRequest(ToolRequest):
    corpus: CorpusArg | None = Field(None, description="a pool")
    matrix: ArtifactOrPath | None = Field(None, description="an artifact id or a path")
    extra: list[InputPath] = Field(default_factory=list, description="more files")
    emb: artifact_of("embeddings") | None = Field(None, description="an embeddings artifact")
    label: str = Field("x", description="a plain string: never treated as a path")


class ReadsResult(ToolResult):
    seen: list[str] = Field(default_factory=list)


SPEC = ToolSpec(name="reads_things", description="test tool", request_model=ReadsRequest,
                result_model=ReadsResult, examples=("read",))


@SPEC.implement
def run(request: ReadsRequest, ctx: ToolContext) -> ReadsResult:
    with ctx.artifact("table", rows=RowCounts()) as w:
        w.json({"ok": True})
    return ReadsResult(summary="read", artifacts={"table": w.id}, seen=[f.path for f in iter_refs(request)])


@pytest.fixture
def roots(tmp_path):
    inside = tmp_path / "data"
    outside = tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    return inside, outside


def _ctx(tmp_path, inside):
    return ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, data_roots=(inside,))


def test_ref_fields_found_by_type_not_name():
    found = ref_fields(ReadsRequest)
    assert set(found) == {"corpus", "matrix", "extra", "emb"}
    assert found["corpus"].kind == "corpus" and found["matrix"].kind == "artifact_or_path"
    assert found["extra"].kind == "path" and found["emb"] == Ref("artifact", ("embeddings",))
    props = ReadsRequest.model_json_schema()["properties"]
    assert "x-ref" in str(props["matrix"]) and "x-ref" not in str(props["label"])


@pytest.mark.parametrize("name", ["m.npy", "m.safetensors", "t.parquet", "folder", "noext"])
def test_every_suffix_is_checked_against_the_data_roots(tmp_path, roots, name):
    inside, outside = roots
    for root in (inside, outside):
        p = root / name
        if name == "folder":
            p.mkdir()
            (p / "part-0.bin").write_bytes(b"x")
        else:
            p.write_bytes(b"\x93NUMPY")
    ctx = _ctx(tmp_path, inside)
    ok = run({"matrix": str(inside / name), "extra": [str(inside / name)]}, ctx)
    assert ok.seen == ["matrix", "extra[0]"]
    with pytest.raises(PolicyDenied, match="outside the allowed data roots"):
        run({"matrix": str(outside / name)}, ctx)
    with pytest.raises(PolicyDenied):
        run({"extra": [str(inside / name), str(outside / name)]}, ctx)


def test_symlink_out_of_the_root_is_refused(tmp_path, roots):
    inside, outside = roots
    secret = outside / "secret.npy"
    np.save(secret, np.zeros((2, 2), np.float32))
    os.symlink(secret, inside / "link.npy")
    os.symlink(outside, inside / "dirlink")
    ctx = _ctx(tmp_path, inside)
    with pytest.raises(PolicyDenied):
        run({"matrix": str(inside / "link.npy")}, ctx)
    with pytest.raises(PolicyDenied):
        run({"extra": [str(inside / "dirlink")]}, ctx)
    pool = write_jsonl(outside / "pool.jsonl", [{"id": "a", "text": "t"}])
    os.symlink(pool, inside / "pool.jsonl")
    with pytest.raises(PolicyDenied):
        run({"corpus": str(inside / "pool.jsonl")}, ctx)


def test_artifacts_missing_paths_and_kinds(tmp_path, roots):
    inside, _ = roots
    ctx = _ctx(tmp_path, inside)
    res = run({}, ctx)
    table_id = res.artifacts["table"]
    assert run({"matrix": table_id}, ctx).seen == ["matrix"]  # an artifact id needs no data root
    with pytest.raises(BadInput, match="reads_things.matrix"):
        run({"matrix": str(inside / "nope.npy")}, ctx)
    with pytest.raises(BadInput, match="kind embeddings"):
        run({"emb": table_id}, ctx)
    with pytest.raises(BadInput, match="artifact id"):
        resolve_input("embeddings-000", ctx, field="f", ref=Ref("artifact"))
    art = resolve_input(table_id, ctx, field="f", ref=Ref("artifact"))
    assert art.id == table_id
    in_ws = ctx.workspace.get(table_id).path / "data.json"
    assert resolve_input(str(in_ws), ctx, field="f", ref=Ref("path")) == in_ws  # the workspace is readable


def test_plain_strings_are_not_paths(tmp_path, roots):
    inside, outside = roots
    (outside / "x").write_text("x")
    ctx = _ctx(tmp_path, inside)
    assert run({"label": str(outside / "x")}, ctx).seen == []


def test_fingerprint_follows_the_file(tmp_path, roots):
    inside, _ = roots
    p = inside / "m.npy"
    np.save(p, np.zeros(3))
    ctx = _ctx(tmp_path, inside)
    a = run({"matrix": str(p)}, ctx)
    assert run({"matrix": str(p)}, ctx).cached
    np.save(p, np.ones(4))
    os.utime(p, ns=(1, 10**18))
    b = run({"matrix": str(p)}, ctx)
    assert not b.cached and b.artifacts != a.artifacts


def test_annotations_are_plain_str_for_validation():
    r = ReadsRequest(matrix="embeddings-abc", extra=["a", "b"])
    assert r.matrix == "embeddings-abc" and r.extra == ["a", "b"]
    assert ArtifactRef is not None and InputPath is not None


def test_model_ref_checks_a_local_path_but_passes_a_name(tmp_path):
    from tools.contract import ToolContext
    from tools.errors import PolicyDenied
    from tools.refs import Ref, resolve_input

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "model").mkdir(parents=True)
    (root / "link").symlink_to(outside / "model")
    ctx = ToolContext(workspace_dir=tmp_path / "ws", data_roots=(root,), show_progress=False)
    assert resolve_input("org/some-model", ctx, field="t.model", ref=Ref("model")) == "org/some-model"
    with pytest.raises(PolicyDenied):
        resolve_input(str(outside / "model"), ctx, field="t.model", ref=Ref("model"))
    with pytest.raises(PolicyDenied):
        resolve_input(str(root / "link"), ctx, field="t.model", ref=Ref("model"))
