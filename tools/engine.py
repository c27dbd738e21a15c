"""The worker engine: map a pure per-batch function over a corpus and gather the results in order.

```
from functools import partial
from tools.engine import map_batches
for counts in map_batches(partial(count_words, lower=True), corpus, ctx, columns=("id", "text")):
    ...                                   # one result per Arrow batch, in corpus order
```

``fn(batch: pyarrow.RecordBatch) -> result`` must be a top-level function (or a ``functools.partial``
of one) that reads nothing but its batch and writes nothing: the engine decides where it runs, so
the same tool code runs in this process, in a local process pool, or (``engine="ray"``, a later
issue) on a Ray cluster. Results come back in submission order whatever the number of workers, so
outputs are identical for any worker count; at most ``2 * workers`` batches are in flight, so memory
stays bounded by the batch size.

Local workers are forked (they start in milliseconds and need no ``__main__`` guard) and die with
their parent: each sets ``PR_SET_PDEATHSIG`` (Linux) so a ``kill -9`` of the tool's process takes its
workers with it instead of leaving them to burn the machine; elsewhere a watcher thread in each
worker exits when the parent's pid goes away. Workers are started from the calling thread, which
must outlive the pool (it does: :func:`map_batches` shuts its pool down before returning).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tools.corpus import DEFAULT_BATCH_ROWS, ReadStats, count_rows, read_batches
from tools.errors import ResourceUnavailable

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["ModelPool", "Pool", "Resume", "drop_resume", "map_batches", "map_items"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: be killed when the parent dies (or exit now if it already has)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: fall back to the watcher
            _watch_parent(parent_pid)
    else:  # pragma: no cover - macOS / BSD
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which shuts the pool down


def _watch_parent(parent_pid: int) -> None:
    def watch() -> None:
        import time

        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


class Pool:
    """An ordered process pool: ``map(fn, items)`` yields ``fn(item)`` in the order of ``items``.

    ``workers=1`` runs in this process (no pickling, easiest to debug). Use as a context manager.
    """

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool: Any = None

    def __enter__(self) -> Pool:
        if self.workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context(method), initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        if self._pool is None:
            for item in items:
                yield fn(item)
            return
        pending: deque = deque()
        try:
            for item in items:
                pending.append(self._pool.submit(fn, item))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:  # the consumer stopped early or an error: drop what is queued
                fut.cancel()

    def starmap(self, fn: Callable[..., Any], arg_tuples: Iterable[tuple]) -> Iterator[Any]:
        """``map`` for functions of several arguments (each item a tuple)."""
        import functools

        return self.map(functools.partial(_star, fn), arg_tuples)

    def worker_pids(self) -> list[int]:
        """The pids of the live worker processes (empty when running in-process)."""
        if self._pool is None:
            return []
        return sorted(p.pid for p in (self._pool._processes or {}).values())  # noqa: SLF001


def _star(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


class Done:
    """What a worker returns for a unit whose result is already on disk (the driver loads it)."""


def _unless_done(fn: Callable[[Any], Any], item: Any) -> Any:
    return Done() if item is None else fn(item)


class Resume:
    """Finished units (batches or shards) of one pass, kept on disk so a rerun recomputes only the rest.

    The folder ``<workspace>/cache/resume/<name>/<key>/`` is keyed by the pass's ``name``, the
    pickled function (its arguments included), the corpus fingerprint (files, sizes, mtimes), the
    columns, the batch size and the unit (``batch``: a local batch; ``ray-batch``: a batch read by
    the Ray driver; ``shard``: one file read by a Ray task, with its read stats). Each finished unit is one pickle, written atomically by
    the driver as its result arrives in order, so a process killed at any point leaves only whole
    units. ``computed`` / ``reused`` count this run's units.
    """

    def __init__(self, ctx: Any, name: str, fn: Callable[[Any], Any], corpus: Any, columns: Sequence[str],
                 batch_rows: int, check_ids: bool, unit: str):
        import hashlib
        import pickle

        from tools.artifacts import stable_hash
        from tools.corpus import as_corpus, fingerprint

        fn_hash = hashlib.sha256(pickle.dumps(fn)).hexdigest()
        key = stable_hash(fn_hash, fingerprint(as_corpus(corpus)), list(columns), batch_rows, check_ids, unit)
        self.dir = ctx.workspace.cache_dir(f"resume/{_name_dir(name)}/{key[:20]}")
        self.computed = self.reused = 0

    def _path(self, i: int) -> Any:
        return self.dir / f"{i:07d}.pkl"

    def try_load(self, i: int) -> tuple[bool, Any]:
        """(True, the unit's result) when it is on disk, else (False, None). A unit that vanished or is
        unreadable (a concurrent run of the same pass cleared the store) is simply computed again."""
        import pickle

        try:
            with open(self._path(i), "rb") as fh:
                value = pickle.load(fh)  # noqa: S301 - the workspace's own files
        except (OSError, EOFError, pickle.UnpicklingError):
            return False, None
        self.reused += 1
        return True, value

    def save(self, i: int, value: Any) -> None:
        """Keep a finished unit; best effort: a store cleared meanwhile by a concurrent run of the same
        pass (its artifact is written) costs only the resume, never this run's result."""
        import pickle
        import uuid

        self.computed += 1
        path = self._path(i)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _name_dir(name: str) -> str:
    import re

    from tools.artifacts import stable_hash

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] + "-" + stable_hash(name)[:8]


def drop_resume(ctx: Any, name: str) -> None:
    """Forget the finished units of pass ``name`` (call it once the tool's artifact is written)."""
    import shutil

    shutil.rmtree(ctx.workspace.root / "cache" / "resume" / _name_dir(name), ignore_errors=True)


def _check_engine(ctx: Any) -> str:
    engine = getattr(ctx, "engine", "local")
    if engine not in ("local", "ray"):
        raise ResourceUnavailable(
            f"engine {engine!r} is not available", where="ToolContext.engine", hint="use engine='local' or 'ray'",
        )
    return engine


def map_items(fn: Callable[[Any], Any], items: Iterable[Any], ctx: Any, *, workers: int | None = None) -> Iterator[Any]:
    """``fn`` over any picklable items (e.g. shards of an earlier pass), in order, on the context's engine."""
    if _check_engine(ctx) == "ray":  # tools/engine_ray.py: Ray tasks, same order
        from tools import engine_ray

        yield from engine_ray.map_items(fn, items, ctx)
        return
    with Pool(workers or ctx.workers()) as pool:
        yield from pool.map(fn, items)


def map_batches(
    fn: Callable[[pa.RecordBatch], Any],
    corpus: Any,
    ctx: Any,
    *,
    columns: Sequence[str] = ("id", "text"),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    desc: str | None = None,
    stats: ReadStats | None = None,
    workers: int | None = None,
    check_ids: bool = True,
    pool: Pool | None = None,
    resume: str | None = None,
) -> Iterator[Any]:
    """``fn(batch)`` for every Arrow batch of ``corpus`` (read with the context's data roots), in order.

    ``desc`` shows a progress bar in documents. ``stats`` collects what the read saw (rows, skipped
    rows by reason). ``workers`` defaults to ``ctx.workers()``; ``pool`` reuses an open :class:`Pool`
    across several passes (its workers keep their warm caches). Closing the iterator early stops the
    read and cancels queued batches. ``resume`` (a name for the pass): every finished batch's result
    is kept in the workspace (:class:`Resume`), so rerunning an interrupted pass computes only the
    batches (Ray: shards) it had not finished; :func:`drop_resume` clears them.
    """
    if _check_engine(ctx) == "ray":  # tools/engine_ray.py: Ray CPU tasks, same batches' results, same order
        from tools import engine_ray

        store = None if resume is None else functools.partial(Resume, ctx, resume, fn, corpus, columns, batch_rows,
                                                              check_ids)
        yield from engine_ray.map_batches(fn, corpus, ctx, columns=columns, batch_rows=batch_rows, desc=desc,
                                          stats=stats, check_ids=check_ids, resume=store)
        return
    if pool is None:
        with Pool(workers or ctx.workers()) as own:
            yield from map_batches(fn, corpus, ctx, columns=columns, batch_rows=batch_rows, desc=desc,
                                   stats=stats, check_ids=check_ids, pool=own, resume=resume)
        return
    batches = read_batches(corpus, columns, batch_rows=batch_rows, stats=stats,
                           allowed_roots=getattr(ctx, "data_roots", None), check_ids=check_ids)
    if resume is not None:
        store = Resume(ctx, resume, fn, corpus, columns, batch_rows, check_ids, "batch")
        run_fn: Callable[[Any], Any] = functools.partial(_unless_done, fn)
        loaded: dict[int, Any] = {}
        mapped: Callable[[Iterable[Any]], Iterator[Any]] = lambda bs: _resumed(  # noqa: E731
            store, pool.map(run_fn, _dispatch(store, bs, loaded)), loaded)
    else:
        mapped = functools.partial(pool.map, fn)
    if desc is None:
        yield from mapped(batches)
        return
    try:
        total = count_rows(corpus)
    except Exception:  # noqa: BLE001 - a count is only for the bar; the read reports real errors
        total = None
    sizes: deque = deque()

    def tracked() -> Iterator[pa.RecordBatch]:
        for b in batches:
            sizes.append(b.num_rows)
            yield b

    with ctx.progress(desc, total=total, unit="docs") as bar:
        for result in mapped(tracked()):
            bar.update(sizes.popleft())
            yield result


def _dispatch(store: Resume, batches: Iterable[Any], loaded: dict[int, Any]) -> Iterator[Any]:
    """The batches to compute; a finished unit is loaded here, as it is dispatched (so a store cleared
    later cannot lose it), and the worker gets ``None`` for it."""
    for i, b in enumerate(batches):
        ok, value = store.try_load(i)
        if ok:
            loaded[i] = value
        yield None if ok else b


def _resumed(store: Resume, results: Iterator[Any], loaded: dict[int, Any]) -> Iterator[Any]:
    """Results in order: finished units as loaded at dispatch, fresh ones saved as they arrive."""
    for i, r in enumerate(results):
        if isinstance(r, Done):
            r = loaded.pop(i)
        else:
            store.save(i, r)
        yield r


class ModelPool:
    """Workers that each build a stateful function once (a loaded model) and then map items through it.

    ``make(device)`` (picklable: a class, or a ``functools.partial`` of one) returns ``fn``;
    ``pool.map(items)`` yields ``fn(item)`` in order. Local engine: ``fn`` is built once in this
    process with ``device`` (default: the context's device). ``engine="ray"``: Ray actors build it,
    one per GPU with ``make("cuda")`` when ``gpu=True`` and the cluster has GPUs (each actor requests
    ``num_gpus=1`` and sees only its GPU), else one per CPU with ``make("cpu")`` (``num_gpus=0``);
    ``actors`` caps their number (e.g. at the number of work items). Use as a context manager; the
    actors live until it closes, so the model loads once per actor across every ``map`` call.
    """

    def __init__(self, make: Callable[[str], Callable[[Any], Any]], ctx: Any, *, gpu: bool = False,
                 actors: int | None = None, device: str | None = None):
        self.make, self.ctx, self.gpu, self.actors = make, ctx, gpu, actors
        self.device = device
        self.engine = _check_engine(ctx)
        self._fn: Callable[[Any], Any] | None = None
        self._ray: Any = None

    def __enter__(self) -> ModelPool:
        if self.engine == "ray":
            from tools import engine_ray

            self._ray = engine_ray.ActorPool(self.make, gpu=self.gpu, actors=self.actors)
        else:
            self._fn = self.make(self.device or self.ctx.resolve_device())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ray is not None:
            self._ray.close()
            self._ray = None
        self._fn = None

    @property
    def workers(self) -> int:
        """How many copies of ``fn`` run side by side (1 locally)."""
        return self._ray.size if self._ray is not None else 1

    @property
    def uses_gpu(self) -> bool:
        """Whether the Ray actors hold a GPU each (False locally: the function picks its own device)."""
        return bool(self._ray is not None and self._ray.num_gpus)

    def map(self, items: Iterable[Any]) -> Iterator[Any]:
        if self._ray is not None:
            yield from self._ray.map(items)
            return
        if self._fn is None:
            raise RuntimeError("ModelPool.map outside its with-block")
        for item in items:
            yield self._fn(item)

    def call(self, item: Any) -> Any:
        """``fn(item)`` on one worker (e.g. to ask the loaded model for its settings)."""
        return next(iter(self.map([item])))
