"""The data roots hold per file, after every symlink; errors name files, never echo their contents."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import write_jsonl
from tools.artifacts import Workspace
from tools.corpus import read_table, resolve_files
from tools.errors import BadInput, PolicyDenied

ROWS = [{"id": f"a{i}", "text": f"allowed document {i}"} for i in range(6)]
SECRET = [{"id": f"s{i}", "text": f"SECRET-{i}"} for i in range(3)]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    write_jsonl(root / "a.jsonl", ROWS)
    write_jsonl(tmp_path / "outside" / "secret.jsonl", SECRET)
    return root


def test_symlinked_file_inside_a_folder_is_refused(tree):
    os.symlink("../outside/secret.jsonl", tree / "z.jsonl")
    for spec in (str(tree), str(tree / "*.jsonl"), str(tree / "**" / "*.jsonl")):
        with pytest.raises(PolicyDenied, match=r"z\.jsonl.*outside the allowed data roots"):
            read_table(spec, allowed_roots=[tree])
    assert read_table(str(tree)).num_rows == 9, "without roots (a notebook) the link is read"


def test_symlinked_folder_inside_a_root_is_refused_per_file(tree, tmp_path):
    os.symlink(tmp_path / "outside", tree / "sub")
    with pytest.raises(PolicyDenied, match="secret"):
        read_table(str(tree), allowed_roots=[tree])
    os.symlink(tree, tree / "loop")  # a loop inside the root is read once
    (tree / "sub").unlink()
    assert read_table(str(tree), allowed_roots=[tree]).num_rows == len(ROWS)


def test_link_to_a_system_file_never_leaks_its_content(tree):
    os.symlink("/etc/passwd", tree / "passwd.csv")
    with pytest.raises(PolicyDenied) as e:
        read_table(str(tree), allowed_roots=[tree])
    assert "root:" not in e.value.render()
    # and read without roots, a file that is not a table is not echoed in the error
    with pytest.raises(BadInput) as e2:
        read_table({"path": "/etc/passwd", "format": "csv"})
    assert "root:" not in e2.value.render() and "/bin/" not in e2.value.render()


def _hf(folder: Path, data_files: list[str]) -> None:
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": f} for f in data_files]}))


def _arrow(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = pa.table({"text": texts})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)


def test_hf_state_json_entries_cannot_escape(tmp_path):
    _arrow(tmp_path / "outside" / "data.arrow", ["SECRET"])
    _hf(tmp_path / "root" / "ds", ["../../outside/data.arrow"])
    with pytest.raises(PolicyDenied, match="outside the dataset folder"):
        resolve_files(read_spec(tmp_path / "root" / "ds"))
    _hf(tmp_path / "root" / "abs", ["/etc/passwd"])
    with pytest.raises(BadInput, match="relative path"):
        resolve_files(read_spec(tmp_path / "root" / "abs"))
    ok = tmp_path / "root" / "ok"
    _hf(ok, ["data-00000-of-00001.arrow"])
    _arrow(ok / "data-00000-of-00001.arrow", ["fine"])
    assert read_table(str(ok), allowed_roots=[tmp_path / "root"])["text"].to_pylist() == ["fine"]


def test_hf_dataset_dict_split_cannot_escape(tmp_path):
    dd = tmp_path / "root" / "dd"
    dd.mkdir(parents=True)
    (dd / "dataset_dict.json").write_text(json.dumps({"splits": ["../../outside"]}))
    _hf(tmp_path / "outside", [])
    with pytest.raises(PolicyDenied, match="split"):
        resolve_files(read_spec(dd))
    (dd / "dataset_dict.json").write_text("{not json")
    with pytest.raises(BadInput, match="not a readable JSON"):
        resolve_files(read_spec(dd))


def read_spec(p: Path):  # noqa: ANN201
    from tools.corpus import as_corpus

    return as_corpus(str(p))


def test_workspace_reads_artifacts_only_from_itself(tmp_path):
    ws = Workspace(tmp_path / "ws")
    fake = tmp_path / "elsewhere" / "embeddings-123"
    fake.mkdir(parents=True)
    (fake / "manifest.json").write_text(json.dumps({"id": "embeddings-123", "kind": "embeddings"}))
    assert not ws.exists(str(fake)) and not ws.exists("../../elsewhere/embeddings-123")
    with pytest.raises(BadInput, match="not an artifact of this workspace"):
        ws.get(str(fake))


def test_policy_check_warns_on_broad_roots(tmp_path):
    from policies.schema import parse_policy

    home = Path.home()
    for root, why in (("/", "whole file system"), (str(home), "home folder"), ("/etc", "system folder")):
        (w,) = parse_policy(f"data_roots: [{json.dumps(root)}]").root_warnings()
        assert why in w
    assert parse_policy(f"data_roots: [{json.dumps(str(tmp_path / 'a' / 'data'))}]").root_warnings() == []


@pytest.mark.parametrize("tool,field", [("semantic_dedup", "embeddings"), ("neighbors", "embeddings")])
def test_non_corpus_paths_are_checked_against_the_roots(tool, field, tmp_path, monkeypatch):
    """An embeddings folder (any folder with a manifest.json) outside the roots is refused, not loaded."""
    import numpy as np

    from tools import registry
    from tools.contract import ToolContext

    if tool not in registry.names():
        pytest.skip(f"{tool} is not registered")
    root = tmp_path / "root"
    corpus = write_jsonl(root / "c.jsonl", ROWS)
    fake = tmp_path / "outside" / "embeddings-0123456789ab"
    fake.mkdir(parents=True)
    (fake / "manifest.json").write_text(json.dumps({"id": fake.name, "kind": "embeddings", "files": ["data.npy"]}))
    np.save(fake / "data.npy", np.ones((len(ROWS), 4), dtype=np.float32))
    ctx = ToolContext(workspace_dir=tmp_path / "ws", data_roots=(root,), show_progress=False)
    args = {"corpus": str(corpus), field: str(fake)}
    if tool == "neighbors":
        args.update(query="allowed document", k=2)
    with pytest.raises(PolicyDenied, match="outside"):
        registry.invoke(tool, args, ctx)
