"""The worker engine: ordered results for any worker count; workers die with their parent."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from tests.conftest import REPO, write_jsonl
from tools.contract import ToolContext
from tools.corpus import ReadStats
from tools.engine import Pool, map_batches
from tools.errors import ResourceUnavailable


def word_counts(batch, lower=False):  # top level: picklable for the workers
    c = Counter()
    for t in batch.column("text").to_pylist():
        c.update((t.lower() if lower else t).split())
    return batch.column("id").to_pylist(), dict(c)


@pytest.fixture
def corpus(tmp_path):
    rows = [{"id": f"d{i:04d}", "text": f"Word{i % 7} word{i % 3} shared {'x ' * (i % 5)}", "domain": "a"}
            for i in range(700)]
    return write_jsonl(tmp_path / "pool.jsonl", rows)


def _run(corpus, ctx, workers):
    fn = functools.partial(word_counts, lower=True)
    return list(map_batches(fn, corpus, ctx, batch_rows=64, workers=workers))


def test_results_identical_for_any_worker_count(corpus, ctx):
    one = _run(corpus, ctx, 1)
    assert [i for ids, _ in one for i in ids] == [f"d{i:04d}" for i in range(700)]  # corpus order
    assert len(one) == 11
    for w in (2, 3):
        assert _run(corpus, ctx, w) == one
    total = Counter()
    for _, c in one:
        total.update(c)
    assert total["shared"] == 700 and total["word0"] == sum(1 for i in range(700) if i % 7 == 0) + sum(1 for i in range(700) if i % 3 == 0)


def test_progress_stats_and_early_close(corpus, ctx):
    stats = ReadStats()
    it = map_batches(word_counts, corpus, ctx, batch_rows=100, desc="count", stats=stats, workers=2)
    first = next(it)
    assert first[0][0] == "d0000"
    it.close()  # stops the read, shuts the pool down
    full = list(map_batches(word_counts, corpus, ctx, batch_rows=100, stats=stats, workers=2))
    assert len(full) == 7 and stats.rows >= 700


def test_ray_engine_without_ray_says_how_to_install(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    ctx = ToolContext(workspace_dir=tmp_path / "ws", engine="ray", show_progress=False)
    with pytest.raises(ResourceUnavailable, match="'ray' package") as e:
        list(map_batches(word_counts, corpus, ctx))
    assert "curation-assistant[ray]" in (e.value.hint or "")


def test_worker_errors_reach_the_caller(corpus, ctx):
    with pytest.raises(ZeroDivisionError):
        list(map_batches(functools.partial(_fail_at, 3), corpus, ctx, batch_rows=64, workers=2))


def _fail_at(n, batch):
    if int(batch.column("id")[0].as_py()[1:]) // 64 == n:
        raise ZeroDivisionError("batch 3")
    return batch.num_rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (dead) parent's reaper counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_workers_die_when_the_parent_is_killed(tmp_path):
    pids_file = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from tools.engine import Pool
        with Pool(2) as pool:
            it = pool.map(time.sleep, [0.01, 0.01] + [60] * 4)
            next(it); next(it)
            open({str(pids_file)!r}, "w").write(" ".join(map(str, pool.worker_pids())))
            next(it)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            if pids_file.exists() and pids_file.read_text().strip():
                break
            time.sleep(0.1)
        workers = [int(p) for p in pids_file.read_text().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for _ in range(300):
            if not any(_alive(p) for p in workers):
                break
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_pool_in_process_and_starmap():
    with Pool(1) as pool:
        assert list(pool.map(abs, [-1, 2, -3])) == [1, 2, 3]
        assert pool.worker_pids() == []
    with Pool(2) as pool:
        assert list(pool.starmap(pow, [(2, 3), (3, 2), (5, 0)])) == [8, 9, 1]


def _tables(ctx, res):  # noqa: ANN001, ANN202
    return {name: ctx.workspace.get(a).table().to_pylist() for name, a in res.artifacts.items()
            if (ctx.workspace.get(a).path / "data.parquet").exists()}


@pytest.mark.parametrize("tool", ["dsir", "profile"])
def test_tools_on_the_engine_give_identical_outputs_for_any_worker_count(tool, tmp_path):
    """dsir's hashing and profile's counting run through map_batches: 1 and 3 workers agree exactly."""
    from tools import registry

    words = ["integer prime proof", "function loop list", "butter flour oven", "river mountain sky"]
    rows = [{"id": f"d{i:03d}", "text": " ".join([words[i % 4]] * (1 + i % 5) + [f"w{i % 13}"]),
             "domain": ["a", "b", "c", None][i % 4]} for i in range(300)]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    target = write_jsonl(tmp_path / "t.jsonl", [{"text": f"integer prime proof number {i}"} for i in range(20)])
    args = {"corpus": str(pool)}
    if tool == "dsir":
        args.update(target=str(target), k=40, min_example_length=1)
    out = []
    for workers in (1, 3):
        ctx = ToolContext(workspace_dir=tmp_path / f"ws{workers}", show_progress=False, num_workers=workers)
        res = registry.invoke(tool, args, ctx)
        out.append((res.model_dump(exclude={"duration_s", "summary", "artifacts"}), _tables(ctx, res)))
    assert out[0] == out[1]


def test_a_tool_refuses_an_engine_it_does_not_declare(tmp_path):
    from tools.contract import ToolRequest, ToolResult, ToolSpec

    class EchoRequest(ToolRequest):
        x: int = 1

    def make(engines):
        spec = ToolSpec(name="echo_engines", description="echo", request_model=EchoRequest, result_model=ToolResult,
                        **({"engines": engines} if engines else {}))
        return spec.implement(lambda req, ctx: ToolResult(summary=f"{req.x} on {ctx.engine}"))

    ray_ctx = ToolContext(workspace_dir=tmp_path / "w", show_progress=False, engine="ray", use_cache=False)
    with pytest.raises(ResourceUnavailable, match="'echo_engines' does not run on engine 'ray'") as e:
        make(None)({"x": 2}, ray_ctx)  # engines defaults to ("local",)
    assert "engine='local'" in e.value.hint and e.value.where == "engine"
    assert make(None)({"x": 2}, ray_ctx.model_copy(update={"engine": "local"})).summary == "2 on local"
    assert make(("local", "ray"))({"x": 3}, ray_ctx).summary == "3 on ray"
    # a run cached on the local engine does not hide the refusal on a cache hit
    cached_ctx = ToolContext(workspace_dir=tmp_path / "c", show_progress=False, use_cache=True)
    local_only = make(None)
    assert local_only({"x": 4}, cached_ctx).summary == "4 on local"
    assert local_only({"x": 4}, cached_ctx).cached
    with pytest.raises(ResourceUnavailable, match="does not run on engine 'ray'"):
        local_only({"x": 4}, cached_ctx.model_copy(update={"engine": "ray"}))


def test_the_map_style_tools_declare_ray():
    from tools.registry import get

    for name in ("dsir", "quality_signals", "embed", "profile", "influence", "prrc_rate"):
        assert get(name).engines == ("local", "ray"), name


def counted_words(log_dir, phase_file, fail_id, batch):
    """word_counts that logs each call under the current phase and fails at ``fail_id`` in phase "fail"."""
    import uuid
    from pathlib import Path

    phase = Path(phase_file).read_text()  # read first: a straggler of the failed run logs as that run
    if phase == "fail" and fail_id in batch.column("id").to_pylist():
        raise RuntimeError("injected failure")
    Path(log_dir, f"{phase}__{batch.column('id')[0].as_py()}__{uuid.uuid4().hex}").touch()
    return word_counts(batch, lower=True)


def interrupted_then_resumed(corpus, ctx, tmp_path, *, batch_rows, fail_id, **kw):
    """Run a resumable pass that fails at ``fail_id``, rerun it: (units saved by the first, calls of the second, results)."""
    from tools.engine import drop_resume

    logs, phase = tmp_path / "calls", tmp_path / "phase"
    logs.mkdir()
    phase.write_text("fail")
    fn = functools.partial(counted_words, str(logs), str(phase), fail_id)
    with pytest.raises(RuntimeError, match="injected"):
        list(map_batches(fn, corpus, ctx, batch_rows=batch_rows, resume="test-pass", **kw))
    saved = len(list((ctx.workspace.root / "cache" / "resume").rglob("*.pkl")))
    phase.write_text("rerun")
    got = list(map_batches(fn, corpus, ctx, batch_rows=batch_rows, resume="test-pass", **kw))
    calls = len({p.name.split("__")[1] for p in logs.glob("rerun__*")})  # batches computed (Ray may still start
    # a cancelled task of the failed run, whose batch the rerun computes too)
    phase.write_text("again")
    again = list(map_batches(fn, corpus, ctx, batch_rows=batch_rows, resume="test-pass", **kw))
    assert again == got and not list(logs.glob("again__*"))  # all finished: nothing recomputed
    drop_resume(ctx, "test-pass")
    assert not list((ctx.workspace.root / "cache" / "resume").rglob("*.pkl"))
    return saved, calls, got


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupted_pass_resumes_from_its_finished_batches(corpus, ctx, tmp_path, workers):
    expected = list(map_batches(functools.partial(word_counts, lower=True), corpus, ctx, batch_rows=64))
    assert len(expected) == 11
    saved, calls, got = interrupted_then_resumed(corpus, ctx, tmp_path, batch_rows=64, fail_id="d0400",
                                                 workers=workers)  # d0400 is in batch 6 (rows 384-447)
    assert saved == 6  # batches 0-5 finished before the failure (in order: later ones are never kept)
    assert calls == 11 - 6  # the rerun computed only the batches the first run had not finished
    assert got == expected


class Doubler:
    """A stateful worker for ModelPool: counts its builds and remembers the device it was built for."""

    builds: list[str] = []

    def __init__(self, device, *, offset):
        Doubler.builds.append(device)
        self.offset = offset

    def __call__(self, x):
        return 2 * x + self.offset


def test_model_pool_locally_builds_once_in_this_process(tmp_path):
    from tools.engine import ModelPool

    Doubler.builds.clear()
    ctx = ToolContext(workspace_dir=tmp_path / "w", show_progress=False, device="cpu")
    with ModelPool(functools.partial(Doubler, offset=1), ctx, gpu=True) as pool:
        assert list(pool.map(range(5))) == [1, 3, 5, 7, 9]
        assert list(pool.map([10])) == [21] and pool.call(0) == 1
        assert pool.workers == 1 and not pool.uses_gpu
    assert Doubler.builds == ["cpu"]  # one build, with the context's device
    with pytest.raises(RuntimeError, match="outside its with-block"):
        list(pool.map([1]))


def _double_ids(batch):  # top level: picklable for the resume key
    return [i * 2 for i in range(batch.num_rows)]


def test_a_store_cleared_by_a_concurrent_run_costs_only_the_resume(tmp_path):
    """Two runs of the same pass share a resume store; the first to write its artifact clears it
    (drop_resume) while the other is still saving and loading units: that run must still finish."""
    from tools.engine import Resume, drop_resume

    pool = write_jsonl(tmp_path / "p.jsonl", [{"id": f"d{i}", "text": f"t {i}"} for i in range(10)])
    ctx = ToolContext(workspace_dir=tmp_path / "w", show_progress=False)
    store = Resume(ctx, "race", _double_ids, str(pool), ["id"], 4, True, "batch")
    store.save(0, ["a"])
    assert store.try_load(0) == (True, ["a"])
    drop_resume(ctx, "race")  # the other run finished
    assert store.try_load(0) == (False, None)  # computed again, not an error
    store.save(1, ["b"])  # the folder is made again
    assert store.try_load(1) == (True, ["b"]) and store.computed == 2
