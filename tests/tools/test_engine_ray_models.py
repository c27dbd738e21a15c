"""engine="ray" for the model-holding passes: ModelPool actors, embed on Ray equals embed locally."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_jsonl
from tools.contract import ToolContext
from tools.engine import ModelPool
from tools.errors import BadInput

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


def _ctx(tmp_path: Path, name: str, engine: str) -> ToolContext:
    return ToolContext(workspace_dir=tmp_path / name, show_progress=False, num_workers=2, engine=engine,
                       device="cpu")


class Scaler:
    """A stateful worker: records its construction (one per actor), then scales items; -1 is bad input."""

    def __init__(self, device: str, *, log_dir: str, factor: int, delay: float = 0.0):
        Path(log_dir, f"init-{os.getpid()}-{time.monotonic_ns()}").write_text(device)
        self.factor, self.log_dir, self.delay = factor, log_dir, delay

    def __call__(self, x: int) -> tuple[int, int]:
        if x == -1:
            raise BadInput("negative item", where="item")
        Path(self.log_dir, f"call-{os.getpid()}-{time.monotonic_ns()}").touch()
        time.sleep(self.delay)
        return x * self.factor, os.getpid()


def test_model_pool_builds_once_per_actor_and_keeps_order(local_ray, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    make = functools.partial(Scaler, log_dir=str(logs), factor=3)
    with ModelPool(make, _ctx(tmp_path, "r", "ray"), gpu=True) as pool:
        assert pool.workers == 2  # num_cpus=2, no GPU: two CPU actors
        assert not pool.uses_gpu
        first = list(pool.map(range(40)))
        second = list(pool.map(range(40, 50)))
        with pytest.raises(BadInput, match="negative"):
            list(pool.map([1, -1, 2]))
    assert [v for v, _ in first + second] == [3 * x for x in range(50)]
    assert len({pid for _, pid in first}) == 2  # both actors worked
    inits = sorted(logs.glob("init-*"))
    assert len(inits) == 2 and {p.read_text() for p in inits} == {"cpu"}  # built once per actor, on the CPU
    with ModelPool(make, _ctx(tmp_path, "l", "local")) as local:
        assert [v for v, _ in local.map(range(50))] == [3 * x for x in range(50)]
        assert local.workers == 1


def test_model_pool_actor_killed_mid_run_is_restarted_and_nothing_is_lost(local_ray, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    killed: list[int] = []

    def kill_one():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            calls = sorted(logs.glob("call-*"))
            if calls:
                pid = int(calls[0].name.split("-")[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    t = threading.Thread(target=kill_one, daemon=True)
    t.start()
    with ModelPool(functools.partial(Scaler, log_dir=str(logs), factor=2, delay=0.2), _ctx(tmp_path, "r", "ray")) as p:
        got = [v for v, _ in p.map(range(20))]
    t.join()
    assert killed
    assert got == [2 * x for x in range(20)]
    assert len(list(logs.glob("init-*"))) >= 3  # the killed actor was restarted (its model rebuilt)


@pytest.fixture
def sharded(tmp_path):
    from tools.demo_data import DOMAINS, make_document

    rng = np.random.default_rng(5)
    doms = list(DOMAINS)
    folder = tmp_path / "pool"
    i = 0
    for s in range(3):
        rows = []
        for _ in range(14 + 3 * s):
            rows.append({"id": f"d{i:03d}", "text": make_document(rng, doms[i % len(doms)],
                                                                int(rng.integers(3, 60))),
                         "domain": doms[i % len(doms)]})
            i += 1
        if s == 1:
            rows += [{"id": "empty", "text": ""}, {"id": "long", "text": "word " * 400},
                     {"id": "dup-text", "text": rows[0]["text"]}]
        write_jsonl(folder / f"part-{s}.jsonl", rows)
    return folder


def test_embed_on_ray_equals_local(local_ray, sharded, tmp_path):
    import pyarrow.parquet as pq

    from tools import embed

    out = {}
    for engine in ("local", "ray"):
        c = _ctx(tmp_path, engine, engine)
        r = embed.run({"corpus": str(sharded), "precision": "fp32", "vector_store": False}, c)
        ids, mat, manifest = embed.load_embeddings(r.artifacts["embeddings"], c)
        rows = pq.read_table(c.workspace.get(r.artifacts["embeddings"]).path / "ids.parquet")
        out[engine] = (ids, np.asarray(mat), rows, manifest, r)
    (lids, lmat, lrows, lman, lres), (rids, rmat, rrows, rman, rres) = out["local"], out["ray"]
    assert rids == lids and len(lids) == 14 + 17 + 20 + 3
    assert rrows.equals(lrows)  # ids, domains, token counts, truncated and empty flags
    assert lrows.column("truncated").to_pylist()[lids.index("long")] is True
    diff = float(np.abs(rmat - lmat).max())
    cos = float((rmat * lmat).sum(1).min())
    assert diff < 1e-5 and cos > 0.9999, (diff, cos)
    assert rman["precision"] == lman["precision"] == "fp32" and rman["device"] == "cpu"
    assert rman["metrics"]["workers"] == 2 and rman["metrics"]["engine"] == "ray"
    assert rres.computed == lres.computed == len(lids) - 1  # the repeated text ran once on both engines
    # a second Ray run over the same documents takes every vector from the cache the first one wrote
    again = embed.run({"corpus": str(sharded), "precision": "fp32", "vector_store": False, "dtype": "float16"},
                      _ctx(tmp_path, "ray", "ray"))
    assert again.computed == 0


def test_influence_gradients_on_ray_equal_local(local_ray, tmp_path):
    pytest.importorskip("peft")
    from tests.tools.test_influence import A_WORDS, ARGS, B_WORDS, _task_rows
    from tools import influence
    from tools.influence.tiny import save_tiny_causal_lm

    rng = np.random.default_rng(0)
    model = save_tiny_causal_lm(tmp_path / "lm", A_WORDS + B_WORDS + ["=>"], hidden=32, heads=2, layers=2)
    pool = _task_rows(rng, "copy", 20) + _task_rows(rng, "reverse", 20)
    val = _task_rows(rng, "copy", 4, start=100) + _task_rows(rng, "reverse", 4, start=100)
    args = {"corpus": str(write_jsonl(tmp_path / "pool.jsonl", pool)), "model": str(model),
            "validation": str(write_jsonl(tmp_path / "val.jsonl", val)), **ARGS}
    res, mats, feats = {}, {}, {}
    for engine in ("local", "ray"):
        c = _ctx(tmp_path, engine, engine)
        res[engine] = influence.run(args, c)
        mats[engine] = np.array(c.workspace.get(res[engine].artifacts["influence"]).array())
        folder = next((tmp_path / engine / "cache" / "influence").iterdir()) / "feat"
        feats[engine] = {p.name: np.load(p) for p in sorted(folder.glob("*.npy"))}
    assert res["ray"].blocks_computed == res["local"].blocks_computed == 2 * (1 + 3) and res["ray"].blocks_reused == 0
    assert feats["ray"].keys() == feats["local"].keys()  # same checkpoints (same digests), same blocks
    diff = max(float(np.abs(feats["ray"][k] - feats["local"][k]).max()) for k in feats["local"])
    assert diff < 1e-5, diff
    np.testing.assert_allclose(mats["ray"], mats["local"], atol=1e-5)
    # interrupted: two blocks never finished; the Ray rerun computes exactly those
    folder = next((tmp_path / "ray" / "cache" / "influence").iterdir()) / "feat"
    for name in list(feats["ray"])[:2]:
        (folder / name).unlink()
    again = influence.run(args, _ctx(tmp_path, "ray", "ray").model_copy(update={"use_cache": False}))
    assert again.blocks_computed == 2 and again.blocks_reused == 6
    np.testing.assert_allclose(np.array(_ctx(tmp_path, "ray", "ray").workspace.get(
        again.artifacts["influence"]).array()), mats["local"], atol=1e-5)
