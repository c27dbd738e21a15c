"""The Ray engine behind :func:`tools.engine.map_batches`: the same per-batch function as Ray CPU tasks.

``ToolContext(engine="ray")`` sends a tool's batches here. Results come back in corpus order, so a
tool's artifacts equal the local engine's. The corpus is read by the very code the local engine
uses (:func:`tools.corpus.read_batches`), so ids, text joining, domains and skipped rows are the
same; only where the reading runs differs:

* **shards** (a corpus of several files): one task per file reads its shard on a worker and maps
  ``fn`` over the shard's batches; the driver only checks ids across shards and merges the read
  stats. This is what scales: workers read in parallel, nothing but results crosses the network.
* **driver** (a single file): this process reads the canonical Arrow batches and ships each one to
  a task (at most ``2 x cluster CPUs`` in flight, so memory stays bounded).

Batch boundaries differ between the two (a shard ends its own last batch); the per-document
results, which is what the tools keep, do not. A worker that dies (killed, OOM) is retried by Ray
(``max_retries``); an error raised by ``fn`` or by the reader is not retried and reaches the
caller as itself (a :class:`BadInput` stays a BadInput).

``RAY_ADDRESS`` connects to a running cluster (``ray start --head``; the workers need this package
installed); without it a small local Ray (``num_cpus=2``, no dashboard, worker logs off) is
started once per process and reused. Shard reading needs the corpus at the same path on every node
(a shared filesystem); ``CURATE_RAY_READ=driver`` reads on the driver instead (``shards``/``auto``).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tools.corpus import DEFAULT_BATCH_ROWS, ReadStats, as_corpus, count_rows, read_batches, resolve_files
from tools.errors import BadInput, ResourceUnavailable, missing_extra

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["MAX_RETRIES", "ActorPool", "Ready", "check_reachable", "ensure_ray", "map_batches", "map_items"]

MAX_RETRIES = 3
"""How often Ray reruns a task whose worker died (not one whose function raised)."""
LOCAL_CPUS = 2
_init_lock = threading.Lock()


def ensure_ray() -> Any:
    """Import ray and connect: to ``RAY_ADDRESS`` when set, else to a local Ray started once."""
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "ray", "engine='ray'") from None
    with _init_lock:
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            if address:
                check_reachable(address)
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=LOCAL_CPUS, include_dashboard=False, log_to_driver=False)
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``RAY_ADDRESS`` nobody listens on (``ray.init`` would wait minutes for it)."""
    import socket

    target = address.split("://", 1)[-1]
    if target in ("auto", "local") or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise ResourceUnavailable(
            f"no Ray cluster answers at {address} ({type(e).__name__})", where="RAY_ADDRESS",
            hint="start one with `ray start --head`, or unset RAY_ADDRESS for a local Ray",
        ) from None


def _in_flight(ray: Any) -> int:
    return max(2, 2 * int(ray.cluster_resources().get("CPU", LOCAL_CPUS)))


# ------------------------------------------------------------------------------- task bodies


def _run_batch(fn: Callable[[Any], Any], batch: pa.RecordBatch) -> tuple[int, Any]:
    return batch.num_rows, fn(batch)


def _run_shard(fn: Callable[[Any], Any], spec: Any, columns: Sequence[str], batch_rows: int,
               want_ids: bool) -> tuple[list[tuple[int, Any]], ReadStats, list[str] | None]:
    """Read one file with the canonical reader and map ``fn`` over its batches, in order."""
    cols = list(columns)
    read_cols = cols if not want_ids or "id" in cols else [*cols, "id"]
    stats = ReadStats()
    out: list[tuple[int, Any]] = []
    ids: list[str] | None = [] if want_ids else None
    try:
        for batch in read_batches(spec, read_cols, batch_rows=batch_rows, stats=stats, check_ids=False):
            if ids is not None:
                ids += batch.column("id").to_pylist()
                if read_cols is not cols:
                    batch = batch.select(cols)
            out.append((batch.num_rows, fn(batch)))
    except BadInput:
        if stats.rows:  # a real error in the file; an empty shard is fine (the corpus may have others)
            raise
    return out, stats, ids


# ----------------------------------------------------------------------------------- ordering


def get_unwrapped(ref: Any) -> Any:
    """``ray.get`` that raises a task's own exception (a BadInput stays a BadInput) instead of Ray's wrapper."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise


def _ordered(ray: Any, submit: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """``ray.get(submit(item))`` for every item, in order, with a bounded number of tasks in flight."""
    limit = _in_flight(ray)
    pending: deque = deque()

    def get(ref: Any) -> Any:
        if isinstance(ref, Ready):
            return ref.value
        return get_unwrapped(ref)

    try:
        for item in items:
            pending.append(submit(item))
            if len(pending) >= limit:
                yield get(pending.popleft())
        while pending:
            yield get(pending.popleft())
    finally:
        for ref in pending:  # the consumer stopped early or an error: drop what is queued
            if isinstance(ref, Ready):
                continue
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 - best effort, the task may have finished
                pass


class Ready:
    """A unit already finished (loaded from a :class:`tools.engine.Resume`): nothing is submitted for it."""

    def __init__(self, value: Any):
        self.value = value


def _remote(ray: Any, fn: Callable[..., Any]) -> Any:
    return ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(fn)


# -------------------------------------------------------------------------------------- public


def map_batches(
    fn: Callable[[pa.RecordBatch], Any],
    corpus: Any,
    ctx: Any,
    *,
    columns: Sequence[str] = ("id", "text"),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    desc: str | None = None,
    stats: ReadStats | None = None,
    check_ids: bool = True,
    read: str = "auto",
    resume: Callable[[str], Any] | None = None,
) -> Iterator[Any]:
    """``fn(batch)`` on Ray for every batch of ``corpus``, results in corpus order.

    ``read``: ``"shards"`` (workers read one file each), ``"driver"`` (this process reads and
    ships batches) or ``"auto"`` (shards when the corpus has several files). ``resume``: a factory
    ``unit -> tools.engine.Resume`` (what :func:`tools.engine.map_batches` passes for its
    ``resume``); finished shards (shard reading) or batches (driver reading) are loaded instead of
    submitted.
    """
    ray = ensure_ray()
    read = os.environ.get("CURATE_RAY_READ", read) if read == "auto" else read
    spec = as_corpus(corpus)
    roots = getattr(ctx, "data_roots", None)
    files = resolve_files(spec, roots)  # the data-root check happens here, before anything is sent
    mode = read if read != "auto" else ("shards" if len(files) > 1 else "driver")
    if mode not in ("shards", "driver"):
        raise ResourceUnavailable(f"must be auto, shards or driver; got {read!r}", where="CURATE_RAY_READ")
    stats = stats if stats is not None else ReadStats()
    store = resume("shard" if mode == "shards" else "ray-batch") if resume is not None else None
    results = (_by_shards if mode == "shards" else _by_driver)(
        ray, fn, spec, files, columns, batch_rows, stats, check_ids, roots, store)
    if desc is None:
        for _, r in results:
            yield r
        return
    try:
        total = count_rows(spec)
    except Exception:  # noqa: BLE001 - a count is only for the bar; the read reports real errors
        total = None
    with ctx.progress(desc, total=total, unit="docs") as bar:
        for n, r in results:
            bar.update(n)
            yield r


def _resumable(ray: Any, store: Any, submit: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """``_ordered`` over ``items``, loading the units ``store`` has and saving the others as they arrive."""
    if store is None:
        yield from _ordered(ray, submit, items)
        return

    fresh: set[int] = set()

    def sub(pair: tuple[int, Any]) -> Any:
        i, item = pair
        ok, value = store.try_load(i)  # loaded now: a store cleared later cannot lose it
        if ok:
            return Ready(value)
        fresh.add(i)
        return submit(item)

    for i, out in enumerate(_ordered(ray, sub, enumerate(items))):
        if i in fresh:
            store.save(i, out)
        yield out


def _by_driver(ray: Any, fn: Callable, spec: Any, files: list, columns: Sequence[str], batch_rows: int,
               stats: ReadStats, check_ids: bool, roots: Any, store: Any = None) -> Iterator[tuple[int, Any]]:
    task = _remote(ray, _run_batch)
    fn_ref = ray.put(fn)
    batches = read_batches(spec, columns, batch_rows=batch_rows, stats=stats, allowed_roots=roots,
                           check_ids=check_ids)
    yield from _resumable(ray, store, lambda b: task.remote(fn_ref, b), batches)


def _by_shards(ray: Any, fn: Callable, spec: Any, files: list, columns: Sequence[str], batch_rows: int,
               stats: ReadStats, check_ids: bool, roots: Any, store: Any = None) -> Iterator[tuple[int, Any]]:
    task = _remote(ray, _run_shard)
    fn_ref = ray.put(fn)
    cols = list(dict.fromkeys(list(columns) + list(spec.extra_fields)))
    shards = [spec.model_copy(update={"path": str(path), "format": fmt}) for path, fmt in files]
    seen: set[str] | None = set() if check_ids else None
    for shard_results, st, ids in _resumable(
            ray, store, lambda s: task.remote(fn_ref, s, cols, batch_rows, check_ids), shards):
        _merge(stats, st, ids, seen)
        yield from shard_results
    if stats.rows == 0:
        skipped = f" ({dict(stats.skipped)} skipped)" if stats.skipped else ""
        raise BadInput(f"the corpus has no documents{skipped}", where=spec.path)


def _merge(stats: ReadStats, st: ReadStats, ids: list[str] | None, seen: set[str] | None) -> None:
    """Fold one shard's read stats into the caller's, counting ids seen in an earlier shard too."""
    stats.rows += st.rows
    stats.skipped.update(st.skipped)
    stats.invalid_utf8_rows += st.invalid_utf8_rows
    stats.files += st.files
    if ids is None or seen is None:
        return
    for doc_id in ids:
        if doc_id in seen:
            stats.duplicate_ids += 1
            if len(stats.duplicate_examples) < 5:
                stats.duplicate_examples.append(doc_id)
        else:
            seen.add(doc_id)


def map_items(fn: Callable[[Any], Any], items: Iterable[Any], ctx: Any) -> Iterator[Any]:
    """``fn`` over picklable items as Ray tasks, results in order."""
    ray = ensure_ray()
    task = _remote(ray, _call)
    fn_ref = ray.put(fn)
    yield from _ordered(ray, lambda item: task.remote(fn_ref, item), items)


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


# --------------------------------------------------------------------------------- actor pool


class _Holder:
    """A Ray actor's body: build the stateful function once, then apply it to each item sent."""

    def __init__(self, make: Callable[[str], Callable[[Any], Any]], device: str):
        self.fn = make(device)

    def run(self, item: Any) -> Any:
        return self.fn(item)


class ActorPool:
    """Ray actors that each hold ``make(device)`` (a loaded model); :meth:`map` keeps the input order.

    GPU actors (``gpu=True`` on a cluster with GPUs) request ``num_gpus=1`` each, one per GPU; else
    CPU actors (``num_gpus=0``, ``num_cpus=1``), one per cluster CPU. ``actors`` caps the count. An
    actor whose process dies is restarted (its model reloads) and the task re-sent, up to
    :data:`MAX_RETRIES` times; an error raised by the function reaches the caller as itself.
    """

    def __init__(self, make: Callable[[str], Callable[[Any], Any]], *, gpu: bool = False,
                 actors: int | None = None):
        ray = self._ray = ensure_ray()
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0)) if gpu else 0
        self.num_gpus = 1 if gpus else 0
        n = gpus or max(1, int(res.get("CPU", LOCAL_CPUS)))
        self.size = max(1, min(n, actors or n))
        cls = ray.remote(num_cpus=1, num_gpus=self.num_gpus, max_restarts=MAX_RETRIES,
                         max_task_retries=MAX_RETRIES)(_Holder)
        device = "cuda" if gpus else "cpu"  # make goes inline: a restarted actor rebuilds from its own copy
        self._actors = [cls.remote(make, device) for _ in range(self.size)]

    def map(self, items: Iterable[Any]) -> Iterator[Any]:
        """Results in the order of ``items``; each actor has at most two items queued."""
        ray = self._ray
        pending: deque = deque()  # (ref, actor index) in submission order
        busy: dict[int, int] = dict.fromkeys(range(self.size), 0)
        limit = 2 * self.size

        def take() -> Any:
            ref, a = pending.popleft()
            busy[a] -= 1
            return get_unwrapped(ref)

        try:
            for item in items:
                if len(pending) >= limit:
                    yield take()
                a = min(busy, key=busy.__getitem__)  # the least loaded actor
                busy[a] += 1
                pending.append((self._actors[a].run.remote(item), a))
            while pending:
                yield take()
        finally:
            for ref, _ in pending:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - best effort
                    pass

    def close(self) -> None:
        for a in self._actors:
            try:
                self._ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
