"""Plans as JSON for mid-size local models: one forced function call, validated, one repair round.

The model is asked to call ``submit_plan({"steps": [{"tool": ..., "args": {...}}]})`` with a forced
``tool_choice`` (llama.cpp's server rejects ``response_format`` of type ``json_schema``; function
calling works everywhere). Each step is validated by the tool's pydantic request model; on errors
the model gets them back once. Missing corpus/target arguments are completed from the thread.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agent import prompts
from agent.chain import complete, consumer_field, makes, placeholder_kind
from tools.contract import ToolSpec
from tools.refs import Ref, ref_fields


class PlanStep(BaseModel):
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class JsonPlan(BaseModel):
    steps: list[PlanStep] = Field(default_factory=list)


_REF_TYPE = {"corpus": "path", "artifact": "artifact id", "path": "path", "artifact_or_path": "artifact id or path",
             "model": "model name or path"}


def _type_name(annotation: Any, ref: Ref | None = None) -> str:
    if ref is not None:  # typed references (tools.refs), found by type
        return _REF_TYPE[ref.kind]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "|".join(repr(v) for v in typing.get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def signature(spec: ToolSpec) -> str:
    parts = []
    refs = ref_fields(spec.request_model)
    for name, f in spec.request_model.model_fields.items():
        t = _type_name(f.annotation, refs.get(name))
        parts.append(f"{name}: {t}" if f.is_required() else f"{name}: {t} = {f.default!r}")
    return f"{spec.name}({', '.join(parts)}) - {spec.description}"


def _field_schema(annotation: Any, ref: Ref | None = None) -> dict[str, Any]:
    """A flat JSON schema for one argument (grammar-friendly: no $refs, no nulls)."""
    if ref is not None:  # a corpus, artifact id or path: a string (a list of them for list fields)
        many = typing.get_origin(annotation) in (list, tuple) or any(
            typing.get_origin(a) in (list, tuple) for a in typing.get_args(annotation))
        return {"type": "array", "items": {"type": "string"}} if many and ref.kind != "corpus" else {"type": "string"}
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    if origin in (list, tuple, set):
        inner = _field_schema(args[0]) if args else {}
        return {"type": "array", "items": inner}
    if origin is not None and args:  # Optional[X], X | None, Union[...]: the first concrete option
        lits = [v for a in args if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
        if lits and len(args) > 1 and all(typing.get_origin(a) is typing.Literal or a in (int, float) for a in args):
            return {}
        return _field_schema(args[0])
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
            str: {"type": "string"}}.get(annotation, {})


def step_schema(spec: ToolSpec) -> dict[str, Any]:
    refs = ref_fields(spec.request_model)
    props = {n: _field_schema(f.annotation, refs.get(n)) for n, f in spec.request_model.model_fields.items()}
    required = [n for n, f in spec.request_model.model_fields.items() if f.is_required()]
    return {
        "type": "object",
        "properties": {
            "tool": {"type": "string", "enum": [spec.name]},
            "args": {"type": "object", "properties": props, "required": required, "additionalProperties": False},
        },
        "required": ["tool", "args"],
    }


def submit_plan_tool(specs: list[ToolSpec], *, max_steps: int = 3, strict: bool = True) -> dict[str, Any]:
    """The forced function: a list of steps, each constrained to one tool's argument names and types
    (``strict``), or only to the tool names (loose: a much smaller grammar for llama.cpp)."""
    if strict:
        items = step_schema(specs[0]) if len(specs) == 1 else {"anyOf": [step_schema(s) for s in specs]}
    else:
        items = {"type": "object", "properties": {"tool": {"type": "string", "enum": [s.name for s in specs]},
                                                  "args": {"type": "object"}}, "required": ["tool", "args"]}
    return {
        "type": "function",
        "function": {
            "name": "submit_plan",
            "description": "Submit the ordered list of tool calls that answers the request.",
            "parameters": {
                "type": "object",
                "properties": {"steps": {"type": "array", "minItems": 1, "maxItems": max_steps, "items": items}},
                "required": ["steps"],
            },
        },
    }


def complete_args(spec: ToolSpec, args: dict[str, Any], inputs: dict[str, Any], request: str = "") -> dict[str, Any]:
    """Corpus/target from the thread where the model left them out or named a path that neither the
    request nor the thread contains (a made-up path); an explicit ``k`` wins."""
    out = dict(args)
    fields = spec.request_model.model_fields
    for name in ("corpus", "target"):
        if name not in fields or not inputs.get(name):
            continue
        value = out.get(name)
        made_up = (isinstance(value, str) and placeholder_kind(value) is None  # "$selection" is an earlier step's
                   and value != inputs[name] and value not in request)
        if not value or made_up:
            out[name] = inputs[name]
    if "validation" in fields and "target" not in fields and inputs.get("target") and not out.get("validation"):
        out["validation"] = inputs["target"]  # the thread's target set is what a validation field scores against
    if inputs.get("k") and "k" in fields and spec.family == "selection":  # an explicit k wins
        out["k"] = int(inputs["k"])
        out.pop("fraction", None)  # one budget: the explicit count
    return out


def _blank(value: Any) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return isinstance(value, (list, dict)) and all(_blank(v) for v in (value.values() if isinstance(value, dict) else value))


def _echoes_input_path(value: Any, inputs: dict[str, Any]) -> bool:
    """A name-like argument that holds one of the thread's paths (or a path inside their folders)."""
    if not isinstance(value, str) or ("/" not in value and "\\" not in value):
        return False
    text = value.strip().lstrip("./\\")
    for name in ("corpus", "target"):
        given = inputs.get(name)
        if isinstance(given, str) and given:
            folder = str(Path(given).parent).lstrip("/\\")
            if text == given.lstrip("/\\") or (folder and text.startswith(folder)):
                return True
    return False


def drop_filler(spec: ToolSpec, args: dict[str, Any], inputs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Optional arguments a model filled with nothing (``""``, ``[]``, ``[""]``) or with a copy of the
    thread's paths in a name field go back to their defaults; returns (args, what was dropped)."""
    fields = spec.request_model.model_fields
    refs = ref_fields(spec.request_model)
    out: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in args.items():
        f = fields.get(name)
        if f is None or f.is_required() or name in refs:
            out[name] = value
            continue
        if isinstance(value, list):
            kept = [v for v in value if not _blank(v) and not _echoes_input_path(v, inputs)]
            if kept != value or not kept:
                dropped.append(name)
            if kept:
                out[name] = kept
            continue
        if _blank(value) or _echoes_input_path(value, inputs):
            dropped.append(name)
            continue
        out[name] = value
    return out, dropped


def validate_steps(
    raw: Any, specs: dict[str, ToolSpec], inputs: dict[str, Any], request: str = "", *,
    artifacts: dict[str, str] | None = None, chain: bool = False,
) -> tuple[list[PlanStep], list[str]]:
    """Parse and validate a submitted plan; returns (steps, errors).

    With ``chain`` (the JSON planner), the plan's consumed inputs are completed as the offline
    planner's are (:func:`agent.chain.complete`): a step whose index, influence matrix or scores no
    earlier step makes and the thread does not hold gets the step that makes it, and an artifact id
    the model made up (neither in the thread nor in the request) is replaced. A request file's steps
    are taken as written.
    """
    errors: list[str] = []
    try:
        plan = JsonPlan.model_validate(raw if not isinstance(raw, str) else json.loads(raw))
    except (ValidationError, json.JSONDecodeError) as e:
        return [], [f"the plan is not of the form {{'steps': [{{'tool', 'args'}}]}}: {str(e)[:200]}"]
    if not plan.steps:
        return [], ["the plan has no steps"]
    cleaned: list[dict[str, Any]] = []
    for i, step in enumerate(plan.steps, 1):
        spec = specs.get(step.tool)
        if spec is None:
            errors.append(f"step {i}: unknown tool {step.tool!r}; tools are {', '.join(specs)}")
            continue
        args, _ = drop_filler(spec, complete_args(spec, step.args, inputs, request), inputs)
        if chain:
            args = _drop_made_up_artifacts(spec, args, artifacts or {}, request)
        cleaned.append({"tool": step.tool, "args": args})
    if chain:
        cleaned = complete(cleaned, specs, artifacts=dict(artifacts or {}),
                           make_args=lambda spec, _produced: complete_args(spec, {}, inputs, request))
    steps: list[PlanStep] = []
    made = set(artifacts or {})
    for n, step in enumerate(cleaned, 1):
        spec = specs[step["tool"]]
        dangling = [f"{k}={v}" for k, v in step["args"].items()
                    if (kind := placeholder_kind(v)) and kind not in made]
        if chain and dangling:
            errors.append(f"step {n} ({step['tool']}): {', '.join(dangling)} names no earlier step's "
                          "output and nothing in this thread")
            continue
        try:
            spec.request_model.model_validate(step["args"])
        except ValidationError as e:
            for err in e.errors()[:4]:
                loc = ".".join(str(x) for x in err["loc"])
                errors.append(f"step {n} ({step['tool']}): {loc}: {err['msg']}")
            continue
        candidate = PlanStep(tool=step["tool"], args=step["args"])
        if any(candidate == kept for kept in steps):  # a weak model repeats a step: running it twice changes nothing
            continue
        steps.append(candidate)
        made |= makes(spec)
    return steps, errors


def _drop_made_up_artifacts(spec: ToolSpec, args: dict[str, Any], artifacts: dict[str, str],
                            request: str) -> dict[str, Any]:
    """An artifact argument of a consumed kind that names no artifact of the thread and nothing in the
    request is a guess: it is left for chaining to fill (``$kind``, a thread artifact, or a new step)."""
    out = dict(args)
    known = set(artifacts.values())
    for kind in spec.consumes:
        fld = consumer_field(spec, kind)
        value = out.get(fld) if fld else None
        if (isinstance(value, str) and value and placeholder_kind(value) is None and value not in known
                and value not in request and value.removeprefix("./") not in request):
            del out[fld]
    return out


def chaining_text(specs: list[ToolSpec]) -> str:
    """The chaining rules with every registered tool's consumes -> produces."""
    flows = "\n".join(f"  {s.name}: {', '.join(s.consumes) or '-'} -> {', '.join(s.produces) or '-'}" for s in specs
                      if s.consumes or s.produces)
    return prompts.CHAINING_RULES.format(flows=flows or "  (none declared)")


def examples_text(specs: list[ToolSpec]) -> str:
    """The worked examples whose tools are all registered."""
    names = {s.name for s in specs}
    rows = [f"- {req} -> {steps}" for req, steps in prompts.PLAN_EXAMPLES
            if all(n in names for n in _tool_names(steps))]
    return (prompts.EXAMPLES_HEADER + "\n" + "\n".join(rows) + "\n") if rows else ""


def _tool_names(steps_json: str) -> list[str]:
    return [st["tool"] for st in json.loads(steps_json)]


def plan_with_llm(
    model: Any, request: str, specs: list[ToolSpec], inputs: dict[str, Any], *, repair: bool = True,
    max_tokens: int = 300, strict: bool = True, artifacts: dict[str, str] | None = None,
) -> tuple[list[PlanStep], list[str], int]:
    """Ask ``model`` (a chat model) for a JSON plan; returns (steps, errors left, LLM calls made)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    by_name = {s.name: s for s in specs}
    bound = model.bind_tools([submit_plan_tool(specs, strict=strict)], tool_choice="submit_plan",
                             extra_body={"max_tokens": max_tokens})  # llama.cpp ignores max_completion_tokens
    messages: list[Any] = [
        SystemMessage(
            prompts.JSON_PLAN_PROMPT.format(
                tools="\n".join(f"- {signature(s)}" for s in specs),
                chaining=chaining_text(specs),
                examples=examples_text(specs),
                corpus=inputs.get("corpus") or "(not given)",
                target=inputs.get("target") or "(not given)",
                artifacts=json.dumps(artifacts or {}),
                request=request,
            )
        ),
        HumanMessage(request),
    ]
    calls = 0
    steps: list[PlanStep] = []
    errors: list[str] = []
    for attempt in range(2 if repair else 1):
        reply: AIMessage = bound.invoke(messages)
        calls += 1
        tc = reply.tool_calls[0] if reply.tool_calls else plan_from_text(_text(reply.content))
        if tc is None:
            steps, errors = [], ["no submit_plan call in the reply"]
        else:
            steps, errors = validate_steps(tc["args"], by_name, inputs, request, artifacts=artifacts, chain=True)
        if not errors or attempt == 1:
            break
        # the repair turn restates the plan as text: some servers reject replayed tool-call turns
        shown = json.dumps(tc["args"]) if tc is not None else _text(reply.content)[:500]
        messages.append(HumanMessage(
            f"Your previous plan: {shown}\n" + prompts.JSON_REPAIR_PROMPT.format(errors="\n".join(errors))
        ))
    return steps, errors, calls


def plan_from_text(text: str) -> dict[str, Any] | None:
    """A plan the model wrote as text instead of calling the function (servers that do not force the
    call): the outermost JSON object holding ``steps``, bare or as ``{"name", "arguments"}``."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("arguments"), dict | str):
        args = obj["arguments"]
        try:
            obj = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError:
            return None
    if not isinstance(obj, dict) or "steps" not in obj:
        return None
    return {"name": "submit_plan", "args": obj, "id": "from-text", "type": "tool_call"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return json.dumps(content, default=str)
