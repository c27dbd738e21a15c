"""The agent's commands: ``run``, ``propose``, ``review``, ``llm serve``, ``policy check``, ``demo``.

Registered on the ``curate`` app by :func:`register` (see ``agent/cli.py``). Exit codes follow the
CLI contract: 0 ok, 2 bad input, 3 policy denied or approval needed, 4 a tool or the LLM failed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agent import cli_common
from agent.cli_common import check_engine, fail, make_service, ui_launcher, workspace_dir
from agent.console import emit, error, say

review_app = typer.Typer(no_args_is_help=True, help="The review queue: list, show, approve, reject proposals.")
llm_app = typer.Typer(no_args_is_help=True, help="Start a local OpenAI-compatible LLM server.")
policy_app = typer.Typer(no_args_is_help=True, help="Validate policies.")

EXIT_CODES = {"bad_input": 2, "policy_denied": 3, "approval_required": 3, "resource_unavailable": 4,
              "tool_failed": 4, "state_conflict": 5}
"""An error event's kind -> the CLI's exit code (README: Exit codes)."""
EXIT_QUESTION = 6
"""`curate run` stopped at a clarifying question (which tool, or a missing argument): answer it and rerun."""

PolicyOpt = Annotated[str | None, typer.Option("--policy", help="bundled policy name or YAML path")]
PlannerOpt = Annotated[str, typer.Option("--planner", help="auto, llm, json or offline")]
EngineOpt = cli_common.EngineOpt


def _service(policy: str | None = None, planner: str = "auto", engine: str | None = None):  # noqa: ANN202
    if planner not in ("auto", "llm", "json", "offline"):
        error(f"--planner: must be auto, llm, json or offline; got {planner!r}")
        raise typer.Exit(2)
    return make_service(policy=policy, planner=planner, engine=None if engine is None else check_engine(engine))


_fail = fail


def _short(ev: Any) -> str | None:
    k = ev.kind
    if k == "plan":
        return ev.text
    if k == "tool_start":
        return f"> {ev.tool}({json.dumps(ev.args)})"
    if k == "tool_end":
        dur = f" [{ev.duration_s:.1f}s]" if ev.duration_s is not None else ""
        mark = "ok" if ev.status == "done" else "FAILED"
        arts = f"  artifacts: {json.dumps(ev.artifacts)}" if ev.artifacts else ""
        return f"< {ev.tool} {mark}{dur}: {ev.summary}{arts}"
    if k == "message":
        return ev.text
    if k == "question":
        return f"question: {ev.text}" + (f"\n  choices: {', '.join(ev.choices)}" if ev.choices else "")
    if k == "proposal":
        return ev.text
    if k == "error":
        return None
    return None


def _drive(events: Any, *, as_json: bool) -> tuple[list[Any], int]:
    """Print events as they come (or collect them for --json); returns (events, exit code)."""
    seen: list[Any] = []
    code = 0
    for ev in events:
        seen.append(ev)
        if ev.kind == "error":
            error(ev.text)
            code = code or EXIT_CODES.get(ev.error_kind or "", 4)
        elif ev.kind == "question":
            code = code or EXIT_QUESTION
        elif ev.kind == "tool_end" and ev.status == "error":
            code = code or (3 if (ev.summary or "").startswith(("Denied by policy", "Not run")) else 4)
        if not as_json:
            line = _short(ev)
            if line:
                emit(line, as_json=False)  # plain text: no rich markup inside data-derived lines
    return seen, code


@review_app.command("list")
def review_list(
    status: Annotated[str, typer.Option("--status", help="pending, approved, rejected, exported or all")] = "pending",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    policy: Annotated[str | None, typer.Option("--policy", help="use this policy's workspace")] = None,
) -> None:
    """List proposals (pending by default) in the workspace (the policy's, if it names one)."""
    from agent.proposals import ProposalStore

    recs = ProposalStore(workspace_dir(policy)).list(None if status == "all" else status)
    rows = [{"id": r["id"], "status": r["status"], "kind": r["kind"], "n_docs": r.get("n_docs"),
             "request": r.get("request", "")[:70], "created_at": r.get("created_at")} for r in recs]
    if as_json:
        emit(rows, as_json=True)
        return
    if not rows:
        say(f"no {status} proposals")
    for r in rows:
        say(f"{r['id']}  {r['status']:<9} {r['kind']:<9} docs={r['n_docs']}  {r['request']}")


@review_app.command("show")
def review_show(
    pid: str,
    policy: Annotated[str | None, typer.Option("--policy", help="use this policy's workspace")] = None,
) -> None:
    """Print a proposal record (counts, weights, evidence, plan, status)."""
    from agent.proposals import ProposalStore

    try:
        emit(ProposalStore(workspace_dir(policy)).get(pid), as_json=True)
    except Exception as e:  # noqa: BLE001
        _fail(e)


def _check_decision(svc: Any, rec: dict[str, Any], decision: str) -> None:
    """State conflicts (a decided proposal, a corpus changed since) fail before the graph resumes: exit 5."""
    from agent.proposals import check_fresh
    from tools.errors import StateConflict

    status = rec.get("status")
    if decision == "approve" and status == "rejected":
        raise StateConflict(f"proposal {rec['id']} was rejected; it cannot be approved")
    if decision in ("reject", "edit") and status in ("exported", "rejected") and not (
            decision == "reject" and status == "rejected"):
        raise StateConflict(f"proposal {rec['id']} is already {status}; it cannot be {decision}ed")
    if decision == "approve" and status == "pending":
        check_fresh(rec, svc.tool_context())


def _decide(pid: str, decision: str, note: str, policy: str | None, as_json: bool,
            weights: dict[str, float] | None = None) -> None:
    try:
        svc = _service(policy)
        rec = svc.proposal(pid)
        _check_decision(svc, rec, decision)
        events, code = _drive(svc.review(rec["thread_id"], pid, decision, weights=weights, note=note),  # type: ignore[arg-type]
                              as_json=as_json)
        rec = svc.proposal(pid)
        if decision == "edit" and any(e.kind == "message" and " not applied" in (e.text or "") for e in events):
            code = code or 2  # the edit was refused (the message above says why)
    except Exception as e:  # noqa: BLE001
        _fail(e)
        return
    if as_json:
        emit({"proposal": rec, "events": [e.model_dump(mode="json", exclude_none=True) for e in events]}, as_json=True)
    if decision == "approve" and rec["status"] != "exported":
        raise typer.Exit(code or 3)
    if code:
        raise typer.Exit(code)


@review_app.command("approve")
def review_approve(
    pid: str,
    note: Annotated[str, typer.Option("--note")] = "",
    policy: PolicyOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a proposal: export its documents and a manifest (idempotent)."""
    _decide(pid, "approve", note, policy, as_json)


@review_app.command("reject")
def review_reject(
    pid: str,
    note: Annotated[str, typer.Option("--note")] = "",
    policy: PolicyOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reject a proposal (nothing is exported)."""
    _decide(pid, "reject", note, policy, as_json)


@review_app.command("edit")
def review_edit(
    pid: str,
    weights: Annotated[str, typer.Option("--weights", help='JSON object, e.g. {"math": 0.6, "code": 0.4}')],
    note: Annotated[str, typer.Option("--note")] = "",
    policy: PolicyOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-balance a selection proposal to per-domain weights; it stays pending."""
    try:
        w = json.loads(weights)
    except json.JSONDecodeError as e:
        error(f"--weights: not valid JSON ({e.msg})")
        raise typer.Exit(2) from None
    _decide(pid, "edit", note, policy, as_json, weights=w)


def _run_request(svc: Any, thread: str, request: str, corpus: str | None, target: str | None,
                 as_json: bool, extra: dict[str, Any] | None = None) -> tuple[list[Any], int]:
    if extra:
        from langchain_core.messages import HumanMessage

        payload = {"messages": [HumanMessage(content=request)],
                   "inputs": {**{k: v for k, v in (("corpus", corpus), ("target", target)) if v}, **extra}}
        return _drive(svc._run(thread, payload), as_json=as_json)
    return _drive(svc.stream(thread, request, corpus=corpus, target=target), as_json=as_json)


def run_cmd(
    request: Annotated[str, typer.Argument(help="the curation request, in words")],
    corpus: Annotated[str | None, typer.Option("--corpus", help="the pool: path, directory or glob")] = None,
    target: Annotated[str | None, typer.Option("--target", help="the target set")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan; run nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    policy: PolicyOpt = None,
    planner: PlannerOpt = "auto",
    thread: Annotated[str | None, typer.Option("--thread", help="continue a thread (default: a new one)")] = None,
    engine: EngineOpt = None,
) -> None:
    """Run one request through the agent (plan, policy, tools, proposal)."""
    import uuid

    try:
        svc = _service(policy, planner, engine)
        if dry_run:
            from agent.plan_model import PlanQuestion

            out = svc.dry_run(request, corpus=corpus, target=target)
            question = PlanQuestion.model_validate(out["question"]) if out.get("question") else None
            if as_json:
                emit(out, as_json=True)
            elif question is not None:
                say(f"question: {question.text}")
                say(f"  choices: {', '.join(question.choices)}")
            else:
                say(out["text"])
                for s, d in zip(out["steps"], out["policy"], strict=False):
                    say(f"  policy on {s['tool']}: {d['verdict']}{' - ' + d['reason'] if d['reason'] else ''}")
            if question is not None:
                raise typer.Exit(EXIT_QUESTION)
            if not out["steps"]:
                raise typer.Exit(2)
            return
        tid = thread or f"run-{uuid.uuid4().hex[:8]}"
        events, code = _run_request(svc, tid, request, corpus, target, as_json)
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001
        _fail(e)
        return
    if as_json:
        emit({"thread_id": tid, "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
              "proposals": [e.proposal for e in events if e.kind == "proposal"]}, as_json=True)
    else:
        say(f"thread: {tid}")
    if code:
        raise typer.Exit(code)
    if not any(e.kind in ("tool_end", "proposal") for e in events):
        why = _why_nothing_ran(svc, tid, corpus)
        if why:
            error(why)
            raise typer.Exit(2)


def _why_nothing_ran(svc: Any, tid: str, corpus: str | None) -> str | None:
    """A run where no tool ran because input is missing: a script must not read that as success."""
    from agent.plan_model import read_plan

    try:
        values = svc.graph.get_state(svc._config(tid)).values
    except Exception:  # noqa: BLE001 - no state: nothing to explain
        values = {}
    plan = read_plan(values)
    if plan is not None and plan.question is not None:
        return (f"nothing ran: the request needs an answer first ({plan.question.text or plan.text}); "
                f"answer with --thread {tid}, or pass --corpus/--target")
    if corpus is None:
        return "nothing ran: no corpus was given; pass --corpus PATH (a file, folder or glob)"
    return None


def _read_request_file(path: Path) -> dict[str, Any]:
    """A ``propose`` request file, checked key by key (BadInput naming the file and the key)."""
    import yaml

    from tools.errors import BadInput

    where = str(path)
    if not path.exists():
        raise BadInput("no such file", where=where)
    if path.is_dir():
        raise BadInput("is a folder; pass a YAML request file", where=where)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadInput("not a text file (a YAML request file expected)", where=where) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BadInput(f"not valid YAML ({getattr(e, 'problem', None) or type(e).__name__}{at})", where=where) from None
    spec = {} if spec is None else spec
    if not isinstance(spec, dict) or not (spec.get("request") or spec.get("steps")):
        raise BadInput("a request file needs 'request' (text) or 'steps' ([{tool, args}])", where=where)
    unknown = set(spec) - {"request", "corpus", "target", "k", "steps", "policy", "planner", "thread"}
    if unknown:
        raise BadInput(f"unknown keys {sorted(map(str, unknown))}", where=where)
    for key in ("request", "corpus", "target", "policy", "planner", "thread"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise BadInput(f"must be a string; got {type(spec[key]).__name__} {spec[key]!r}"[:160], where=f"{where}: {key}")
    k = spec.get("k")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise BadInput(f"must be a positive integer; got {k!r}"[:160], where=f"{where}: k")
    steps = spec.get("steps")
    if steps is not None:
        if not isinstance(steps, list):
            raise BadInput(f"must be a list of {{tool, args}}; got {type(steps).__name__}", where=f"{where}: steps")
        for i, st in enumerate(steps):
            if not isinstance(st, dict) or not isinstance(st.get("tool"), str) or not isinstance(st.get("args", {}), dict):
                raise BadInput("must be {tool: name, args: {...}}", where=f"{where}: steps[{i}]")
    return spec


def propose_cmd(
    request: Annotated[Path, typer.Option("--request", help="YAML: request (text), corpus, target, k; or steps")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    policy: PolicyOpt = None,
    planner: PlannerOpt = "auto",
    engine: EngineOpt = None,
) -> None:
    """Run a request file without a person, up to a pending proposal in the review queue."""
    try:
        spec = _read_request_file(request)
        extra: dict[str, Any] = {}
        if spec.get("k") is not None:
            extra["k"] = spec["k"]
        if spec.get("steps"):
            extra["steps"] = spec["steps"]
        text = spec.get("request") or "Run the steps of the request file."
        svc = _service(policy or spec.get("policy"), spec.get("planner") or planner, engine)
        digest = hashlib.sha256(request.read_bytes()).hexdigest()[:8]
        # a fresh thread per run: a request file on a schedule leaves a new proposal each time
        from datetime import UTC, datetime
        from uuid import uuid4

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{uuid4().hex[:4]}"
        tid = spec.get("thread") or f"propose-{request.stem}-{digest}-{stamp}"
        events, code = _run_request(svc, tid, text, spec.get("corpus"), spec.get("target"), as_json, extra)
    except Exception as e:  # noqa: BLE001
        _fail(e)
        return
    props = [e.proposal for e in events if e.kind == "proposal" and e.proposal]
    if as_json:
        emit({"thread_id": tid, "proposals": props,
              "events": [e.model_dump(mode="json", exclude_none=True) for e in events]}, as_json=True)
    else:
        for p in props:
            if p.get("kind") == "approval":
                say(f"waiting: thread {tid} needs a person to approve a tool call ({p['id']}); "
                    "continue it in the chat (`curate chat`)")
            else:
                say(f"pending: {p['id']} - review with `curate review show {p['id']}` then approve or reject")
    if code:
        raise typer.Exit(code)
    if not props:
        error("the request ended without a proposal")
        raise typer.Exit(4)


@llm_app.command("serve")
def llm_serve(
    engine: Annotated[str, typer.Option("--engine", help="vllm (GPU) or llamacpp (CPU)")] = "llamacpp",
    model: Annotated[str, typer.Option("--model", help="vllm: HF name; llamacpp: GGUF path, HF repo, or 'smollm2'")] = "smollm2",
    tensor_parallel: Annotated[int, typer.Option("--tensor-parallel")] = 1,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port")] = None,
    tool_call_parser: Annotated[str | None, typer.Option("--tool-call-parser")] = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="llamacpp context length")] = 4096,
    print_only: Annotated[bool, typer.Option("--print-command", help="print the command; start nothing")] = False,
    wait_s: Annotated[float, typer.Option("--wait", help="seconds to wait for /v1/models")] = 900.0,
) -> None:
    """Start vLLM or llama.cpp's OpenAI-compatible server, wait until healthy, print the base URL."""
    from agent.llm import llamacpp_command, resolve_gguf, start_server, vllm_command

    try:
        if engine == "vllm":
            cmd = vllm_command(model, host=host, port=port or 8000, tensor_parallel=tensor_parallel,
                               tool_call_parser=tool_call_parser)
        elif engine == "llamacpp":
            gguf = Path(model) if print_only and not model.lower().startswith("smollm2") else resolve_gguf(model)
            cmd = llamacpp_command(gguf, host=host, port=port or 8765, n_ctx=n_ctx)
        else:
            error(f"--engine: must be vllm or llamacpp; got {engine!r}")
            raise typer.Exit(2)
        if print_only:
            emit({"command": cmd.argv, "base_url": cmd.base_url, "model": cmd.model}, as_json=True)
            return
        say(f"starting: {cmd.shell()}")
        proc = start_server(cmd, wait_s=wait_s)
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001
        _fail(e)
        return
    say(f"ready: {cmd.base_url}")
    say(f"export CURATE_LLM_BASE_URL={cmd.base_url} CURATE_LLM_MODEL={cmd.model} CURATE_LLM_API_KEY=EMPTY")
    say(f"  or in curate.yaml:  llm: {{base_url: {cmd.base_url}, model: {cmd.model}}}   (check: curate doctor)")
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=30)


@policy_app.command("check")
def policy_check(
    file: Annotated[str, typer.Argument(help="policy YAML path or bundled name")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate a policy file; print it resolved, or the problems (exit 2)."""
    from policies.schema import PolicyError, load_policy

    try:
        pol = load_policy(file)
    except PolicyError as e:
        error(str(e))
        raise typer.Exit(2) from None
    warnings = pol.root_warnings()
    if as_json:
        emit({**pol.model_dump(mode="json"), "warnings": warnings}, as_json=True)
    else:
        for w in warnings:
            emit(f"warning: {w}", as_json=False)
        say(f"ok: policy {pol.name} ({pol.description or 'no description'})")
        say(f"  data roots: {', '.join(str(p) for p in pol.resolved_roots())}")
        say(f"  budgets: {pol.budgets.model_dump(exclude_none=True)}")
        say(f"  approval: {pol.approval.model_dump()}")
        say(f"  export: {pol.export.model_dump()}")


def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="demo data folder (generated if missing)")] = Path("demo"),
    k: Annotated[int, typer.Option("--k", help="documents to select")] = 2000,
    docs: Annotated[int, typer.Option("--docs", help="pool size when demo data is generated")] = 24_000,
    approve: Annotated[bool, typer.Option("--approve", help="approve the proposal (exports the data)")] = False,
    chat: Annotated[bool, typer.Option("--chat", help="then open the chat UI on the same workspace")] = False,
    planner: PlannerOpt = "offline",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 7860,
) -> None:
    """The end-to-end demo: demo data, a request through the agent, a proposal, review."""
    import uuid

    from tools.demo_data import generate
    from tools.registry import names

    try:
        pool, target = out / "pool.jsonl", out / "target_math.jsonl"
        if not (pool.exists() and target.exists()):
            say(f"generating demo data in {out}/ ...")
            generate(out, n_docs=docs)
        selector = "dsir" if "dsir" in names() else "sample"
        request = (f"Use DSIR to select {k} documents from the pool that look like the math target set."
                   if selector == "dsir" else f"Take a stratified sample of {k} documents from the pool as a baseline.")
        say(f"request: {request}\ncorpus: {pool}\ntarget: {target}\n")
        svc = _service(None, planner)
        tid = f"demo-{uuid.uuid4().hex[:6]}"
        events, code = _drive(svc.stream(tid, request, corpus=str(pool), target=str(target)), as_json=False)
        props = [e.proposal for e in events if e.kind == "proposal" and e.proposal]
        if code or not props:
            error("the demo did not reach a proposal")
            raise typer.Exit(code or 4)
        pid = props[-1]["id"]
        say("")
        if approve:
            _drive(svc.review(tid, pid, "approve", note="approved by curate demo --approve"), as_json=False)
        else:
            say(f"The proposal is pending. Review it with:\n  curate review show {pid}\n"
                f"  curate review approve {pid}   (or: curate review reject {pid} --note '...')")
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001
        _fail(e)
        return
    if chat:
        try:
            launch = ui_launcher("chat")
        except Exception as e:  # noqa: BLE001 - the demo already ran; the UI is optional
            say(f"the chat UI is not available here ({e}); skipping --chat")
            return
        launch(host=host, port=port, say=say)


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("propose")(propose_cmd)
    app.command("demo")(demo_cmd)
    app.add_typer(review_app, name="review")
    app.add_typer(llm_app, name="llm")
    app.add_typer(policy_app, name="policy")
