"""The one tool contract: requests, results, specs and the context a tool runs in.

A tool is ``run(request: XRequest, ctx: ToolContext) -> XResult``. Requests hold hyperparameters and
references (corpus specs, artifact ids), never arrays or text; results hold a short summary for the
LLM, typed metrics, and artifact ids for anything large. This module imports only pydantic, the
standard library, ``tools.kinds`` and the (light) ``tools.llm`` configuration so that listing tools is instant; what runs a tool
(``tools.runtime``), stores its artifacts (``tools.artifacts``) and calls an LLM (``tools.llm``) is
imported when first used, and none of those modules imports this one back.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from tools.kinds import ARTIFACT_KINDS, ArtifactKind
from tools.llm import LLMConfig

if TYPE_CHECKING:  # pragma: no cover
    from tools.artifacts import Workspace
    from tools.llm import ToolLLM

__all__ = [
    "ARTIFACT_KINDS",
    "ArtifactKind",
    "CostClass",
    "Effect",
    "LLMConfig",
    "MixtureResult",
    "Progress",
    "ProgressEvent",
    "RowCounts",
    "ScoresResult",
    "SelectionResult",
    "ToolContext",
    "ToolMetrics",
    "ToolRequest",
    "ToolResult",
    "ToolSpec",
]

Effect = Literal["read_data", "write_workspace", "gpu", "llm_calls", "export", "network"]
CostClass = Literal["cpu", "gpu", "llm"]


class ProgressEvent(BaseModel):
    """One progress update; the chat renders these live, a terminal as a tqdm bar."""

    tool: str = ""
    desc: str
    n: int
    total: int | None = None
    unit: str = "it"
    done: bool = False
    rate: float | None = None


class Progress:
    """A progress handle: ``update(n)``; reports to tqdm and/or an event callback."""

    def __init__(
        self,
        *,
        desc: str,
        total: int | None,
        unit: str,
        tool: str,
        sink: Callable[[ProgressEvent], None] | None,
        show_bar: bool,
        min_interval_s: float = 0.5,
    ):
        import time

        self._time = time.monotonic
        self.desc, self.total, self.unit, self.tool = desc, total, unit, tool
        self.n = 0
        self._sink = sink
        self._last = 0.0
        self._start = self._time()
        self._min_interval = min_interval_s
        self._bar = None
        if show_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        now = self._time()
        if self._sink is not None and (now - self._last >= self._min_interval):
            self._last = now
            self._emit(done=False)

    def _emit(self, *, done: bool) -> None:
        elapsed = max(self._time() - self._start, 1e-9)
        assert self._sink is not None
        self._sink(
            ProgressEvent(
                tool=self.tool,
                desc=self.desc,
                n=self.n,
                total=self.total,
                unit=self.unit,
                done=done,
                rate=self.n / elapsed,
            )
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._sink is not None:
            self._emit(done=True)


class ToolContext(BaseModel):
    """Where and how a tool runs. Frozen: a tool never changes its context.

    ``data_roots`` is the set of directories tools may read (``None`` = unrestricted, the notebook
    default); the agent fills it from the active policy.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    workspace_dir: Path = Field(default_factory=lambda: Path(os.environ.get("CURATE_HOME", ".curate")))
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    engine: Literal["local", "ray"] = "local"
    num_workers: int | None = Field(None, description="CPU worker processes; None = all cores")
    data_roots: tuple[Path, ...] | None = None
    use_cache: bool = True
    show_progress: bool = True
    on_progress: Callable[[ProgressEvent], None] | None = None
    tool: str = ""
    llm_config: LLMConfig | None = Field(
        None, description="the LLM tools may call; None = from CURATE_TOOL_LLM_* then CURATE_LLM_* (or none)"
    )
    max_llm_calls: int | None = Field(
        None, ge=0, description="LLM calls one tool run may send (the policy's budget); None = unlimited"
    )

    _workspace: Any = PrivateAttr(default=None)
    _run: Any = PrivateAttr(default=None)
    _llm: Any = PrivateAttr(default=None)

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            from tools.artifacts import Workspace

            self._workspace = Workspace(self.workspace_dir)
        return self._workspace

    @property
    def has_llm(self) -> bool:
        """Whether an LLM is configured (here or through the environment); no call is made."""
        from tools.llm import resolve_config

        return resolve_config(self.llm_config) is not None

    @property
    def llm(self) -> ToolLLM:
        """The LLM client of this run: cached, counted, charged against ``max_llm_calls``.

        Raises :class:`~tools.errors.ResourceUnavailable` saying how to configure one when none is.
        """
        if self._llm is None:
            from tools.llm import ToolLLM

            self._llm = ToolLLM.for_context(self)
        return self._llm

    def workers(self) -> int:
        if self.num_workers:
            return self.num_workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)

    def resolve_device(self) -> str:
        if self.device != "auto":
            return self.device
        try:
            import torch

            if torch.cuda.is_available():
                return "cuda"
        except ImportError:  # pragma: no cover
            pass
        return "cpu"

    @contextmanager
    def progress(self, desc: str, total: int | None = None, unit: str = "it") -> Iterator[Progress]:
        bar = Progress(
            desc=desc,
            total=total,
            unit=unit,
            tool=self.tool,
            sink=self.on_progress,
            show_bar=self.show_progress,
        )
        try:
            yield bar
        finally:
            bar.close()


    @contextmanager
    def artifact(
        self,
        kind: str,
        name: str | None = None,
        *,
        metrics: dict[str, Any] | None = None,
        rows: RowCounts | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Iterator[Any]:
        """Write one artifact of this run; the manifest gets the run's tool, request, inputs, seed.

        Yields an :class:`tools.artifacts.ArtifactWriter`; after the block, ``writer.id`` is the id.
        """
        from tools.runtime import open_artifact

        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}; kinds are {ARTIFACT_KINDS}")
        rows = rows if rows is not None else RowCounts()
        with open_artifact(self, kind, name, metrics=metrics, rows=rows.model_dump(), extra=extra) as writer:
            yield writer


class ToolRequest(BaseModel):
    """Base of every request: frozen, no unknown fields, JSON-serialisable."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RowCounts(BaseModel):
    """Rows in, rows out, and every skipped row counted by a reason code."""

    rows_in: int = 0
    rows_out: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)


class ToolMetrics(BaseModel):
    """A tool's metrics, declared once: the same values go into its artifacts' manifests
    (:meth:`manifest`) and into its result (the result model subclasses the metrics model and is
    built with :meth:`ToolResult.of`), so no result field is copied from a metrics dict by hand.
    Every field needs a default: results cached before a field existed still load."""

    model_config = ConfigDict(extra="forbid")

    def manifest(self, **extra: Any) -> dict[str, Any]:
        """The metrics as a manifest stores them (JSON values), plus manifest-only ``extra`` entries."""
        return {**self.model_dump(mode="json"), **extra}


class ToolResult(BaseModel):
    """Base of every result: a summary an LLM can read, artifact ids, metrics."""

    model_config = ConfigDict(extra="forbid")

    tool: str = ""
    summary: str = ""
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="artifact name (usually its kind) -> artifact id"
    )
    rows: RowCounts = Field(default_factory=RowCounts)
    cached: bool = False
    duration_s: float = 0.0
    llm_calls: int = Field(0, description="LLM calls this run sent (cached answers cost none)")

    @classmethod
    def of(cls, metrics: ToolMetrics, **fields: Any) -> Self:
        """This result with every field of ``metrics`` (a model this result class subclasses) plus
        ``fields`` (summary, artifacts, rows, ...)."""
        if not issubclass(cls, type(metrics)):
            raise TypeError(f"{cls.__name__} does not subclass {type(metrics).__name__}, so it cannot carry its metrics")
        return cls(**{name: getattr(metrics, name) for name in type(metrics).model_fields}, **fields)


class SelectionResult(ToolResult):
    """Family of selectors: a selection artifact (Parquet ``id`` + ``weight``/``score``/``domain``)."""

    k: int = 0
    pool_size: int = 0
    domain_counts: dict[str, int] = Field(default_factory=dict)


class ScoresResult(ToolResult):
    """Family of scorers: a scores artifact (Parquet ``id`` + one column per score)."""

    score_columns: list[str] = Field(default_factory=list)


class MixtureResult(ToolResult):
    """Family of mixers: per-domain weights (and optionally per-stage schedules)."""

    weights: dict[str, float] = Field(default_factory=dict)


class ToolSpec(BaseModel):
    """What the registry, the agent, the guard and the UI know about a tool (declared data)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    version: str = "1"
    description: str
    request_model: type[ToolRequest]
    result_model: type[ToolResult]
    cost: CostClass = "cpu"
    effects: frozenset[Effect] = frozenset({"read_data", "write_workspace"})
    gpu: Literal["no", "optional", "required"] = "no"
    deterministic: bool = True
    engines: tuple[Literal["local", "ray"], ...] = ("local",)
    needs_target: bool = False
    family: Literal["selection", "scores", "mixture", "report", "index", "other"] = "other"
    confirmation: Literal["none", "recommended", "required"] = "none"
    examples: tuple[str, ...] = Field(
        default=(), description="example user requests this tool answers (used by the offline router)"
    )
    llm: Literal["no", "optional", "required"] = Field(
        "no", description="whether the tool calls an LLM: 'optional' has a labelled offline fallback"
    )
    consumes: tuple[str, ...] = Field((), description="artifact kinds the tool reads (e.g. 'influence')")
    produces: tuple[str, ...] = Field((), description="artifact kinds the tool writes (e.g. 'selection')")
    conformance: str | None = Field(
        None,
        description="'module:function' of conformance_case(tmp_path, corpus) -> dict: valid arguments for "
        "a small CPU run over the conformance corpus (writing any extra input into tmp_path)",
    )
    implementation: str | None = Field(
        None, description="module holding the tool's ``run``; None = the package above ``.schema``"
    )

    _impl: Callable[..., Any] | None = PrivateAttr(default=None)

    def json_schema(self) -> dict[str, Any]:
        return self.request_model.model_json_schema()

    def implement(self, func: Callable[[Any, ToolContext], ToolResult]) -> Callable[..., Any]:
        """Decorator: bind the algorithm; the returned ``run`` does validation, caching, manifests.

        ``run`` accepts a request model, a dict, or keyword arguments, and an optional context, so
        notebooks can call ``dsir.run(corpus="pool.jsonl", target="t.jsonl", k=100)``.
        """
        self._impl = func

        @functools.wraps(func)
        def run(request: Any = None, ctx: ToolContext | None = None, /, **kwargs: Any) -> ToolResult:
            from tools.runtime import execute

            return execute(self, request, ctx if ctx is not None else ToolContext(), kwargs)

        run.spec = self  # type: ignore[attr-defined]
        return run

    @property
    def bound(self) -> bool:
        return self._impl is not None

    @property
    def impl(self) -> Callable[[Any, ToolContext], ToolResult]:
        """The bound algorithm, refusing a context whose engine the tool does not declare (``engines``)."""
        if self._impl is None:
            raise RuntimeError(f"tool {self.name!r} has no implementation bound (import {self.implementation})")
        func = self._impl

        @functools.wraps(func)
        def checked(request: Any, ctx: ToolContext) -> ToolResult:
            self.check_engine(ctx)
            return func(request, ctx)

        return checked

    def check_engine(self, ctx: ToolContext) -> None:
        """Raise :class:`~tools.errors.ResourceUnavailable` unless the tool runs on ``ctx.engine``."""
        if ctx.engine in self.engines:
            return
        from tools.errors import ResourceUnavailable

        raise ResourceUnavailable(
            f"tool {self.name!r} does not run on engine {ctx.engine!r} (it runs on: {', '.join(self.engines)})",
            where="engine",
            hint=f"run {self.name} with engine='local' (--engine local), or pick a tool that declares "
            f"engines=(..., {ctx.engine!r})",
        )
