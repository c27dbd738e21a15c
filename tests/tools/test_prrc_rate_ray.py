"""prrc_rate's LLM rating on engine="ray": the same answers, counts and budget as the local engine."""

from __future__ import annotations

import json

import pytest

from tests.tools.test_prrc_rate import _pool, _responder
from tools.contract import LLMConfig, ToolContext

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


def _rate(tmp_path, server, engine, name, **kw):
    from tools import prrc_rate

    ctx = ToolContext(workspace_dir=tmp_path / name, show_progress=False, engine=engine, num_workers=2,
                      llm_config=LLMConfig(base_url=server.url, concurrency=2), **kw)
    corpus, emb = _pool(tmp_path)
    before = len(server.requests)
    res = prrc_rate.run({"corpus": str(corpus), "dimensions": ["professionalism", "cleanliness"],
                         "sample_size": 40, "embeddings": str(emb)}, ctx)
    table = json.dumps(ctx.workspace.get(res.artifacts["ratings"]).table().to_pydict())  # NaN == NaN as text
    return res, table, len(server.requests) - before


def test_ray_rating_equals_local(tmp_path, local_ray, openai_server, monkeypatch):
    from tools import engine_ray

    openai_server.responder = _responder
    local, local_tbl, local_sent = _rate(tmp_path, openai_server, "local", "ws-local")
    chunks = []
    real = engine_ray.map_items

    def counted(fn, items, ctx):  # noqa: ANN001, ANN202 - the rating chunks really go to Ray tasks
        items = list(items)
        chunks.extend(items)
        return real(fn, items, ctx)

    monkeypatch.setattr(engine_ray, "map_items", counted)
    on_ray, ray_tbl, ray_sent = _rate(tmp_path, openai_server, "ray", "ws-ray")
    assert len(chunks) == 3  # 80 prompts in chunks of 32
    assert ray_tbl == local_tbl and len(json.loads(ray_tbl)["id"]) > 30
    assert (on_ray.rated, on_ray.garbage, on_ray.not_rated) == (local.rated, local.garbage, local.not_rated)
    assert on_ray.garbage["professionalism"] >= 3 and not on_ray.partial
    assert on_ray.llm_calls == local.llm_calls == ray_sent == local_sent
    assert on_ray.spearman == local.spearman


def test_ray_rating_keeps_the_run_budget(tmp_path, local_ray, openai_server):
    openai_server.responder = lambda m, p: json.dumps({"justification": "fine", "score": 3})
    local, local_tbl, local_sent = _rate(tmp_path, openai_server, "local", "b-local", max_llm_calls=45)
    on_ray, ray_tbl, ray_sent = _rate(tmp_path, openai_server, "ray", "b-ray", max_llm_calls=45)
    assert ray_sent == local_sent == 45 and on_ray.llm_calls == 45  # across Ray tasks, not per task
    assert on_ray.rated == local.rated == {"professionalism": 40, "cleanliness": 5}
    assert on_ray.not_rated == {"cleanliness": 35} and on_ray.partial and ray_tbl == local_tbl
