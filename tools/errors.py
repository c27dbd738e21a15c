"""Typed errors every tool raises, so front ends can tell bad input from a failed tool.

Each error carries a message a person can act on: what is wrong, where (file, line, field), what is
allowed and what was received. The CLI maps them to exit codes, the agent to tool messages.
"""

from __future__ import annotations


class CurateError(Exception):
    """Base of the project's errors; ``exit_code`` is what the CLI returns."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return text


class BadInput(CurateError):
    """The request or the data is wrong; fixing the input fixes the run."""

    exit_code = 2
    kind = "bad_input"


class PolicyDenied(CurateError):
    """The active policy forbids this call (data root, budget, tool)."""

    exit_code = 3
    kind = "policy_denied"


class ApprovalRequired(CurateError):
    """The policy wants a person to approve this call before it runs."""

    exit_code = 3
    kind = "approval_required"


class StateConflict(CurateError):
    """The workspace changed under the request: a corpus edited since its selection, a decided proposal."""

    exit_code = 5
    kind = "state_conflict"


class ResourceUnavailable(CurateError):
    """A model, package, server or device the tool needs is missing."""

    exit_code = 4
    kind = "resource_unavailable"


class ToolFailed(CurateError):
    """The tool could not finish for a reason that is not the caller's input."""

    exit_code = 4
    kind = "tool_failed"


def field_error(tool: str, field: str, must: str, got: object) -> BadInput:
    """The one message shape for a bad argument: ``<tool>.<field>: must be …; got …``."""
    shown = repr(got)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return BadInput(f"must be {must}; got {shown}", where=f"{tool}.{field}")


def missing_extra(package: str, extra: str, purpose: str) -> ResourceUnavailable:
    """A missing optional dependency, with the install command that fixes it."""
    return ResourceUnavailable(
        f"{purpose} needs the '{package}' package",
        hint=f"install it with: pip install 'curation-assistant[{extra}]'",
    )


def refuse_bool_numbers(tool: str, model: type, data: dict) -> None:
    """``k: true`` is not the integer 1: a bool given for a number field is a field error (pydantic's
    lax mode would take it as 1)."""
    import types
    import typing

    fields = getattr(model, "model_fields", {})
    for name, value in data.items():
        info = fields.get(name)
        if info is None or not isinstance(value, bool):
            continue
        ann = info.annotation
        args = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)
        if bool not in args and any(a in (int, float) for a in args):
            raise field_error(tool, name, "a number (true/false is not a number)", value)
