"""Shared fixtures: an isolated workspace per test, small corpora, the shared real-data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_RAW = Path(os.environ.get("CURATE_SHARED_RAW", REPO.parent / "shared" / "data" / "raw"))


def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ANN201
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path, monkeypatch):  # noqa: ANN001, ANN202
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    for var in ("CURATE_LLM_BASE_URL", "CURATE_LLM_MODEL", "CURATE_LLM_API_KEY", "CURATE_CHROMA_URL"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def ctx(tmp_path):  # noqa: ANN001, ANN201
    from tools.contract import ToolContext

    return ToolContext(workspace_dir=tmp_path / ".curate", show_progress=False)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:  # noqa: ANN001
    rows = []
    topics = {
        "math": "the integer equation has a prime root and we solve the polynomial",
        "code": "the function returns a list and the loop will append each item",
        "cooking": "stir the butter and flour then bake the dough in the oven",
    }
    for d, base in topics.items():
        for i in range(12):
            rows.append({"id": f"{d}-{i}", "text": f"{base} number {i} {d}", "domain": d})
    return write_jsonl(tmp_path / "tiny.jsonl", rows)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    from tools.demo_data import generate

    d = tmp_path_factory.mktemp("demo")
    generate(d, n_docs=3000, n_target=150, seed=0)
    return d


@pytest.fixture
def shared_raw() -> Path:
    if not SHARED_RAW.exists():
        pytest.skip(f"shared real-data folder not found at {SHARED_RAW}")
    return SHARED_RAW
