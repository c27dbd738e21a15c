"""tools.llm against a real llama.cpp server (SmolLM2-135M on CPU): json_object mode, cache, counting.

SmolLM2 is too small to rate well, so the checks are about the mechanics: the server accepts
``response_format={"type": "json_object"}``, every answer is either a validated value or ``ok=False``
with an error (never a guess), a rerun is served from the cache, and calls are counted.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tests.integration.conftest import smollm2_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    yield from smollm2_server(n_ctx=2048)


class Verdict(BaseModel):
    answer: str


def test_json_answers_cache_and_count(server, tmp_path):  # noqa: ANN001
    from tools.contract import ToolContext
    from tools.llm import LLMConfig

    cfg = LLMConfig(base_url=server.base_url, model=server.model, concurrency=2, max_retries=1, timeout_s=600)
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, llm_config=cfg, max_llm_calls=20)
    prompts = ["Is the sky blue? Answer yes or no.", "Is fire cold? Answer yes or no."]
    llm = ctx.llm
    answers = llm.json(prompts, Verdict, max_tokens=32)
    assert len(answers) == 2
    for a in answers:
        assert (a.ok and isinstance(a.value, Verdict)) or (not a.ok and a.value is None and a.error)
        assert 1 <= a.attempts <= 4
    sent = llm.calls
    assert 2 <= sent <= 8
    assert not [a.error for a in answers if a.error and a.error.startswith("no answer")], "the server did not answer"
    again = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, llm_config=cfg).llm
    replay = again.json(prompts, Verdict, max_tokens=32)
    assert again.calls == 0, [a.model_dump() for a in answers]
    assert [a.model_dump(exclude={"cached"}) for a in replay] == [a.model_dump(exclude={"cached"}) for a in answers]
