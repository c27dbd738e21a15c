"""What a weak model's JSON plan gets cleaned of before it runs (no LLM needed)."""

from __future__ import annotations

import json

from agent.jsonplan import drop_filler, validate_steps
from tools.registry import get

POOL = "/data/run-7/pool.jsonl"


def test_blank_optional_arguments_fall_back_to_their_defaults():
    spec = get("sample")
    args, dropped = drop_filler(spec, {"corpus": POOL, "k": 5, "domains": [""], "mode": ""}, {"corpus": POOL})
    assert args == {"corpus": POOL, "k": 5} and sorted(dropped) == ["domains", "mode"]
    args, _ = drop_filler(spec, {"corpus": POOL, "k": 5, "domains": ["", "math", " "]}, {"corpus": POOL})
    assert args["domains"] == ["math"]
    args, dropped = drop_filler(spec, {"corpus": POOL, "k": 5, "domains": []}, {"corpus": POOL})
    assert "domains" not in args and dropped == ["domains"]


def test_a_path_copied_into_a_name_field_is_dropped_but_real_names_are_kept():
    spec = get("sample")
    inputs = {"corpus": POOL}
    args, dropped = drop_filler(spec, {"corpus": POOL, "k": 5, "domains": ["./data/run-7/test/sample.jsonl"]}, inputs)
    assert "domains" not in args and dropped == ["domains"]
    args, dropped = drop_filler(spec, {"corpus": POOL, "k": 5, "domains": ["stackexchange/math", "code"]}, inputs)
    assert args["domains"] == ["stackexchange/math", "code"] and not dropped
    # required and path arguments are never touched, even when blank: validation reports them
    args, _ = drop_filler(spec, {"corpus": "", "k": 5}, inputs)
    assert args["corpus"] == ""


def test_repeated_steps_run_once_and_distinct_steps_are_kept():
    specs = {"sample": get("sample")}
    raw = {"steps": [{"tool": "sample", "args": {"corpus": POOL, "k": 80, "mode": "random"}},
                     {"tool": "sample", "args": {"corpus": POOL, "k": 80, "mode": "random", "domains": [""]}},
                     {"tool": "sample", "args": {"corpus": POOL, "k": 80, "seed": 3}}]}
    steps, errors = validate_steps(raw, specs, {"corpus": POOL})
    assert not errors
    assert [s.args for s in steps] == [{"corpus": POOL, "k": 80, "mode": "random"}, {"corpus": POOL, "k": 80, "seed": 3}]


def test_invalid_values_are_still_errors_for_the_repair_round():
    steps, errors = validate_steps({"steps": [{"tool": "sample", "args": {"corpus": POOL, "k": 0}}]},
                                   {"sample": get("sample")}, {"corpus": POOL})
    assert not steps and errors and "k" in errors[0]


def test_a_plan_written_as_text_is_read_when_the_call_is_missing():
    from agent.jsonplan import plan_from_text

    body = '{"steps": [{"tool": "sample", "args": {"k": 3}}]}'
    assert plan_from_text(f"Here is the plan:\n{body}\nDone.")["args"]["steps"][0]["tool"] == "sample"
    wrapped = json.dumps({"name": "submit_plan", "arguments": body})
    assert plan_from_text(wrapped)["args"] == json.loads(body)
    assert plan_from_text("I cannot help with that.") is None
    assert plan_from_text('{"tool": "sample"}') is None  # not a plan
    assert plan_from_text("{not json}") is None


def _chained(raw: dict, artifacts: dict | None = None, request: str = "") -> tuple[list, list]:
    from tools.registry import names

    specs = {n: get(n) for n in names()}
    return validate_steps(raw, specs, {"corpus": POOL}, request, artifacts=artifacts or {}, chain=True)


def test_a_json_plan_that_skips_a_prerequisite_gets_the_step_that_makes_it():
    steps, errors = _chained({"steps": [{"tool": "trace_fact", "args": {"queries": ["Paris is in France"]}}]})
    assert not errors
    assert [s.tool for s in steps] == ["embed", "fact_index", "trace_fact"]
    assert steps[1].args == {"corpus": POOL, "embeddings": "$embeddings"}
    assert steps[2].args["index"] == "$index"
    # "$index" written by the model with no step that makes it: the step is added, not left dangling
    steps, _ = _chained({"steps": [{"tool": "trace_fact", "args": {"queries": ["x"], "index": "$index"}}]})
    assert [s.tool for s in steps] == ["embed", "fact_index", "trace_fact"]


def test_json_plan_chaining_reuses_the_thread_and_replaces_made_up_ids():
    arts = {"index": "art-0007", "embeddings": "art-0003"}
    steps, errors = _chained({"steps": [{"tool": "trace_fact", "args": {"queries": ["x"], "index": "index_1"}}]}, arts)
    assert not errors and [s.tool for s in steps] == ["trace_fact"] and steps[0].args["index"] == "art-0007"
    # an id the request names is the user's, kept even though this thread does not hold it
    steps, _ = _chained({"steps": [{"tool": "trace_fact", "args": {"queries": ["x"], "index": "art-0042"}}]},
                        arts, request="trace x in index art-0042")
    assert steps[0].args["index"] == "art-0042"
    # a plan that already chains is left as it is
    plan = {"steps": [{"tool": "quality_signals", "args": {"corpus": POOL}},
                      {"tool": "meta_rater", "args": {"corpus": POOL, "scores": "$scores", "fraction": 0.2}}]}
    steps, errors = _chained(plan)
    assert not errors and [s.tool for s in steps] == ["quality_signals", "meta_rater"]


def test_request_file_steps_are_not_chained():
    from tools.registry import names

    specs = {n: get(n) for n in names()}
    steps, _ = validate_steps({"steps": [{"tool": "trace_fact", "args": {"queries": ["x"], "index": "art-1"}}]},
                              specs, {"corpus": POOL})
    assert [s.tool for s in steps] == ["trace_fact"] and steps[0].args["index"] == "art-1"


def test_a_json_plan_chains_a_selection_into_the_next_step():
    plan = {"steps": [{"tool": "sample", "args": {"corpus": POOL, "k": 300}},
                      {"tool": "profile", "args": {"corpus": "$selection"}}]}
    steps, errors = _chained(plan)
    assert not errors and [(s.tool, s.args["corpus"]) for s in steps] == [("sample", POOL), ("profile", "$selection")]
    # "$selection" with nothing that makes one is an error for the repair round, not a silent run on the pool
    steps, errors = _chained({"steps": [{"tool": "profile", "args": {"corpus": "$selection"}}]})
    assert not steps and "names no earlier step" in errors[0]
    # the thread's own selection satisfies it
    steps, errors = _chained({"steps": [{"tool": "profile", "args": {"corpus": "$selection"}}]},
                             {"selection": "selection-0a1b2c3d4e5f"})
    assert not errors and steps[0].args["corpus"] == "$selection"


def test_review_cases_for_json_plans():
    # a value that merely starts with "$" is the user's text, not a placeholder
    steps, errors = _chained({"steps": [{"tool": "neighbors", "args": {"query": "$5 lunch deals", "k": 5}}]})
    assert not errors and steps[0].args["query"] == "$5 lunch deals"
    # "./data/m.npy" for the request's "data/m.npy" is the user's matrix, not a made-up id
    steps, errors = _chained({"steps": [{"tool": "bids", "args": {"influence": "./data/m.npy", "k": 10}}]},
                             request="run bids on data/m.npy, 10 rows")
    assert not errors and [s.tool for s in steps] == ["bids"]
    # an earlier step's output wins over an older artifact of the thread
    plan = {"steps": [{"tool": "quality_signals", "args": {"corpus": POOL}},
                      {"tool": "meta_rater", "args": {"corpus": POOL, "scores": "$scores", "fraction": 0.2}}]}
    steps, errors = _chained(plan, {"scores": "scores-0123456789ab"})
    assert not errors and steps[1].args["scores"] == "$scores"


def test_the_threads_target_fills_a_validation_field():
    from agent.jsonplan import complete_args

    args = complete_args(get("meta_rater"), {"scores": "$scores"}, {"corpus": POOL, "target": "/data/val.jsonl"})
    assert args["validation"] == "/data/val.jsonl" and args["corpus"] == POOL
