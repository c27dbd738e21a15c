from __future__ import annotations

import pytest

from agent.router import extract, fill_args, missing_required, parse_number


@pytest.mark.parametrize(
    ("text", "k"),
    [
        ("pick 20k examples", 20_000),
        ("select 2,000 documents", 2000),
        ("take 1.5M docs", 1_500_000),
        ("a sample of 300 documents", 300),
        ("give me 5 thousand rows", 5000),
    ],
)
def test_counts(text: str, k: int):
    assert extract(text).numbers[0] == k


def test_parse_number():
    assert parse_number("2", "k") == 2000 and parse_number("1,234", None) == 1234


def test_paths_target_cue_and_seed():
    ex = extract("pick 500 docs from data/pool.jsonl that look like data/math.jsonl with seed 7")
    assert ex.corpus == "data/pool.jsonl" and ex.target == "data/math.jsonl"
    assert ex.seed == 7 and ex.numbers == [500]
    ex = extract("profile the pool", corpus="p.jsonl", target="t.jsonl")
    assert ex.corpus == "p.jsonl" and ex.target == "t.jsonl" and ex.numbers == []
    ex = extract("select docs similar to /abs/target_set.jsonl from ./x/pool.parquet")
    assert ex.target == "/abs/target_set.jsonl" and ex.corpus == "./x/pool.parquet"


def test_domains():
    assert extract("sample 100 documents from the math and code domains").domains == ["math", "code"]
    assert extract("only the finance domain please").domains == ["finance"]
    assert extract("balanced across all domains").domains == []


def test_fill_args_for_sample_reads_enums_and_synonyms():
    from tools.registry import get

    spec = get("sample")
    ex = extract("sample 300 documents from each domain equally", corpus="pool.jsonl")
    args = fill_args(spec, "sample 300 documents from each domain equally", ex)
    assert args == {"corpus": "pool.jsonl", "k": 300, "mode": "stratified", "allocation": "equal"}
    assert missing_required(spec, {"corpus": "p"}) == ["k"]
    spec.request_model.model_validate(args)


def test_router_picks_tools_and_splits_steps():
    from agent.router import Router
    from tools.registry import list_specs

    r = Router(list_specs())
    chosen, _ = r.route("what is in this corpus? give me the domain breakdown")
    assert [c[0] for c in chosen] == ["profile"]
    chosen, _ = r.route("profile the pool, then take a random sample of 1000 documents")
    assert [c[0] for c in chosen] == ["profile", "sample"]
    chosen, best = r.route("what's the weather in Paris tomorrow")
    assert chosen == [] and best[1] < 0.45
