"""Runtime configuration of the agent (LangGraph ``context_schema``): read once, never inside nodes.

``CurateContext.from_env()`` reads ``CURATE_*`` environment variables, then a config file
(``$CURATE_CONFIG``, ``./curate.yaml`` or ``~/.config/curate/config.yaml``) for what the
environment leaves unset, e.g.::

    llm: {base_url: http://127.0.0.1:8000/v1, model: Qwen/Qwen2.5-7B-Instruct, api_key: EMPTY}
    planner: auto
    policy: default
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

PlannerKind = Literal["auto", "llm", "json", "offline"]


def config_file() -> Path | None:
    env = os.environ.get("CURATE_CONFIG")
    if env:
        return Path(env)
    for p in (Path("curate.yaml"), Path.home() / ".config" / "curate" / "config.yaml"):
        if p.exists():
            return p
    return None


def read_config() -> dict[str, Any]:
    p = config_file()
    if p is None or not p.exists():
        return {}
    import yaml

    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


@dataclass(kw_only=True)
class CurateContext:
    """How one agent run is configured."""

    model: str | None = field(default=None, metadata={"description": "model name served by the endpoint"})
    base_url: str | None = field(default=None, metadata={"description": "OpenAI-compatible base URL (…/v1)"})
    api_key: str | None = field(default=None, metadata={"description": "API key; 'EMPTY' for local servers"})
    planner: PlannerKind = field(
        default="auto",
        metadata={"description": "auto: native tool calls when an LLM is configured, else offline"},
    )
    policy: str = field(default="default", metadata={"description": "bundled policy name or YAML path"})
    workspace: Path = field(
        default_factory=lambda: Path(os.environ.get("CURATE_HOME", ".curate")),
        metadata={"description": "workspace directory (artifacts, proposals, the thread database)"},
    )
    max_steps: int = field(default=12, metadata={"description": "plan/tool rounds per request"})
    plan_schema: Literal["strict", "loose"] = field(
        default="strict",
        metadata={"description": "JSON planner: 'strict' constrains each step's argument names and types "
                  "(fast with vLLM's guided decoding); 'loose' only the tool names (lighter for llama.cpp grammars)"},
    )
    temperature: float = field(default=0.0, metadata={"description": "sampling temperature for planning"})
    request_timeout_s: float = field(default=120.0, metadata={"description": "LLM request timeout"})

    @classmethod
    def from_env(cls, **overrides: Any) -> CurateContext:
        """Environment first, then the config file, then defaults; ``overrides`` (not None) win."""
        cfg = read_config()
        llm = cfg.get("llm") or {}
        env = os.environ
        values: dict[str, Any] = {
            "base_url": env.get("CURATE_LLM_BASE_URL") or llm.get("base_url"),
            "model": env.get("CURATE_LLM_MODEL") or llm.get("model"),
            "api_key": env.get("CURATE_LLM_API_KEY") or llm.get("api_key"),
            "planner": env.get("CURATE_PLANNER") or cfg.get("planner") or "auto",
            "policy": env.get("CURATE_POLICY") or cfg.get("policy") or "default",
            "plan_schema": env.get("CURATE_PLAN_SCHEMA") or cfg.get("plan_schema"),
        }
        timeout = env.get("CURATE_LLM_TIMEOUT") or llm.get("timeout_s")
        if timeout:
            values["request_timeout_s"] = float(timeout)
        ws = env.get("CURATE_HOME") or cfg.get("workspace")
        if ws:
            values["workspace"] = Path(ws)
        names = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None and k in names})
        if values.get("planner") not in ("auto", "llm", "json", "offline"):
            raise ValueError(f"planner must be auto, llm, json or offline; got {values.get('planner')!r}")
        if values.get("workspace") is not None:
            values["workspace"] = Path(values["workspace"])
        return cls(**{k: v for k, v in values.items() if v is not None})

    @property
    def llm_configured(self) -> bool:
        return bool(self.base_url)

    def effective_planner(self) -> Literal["llm", "json", "offline"]:
        if self.planner == "auto":
            return "llm" if self.llm_configured else "offline"
        return self.planner

    def with_(self, **kw: Any) -> CurateContext:
        return replace(self, **kw)


def resolve_workspace(ctx: CurateContext, policy: Any = None) -> Path:
    """The one workspace the graph and every command use: the active policy's ``workspace:`` when it
    sets one, else ``ctx.workspace`` (``CURATE_HOME``, the config file, or ``.curate``).

    ``policy`` is a loaded :class:`policies.schema.Policy`; None loads ``ctx.policy``.
    """
    if policy is None:
        from policies.schema import load_policy

        policy = load_policy(ctx.policy)
    return Path(policy.workspace) if policy.workspace else Path(ctx.workspace)
