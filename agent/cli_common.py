"""What every ``curate`` command shares: the one failure path, the workspace, finding the UI.

``agent/cli.py`` (tools, artifacts, chat) and ``agent/cli_agent.py`` (run, propose, review) both
import from here and never from each other, except that ``cli`` registers ``cli_agent``'s commands.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.console import error

UI_ENTRY_GROUP = "curate.ui"

EngineOpt = Annotated[str | None, typer.Option(
    "--engine", envvar="CURATE_ENGINE", help="tools that support it run on: local (process pool) or ray "
                                             "(RAY_ADDRESS, else a local Ray); default: the config file's, else local")]
"""``--engine`` of the agent's commands (run, propose, chat); ``curate tool`` has its own."""


def debug_enabled() -> bool:
    return os.environ.get("CURATE_DEBUG", "").lower() not in ("", "0", "false", "no")


def fail(exc: BaseException) -> None:
    """Every failure -> one ``error:`` line and the documented exit code; the traceback only with --debug."""
    from tools.errors import CurateError

    if isinstance(exc, (typer.Exit, typer.Abort, KeyboardInterrupt)):
        raise exc
    if debug_enabled():
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, CurateError):
        error(exc.render())
        raise typer.Exit(exc.exit_code)
    if isinstance(exc, MemoryError):
        error("out of memory; try a smaller input or batch size")
    else:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        error(f"{type(exc).__name__}: {msg[:300]}" + ("" if debug_enabled() else " (rerun with --debug for the traceback)"))
    raise typer.Exit(4)


def guarded(fn: Any) -> Any:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the one error path: an error line and an exit code
            fail(e)

    return run


def guard_commands(typer_app: typer.Typer) -> None:
    """Route every command's failures through :func:`fail` (one ``error:`` line, documented exit code)."""
    for cmd in typer_app.registered_commands:
        if cmd.callback is not None and not getattr(cmd.callback, "__wrapped__", None):
            cmd.callback = guarded(cmd.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            guard_commands(group.typer_instance)


def check_engine(engine: str) -> str:
    """``--engine`` (or ``CURATE_ENGINE``, or the config file's ``engine:``) must be local or ray."""
    from tools.errors import BadInput

    if engine not in ("local", "ray"):
        raise BadInput(f"must be local or ray; got {engine!r}", where="--engine (or CURATE_ENGINE)")
    return engine


def make_service(*, engine: str | None = None, **kwargs: Any) -> Any:
    """An :class:`agent.service.AgentService` whose tools run on ``engine`` (None: the configured one)."""
    from agent.service import AgentService

    svc = AgentService(**kwargs)
    if engine is not None and svc.ctx.engine != engine:
        svc.ctx = svc.ctx.with_(engine=check_engine(engine))
    return svc


def workspace_dir(policy: str | None = None) -> Path:
    """The one workspace resolver for the graph and every command: the policy's ``workspace:`` if it
    sets one, else ``CURATE_HOME`` / the config file, else ``.curate`` (see ``CurateContext``)."""
    from agent.context import CurateContext, resolve_workspace

    return resolve_workspace(CurateContext.from_env(policy=policy))


def ui_launcher(name: str = "chat") -> Any:
    """The UI's launcher, found through the ``curate.ui`` entry point (so ``agent`` never imports ``ui``)."""
    from importlib.metadata import distributions

    from tools.errors import ResourceUnavailable

    # every distribution's metadata, not only the first per name: a stale ``*.egg-info`` in the checkout
    # (an older editable build) would otherwise hide the installed entry points
    found = [ep for d in distributions() for ep in d.entry_points if ep.group == UI_ENTRY_GROUP and ep.name == name]
    if not found:
        raise ResourceUnavailable(
            "the chat UI is not installed here (no 'curate.ui' entry point)",
            hint="reinstall the project (pip install -e .): it registers ui.launcher:chat",
        )
    return found[0].load()
