"""tools.llm against a real local OpenAI-compatible HTTP server (the ``openai_server`` fixture)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from pydantic import BaseModel, Field

from tools.contract import LLMConfig, RowCounts, ToolContext, ToolRequest, ToolResult, ToolSpec
from tools.errors import PolicyDenied, ResourceUnavailable
from tools.llm import LLMBudgetExceeded, parse_json, resolve_config


class Rating(BaseModel):
    score: int = Field(ge=0, le=5)
    reason: str


def _ctx(tmp_path, server, **kw):
    cfg = LLMConfig(base_url=server.url, model="stub", concurrency=kw.pop("concurrency", 4), max_retries=1)
    return ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, llm_config=cfg, **kw)


def _echo_score(messages, params):
    n = int(messages[-1]["content"].split()[-1])
    return json.dumps({"score": n % 6, "reason": f"doc {n}"})


def test_json_answers_validated_in_order(tmp_path, openai_server):
    openai_server.responder = _echo_score
    ctx = _ctx(tmp_path, openai_server)
    answers = ctx.llm.json([f"rate doc {i}" for i in range(7)], Rating, system="You rate documents.")
    assert [a.ok for a in answers] == [True] * 7
    assert [a.value.score for a in answers] == [i % 6 for i in range(7)]
    assert all(isinstance(a.value, Rating) and a.attempts == 1 and not a.cached for a in answers)
    req = openai_server.chat_requests()[0]
    assert req["response_format"] == {"type": "json_object"} and req["model"] == "stub"
    system = req["messages"][0]["content"]
    assert system.startswith("You rate documents.") and '"score"' in system  # the schema is in the prompt


def test_cache_hit_costs_no_call(tmp_path, openai_server):
    openai_server.responder = _echo_score
    ctx = _ctx(tmp_path, openai_server)
    first = ctx.llm.json([f"rate doc {i}" for i in range(3)], Rating)
    sent = len(openai_server.chat_requests())
    assert sent == 3
    again = _ctx(tmp_path, openai_server).llm.json([f"rate doc {i}" for i in range(3)], Rating)
    assert len(openai_server.chat_requests()) == sent
    assert all(a.cached for a in again) and [a.value for a in again] == [a.value for a in first]
    other = _ctx(tmp_path, openai_server).llm.json(["rate doc 1"], Rating, temperature=0.5)
    assert not other[0].cached and len(openai_server.chat_requests()) == sent + 1  # params are in the key


def test_budget_refuses_before_sending(tmp_path, openai_server):
    openai_server.responder = _echo_score
    ctx = _ctx(tmp_path, openai_server, max_llm_calls=2)
    with pytest.raises(LLMBudgetExceeded, match="needs 3 LLM calls") as e:
        ctx.llm.json([f"rate doc {i}" for i in range(3)], Rating)
    assert isinstance(e.value, PolicyDenied) and openai_server.chat_requests() == []
    assert [a.ok for a in ctx.llm.json(["rate doc 0", "rate doc 1"], Rating)] == [True, True]
    with pytest.raises(LLMBudgetExceeded):
        ctx.llm.json(["rate doc 2"], Rating)
    assert len(openai_server.chat_requests()) == 2
    assert ctx.llm.json(["rate doc 1"], Rating)[0].cached  # a cached answer costs no budget


def test_garbage_gets_one_repair_then_unparsable(tmp_path, openai_server):
    openai_server.responder = lambda m, p: "Sure! The score is 4."
    ctx = _ctx(tmp_path, openai_server)
    (a,) = ctx.llm.json(["rate doc 1"], Rating)
    assert not a.ok and a.value is None and a.attempts == 2 and "unparsable" in a.error
    reqs = openai_server.chat_requests()
    assert len(reqs) == 2 and reqs[1]["messages"][-2] == {"role": "assistant", "content": "Sure! The score is 4."}
    assert "not valid" in reqs[1]["messages"][-1]["content"]
    (again,) = _ctx(tmp_path, openai_server).llm.json(["rate doc 1"], Rating)  # the repair round is cached too
    assert len(openai_server.chat_requests()) == 2 and again.cached and again.error == a.error

    replies = iter(['{"score": 9, "reason": "x"}', '{"score": 3, "reason": "fixed"}'])
    openai_server.responder = lambda m, p: next(replies)
    (b,) = _ctx(tmp_path, openai_server).llm.json(["rate doc 2"], Rating)
    assert b.ok and b.value == Rating(score=3, reason="fixed") and b.attempts == 2


def test_dict_schema_and_text(tmp_path, openai_server):
    schema = {"type": "object", "properties": {"label": {"enum": ["yes", "no"]}}, "required": ["label"]}
    openai_server.responder = lambda m, p: '{"label": "maybe"}' if "json" in str(p) else "plain words"
    ctx = _ctx(tmp_path, openai_server)
    (a,) = ctx.llm.json(["is it?"], schema)
    assert not a.ok and "label" in a.error
    (t,) = ctx.llm.text(["say something"])
    assert t.ok and t.value == "plain words"
    assert parse_json('{"label": "no"}', schema) == {"label": "no"}
    with pytest.raises(ValueError, match="not JSON"):
        parse_json("```json\n{}\n```", schema)


def test_concurrency_is_bounded_and_order_kept(tmp_path, openai_server):
    active, peak = [0], [0]
    lock = threading.Lock()

    def slow(messages, params):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return _echo_score(messages, params)

    openai_server.responder = slow
    ctx = _ctx(tmp_path, openai_server, concurrency=3)
    answers = ctx.llm.json([f"rate doc {i}" for i in range(12)], Rating)
    assert [a.value.reason for a in answers] == [f"doc {i}" for i in range(12)]
    assert 1 < peak[0] <= 3


def test_server_errors_are_retried(tmp_path, openai_server):
    fails = [1]

    def flaky(messages, params):
        if fails[0]:
            fails[0] -= 1
            raise RuntimeError("overloaded")
        return '{"score": 1, "reason": "ok"}'

    openai_server.responder = flaky
    (a,) = _ctx(tmp_path, openai_server).llm.json(["rate doc 1"], Rating)
    assert a.ok and a.attempts == 2 and len(openai_server.chat_requests()) == 2


def test_no_llm_configured_says_how(tmp_path, monkeypatch, openai_server):
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False)
    assert not ctx.has_llm
    with pytest.raises(ResourceUnavailable, match="CURATE_TOOL_LLM_BASE_URL"):
        ctx.llm  # noqa: B018
    monkeypatch.setenv("CURATE_LLM_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("CURATE_LLM_MODEL", "planner")
    assert resolve_config().model == "planner" and ctx.has_llm
    monkeypatch.setenv("CURATE_TOOL_LLM_BASE_URL", openai_server.url)
    monkeypatch.setenv("CURATE_TOOL_LLM_MODEL", "rater")
    cfg = resolve_config()
    assert cfg.base_url == openai_server.url and cfg.model == "rater"  # the tool LLM wins


class AskRequest(ToolRequest):
    n: int = Field(3, ge=1)


class AskResult(ToolResult):
    ok: int = 0


ASK = ToolSpec(name="asks_llm", description="test tool that calls an LLM", request_model=AskRequest,
               result_model=AskResult, effects=frozenset({"llm_calls", "write_workspace"}), llm="required",
               examples=("ask",))


@ASK.implement
def ask(request: AskRequest, ctx: ToolContext) -> AskResult:
    answers = ctx.llm.json([f"rate doc {i}" for i in range(request.n)], Rating)
    with ctx.artifact("table", rows=RowCounts(rows_in=request.n)) as w:
        w.json([a.model_dump(mode="json") for a in answers])
    return AskResult(summary="asked", artifacts={"table": w.id}, ok=sum(a.ok for a in answers))


def test_calls_are_counted_into_the_manifest(tmp_path, openai_server):
    openai_server.responder = _echo_score
    ctx = _ctx(tmp_path, openai_server, max_llm_calls=10)
    res = ask({"n": 4}, ctx)
    assert res.ok == 4 and res.llm_calls == 4
    assert ctx.workspace.get(res.artifacts["table"]).manifest["llm_calls"] == 4
    again = ask({"n": 4}, ctx.model_copy(update={"use_cache": True}))
    assert again.cached and again.llm_calls == 0
    with pytest.raises(LLMBudgetExceeded):
        ask({"n": 20}, ctx)  # 16 uncached prompts, budget 10


def test_book_charges_calls_made_by_other_clients_to_the_budget():
    from tools.llm import ToolLLM

    seen: list[bool] = []
    llm = ToolLLM(LLMConfig(base_url="http://127.0.0.1:9/v1", model="m"), max_calls=3, on_call=seen.append)
    llm.book(sent=2, cached=1)
    assert (llm.calls, llm.cached) == (2, 1) and seen == [True, True, False]
    llm.book(sent=1, cached=0)
    with pytest.raises(LLMBudgetExceeded, match="3 of its 3"):
        llm._reserve()  # the next call of its own would exceed the budget the booked calls used up
