"""profile on a local Ray gives the local engine's table and result (its counts are a map_batches pass)."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from tools.contract import ToolContext

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


def test_profile_on_ray_equals_local(local_ray, tmp_path):
    from tools import profile

    folder = tmp_path / "pool"
    for s in range(3):
        rows = [{"id": f"s{s}-{i}", "text": ("alpha beta " * (i % 7)) + f"doc {s} {i}" if i % 11 else "",
                 "domain": "xyz"[i % 3]} for i in range(120 + 15 * s)]
        rows.append({"id": f"s{s}-dup", "text": "the same text in every shard", "domain": "x"})
        write_jsonl(folder / f"part-{s}.jsonl", rows)
    out = []
    for engine in ("local", "ray"):
        ctx = ToolContext(workspace_dir=tmp_path / engine, show_progress=False, num_workers=2, engine=engine)
        r = profile.run({"corpus": str(folder)}, ctx)
        out.append((r.model_dump(exclude={"duration_s", "artifacts", "summary"}),
                    ctx.workspace.get(r.artifacts["table"]).table()))
    (local_result, local_table), (ray_result, ray_table) = out
    assert local_result == ray_result
    assert ray_table.equals(local_table)
    assert local_result["rows_total"] == 3 * 121 + 15 * 3
