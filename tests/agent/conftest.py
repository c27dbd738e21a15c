"""Agent fixtures: a policy whose data roots include the test's tmp folders, a service factory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def policy_file(tmp_path: Path, demo_dir: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(f"name: test\ndata_roots: [{tmp_path}, {demo_dir}]\n")
    return p


@pytest.fixture
def make_service(tmp_path: Path, policy_file: Path):  # noqa: ANN201
    from agent.service import AgentService

    made = []

    def make(**kw):  # noqa: ANN003, ANN202
        kw.setdefault("workspace", tmp_path / ".curate")
        kw.setdefault("policy", str(policy_file))
        svc = AgentService(**kw)
        made.append(svc)
        return svc

    yield make
    for s in made:
        s.close()


def kinds(events) -> list[str]:  # noqa: ANN001
    return [e.kind for e in events if e.kind != "tool_progress"]
