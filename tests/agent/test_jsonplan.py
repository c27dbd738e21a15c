"""What a weak model's JSON plan gets cleaned of before it runs (no LLM needed)."""

from __future__ import annotations

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
