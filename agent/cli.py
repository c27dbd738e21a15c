"""``curate``: the command line over the tool registry, the artifacts and (later) the agent.

Exit codes: 0 ok, 2 bad input, 3 policy denied or approval needed, 4 tool failure.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agent import cli_common
from agent.console import emit, error, say

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Curation assistant command line.")
artifacts_app = typer.Typer(no_args_is_help=True, help="List, show and export artifacts.")
app.add_typer(artifacts_app, name="artifacts")


debug_enabled = cli_common.debug_enabled
_fail = cli_common.fail  # the one failure path (kept under its old name for callers and tests)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="print tracebacks of failures")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", help="the services config file (default: $CURATE_CONFIG, ./curate.yaml, "
                         "~/.config/curate/config.yaml); the environment wins over it")] = None,
) -> None:
    """Curation assistant command line. Exit codes: 0 ok, 2 bad input, 3 policy, 4 tool failure, 5 state conflict."""
    if debug:
        os.environ["CURATE_DEBUG"] = "1"
    if config is not None:
        os.environ["CURATE_CONFIG"] = str(config)
    from agent.config import apply_env

    try:
        apply_env()  # the file's services fill the unset CURATE_* / RAY_ADDRESS variables the tools read
    except Exception as e:  # noqa: BLE001 - a bad config file: one error line naming the file and field
        if "--help" in sys.argv[1:]:  # help needs no services: show it; the config error stays for runs
            return
        _fail(e)


def _ctx(quiet: bool = False, policy: str | None = None):  # noqa: ANN202
    from tools.contract import ToolContext

    return ToolContext(workspace_dir=cli_common.workspace_dir(policy), show_progress=not quiet and sys.stderr.isatty())


def _parse_args(args: str) -> dict[str, Any]:
    from tools.errors import BadInput

    text = args
    where = "--args"
    if args.startswith("@"):
        p = Path(args[1:])
        where = f"--args {p}"
        if not p.exists():
            raise BadInput("no such file", where=where)
        if p.is_dir():
            raise BadInput("is a folder; pass a JSON or YAML file", where=where)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInput("not a text file (JSON or YAML expected)", where=where) from None
        except OSError as e:
            raise BadInput(f"cannot read it ({e.strerror})", where=where) from None
        if p.suffix in (".yaml", ".yml"):
            from agent.config import yaml_mapping

            return yaml_mapping(text, where, expected="a mapping of argument names to values")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", where=where) from None
    if not isinstance(value, dict):
        raise BadInput(f"must be a JSON object; got {type(value).__name__}", where=where)
    return value


def result_payload(result: Any, ws: Any) -> dict[str, Any]:
    """DESIGN's output shape: tool, summary, artifacts (name -> path), plus metrics."""
    payload = result.model_dump(mode="json")
    arts = payload.pop("artifacts")
    payload = {
        "tool": payload.pop("tool"),
        "summary": payload.pop("summary"),
        "artifacts": {name: str(ws.get(art_id).path) for name, art_id in arts.items()},
        "artifact_ids": arts,
        **payload,
    }
    return payload


@app.command("tools")
def tools_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the tools with their descriptions and JSON schemas."""
    from tools.registry import describe, list_specs

    specs = [describe(s) for s in list_specs()]
    if as_json:
        emit(specs, as_json=True)
        return
    for s in specs:
        say(f"[bold]{s['name']}[/bold] ({s['family']}, {s['cost']}): {s['description']}")


@app.command("tool")
def tool_cmd(
    name: str,
    args: Annotated[str, typer.Option("--args", help="JSON object, or @file.json / @file.yaml")] = "{}",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="recompute even if cached")] = False,
    policy: Annotated[str | None, typer.Option("--policy", envvar="CURATE_POLICY",
                                               help="read only inside this policy's data roots")] = None,
    engine: Annotated[str, typer.Option("--engine", envvar="CURATE_ENGINE",
                                        help="local (process pool) or ray (RAY_ADDRESS, else a local Ray)")] = "local",
) -> None:
    """Run one registered tool and print its result."""
    from tools.contract import ToolContext
    from tools.errors import BadInput
    from tools.registry import invoke

    try:
        roots = None
        if policy:
            from policies.schema import PolicyError, load_policy

            try:
                roots = load_policy(policy).resolved_roots()
            except PolicyError as e:
                raise BadInput(str(e), where="--policy") from None
        cli_common.check_engine(engine)
        ctx = ToolContext(show_progress=sys.stderr.isatty(), use_cache=not no_cache, data_roots=roots,
                          engine=engine)
        result = invoke(name, _parse_args(args), ctx)
        payload = result_payload(result, ctx.workspace)
    except Exception as e:  # noqa: BLE001 - typed errors become exit codes, others re-raise
        _fail(e)
        return
    if as_json:
        emit(payload, as_json=True)
    else:
        say(payload["summary"])
        for k, v in payload["artifacts"].items():
            say(f"  {k}: {v}")


@artifacts_app.command("list")
def artifacts_list(
    kind: Annotated[str | None, typer.Option("--kind")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    policy: Annotated[str | None, typer.Option("--policy", help="use this policy's workspace")] = None,
) -> None:
    """List artifacts in the workspace (the policy's, if it names one), newest first."""
    from tools.artifacts import Workspace

    ws = Workspace(cli_common.workspace_dir(policy))
    rows = [
        {"id": a.id, "kind": a.kind, "tool": a.manifest.get("tool"), "created_at": a.manifest.get("created_at"),
         "rows_out": a.manifest.get("rows", {}).get("rows_out"), "path": str(a.path)}
        for a in ws.list(kind)
    ]
    if as_json:
        emit(rows, as_json=True)
        return
    if not rows:
        say(f"no artifacts in {ws.artifacts_dir}")
    for r in rows:
        say(f"{r['id']:<24} {r['tool'] or '':<14} {r['created_at']}  rows={r['rows_out']}")


@artifacts_app.command("show")
def artifacts_show(
    art_id: str,
    policy: Annotated[str | None, typer.Option("--policy", help="use this policy's workspace")] = None,
) -> None:
    """Print an artifact's manifest."""
    from tools.artifacts import Workspace

    try:
        emit(Workspace(cli_common.workspace_dir(policy)).get(art_id).manifest, as_json=True)
    except Exception as e:  # noqa: BLE001
        _fail(e)


@artifacts_app.command("export")
def artifacts_export(
    art_id: str,
    to: Annotated[Path, typer.Option("--to")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or parquet")] = "jsonl",
    with_text: Annotated[bool, typer.Option("--with-text/--no-text", help="selections: join the documents")] = True,
    force: Annotated[bool, typer.Option("--force", help="replace an existing file (atomically)")] = False,
    reresolve: Annotated[bool, typer.Option("--re-resolve", help="the corpus changed since the selection: "
                                                               "export the current text of the selected ids")] = False,
) -> None:
    """Export an artifact's table (a selection with its documents' text) as JSONL or Parquet.

    Never writes into the selection's source corpus, nor over an existing file without --force.
    """
    import pyarrow.parquet as pq

    from tools.errors import BadInput
    from tools.selection import atomic_output, check_destination, export_selection

    try:
        if fmt not in ("jsonl", "parquet"):
            raise BadInput(f"must be jsonl or parquet; got {fmt!r}", where="--format")
        ctx = _ctx()
        art = ctx.workspace.get(art_id)
        if art.kind == "selection" and with_text:
            info = export_selection(ctx, art.id, to, fmt=fmt, force=force, reresolve=reresolve)  # type: ignore[arg-type]
        else:
            if not (art.path / "data.parquet").exists():
                raise BadInput(f"{art.id} is a {art.kind} artifact with no table to export")
            table = art.table()
            dest = check_destination(to, force=force)
            with atomic_output(dest, force=force) as tmp:
                if fmt == "parquet":
                    pq.write_table(table, tmp)
                else:
                    with open(tmp, "w", encoding="utf-8") as fh:
                        for rec in table.to_pylist():
                            fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            info = {"exported": table.num_rows, "path": str(dest), "format": fmt}
    except Exception as e:  # noqa: BLE001
        _fail(e)
        return
    if info.get("warning"):
        say(f"warning: {info['warning']}")
    emit(info, as_json=True)


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out")] = Path("demo"),
    docs: Annotated[int, typer.Option("--docs")] = 24_000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    source: Annotated[str, typer.Option("--source", help="'synthetic' or 'hf' (needs a hub)")] = "synthetic",
) -> None:
    """Write a seeded multi-domain demo pool and a small target set."""
    if source == "hf":
        from tools.demo_hf import generate_hf

        try:
            paths = generate_hf(out, seed=seed)
        except Exception as e:  # noqa: BLE001
            _fail(e)
            return
    else:
        from tools.demo_data import generate

        paths = generate(out, n_docs=docs, seed=seed)
    emit(paths, as_json=True)


@app.command("doctor")
def doctor_cmd(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="seconds to wait for each service")] = 3.0,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="leave out a check (repeatable): llm, "
                                                   "tool_llm, vector_store, engine, torch, embed_model")] = None,
) -> None:
    """Check that each configured service answers and print what runs where (exit 4 if one is down)."""
    from agent.doctor import render_table, run_checks

    report = run_checks(skip=tuple(skip or ()), timeout_s=timeout)
    if as_json:
        emit(report.payload(), as_json=True)
    else:
        from rich.console import Console

        Console(emoji=False, width=max(120, Console().width)).print(render_table(report))
        down = [c.service for c in report.checks if c.status == "down"]
        say(f"[bold red]down: {', '.join(down)}[/bold red]" if down else "[green]every configured service answers[/green]")
    if not report.ok:
        raise typer.Exit(4)


@app.command("chat")
def chat_cmd(
    host: Annotated[str, typer.Option("--host", help="interface to bind; 0.0.0.0 exposes it to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 7860,
    auth: Annotated[str | None, typer.Option("--auth", envvar="CURATE_AUTH", help="user:password")] = None,
    share: Annotated[bool, typer.Option("--share", help="ask Gradio for a public share link")] = False,
    planner: Annotated[str, typer.Option("--planner", help="auto, llm, json or offline")] = "auto",
    policy: Annotated[str | None, typer.Option("--policy", help="bundled policy name or YAML path")] = None,
    engine: cli_common.EngineOpt = None,
) -> None:
    """Open the chat UI: streamed tool calls, the thread's artifacts, proposal review."""
    try:
        if engine is not None:
            cli_common.check_engine(engine)
        launch = cli_common.ui_launcher("chat")
        launch(host=host, port=port, auth=auth, share=share, planner=planner, policy=policy, engine=engine, say=say)
    except ValueError as e:
        error(str(e))
        raise typer.Exit(2) from None
    except Exception as e:  # noqa: BLE001
        _fail(e)


from agent.cli_agent import register as _register_agent_commands  # noqa: E402 - after the app exists

_register_agent_commands(app)


guard_commands = cli_common.guard_commands
guard_commands(app)


def main() -> None:
    """The ``curate`` script's entry point (``[project.scripts]``): process defaults, then the app."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
