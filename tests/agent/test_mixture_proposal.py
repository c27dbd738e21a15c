"""The mixture proposal flow: request file -> pending proposal -> review -> per-stage export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app


def _pool(tmp_path: Path) -> Path:
    rows = [{"id": f"{d}-{i:03d}", "domain": d, "text": f"{d} text number {i} " + f"{d}word " * (20 + i % 7)}
            for d, n in (("web", 60), ("code", 25), ("math", 15)) for i in range(n)]
    p = tmp_path / "pool.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.fixture
def setup(tmp_path: Path):  # noqa: ANN201
    pool = _pool(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"name: mixtest\ndata_roots: [{tmp_path}]\ndomains:\n  web: {{cap: 0.7}}\n")
    req = tmp_path / "mixture.yaml"
    req.write_text(
        "request: Temperature-sample the domains with T=2 in 3 stages.\n"
        f"corpus: {pool}\n"
        "steps:\n"
        f"  - {{tool: propose_mixture, args: {{corpus: {pool}, method: temperature, temperature: 2.0, stages: 3,"
        " target_domains: [math], token_budget: 3000, max_epochs: 4, seed: 1}}\n"
    )
    return pool, policy, req


def _json(out: str):  # noqa: ANN202
    return json.loads(out[out.index("{"):])


def test_propose_review_approve_exports_stages(setup):
    pool, policy, req = setup
    runner = CliRunner()
    r = runner.invoke(app, ["propose", "--request", str(req), "--policy", str(policy), "--json"])
    assert r.exit_code == 0, r.output
    prop = _json(r.output)["proposals"][0]
    assert prop["kind"] == "mixture" and prop["status"] == "pending"
    assert len(prop["stages"]) == 3 and prop["method"] == "temperature"
    assert set(prop["pool_share"]) == {"web", "code", "math"}
    assert prop["n_docs"] > 0  # an estimate of the documents the export will write

    r = runner.invoke(app, ["review", "list", "--json"])
    listed = json.loads(r.output)
    assert [p["id"] for p in listed] == [prop["id"]] and listed[0]["kind"] == "mixture"
    r = runner.invoke(app, ["review", "show", prop["id"]])
    shown = json.loads(r.output)
    assert shown["stages"][0]["tokens"] and shown["mixture"].startswith("mixture-")

    # a scheduled second run: a fresh proposal, the first one untouched
    r = runner.invoke(app, ["propose", "--request", str(req), "--policy", str(policy), "--json"])
    second = _json(r.output)["proposals"][0]
    assert second["id"] != prop["id"]
    r = runner.invoke(app, ["review", "list", "--json"])
    assert {p["id"] for p in json.loads(r.output)} == {prop["id"], second["id"]}

    r = runner.invoke(app, ["review", "approve", prop["id"], "--note", "ok", "--policy", str(policy)])
    assert r.exit_code == 0, r.output
    rec = json.loads(runner.invoke(app, ["review", "show", prop["id"]]).output)
    assert rec["status"] == "exported" and rec["note"] == "ok"
    out = Path(rec["export"]["manifest"]).parent
    mix = json.loads((out / "mixture.json").read_text())
    assert [s["stage"] for s in mix["stages"]] == [1, 2, 3]
    pool_rows = {json.loads(x)["id"]: json.loads(x) for x in pool.read_text().splitlines()}
    seen_first: set[str] = set()
    for st in mix["stages"]:
        rows = [json.loads(x) for x in (out / st["data"]).read_text().splitlines()]
        assert rows and all(r["text"] == pool_rows[r["id"]]["text"] for r in rows)
        for d, want in st["tokens"].items():
            got = sum(len(r["text"].encode()) / 4 for r in rows if r["domain"] == d)
            avg = max(len(x["text"]) / 4 for x in pool_rows.values())
            assert want <= got < want + avg + 1, (d, want, got)  # by the token budget, one document over at most
        if st["stage"] == 1:
            seen_first = {r["id"] for r in rows}
    manifest = json.loads(Path(rec["export"]["manifest"]).read_text())
    assert manifest["kind"] == "mixture" and manifest["rows"] > 0 and manifest["stages"][0]["data"] == "stage-01.jsonl"
    assert rec["n_docs"] == manifest["rows"] and abs(manifest["rows"] - prop["n_docs"]) <= 0.2 * manifest["rows"] + 3
    assert seen_first
    again = json.loads(runner.invoke(app, ["review", "show", second["id"]]).output)
    assert again["status"] == "pending"  # the other proposal is untouched


def test_export_is_seeded(setup, tmp_path):
    from agent.mixture_export import plan_documents
    from agent.proposals import MixtureProposal

    pool, _, _ = setup
    prop = MixtureProposal(id="prop-x", stages=[{"stage": 1, "weights": {"web": 1.0}, "tokens": {"web": 400}},
                                                {"stage": 2, "weights": {"web": 1.0}, "tokens": {"web": 400}}],
                           corpus=str(pool), seed=3)
    docs = {"web": [(f"web-{i:03d}", 120) for i in range(10)]}
    a, b = plan_documents(prop, docs), plan_documents(prop, docs)
    assert a == b
    # 400 tokens = 1600 bytes = 14 documents of 120 bytes: 10 fresh ones, then repeats in a new order
    assert len(a[0]["web"]) == 14 and len(set(a[0]["web"][:10])) == 10


def test_edit_renormalises_and_checks_caps(setup):
    pool, policy, req = setup
    runner = CliRunner()
    prop = _json(runner.invoke(app, ["propose", "--request", str(req), "--policy", str(policy), "--json"]).output)[
        "proposals"][0]
    r = runner.invoke(app, ["review", "edit", prop["id"], "--weights", '{"web": 0.5, "code": 0.2, "math": 0.2}',
                            "--policy", str(policy), "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(runner.invoke(app, ["review", "show", prop["id"]]).output)
    assert rec["status"] == "pending" and rec["edited"]
    assert rec["stages"][0]["weights"]["web"] == pytest.approx(0.5 / 0.9)
    assert any("renormalised" in n for n in rec["edit_notes"])
    r = runner.invoke(app, ["review", "edit", prop["id"], "--weights", '{"web": 0.9, "math": 0.1}',
                            "--policy", str(policy)])
    assert r.exit_code != 0 and "cap" in r.output
    r = runner.invoke(app, ["review", "edit", prop["id"], "--weights", '{"wiki": 0.5, "math": 0.5}',
                            "--policy", str(policy)])
    assert r.exit_code != 0 and "unknown domains ['wiki']" in r.output
    r = runner.invoke(app, ["review", "reject", prop["id"], "--note", "not now"])
    assert json.loads(runner.invoke(app, ["review", "show", prop["id"]]).output)["status"] == "rejected"


def test_typed_views():
    from agent.proposals import MixtureProposal, SelectionProposal, parse_proposal

    m = parse_proposal({"id": "prop-1", "kind": "mixture", "stages": [{"stage": 1, "weights": {"a": 1.0},
                                                                         "tokens": {"a": 5}}], "extra": 1})
    assert isinstance(m, MixtureProposal) and m.stages[0].tokens == {"a": 5}
    s = parse_proposal({"id": "prop-2", "kind": "selection", "counts": {"a": 3}})
    assert isinstance(s, SelectionProposal) and s.counts == {"a": 3}


def test_policy_cap_on_an_unknown_domain_is_shown(setup, tmp_path):
    pool, _, req = setup
    policy = tmp_path / "policy2.yaml"
    policy.write_text(f"name: stray\ndata_roots: [{tmp_path}]\ndomains:\n  wiki: {{cap: 0.2}}\n")
    r = CliRunner().invoke(app, ["propose", "--request", str(req), "--policy", str(policy), "--json"])
    assert r.exit_code == 0, r.output
    prop = _json(r.output)["proposals"][0]
    rec = json.loads(CliRunner().invoke(app, ["review", "show", prop["id"]]).output)
    assert any("wiki" in n and "not domains of this mixture" in n for n in rec["notes"])
