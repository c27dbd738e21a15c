"""Fixtures the tool tests share."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def local_ray():  # noqa: ANN201
    """A local Ray (num_cpus=2) for one test module, started by the test and shut down after it."""
    ray = pytest.importorskip("ray")
    from tools import engine_ray

    saved = os.environ.pop("RAY_ADDRESS", None)
    engine_ray.ensure_ray()
    yield ray
    ray.shutdown()
    if saved is not None:
        os.environ["RAY_ADDRESS"] = saved
