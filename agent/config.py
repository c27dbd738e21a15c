"""The one config file that names the services: the LLM, the tool LLM, the vector store, the engine.

Which file: ``curate --config FILE`` (which sets ``CURATE_CONFIG``), else ``$CURATE_CONFIG``, else
``./curate.yaml`` in the working directory, else ``~/.config/curate/config.yaml``; none is fine (every
setting has a default). The **environment wins over the file**: a ``CURATE_*`` / ``RAY_ADDRESS``
variable that is set is used as is, and the file fills only what the environment leaves unset. So a
shell can override one service for one run without editing the file.

```yaml
llm:                          # the planner's LLM (CURATE_LLM_*): any OpenAI-compatible server
  base_url: http://gpu-box:8000/v1        # e.g. `curate llm serve --engine vllm ...`
  model: Qwen/Qwen2.5-7B-Instruct
  api_key_env: VLLM_API_KEY   # the NAME of the variable holding the key; never the key itself
  timeout_s: 120
tool_llm:                     # optional: the LLM tools call to rate/verify (CURATE_TOOL_LLM_*); default: llm
  base_url: http://gpu-box:8001/v1
  model: Qwen/Qwen2.5-1.5B-Instruct
  concurrency: 16
vector_store:                 # either a Chroma server (CURATE_CHROMA_URL) ...
  host: chroma-box            # or url: http://chroma-box:8001
  port: 8001
# vector_store: {path: /data/chroma}     # ... or an embedded store in that folder (CURATE_CHROMA_PATH)
engine:                       # local (process pool) or ray (CURATE_ENGINE); `engine: ray` also works
  kind: ray
  ray_address: head-node:6379 # RAY_ADDRESS; unset = a local Ray started per process
planner: auto                 # CURATE_PLANNER: auto, llm, json, offline
policy: default               # CURATE_POLICY: bundled policy name or YAML path
workspace: .curate            # CURATE_HOME
```

The file feeds the very settings the tools read (they never import ``agent``): :func:`apply_env`
copies the file's values into the unset environment variables above, once, at an entry point (the
``curate`` command, the chat launcher; call it yourself in a notebook). A bad file is a
:class:`ConfigError` naming the file and the field (``curate.yaml: llm.base_url: ...``).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tools.errors import BadInput

ENV_CONFIG = "CURATE_CONFIG"
SEARCH = (Path("curate.yaml"), Path("~/.config/curate/config.yaml"))
"""Where a config file is looked for when ``CURATE_CONFIG`` is unset (first that exists)."""

ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ConfigError(BadInput):
    """The config file is unreadable or a field in it is wrong (``where`` names file and field)."""


def _http_url(value: str | None, *, what: str = "an http(s) URL") -> str | None:
    if value is None:
        return None
    v = str(value).strip()
    if not v.startswith(("http://", "https://")) or len(v) < 10:
        raise ValueError(f"must be {what}, e.g. http://127.0.0.1:8000/v1; got {value!r}")
    return v.rstrip("/")


class LLMSection(BaseModel):
    """An OpenAI-compatible endpoint (vLLM, llama.cpp's server, a hosted API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="the server's /v1 URL, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, min_length=1, description="model name the server serves; None = 'default'")
    api_key_env: str | None = Field(None, pattern=ENV_VAR_NAME,
                                    description="name of the environment variable holding the API key")
    timeout_s: float | None = Field(None, gt=0, le=3600, description="per-request timeout, seconds")

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise ValueError("a key does not belong in the config file: put it in an environment variable "
                             "and name that variable in api_key_env (e.g. api_key_env: VLLM_API_KEY)")
        return data

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)  # type: ignore[return-value]

    def api_key(self) -> str | None:
        """The key, read from the named environment variable (None when unnamed or unset)."""
        return os.environ.get(self.api_key_env) or None if self.api_key_env else None


class ToolLLMSection(LLMSection):
    """The LLM tools call (a cheaper rater/verifier than the planner's)."""

    concurrency: int | None = Field(None, ge=1, le=256, description="requests in flight at once")


class VectorStoreSection(BaseModel):
    """A Chroma server (``url``, or ``host`` + ``port``) or an embedded store folder (``path``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="a Chroma server, e.g. http://127.0.0.1:8001")
    host: str | None = Field(None, min_length=1, description="a Chroma server's host (with port)")
    port: int = Field(8000, ge=1, le=65535, description="the Chroma server's port")
    ssl: bool = Field(False, description="https to the Chroma server")
    path: Path | None = Field(None, description="an embedded (PersistentClient) store in this folder; "
                              "default <workspace>/chroma")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _http_url(v, what="a Chroma server URL")

    @model_validator(mode="after")
    def _one_kind(self) -> VectorStoreSection:
        if self.url and self.host:
            raise ValueError("give url or host/port, not both")
        if self.path is not None and (self.url or self.host):
            raise ValueError("give either a server (url or host/port) or a local path, not both")
        return self

    def server_url(self) -> str | None:
        if self.url:
            return self.url
        if self.host:
            return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"
        return None


class EngineSection(BaseModel):
    """Where map-style tools run: this machine's process pool, or Ray."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "ray"] = Field("local", description="local (process pool) or ray")
    ray_address: str | None = Field(None, min_length=1,
                                    description="RAY_ADDRESS of a running cluster; None = a local Ray")


class CurateConfig(BaseModel):
    """The whole file. Every section is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    llm: LLMSection | None = None
    tool_llm: ToolLLMSection | None = None
    vector_store: VectorStoreSection | None = None
    engine: EngineSection | None = None
    planner: Literal["auto", "llm", "json", "offline"] | None = None
    policy: str | None = Field(None, min_length=1)
    plan_schema: Literal["strict", "loose"] | None = None
    workspace: Path | None = None

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v


class Loaded(BaseModel):
    """A parsed config and the file it came from (``path`` None: no file, all defaults)."""

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    config: CurateConfig = CurateConfig()


# ------------------------------------------------------------------------------------ loading


def config_path() -> Path | None:
    """The config file in use (see the module docstring), or None. ``$CURATE_CONFIG`` must exist."""
    env = os.environ.get(ENV_CONFIG, "").strip()
    if env:
        return Path(env).expanduser()
    for p in SEARCH:
        p = p.expanduser()
        if p.is_file():
            return p
    return None


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest key of ``loc`` found in the YAML ``text`` (None if not found)."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for name in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        hit = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(name)), None)
        if hit is None:
            break
        line, node = hit[0].start_mark.line + 1, hit[1]
    return line


def _where(path: Path, loc: tuple[Any, ...], line: int | None = None) -> str:
    at = f" (line {line})" if line else ""
    return f"{path}: {'.'.join(str(x) for x in loc) or '(top level)'}{at}"


def yaml_mapping(text: str, where: str, *, expected: str, error: type[BadInput] = BadInput) -> dict[str, Any]:
    """A YAML document that must be a mapping (empty = {}); a syntax error names its line and column."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"not valid YAML ({getattr(e, 'problem', None) or type(e).__name__}{at})", where=where) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise error(f"must be {expected}; got {type(data).__name__}", where=where)
    return data


def parse_config(text: str, path: Path) -> CurateConfig:
    """Validate a config document; the first problem becomes a :class:`ConfigError` naming file and field."""
    data = yaml_mapping(text, str(path), expected="a mapping of sections (llm, tool_llm, vector_store, engine, ...)",
                        error=ConfigError)
    try:
        return CurateConfig.model_validate(data)
    except ValidationError as e:
        errs = e.errors()
        first = errs[0]
        loc = tuple(first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        if msg.startswith("a key does not belong"):
            loc = (*loc, "api_key")
        if first["type"] == "extra_forbidden":
            section = _section_model(loc[:-1])
            msg = f"unknown field (known: {', '.join(section.model_fields)})"
        more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
        got = first.get("input")
        shown = "" if first["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f"; got {got!r}"
        raise ConfigError(f"{msg}{shown if 'got ' not in msg else ''}{more}"[:400], where=_where(path, loc, _line_of(text, loc))) from None


def _section_model(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model at ``loc`` (``()`` = the file, ``("llm",)`` = its llm section)."""
    model: type[BaseModel] = CurateConfig
    for name in loc:
        ann = model.model_fields[str(name)].annotation
        model = next(a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel))
    return model


@cache
def _load_cached(path: str, mtime_ns: int) -> CurateConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not a text file (a YAML config file expected)", where=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read it ({e.strerror})", where=path) from None
    return parse_config(text, p)


def load_config(path: Path | str | None = None) -> Loaded:
    """The config in use (``path``, else :func:`config_path`); defaults when there is no file."""
    p = Path(path).expanduser() if path is not None else config_path()
    if p is None:
        return Loaded()
    p = p.absolute()
    if not p.exists():
        raise ConfigError("no such config file", where=f"{p} ({ENV_CONFIG} or --config)")
    if p.is_dir():
        raise ConfigError("is a folder; pass a YAML config file", where=str(p))
    return Loaded(path=p, config=_load_cached(str(p), p.stat().st_mtime_ns))


# ------------------------------------------------------------------------- the file as env vars


def file_env(cfg: CurateConfig) -> dict[str, str]:
    """The environment variables the file stands for (only those it sets)."""
    out: dict[str, str] = {}

    def llm(prefix: str, sec: LLMSection | None) -> None:
        if sec is None:
            return
        out[prefix + "BASE_URL"] = sec.base_url
        if sec.model:
            out[prefix + "MODEL"] = sec.model
        key = sec.api_key()
        if key:
            out[prefix + "API_KEY"] = key
        if sec.timeout_s:
            out[prefix + "TIMEOUT"] = str(sec.timeout_s)
        if isinstance(sec, ToolLLMSection) and sec.concurrency:
            out[prefix + "CONCURRENCY"] = str(sec.concurrency)

    llm("CURATE_LLM_", cfg.llm)
    llm("CURATE_TOOL_LLM_", cfg.tool_llm)
    vs = cfg.vector_store
    if vs is not None:
        if vs.server_url():
            out["CURATE_CHROMA_URL"] = vs.server_url()  # type: ignore[assignment]
        elif vs.path is not None:
            out["CURATE_CHROMA_PATH"] = str(vs.path.expanduser())
    if cfg.engine is not None:
        out["CURATE_ENGINE"] = cfg.engine.kind
        if cfg.engine.ray_address:
            out["RAY_ADDRESS"] = cfg.engine.ray_address
    for var, value in (("CURATE_PLANNER", cfg.planner), ("CURATE_POLICY", cfg.policy),
                       ("CURATE_PLAN_SCHEMA", cfg.plan_schema), ("CURATE_HOME", cfg.workspace)):
        if value is not None:
            out[var] = str(value)
    return out


ENV_VARS = (
    "CURATE_LLM_BASE_URL", "CURATE_LLM_MODEL", "CURATE_LLM_API_KEY", "CURATE_LLM_TIMEOUT",
    "CURATE_TOOL_LLM_BASE_URL", "CURATE_TOOL_LLM_MODEL", "CURATE_TOOL_LLM_API_KEY", "CURATE_TOOL_LLM_TIMEOUT",
    "CURATE_TOOL_LLM_CONCURRENCY", "CURATE_CHROMA_URL", "CURATE_CHROMA_PATH", "CURATE_ENGINE", "RAY_ADDRESS",
    "CURATE_PLANNER", "CURATE_POLICY", "CURATE_PLAN_SCHEMA", "CURATE_HOME",
)
"""Every variable the file can fill."""

_applied: dict[str, tuple[str, str]] = {}
"""What :func:`apply_env` put into the environment: ``var -> (value, file)`` (so sources stay honest)."""


def effective(loaded: Loaded | None = None) -> dict[str, tuple[str, str]]:
    """``var -> (value, source)`` for every service setting in force; source ``env`` or the file's path."""
    loaded = loaded or load_config()
    from_file = file_env(loaded.config)
    out: dict[str, tuple[str, str]] = {}
    for var in ENV_VARS:
        v = os.environ.get(var, "").strip()
        if v:
            mine = _applied.get(var)
            out[var] = (v, mine[1] if mine and mine[0] == v else "env")
        elif var in from_file:
            out[var] = (from_file[var], str(loaded.path))
    return out


def apply_env(loaded: Loaded | None = None) -> dict[str, str]:
    """Copy the file's settings into the environment variables that are unset; returns what was set."""
    loaded = loaded or load_config()
    added = {var: value for var, value in file_env(loaded.config).items() if not os.environ.get(var, "").strip()}
    os.environ.update(added)
    _applied.update({var: (value, str(loaded.path)) for var, value in added.items()})
    return added
