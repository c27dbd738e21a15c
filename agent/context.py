"""Runtime configuration of the agent (LangGraph ``context_schema``): read once, never inside nodes.

``CurateContext.from_env()`` reads ``CURATE_*`` environment variables, then the config file
(:mod:`agent.config`: ``--config``/``$CURATE_CONFIG``, ``./curate.yaml`` or
``~/.config/curate/config.yaml``) for what the environment leaves unset, e.g.::

    llm: {base_url: http://127.0.0.1:8000/v1, model: Qwen/Qwen2.5-7B-Instruct, api_key_env: VLLM_API_KEY}
    engine: ray
    planner: auto
    policy: default
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

PlannerKind = Literal["auto", "llm", "json", "offline"]
EngineKind = Literal["local", "ray"]


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
    engine: EngineKind = field(
        default="local",
        metadata={"description": "where tools that support it run: local (process pool) or ray "
                  "(RAY_ADDRESS, else a local Ray); tools without Ray support run locally"},
    )

    @classmethod
    def from_env(cls, **overrides: Any) -> CurateContext:
        """Environment first, then the config file, then defaults; ``overrides`` (not None) win.

        A bad config file raises :class:`agent.config.ConfigError` naming the file and the field.
        """
        from agent.config import effective

        eff = {var: value for var, (value, _src) in effective().items()}
        values: dict[str, Any] = {
            "base_url": eff.get("CURATE_LLM_BASE_URL"),
            "model": eff.get("CURATE_LLM_MODEL"),
            "api_key": eff.get("CURATE_LLM_API_KEY"),
            "planner": eff.get("CURATE_PLANNER") or "auto",
            "policy": eff.get("CURATE_POLICY") or "default",
            "plan_schema": eff.get("CURATE_PLAN_SCHEMA"),
            "engine": eff.get("CURATE_ENGINE"),
        }
        if eff.get("CURATE_LLM_TIMEOUT"):
            values["request_timeout_s"] = float(eff["CURATE_LLM_TIMEOUT"])
        if eff.get("CURATE_HOME"):
            values["workspace"] = Path(eff["CURATE_HOME"])
        names = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None and k in names})
        if values.get("planner") not in ("auto", "llm", "json", "offline"):
            raise ValueError(f"planner must be auto, llm, json or offline; got {values.get('planner')!r}")
        if values.get("engine") not in (None, "local", "ray"):
            raise ValueError(f"engine must be local or ray; got {values.get('engine')!r} (CURATE_ENGINE)")
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
