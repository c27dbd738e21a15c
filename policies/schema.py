"""The policy document: what the agent may read, write, spend and export (pydantic, YAML on disk).

A policy is data. ``load_policy("default")`` reads a bundled policy, ``load_policy("my.yaml")`` a
file; unknown keys are errors so a typo never silently weakens a rule. Paths in ``data_roots`` and
``workspace`` are relative to the working directory of the process that loads the policy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

BUNDLED_DIR = Path(__file__).parent / "bundled"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budgets(_Strict):
    """Limits per request (one user turn) unless stated otherwise."""

    max_docs_selected: int | None = Field(None, ge=1, description="largest k a selection may have")
    max_tokens: int | None = Field(None, ge=1, description="largest token budget a request may ask for")
    max_llm_calls: int | None = Field(None, ge=0, description="LLM calls per request (planning and tools)")
    max_tool_calls: int = Field(12, ge=1, description="tool calls per request")
    gpu_allowed: bool = Field(True, description="tools that require a GPU may run")


class DomainRule(_Strict):
    """Share of a proposal (selection or mixture) one domain may take: at least ``floor``, at most ``cap``."""

    cap: float | None = Field(None, ge=0.0, le=1.0)
    floor: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _order(self) -> DomainRule:
        if self.cap is not None and self.floor is not None and self.floor > self.cap:
            raise ValueError(f"floor {self.floor} is above cap {self.cap}")
        return self


class ApprovalRules(_Strict):
    """Tool calls a person approves before they run."""

    tools: list[str] = Field(default_factory=list, description="tool names that always need approval")
    effects: list[str] = Field(
        default_factory=list, description="effects that need approval (gpu, llm_calls, network, export)"
    )
    honour_tool_confirmation: bool = Field(
        True, description="tools whose spec says confirmation='required' need approval"
    )


class ExportRules(_Strict):
    """What an approved proposal may export."""

    formats: list[str] = Field(default_factory=lambda: ["jsonl", "parquet"])
    dedup_required: bool = Field(False, description="a dedup tool must have run in the plan before export")
    dedup_tools: list[str] = Field(default_factory=lambda: ["semantic_dedup"])
    exclude_domains: list[str] = Field(default_factory=list, description="domains that may not be exported")
    exclude_sources: list[str] = Field(
        default_factory=list, description="path substrings (files, folders) whose documents may not be exported"
    )
    require_review: bool = Field(True, description="every proposal waits for a person (always true for now)")


class Policy(_Strict):
    name: str = "custom"
    description: str = ""
    data_roots: list[str] = Field(default_factory=lambda: ["."], description="directories tools may read")
    workspace: str | None = Field(None, description="workspace directory; None = $CURATE_HOME or .curate")
    budgets: Budgets = Field(default_factory=Budgets)
    domains: dict[str, DomainRule] = Field(
        default_factory=dict, description="per-domain caps/floors; the key '*' applies to every domain"
    )
    approval: ApprovalRules = Field(default_factory=ApprovalRules)
    export: ExportRules = Field(default_factory=ExportRules)

    @model_validator(mode="after")
    def _floors_fit(self) -> Policy:
        floors = sum(r.floor or 0.0 for d, r in self.domains.items() if d != "*")
        if floors > 1.0 + 1e-9:
            raise ValueError(f"domain floors sum to {floors:.3f} > 1")
        return self

    def resolved_roots(self, base: Path | None = None) -> tuple[Path, ...]:
        base = base or Path.cwd()
        out = []
        for r in self.data_roots:
            p = Path(os.path.expanduser(os.path.expandvars(r)))
            out.append((p if p.is_absolute() else base / p).resolve())
        return tuple(out)

    def root_warnings(self, base: Path | None = None) -> list[str]:
        """Data roots so broad that they let a tool read nearly anything (``/``, the home folder, ...)."""
        home = Path.home().resolve()
        system = {Path(p) for p in ("/etc", "/usr", "/var", "/proc", "/sys", "/dev", "/root", "/boot", "/bin",
                                    "/lib", "/opt", "/srv", "/home", "/Users", "/private", "/mnt", "/media")}
        out = []
        for raw, r in zip(self.data_roots, self.resolved_roots(base), strict=True):
            if r == Path(r.anchor):
                why = "the whole file system"
            elif r == home or r in home.parents:
                why = "the home folder" if r == home else f"a folder holding the home folder ({home})"
            elif r in system or any(Path(s) in r.parents for s in ("/etc", "/proc", "/sys", "/dev", "/boot")):
                why = "a system folder"
            elif len(r.parts) <= 2:
                why = "a top-level folder"
            else:
                continue
            out.append(f"data root {raw!r} ({r}) is {why}: every file under it (keys, configs, other "
                       "projects) can be read by tools; name the folders that hold your data instead")
        return out

    def rule_for(self, domain: str) -> DomainRule:
        return self.domains.get(domain) or self.domains.get("*") or DomainRule()


class PolicyError(ValueError):
    """A policy file that does not parse or validate; the message says where."""


def bundled_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def parse_policy(text: str, *, source: str = "<string>", name: str | None = None) -> Policy:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"{source}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy must be a mapping, got {type(data).__name__}")
    if name and "name" not in data:
        data["name"] = name
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()
        )
        raise PolicyError(f"{source}: {problems}") from None


def load_policy(ref: str | os.PathLike | None = None) -> Policy:
    """A bundled policy by name (``default``, ``strict``) or a YAML file by path; None = default."""
    ref = os.fspath(ref) if ref is not None else "default"
    p = Path(ref)
    if not p.suffix and (BUNDLED_DIR / f"{ref}.yaml").exists():
        p = BUNDLED_DIR / f"{ref}.yaml"
    if not p.exists():
        raise PolicyError(f"{ref}: no such policy file; bundled policies are {', '.join(bundled_names())}")
    return parse_policy(p.read_text(encoding="utf-8"), source=str(p), name=p.stem)
