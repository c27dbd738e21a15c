"""engine="ray": the same tools on a local Ray give the local engine's artifacts; a killed worker is retried."""

from __future__ import annotations

import functools
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tools.contract import ToolContext
from tools.corpus import ReadStats
from tools.engine import map_batches, map_items
from tools.errors import BadInput

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

WORDS = ("river town trade history birds season route number math proof lemma code function return value "
         "the of and a to in").split()


@pytest.fixture
def shards(tmp_path):
    """Four JSONL shards (one without ids: content-hash ids), two domains, a duplicate id across shards."""
    rng = random.Random(7)
    folder = tmp_path / "pool"
    for s in range(4):
        rows = []
        for i in range(90 + 10 * s):
            dom = "ab"[(i + s) % 2]
            words = WORDS[:8] if dom == "a" else WORDS[8:16]
            text = " ".join(rng.choice(words + list(WORDS[16:])) for _ in range(rng.randint(5, 40)))
            row = {"text": f"{text} {s}-{i}", "domain": dom}
            if s != 2:
                row["id"] = f"s{s}-{i:03d}"
            rows.append(row)
        if s == 3:
            rows.append({"id": "s0-000", "text": "a repeated id in another shard", "domain": "a"})
        write_jsonl(folder / f"part-{s}.jsonl", rows)
    target = write_jsonl(tmp_path / "target.jsonl",
                         [{"text": " ".join(rng.choice(WORDS[:8]) for _ in range(20))} for _ in range(60)])
    return folder, target


def _ctx(tmp_path: Path, name: str, engine: str) -> ToolContext:
    return ToolContext(workspace_dir=tmp_path / name, show_progress=False, num_workers=2, engine=engine)


def ids_and_lengths(batch):  # top level: shipped to the workers by reference
    return batch.column("id").to_pylist(), [len(t) for t in batch.column("text").to_pylist()]


def _flat(results):
    return [x for ids, lens in results for x in zip(ids, lens, strict=True)]


@pytest.mark.parametrize("read", ["shards", "driver"])
def test_same_documents_ids_and_stats_as_local(local_ray, shards, tmp_path, read):
    from tools import engine_ray

    folder, _ = shards
    local_stats, ray_stats = ReadStats(), ReadStats()
    local = list(map_batches(ids_and_lengths, str(folder), _ctx(tmp_path, "l", "local"), batch_rows=32,
                             stats=local_stats))
    on_ray = list(engine_ray.map_batches(ids_and_lengths, str(folder), _ctx(tmp_path, "r", "ray"), batch_rows=32,
                                         stats=ray_stats, read=read))
    assert _flat(on_ray) == _flat(local)  # same ids (content hashes too), same order
    assert len(_flat(local)) == 90 + 100 + 110 + 121
    for key in ("rows", "duplicate_ids", "files", "skipped"):
        assert ray_stats.as_dict()[key] == local_stats.as_dict()[key], key
    assert local_stats.duplicate_ids == 1
    assert set(ray_stats.duplicate_examples) <= {"s0-000"}  # the local reader may not name a cross-block one


def test_read_mode_from_the_environment(local_ray, shards, tmp_path, monkeypatch):
    from tools.errors import ResourceUnavailable

    folder, _ = shards
    local = _flat(map_batches(ids_and_lengths, str(folder), _ctx(tmp_path, "l", "local"), batch_rows=50))
    monkeypatch.setenv("CURATE_RAY_READ", "driver")
    assert _flat(map_batches(ids_and_lengths, str(folder), _ctx(tmp_path, "r", "ray"), batch_rows=50)) == local
    monkeypatch.setenv("CURATE_RAY_READ", "everywhere")
    with pytest.raises(ResourceUnavailable, match="CURATE_RAY_READ"):
        list(map_batches(ids_and_lengths, str(folder), _ctx(tmp_path, "r", "ray")))


def test_unreachable_ray_address_fails_fast():
    import socket

    from tools.engine_ray import check_reachable
    from tools.errors import ResourceUnavailable

    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(ResourceUnavailable, match="RAY_ADDRESS") as e:
        check_reachable(f"127.0.0.1:{port}", timeout_s=2)
    assert "ray start --head" in e.value.hint
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        check_reachable(f"ray://127.0.0.1:{live.getsockname()[1]}")  # answers: no error


def test_dsir_on_ray_equals_local(local_ray, shards, tmp_path, monkeypatch):
    import tools.dsir as dsir
    from tools import engine_ray

    monkeypatch.setattr(dsir, "_BATCH_ROWS", 40)  # several batches per shard
    scored_on_ray = []
    real_map_items = engine_ray.map_items

    def spy(fn, items, ctx):
        if getattr(fn, "func", None) is dsir.score_batch:
            scored_on_ray.append(fn)
        return real_map_items(fn, items, ctx)

    monkeypatch.setattr(engine_ray, "map_items", spy)
    folder, target = shards
    out = []
    for engine in ("local", "ray"):
        c = _ctx(tmp_path, engine, engine)
        r = dsir.run({"corpus": str(folder), "target": str(target), "k": 120, "seed": 3}, c)
        out.append((c.workspace.get(r.artifacts["scores"]).table(), c.workspace.get(r.artifacts["selection"]).table(),
                    r.kl_reduction, r.domain_counts))
    (ls, lsel, lkl, ld), (rs, rsel, rkl, rd) = out
    assert ls.num_rows == 421 - 1 or ls.num_rows == 421  # whatever dsir keeps of the duplicate, both engines agree
    assert rs.equals(ls)
    assert rsel.equals(lsel) and rsel.num_rows == 120
    assert rkl == lkl and rd == ld
    assert len(scored_on_ray) == 1  # the ray run's scoring pass ran as Ray tasks (the local one did not)
    assert ld.get("a", 0) > ld.get("b", 0)  # the target is domain a's vocabulary: the selection leans to it


def test_quality_signals_on_ray_equals_local(local_ray, shards, tmp_path):
    from tools import quality_signals

    folder, target = shards
    tables = []
    for engine in ("local", "ray"):
        c = _ctx(tmp_path, engine, engine)
        r = quality_signals.run({"corpus": str(folder), "dsir_targets": [str(target)], "lm_reference": str(target),
                                 "lm_kind": "bigram", "lm_tokens": 5000}, c)
        tables.append(c.workspace.get(r.artifacts["scores"]).table())
    assert tables[0].num_rows > 400 and {"lm_loss", "dsir_target"} <= set(tables[0].column_names)
    assert tables[1].equals(tables[0])


def bad_row_corpus(tmp_path):
    folder = tmp_path / "bad"
    write_jsonl(folder / "a.jsonl", [{"id": f"x{i}", "text": f"fine {i}"} for i in range(5)])
    folder.joinpath("b.jsonl").write_text('{"id": "y0", "text": "ok"}\n{"id": "y1", "text": \n')
    return folder


def test_bad_input_on_a_worker_reaches_the_caller_as_bad_input(local_ray, tmp_path):
    with pytest.raises(BadInput, match="b.jsonl"):
        list(map_batches(ids_and_lengths, str(bad_row_corpus(tmp_path)), _ctx(tmp_path, "r", "ray")))


def square(x):
    return x * x


def test_map_items_in_order(local_ray, tmp_path):
    assert list(map_items(square, range(25), _ctx(tmp_path, "r", "ray"))) == [x * x for x in range(25)]


def slow_ids(pid_dir, batch):
    """Record this worker's pid, then work slowly enough for the test to kill it mid-batch."""
    Path(pid_dir, f"{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(0.3)
    return ids_and_lengths(batch)


@pytest.mark.parametrize("read", ["shards", "driver"])
def test_killed_worker_is_retried_and_the_result_is_complete(local_ray, shards, tmp_path, monkeypatch, read):
    monkeypatch.setenv("CURATE_RAY_READ", read)
    folder, _ = shards
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    expected = _flat(map_batches(ids_and_lengths, str(folder), _ctx(tmp_path, "l", "local"), batch_rows=16))
    killed: list[int] = []

    def kill_first_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            seen = sorted(pid_dir.iterdir())
            if seen:
                pid = int(seen[0].name.split("-")[0])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    fn = functools.partial(slow_ids, str(pid_dir))
    got = _flat(map_batches(fn, str(folder), _ctx(tmp_path, "r", "ray"), batch_rows=16))
    killer.join()
    assert killed, "no worker was killed"
    batches = sum(1 for _ in map_batches(ids_and_lengths, str(folder), _ctx(tmp_path, "l2", "local"), batch_rows=16))
    calls = len(list(pid_dir.iterdir()))
    assert calls > batches  # the killed worker's task ran again
    assert got == expected  # retried by Ray: nothing lost, nothing doubled, same order
    assert Counter(i for i, _ in got) == Counter(i for i, _ in expected)


def test_cli_engine_ray_gives_the_local_artifact(shards, tmp_path):
    import json
    import subprocess
    import sys

    import pyarrow.parquet as pq

    folder, _ = shards
    args = json.dumps({"corpus": str(folder)})

    def curate(*extra, home):
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        return subprocess.run([sys.executable, "-m", "agent.cli", "tool", "quality_signals", "--args", args, "--json",
                               *extra], env={**env, "CURATE_HOME": str(tmp_path / home)}, cwd=tmp_path,
                              capture_output=True, text=True, check=False)

    outs = {}
    for engine in ("local", "ray"):
        r = curate("--engine", engine, home=engine)
        assert r.returncode == 0, r.stderr[-2000:]
        outs[engine] = json.loads(r.stdout)
    tables = {e: pq.read_table(next(Path(o["artifacts"]["scores"]).glob("*.parquet"))) for e, o in outs.items()}
    assert tables["ray"].num_rows == tables["local"].num_rows > 400
    assert tables["ray"].equals(tables["local"])
    bad = curate("--engine", "spark", home="bad")
    assert bad.returncode == 2 and "--engine" in bad.stderr and "spark" in bad.stderr


@pytest.mark.parametrize("read", ["shards", "driver"])
def test_an_interrupted_ray_pass_resumes_from_its_finished_shards(local_ray, shards, tmp_path, monkeypatch, read):
    from tests.tools.test_engine import interrupted_then_resumed, word_counts

    monkeypatch.setenv("CURATE_RAY_READ", read)
    folder, _ = shards
    local = _ctx(tmp_path, "l", "local")
    batches = list(map_batches(ids_and_lengths, str(folder), local, batch_rows=32))
    expected = list(map_batches(functools.partial(word_counts, lower=True), str(folder), _ctx(tmp_path, "r", "ray"),
                                batch_rows=32))
    saved, calls, got = interrupted_then_resumed(str(folder), _ctx(tmp_path, "r", "ray"), tmp_path, batch_rows=32,
                                                 fail_id="s3-005")
    if read == "shards":  # units are files: shards 0-2 finished, shard 3 (4 batches of its 121 rows) failed
        assert saved == 3 and calls == 4
    else:  # units are the driver's batches, the local engine's
        fail_at = next(i for i, (ids, _) in enumerate(batches) if "s3-005" in ids)
        assert saved == fail_at and calls == len(batches) - fail_at
    assert [c for _, c in got] == [c for _, c in expected] and sum(len(i) for i, _ in got) == 421
