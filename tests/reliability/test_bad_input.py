"""Every registered tool, through the CLI, against every bad-input class: one clean ``error:`` line
with the documented exit code (never a traceback, never file contents), and a consistent workspace."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from tests.reliability.cases import CORPUS_CASES, Case
from tests.reliability.conftest import assert_clean_error
from tests.reliability.test_concurrency import assert_workspace_consistent
from tests.test_tool_contract import _corpus
from tools import registry
from tools.refs import ref_fields

SPECS = registry.list_specs()


def base_args(spec, tmp_path: Path) -> dict:
    """Valid arguments for a small run: the tool's conformance case, else the contract suite's table."""
    corpus = _corpus(tmp_path / "data")
    if spec.conformance:
        from tools.errors import BadInput
        from tools.runtime import build_request

        mod, fn = spec.conformance.split(":")
        args = getattr(importlib.import_module(mod), fn)(tmp_path / "data", corpus)
        if "corpus" in spec.request_model.model_fields:  # as the contract suite does: the case may omit it
            args = {"corpus": str(corpus), **args}
        try:
            build_request(registry.bind(spec) if hasattr(registry, "bind") else spec, args, {})
        except BadInput as e:  # the tool's own conformance suite reports this
            pytest.skip(f"{spec.name}: its conformance case does not validate ({e})")
        return args
    pytest.skip(f"{spec.name}: no conformance case, so no known valid arguments")


def corpus_fields(spec, args: dict) -> list[str]:
    return [n for n, r in ref_fields(spec.request_model).items() if r.kind == "corpus" and n in args]


def _run(cli, spec, args: dict, tmp_path: Path, policy: bool):
    extra = []
    if policy:
        pol = tmp_path / "policy.yaml"
        pol.write_text(f"name: rel\ndata_roots: [{json.dumps(str(tmp_path / 'data'))}]\n")
        extra = ["--policy", str(pol)]
    return cli("tool", spec.name, "--args", json.dumps(args), "--json", *extra)


# every tool runs the core classes by default; the whole cross-product is the slow run
CORE = {"missing_file", "malformed_jsonl", "non_string_text", "corrupt_parquet", "symlink_outside_root"}
CORPUS_PARAMS = [pytest.param(c, id=c.name, marks=() if c.name in CORE else pytest.mark.slow) for c in CORPUS_CASES]


@pytest.mark.parametrize("case", CORPUS_PARAMS)
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_bad_corpus_is_a_clean_error(spec, case: Case, cli, tmp_path):
    args = base_args(spec, tmp_path)
    fields = corpus_fields(spec, args)
    if not fields:
        pytest.skip(f"{spec.name} reads no corpus in its base case")
    bad = case.make(tmp_path)
    out = _run(cli, spec, {**args, fields[0]: bad}, tmp_path, case.policy)
    if out.code == 4 and "ResourceUnavailable" not in out.stderr and "needs" in out.stderr:
        pytest.skip(f"{spec.name}: a resource is missing here ({out.stderr.strip()[:120]})")
    if out.code == 0 and 0 in case.codes:  # a correct result: the tool read what is readable
        assert json.loads(out.stdout)["tool"] == spec.name
        assert_workspace_consistent(tmp_path / ".curate")
        return
    line = assert_clean_error(out, None, case.match)
    assert out.code in case.codes, (out.code, line)
    assert "SECRET" not in line and "root:x:" not in line, "an error never echoes file contents"
    assert_workspace_consistent(tmp_path / ".curate")


ARG_CASES = {
    "unknown_field": ({"no_such_field": 1}, "no_such_field"),
    "corpus_wrong_type": ({"corpus": 12}, "corpus"),
    "k_bool": ({"k": True}, "k"),
    "k_negative": ({"k": -3}, "k"),
    "seed_too_large": ({"seed": 2**70}, "seed"),
}


ARG_PARAMS = [pytest.param(c, id=c, marks=() if c in ("k_bool", "unknown_field", "seed_too_large") else pytest.mark.slow)
              for c in ARG_CASES]


@pytest.mark.parametrize("case", ARG_PARAMS)
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_bad_arguments_are_field_errors(spec, case: str, cli, tmp_path):
    args = base_args(spec, tmp_path)
    patch, field = ARG_CASES[case]
    name = next(iter(patch))
    fields = spec.request_model.model_fields
    if name != "no_such_field" and name not in fields:
        pytest.skip(f"{spec.name} has no {name!r}")
    out = _run(cli, spec, {**args, **patch}, tmp_path, False)
    if case == "seed_too_large" and out.code == 0:
        return  # a seed of any size is fine for tools that hash it
    line = assert_clean_error(out, 2)
    assert f"{spec.name}.{field}" in line or field in line, line
    assert_workspace_consistent(tmp_path / ".curate")


@pytest.mark.parametrize("kind", ["folder", "bad_yaml", "binary", "not_a_mapping", "bad_json"])
def test_args_file_problems(kind: str, cli, tmp_path):
    p = tmp_path / {"folder": "adir", "bad_yaml": "a.yaml", "binary": "b.json", "not_a_mapping": "l.yaml",
                    "bad_json": "j.json"}[kind]
    if kind == "folder":
        p.mkdir()
    elif kind == "bad_yaml":
        p.write_text("corpus: [unclosed\n")
    elif kind == "binary":
        p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 10)
    elif kind == "not_a_mapping":
        p.write_text("- 1\n- 2\n")
    else:
        p.write_text('{"corpus": ')
    assert_clean_error(cli("tool", "profile", "--args", f"@{p}"), 2, str(p.name))


@pytest.mark.parametrize("kind", ["bad_yaml", "k_string", "k_bool", "corpus_list", "steps_not_list", "folder"])
def test_propose_request_file_problems(kind: str, cli, tmp_path):
    p = tmp_path / "req.yaml"
    body = {"bad_yaml": "request: [x\n", "k_string": "request: select\nk: lots\n",
            "k_bool": "request: select\nk: true\n", "corpus_list": "request: select\ncorpus: [a, b]\n",
            "steps_not_list": "steps: {tool: sample}\n"}
    if kind == "folder":
        p.mkdir()
    else:
        p.write_text(body[kind])
    assert_clean_error(cli("propose", "--request", str(p), "--planner", "offline"), 2, "req.yaml")


def test_debug_shows_the_traceback_and_default_does_not(cli, tmp_path):
    p = tmp_path / "c.parquet"
    p.write_bytes(b"PAR1 not really")
    out = cli("tool", "profile", "--args", json.dumps({"corpus": str(p)}))
    assert_clean_error(out, 2, "corrupt")
    dbg = cli("--debug", "tool", "profile", "--args", json.dumps({"corpus": str(p)}))
    assert dbg.code == 2 and "Traceback" in dbg.stderr and dbg.stderr.rstrip().splitlines()[-1].startswith("error:")


def test_unexpected_failures_are_one_line_exit_4(cli, tmp_path, monkeypatch):
    import tools.registry as reg

    def boom(*a, **k):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(reg, "invoke", boom)
    line = assert_clean_error(cli("tool", "profile", "--args", "{}"), 4, "RuntimeError: disk on fire")
    assert "second line" not in line


def test_error_messages_keep_colons_and_brackets(cli, tmp_path):
    line = assert_clean_error(cli("tool", "profile", "--args", json.dumps({"corpus": ":x: [bold]nope[/bold]"})), 2)
    assert ":x: [bold]nope[/bold]" in line and "❌" not in line


def test_policy_check_warns_on_root_slash(cli, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text('name: wide\ndata_roots: ["/"]\n')
    out = cli("policy", "check", str(p))
    assert out.code == 0 and "warning: data root '/'" in out.stdout


@pytest.mark.slow
def test_run_without_a_corpus_exits_non_zero(cli, tmp_path):
    out = cli("run", "select 10 documents that look like the target set", "--planner", "offline")
    assert out.exception is None and "Traceback" not in out.stderr + out.stdout
    # the planner asks for the missing corpus (exit 6, README), else nothing ran is exit 2
    if out.code == 6:
        assert "question:" in out.stdout and "corpus" in out.stdout
    else:
        assert_clean_error(out, 2, "nothing ran")
