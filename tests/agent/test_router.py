from __future__ import annotations

import pytest

from agent.arguments import extract, fill_args, missing_required, parse_number


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
    assert missing_required(spec, {"corpus": "p"}) == ["give exactly one of k (documents) or fraction (share of the pool)"]
    assert fill_args(spec, "take 5% of the pool at random", extract("take 5% of the pool at random"))["fraction"] == 0.05
    spec.request_model.model_validate(args)


def test_more_values_by_type():
    ex = extract("keep the top 15% of data/pool.jsonl, 30B tokens, with BAAI/bge-small-en-v1.5")
    assert ex.fraction == 0.15 and ex.tokens == [30_000_000_000] and ex.model == "BAAI/bge-small-en-v1.5"
    assert ex.corpus == "data/pool.jsonl" and ex.paths == ["data/pool.jsonl"]  # a model name is not a path
    assert extract("select half of the pool").fraction == 0.5
    assert extract("meta rater, keep 0.25").fraction == 0.25
    ex = extract("I have ~400 examples of docstrings; sample 7,500 without replacement")
    assert ex.numbers[0] == 7500  # the count asked for, not the one described
    assert extract("nearest neighbours of doc id web-000123, top 10").doc_id == "web-000123"
    assert extract("trace 'the Moon orbits the Earth' and \"water is wet\"").quoted == [
        "the Moon orbits the Earth", "water is wet"]
    assert extract("draw 1000 random docs from only the legal and medical domains").domains == ["legal", "medical"]
    assert extract("semantic search, top 25, science domain only").domains == ["science"]


def test_fill_args_by_field_type():
    from tests.agent.standin_specs import STANDINS

    specs = {s.name: s for s in STANDINS}
    text = "compute influence of data/train.jsonl on val data/val.jsonl with Qwen2.5-0.5B"
    args = fill_args(specs["influence"], text, extract(text))
    assert args == {"corpus": "data/train.jsonl", "validation": "data/val.jsonl", "model": "Qwen2.5-0.5B"}
    text = "BIDS on artifacts/influence/matrix.npy with the val tasks in data/val.jsonl, keep 15%"
    args = fill_args(specs["bids"], text, extract(text, corpus="pool.jsonl"))
    assert args["influence"] == "artifacts/influence/matrix.npy" and args["val_tasks"] == "data/val.jsonl"
    assert args["fraction"] == 0.15 and args["corpus"] == "pool.jsonl"
    text = "temperature sampling with T=0.7 over 3 stages, 5B tokens, targeting legal"
    args = fill_args(specs["propose_mixture"], text, extract(text, corpus="p.jsonl"))
    assert args == {"corpus": "p.jsonl", "method": "temperature", "temperature": 0.7, "stages": 3,
                    "token_budget": 5_000_000_000, "target": "legal"}
    text = "rate docs on professionalism and cleanliness"
    assert fill_args(specs["prrc_rate"], text, extract(text))["dimensions"] == ["professionalism", "cleanliness"]
    text = "is there a document that says tomatoes are botanically fruits? verified only"
    assert fill_args(specs["trace_fact"], text, extract(text))["queries"] == ["tomatoes are botanically fruits"]
    # an artifact of the thread fills the field of its kind; a kind an earlier step makes becomes "$kind"
    assert fill_args(specs["trace_fact"], "trace 'x y z'", extract("trace 'x y z'"),
                     artifacts={"index": "index-1"})["index"] == "index-1"
    assert fill_args(specs["bids"], "bids 2k", extract("bids 2k"), produced={"influence"})["influence"] == "$influence"


def test_missing_required_reads_the_models_own_checks():
    from tests.agent.standin_specs import STANDINS

    meta = next(s for s in STANDINS if s.name == "meta_rater")
    assert missing_required(meta, {}) == ["corpus"]
    assert missing_required(meta, {"corpus": "p.jsonl"})  # neither k nor fraction: the validator says so
    assert missing_required(meta, {"corpus": "p.jsonl", "fraction": 0.2}) == []


def test_cues_allow_typos_not_negations_and_acronyms_in_capitals():
    from agent.classifier import _cue, names_tool

    dedup = _cue("near duplicates")
    assert dedup.find("remvoe near duplciates", ["remvoe", "near", "duplciates"])
    less = _cue("LESS")
    assert less.find("run LESS on the pool", ["run", "less", "on", "the", "pool"])
    assert not less.find("use less memory", ["use", "less", "memory"])
    assert names_tool("dsir", "run DSIR on the pool")
    assert not names_tool("dsir", "do the OT-based selection instead of dsir this time")


def test_router_scores_every_registered_tool_and_none():
    from agent.router import Router
    from tools.registry import list_specs

    specs = list_specs()
    r = Router(specs)
    sc = r.scores("what is in this corpus? give me the domain breakdown")
    assert set(sc) == {s.name for s in specs} | {"none"}
    assert next(iter(sc)) == "profile"
    assert next(iter(r.scores("what's the weather in Paris tomorrow"))) == "none"
    assert next(iter(r.scores("importance resampling with hashed bigrams towards the target, 3000 docs"))) == "dsir"


def test_artifact_ids_and_words_that_are_not_models():
    ex = extract("rate my corpus with the llm on two dimensions, then trace with index index-0a1b2c3d4e5f")
    assert ex.artifact_ids == {"index": "index-0a1b2c3d4e5f"} and ex.model is None and ex.doc_id is None
    assert extract("we fine-tune a model for legal review").model is None
    assert extract("embed with model BAAI/bge-small-en-v1.5").model == "BAAI/bge-small-en-v1.5"
    assert extract("score it with the encoder model=gpt2").model == "gpt2"


def test_words_around_domain_that_name_no_domain():
    assert extract("stratified so the domain proportions match the pool").domains == []
    assert extract("propose domain weights per stage").domains == []
    assert extract("only the legal and medical domains").domains == ["legal", "medical"]


def test_spelled_counts_are_read_and_cited_years_are_not():
    assert extract("Draw a stratified sample of ten thousand docs").numbers == [10000]
    assert extract("the nearest five documents to this one").numbers == [5]
    assert extract("pick twenty-five examples").numbers == [25]
    assert extract("one of the five eval tasks dominates").numbers == []  # no count noun: words stay words
    # a year that cites a paper is not a count; a year-like count of documents is
    assert extract("the selection of Liu et al. 2024 for 7 thousand examples").numbers == [7000]
    assert extract("n-gram selection (like Xie 2023) of 5k examples").numbers == [5000]
    assert extract("keep 2024 docs").numbers == [2024] and extract("Select 2000 documents").numbers == [2000]
    # quoted statements keep their words
    assert extract("which docs say 'the seven wonders of the world'?").quoted == ["the seven wonders of the world"]


def test_a_phrase_that_only_points_at_a_fact_is_not_a_statement():
    from tools.registry import get

    spec = get("trace_fact")
    assert "queries" not in fill_args(spec, "which documents support the fact?", extract("which documents support the fact?"))
    text = "which documents support that insulin was discovered in 1921?"
    assert fill_args(spec, text, extract(text))["queries"] == ["insulin was discovered in 1921"]


def test_paths_named_as_target_or_evaluation_sets():
    from tools.registry import get

    # a tool that reads one corpus reads the one path named, even when it is called a target
    text = "embed the target set targets/math_target.jsonl"
    assert fill_args(get("embed"), text, extract(text, corpus="data/pool.jsonl"))["corpus"] == "targets/math_target.jsonl"
    # a validation set named by its path is never the pool, whatever words stand before the pool
    text = "learn the weights against validation loss for data/pool.jsonl (val: data/val_web.jsonl)"
    ex = extract(text, corpus="data/pool.jsonl")
    assert (ex.corpus, ex.target) == ("data/pool.jsonl", "data/val_web.jsonl")
    args = fill_args(get("meta_rater"), text, ex)
    assert args["corpus"] == "data/pool.jsonl" and args["validation"] == "data/val_web.jsonl"
    # a tool with several optional corpora does not get the target in one it was not asked for
    assert "dsir_targets" not in fill_args(get("quality_signals"), text, ex)
    text = "quality signals with a DSIR weight column: dsir targets targets/wiki.jsonl"
    assert fill_args(get("quality_signals"), text, extract(text))["dsir_targets"] == ["targets/wiki.jsonl"]


def test_a_tool_named_only_as_context_is_not_asked_for():
    from agent.classifier import names_tool, only_as_context

    assert names_tool("dsir", "run dsir on the pool")
    for text in ("compare against my DSIR picks", "DSIR keeps giving me near-duplicates", "instead of dsir"):
        assert not names_tool("dsir", text) and only_as_context("dsir", text), text
    assert not only_as_context("dsir", "select 500 documents like the target")


def test_field_values_after_filler_words_and_model_names_that_look_like_names():
    from tools.registry import get

    spec = get("fact_index")
    for text, want in (("recursive k-means until every leaf has at most 200 docs", 200),
                       ("build the index with leaves of 300", 300), ("max_leaf=64", 64)):
        assert fill_args(spec, text, extract(text))["max_leaf"] == want, text
    assert extract("which docs taught our model certain facts").model is None  # a plain word is no model name
    assert extract("influence with the model gpt2").model == "gpt2"
    assert extract("model=pythia").model == "pythia" and extract("model Qwen/Qwen2.5-0.5B").model == "Qwen/Qwen2.5-0.5B"


def test_an_array_is_never_a_corpus():
    from tools.registry import get

    text = "highest influence on the most under-served validation instance; matrix runs/m.npy"
    args = fill_args(get("influence"), text, extract(text, corpus="data/pool.jsonl"))
    assert args.get("validation") != "runs/m.npy" and args.get("matrix") == "runs/m.npy"


def test_review_cases_counts_paths_and_context():
    """Cases a reviewer found after the set-B changes: each worked before them and must keep working."""
    from agent.classifier import names_tool
    from tools.registry import get

    # a capitalised word before a count is not a citation
    assert extract("Sample 2000 from the pool").numbers == [2000]
    assert extract("Dsir 2000 target data/target.jsonl").numbers == [2000]
    # compound spelled counts
    assert extract("sample one hundred and fifty documents").numbers == [150]
    assert extract("select two thousand five hundred docs like data/t.jsonl").numbers == [2500]
    # a folder named dev/ or a pool named val_pool is not an evaluation set
    for text in ("select 1000 docs from /mnt/dev/pool.jsonl like /mnt/dev/target.jsonl",
                 "dsir select 1000 from data/dev_pool.jsonl using data/math_target.jsonl"):
        ex = extract(text)
        assert "pool" in ex.corpus and "target" in ex.target, (text, ex.corpus, ex.target)
    # "the pool" said in words stays the corpus of a one-corpus tool
    text = "profile the pool and compare it with data/target.jsonl"
    assert fill_args(get("profile"), text, extract(text, corpus="data/pool.jsonl"))["corpus"] == "data/pool.jsonl"
    # "instead of dsir, use tsds": tsds is asked for
    assert names_tool("tsds", "instead of dsir, use tsds on the pool")
    assert names_tool("dsir", "run the DSIR baseline: 1000 docs like data/t.jsonl")
