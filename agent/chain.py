"""Prerequisite steps from what tools consume and produce (``ToolSpec.consumes`` / ``produces``).

A step that consumes an artifact kind (``trace_fact`` an ``index``, ``bids`` an ``influence``
matrix) gets it, in this order: from its own arguments (the user named a path or an id), from an
artifact already in the thread (reused, not recomputed), from an earlier step of the same plan
(``"$kind"``, resolved when the step runs), or from a new step of a tool that produces that kind,
inserted before it (recursively: ``trace_fact`` <- ``fact_index`` <- ``embed``). Planner-neutral:
the offline planner and the JSON planner both complete their plans with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.contract import ARTIFACT_KINDS, ToolSpec

MAX_DEPTH = 4


def placeholder_kind(value: Any) -> str | None:
    """The artifact kind a ``"$kind"`` argument stands for ("$index" -> "index"), else None: a value
    such as "$5 lunch deals" is the user's text."""
    if isinstance(value, str) and value.startswith("$") and value[1:] in ARTIFACT_KINDS:
        return value[1:]
    return None


def producers(kind: str, specs: dict[str, ToolSpec], *, exclude: set[str] | None = None) -> list[ToolSpec]:
    """Registered tools that produce ``kind``: those that need nothing themselves first."""
    exclude = exclude or set()
    found = [s for s in specs.values() if kind in s.produces and s.name not in exclude]

    def cost(s: ToolSpec) -> tuple[int, int, int]:
        req = sum(1 for n, f in s.request_model.model_fields.items() if f.is_required() and n != "corpus")
        return (len(s.consumes), req, len(s.produces))

    return sorted(found, key=cost)


def makes(spec: ToolSpec) -> set[str]:
    """The artifact kinds a step of ``spec`` leaves for later steps: its ``produces``, and a selection
    for every selector (their selections are what ``family="selection"`` means)."""
    return set(spec.produces) | ({"selection"} if spec.family == "selection" else set())


def consumer_field(spec: ToolSpec, kind: str) -> str | None:
    """The request field through which ``spec`` takes an artifact of ``kind``. A selection also goes
    into the tool's corpus field: a corpus may name a selection (:func:`tools.refs.resolve_selection`)."""
    from tools.refs import ref_fields

    refs = ref_fields(spec.request_model)
    for name, ref in refs.items():
        if kind in (ref.artifact_kinds or ()):
            return name
    for name, ref in refs.items():
        if ref.kind in ("artifact", "artifact_or_path") and name.removesuffix("_id").rstrip("s") == kind.rstrip("s"):
            return name
    if kind == "selection":
        corpora = [n for n, r in refs.items() if r.kind == "corpus"]
        return "corpus" if "corpus" in corpora else next(iter(corpora), None)
    return None


def complete(
    steps: list[dict[str, Any]],
    specs: dict[str, ToolSpec],
    *,
    artifacts: dict[str, str],
    make_args: Callable[[ToolSpec, set[str]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """``steps`` ({"tool", "args"}) with the steps their inputs need inserted before them.

    ``make_args(spec, produced)`` fills a new prerequisite's arguments from the request (corpus, model);
    ``produced`` holds the kinds earlier steps make.
    """
    out: list[dict[str, Any]] = []
    produced: set[str] = set()

    def add(step: dict[str, Any], depth: int, chain: set[str]) -> None:
        spec = specs[step["tool"]]
        for kind in spec.consumes:
            fld = consumer_field(spec, kind)
            have = step["args"].get(fld) if fld else None
            if isinstance(have, str) and placeholder_kind(have) is None:
                continue  # a path or an id the request named
            if kind in produced:  # an earlier step of this plan makes it: that one, not an older artifact
                if fld:
                    step["args"][fld] = f"${kind}"
                continue
            if kind in artifacts:
                if fld:
                    step["args"][fld] = artifacts[kind]  # reuse what the thread already has
                continue
            if depth >= MAX_DEPTH:
                continue
            maker = next(iter(producers(kind, specs, exclude=chain | {spec.name})), None)
            if maker is None:
                continue  # nothing makes it: the tool computes it itself or says what is missing
            add({"tool": maker.name, "args": make_args(maker, set(produced))}, depth + 1, chain | {spec.name})
            if fld:
                step["args"][fld] = f"${kind}"
        out.append(step)
        produced.update(spec.produces)

    for st in steps:
        if any(o["tool"] == st["tool"] and o["args"] == st["args"] for o in out):
            continue
        add({"tool": st["tool"], "args": dict(st["args"])}, 0, set())
    return out
