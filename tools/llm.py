"""An LLM for tools (``ctx.llm``): an OpenAI-compatible endpoint, JSON answers, cached and counted.

```
answers = ctx.llm.json(prompts, RatingModel, system="You rate documents ...")   # list[LLMAnswer]
good = [a.value for a in answers if a.ok]                                          # never a guess
```

- **Configuration** is the agent's: ``CURATE_TOOL_LLM_BASE_URL`` / ``_MODEL`` / ``_API_KEY`` (so a cheap
  model can rate while a strong one plans), else ``CURATE_LLM_*``, else ``ToolContext(llm_config=...)``
  wins over both. With none, ``ctx.llm`` raises :class:`ResourceUnavailable` saying how to set one.
- **JSON answers** use ``response_format={"type": "json_object"}`` with the schema written into the
  system prompt (llama.cpp's server refuses ``json_schema``; every OpenAI-compatible server takes
  ``json_object``). The reply must parse as one JSON document and validate (pydantic model or JSON
  schema); transport errors are re-sent up to ``max_retries`` times, an invalid reply gets one repair
  round (the model sees its reply and the error), and then the answer is ``ok=False`` with the error.
- **Concurrency**: a batch runs on ``concurrency`` threads; answers come back in prompt order.
- **Cache**: every request (model, messages, parameters, attempt) is keyed by its hash in
  ``<workspace>/cache/llm``, written atomically, so a rerun of the same batch sends nothing.
- **Budget**: every request sent counts into the run's manifest (``llm_calls``); a batch that would
  exceed ``ctx.max_llm_calls`` raises :class:`LLMBudgetExceeded` before anything is sent, and a retry
  that would exceed it stops the batch after the requests in flight (their answers stay cached).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.errors import PolicyDenied, ResourceUnavailable

if TYPE_CHECKING:  # pragma: no cover - the contract imports this module, never the other way round
    from tools.contract import ToolContext

ENV_PREFIXES = ("CURATE_TOOL_LLM_", "CURATE_LLM_")
HOW_TO_CONFIGURE = (
    "set CURATE_TOOL_LLM_BASE_URL (and _MODEL, _API_KEY) or CURATE_LLM_BASE_URL to an OpenAI-compatible "
    "server's /v1 URL, e.g. a llama.cpp `llama-server -m model.gguf --port 8080` at http://127.0.0.1:8080/v1, "
    "or pass ToolContext(llm_config=LLMConfig(base_url=...))"
)
JSON_INSTRUCTION = (
    "Answer with one JSON object only, no prose and no code fences. It must match this JSON schema:\n{schema}"
)
REPAIR = (
    "That reply is not valid: {error}. Reply again with only the corrected JSON object, matching the schema."
)

__all__ = ["LLMAnswer", "LLMBudgetExceeded", "LLMConfig", "ToolLLM", "resolve_config"]


class LLMConfig(BaseModel):
    """An OpenAI-compatible endpoint for tools (``CURATE_TOOL_LLM_*``, else ``CURATE_LLM_*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="the server's /v1 URL, e.g. http://127.0.0.1:8080/v1")
    model: str = Field("default", description="model name the server expects")
    api_key: str = Field("none", description="bearer token; local servers ignore it")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    concurrency: int = Field(4, ge=1, le=256, description="requests in flight at once")
    max_retries: int = Field(2, ge=0, le=10, description="re-sends of a failed or unparsable request")


class LLMBudgetExceeded(PolicyDenied):
    """The run would send more LLM calls than the policy's ``max_llm_calls`` allows."""


class LLMAnswer(BaseModel):
    """One prompt's outcome: ``ok`` with a validated ``value``, or ``ok=False`` with the ``error``."""

    ok: bool
    value: Any = None
    raw: str = ""
    error: str | None = None
    attempts: int = 0
    cached: bool = False


def resolve_config(config: LLMConfig | None = None) -> LLMConfig | None:
    """``config`` if given, else ``CURATE_TOOL_LLM_*``, else ``CURATE_LLM_*``; None when none is set."""
    if config is not None:
        return config
    env = os.environ
    for prefix in ENV_PREFIXES:
        url = env.get(prefix + "BASE_URL", "").strip()
        if url:
            extra: dict[str, Any] = {}
            if env.get(prefix + "CONCURRENCY"):
                extra["concurrency"] = int(env[prefix + "CONCURRENCY"])
            if env.get(prefix + "TIMEOUT"):
                extra["timeout_s"] = float(env[prefix + "TIMEOUT"])
            return LLMConfig(base_url=url, model=env.get(prefix + "MODEL") or "default",
                             api_key=env.get(prefix + "API_KEY") or "none", **extra)
    return None


# ----------------------------------------------------------------------------------- parsing


def _schema_of(schema: dict | type[BaseModel]) -> dict[str, Any]:
    return schema.model_json_schema() if isinstance(schema, type) and issubclass(schema, BaseModel) else schema


def parse_json(raw: str, schema: dict | type[BaseModel]) -> Any:
    """The validated value of a reply, or ValueError saying what is wrong (never a repaired guess)."""
    text = raw.strip()
    if not text:
        raise ValueError("the reply is empty")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            return schema.model_validate(obj)
        except ValidationError as e:
            errs = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'value'}: {x['msg']}" for x in e.errors()[:4])
            raise ValueError(f"does not match the schema ({errs})") from None
    import jsonschema

    try:
        jsonschema.validate(obj, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "value"
        raise ValueError(f"does not match the schema ({where}: {e.message})") from None
    return obj


# ------------------------------------------------------------------------------------ cache


class ResponseCache:
    """Replies by request hash, one small JSON file each, written with temp file + rename."""

    def __init__(self, root: Path):
        self.root = root

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))["raw"]
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, raw: str) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps({"raw": raw}), encoding="utf-8")
        os.replace(tmp, p)


# ----------------------------------------------------------------------------------- client


class ToolLLM:
    """The per-run LLM client behind ``ctx.llm``."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        cache: ResponseCache | None = None,
        max_calls: int | None = None,
        on_call: Callable[[bool], None] | None = None,
    ):
        self.config = config
        self.cache = cache
        self.max_calls = max_calls
        self.calls = 0
        """Requests sent by this client (cache hits excluded)."""
        self.cached = 0
        self._on_call = on_call
        self._lock = threading.Lock()
        self._client: Any = None

    def book(self, sent: int, cached: int) -> None:
        """Charge calls that other clients made for this run (engine tasks with clients of their own)
        to this client's count, so the run's manifest and the policy budget see them."""
        with self._lock:
            self.calls += sent
            self.cached += cached
        if self._on_call is not None:
            for _ in range(sent):
                self._on_call(True)
            for _ in range(cached):
                self._on_call(False)

    @classmethod
    def for_context(cls, ctx: ToolContext) -> ToolLLM:
        config = resolve_config(ctx.llm_config)
        if config is None:
            raise ResourceUnavailable(f"tool {ctx.tool or '(adhoc)'} needs an LLM and none is configured",
                                      hint=HOW_TO_CONFIGURE)
        cache = ResponseCache(ctx.workspace.cache_dir("llm")) if ctx.use_cache else None

        def on_call(sent: bool) -> None:
            info = ctx._run  # noqa: SLF001 - the run record the runtime keeps for this tool run
            if info is not None:
                if sent:
                    info.llm_calls += 1
                else:
                    info.llm_cached += 1

        return cls(config, cache=cache, max_calls=ctx.max_llm_calls, on_call=on_call)

    # -- transport --------------------------------------------------------------------------------

    def _openai(self) -> Any:
        if self._client is None:
            try:
                from openai import OpenAI
            except ImportError as e:  # pragma: no cover - openai is a base dependency
                raise ResourceUnavailable("tools' LLM calls need the 'openai' package",
                                          hint="pip install openai") from e
            self._client = OpenAI(base_url=self.config.base_url, api_key=self.config.api_key,
                                  timeout=self.config.timeout_s, max_retries=0)
        return self._client

    def _reserve(self) -> None:
        with self._lock:
            if self.max_calls is not None and self.calls >= self.max_calls:
                raise LLMBudgetExceeded(
                    f"the run has sent {self.calls} of its {self.max_calls} LLM calls; the next one would exceed "
                    "the budget", where="budgets.max_llm_calls",
                    hint="raise the policy's max_llm_calls, or rerun: answers so far are cached")
            self.calls += 1
        if self._on_call is not None:
            self._on_call(True)

    def _complete(self, messages: list[dict[str, str]], params: dict[str, Any], attempt: int) -> tuple[str, bool]:
        """One request (from the cache when seen before): (reply text, came from the cache)."""
        payload = {"model": self.config.model, "messages": messages, "params": params, "attempt": attempt}
        key = ResponseCache.key(payload)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                with self._lock:
                    self.cached += 1
                if self._on_call is not None:
                    self._on_call(False)
                return hit, True
        self._reserve()
        resp = self._openai().chat.completions.create(model=self.config.model, messages=messages, **params)
        raw = resp.choices[0].message.content or ""
        if self.cache is not None:
            self.cache.put(key, raw)
        return raw, False

    def _send(self, messages: list[dict[str, str]], params: dict[str, Any], first_attempt: int) -> tuple[str, bool, int]:
        """Send with bounded retries on transport errors: (reply, cached, attempts used)."""
        import openai

        last: Exception | None = None
        for i in range(self.config.max_retries + 1):
            try:
                raw, hit = self._complete(messages, params, first_attempt + i)
                return raw, hit, i + 1
            except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError,
                    openai.RateLimitError) as e:
                last = e
            except openai.APIStatusError as e:  # 4xx: retrying cannot help (bad key, model, request)
                raise ResourceUnavailable(
                    f"the LLM server at {self.config.base_url} refused the request ({e.status_code}: {e.message})",
                    hint=f"check the model name {self.config.model!r} and the key; " + HOW_TO_CONFIGURE,
                ) from e
        raise _TransportFailed(f"{type(last).__name__}: {last}", self.config.max_retries + 1)

    # -- one prompt -------------------------------------------------------------------------------

    def _one_json(self, prompt: str, schema: dict | type[BaseModel], system: str | None,
                  params: dict[str, Any]) -> LLMAnswer:
        sys_text = JSON_INSTRUCTION.format(schema=json.dumps(_schema_of(schema), sort_keys=True))
        if system:
            sys_text = f"{system}\n\n{sys_text}"
        messages = [{"role": "system", "content": sys_text}, {"role": "user", "content": prompt}]
        attempts = 0
        try:
            raw, hit, used = self._send(messages, params, 0)
        except _TransportFailed as e:
            return LLMAnswer(ok=False, error=f"no answer from the LLM: {e}", attempts=e.attempts)
        attempts += used
        try:
            return LLMAnswer(ok=True, value=parse_json(raw, schema), raw=raw, attempts=attempts, cached=hit)
        except ValueError as e:
            error = str(e)
        repair = [*messages, {"role": "assistant", "content": raw},
                  {"role": "user", "content": REPAIR.format(error=error)}]
        try:
            raw2, hit2, used = self._send(repair, params, 100)
        except _TransportFailed as e:
            return LLMAnswer(ok=False, raw=raw, error=f"unparsable ({error}); the repair got no answer: {e}",
                             attempts=attempts + e.attempts)
        attempts += used
        try:
            return LLMAnswer(ok=True, value=parse_json(raw2, schema), raw=raw2, attempts=attempts,
                             cached=hit and hit2)
        except ValueError as e:
            return LLMAnswer(ok=False, raw=raw2, error=f"unparsable after one repair: {e} (first reply: {error})",
                             attempts=attempts, cached=hit and hit2)

    def _one_text(self, prompt: str, system: str | None, params: dict[str, Any]) -> LLMAnswer:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        try:
            raw, hit, used = self._send(messages, params, 0)
        except _TransportFailed as e:
            return LLMAnswer(ok=False, error=f"no answer from the LLM: {e}", attempts=e.attempts)
        return LLMAnswer(ok=True, value=raw, raw=raw, attempts=used, cached=hit)

    # -- batches ----------------------------------------------------------------------------------

    def _batch(self, prompts: Sequence[str], one: Callable[[str], LLMAnswer], probe: Callable[[str], str]) -> list[LLMAnswer]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings")
        prompts = list(prompts)
        if self.max_calls is not None:
            todo = sum(1 for p in prompts if self.cache is None or self.cache.get(probe(p)) is None)
            left = self.max_calls - self.calls
            if todo > left:
                raise LLMBudgetExceeded(
                    f"this batch needs {todo} LLM calls ({len(prompts) - todo} of {len(prompts)} prompts are "
                    f"cached) but only {left} of the run's {self.max_calls} are left; nothing was sent",
                    where="budgets.max_llm_calls", hint="raise the policy's max_llm_calls or send fewer prompts")
        if len(prompts) <= 1 or self.config.concurrency == 1:
            return [one(p) for p in prompts]
        with ThreadPoolExecutor(min(self.config.concurrency, len(prompts)), thread_name_prefix="llm") as pool:
            futures = [pool.submit(one, p) for p in prompts]
            out: list[LLMAnswer] = []
            error: BaseException | None = None
            for f in futures:
                try:
                    out.append(f.result())
                except LLMBudgetExceeded as e:  # a retry ran out of budget: finish the rest, then stop
                    error = error or e
            if error is not None:
                raise error
            return out

    def json(
        self,
        prompts: Sequence[str],
        schema: dict | type[BaseModel],
        *,
        system: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
    ) -> list[LLMAnswer]:
        """One validated JSON answer per prompt (``value`` is the model instance or the parsed object)."""
        params = {"temperature": temperature, "max_tokens": max_tokens, "response_format": {"type": "json_object"}}
        sys_text = JSON_INSTRUCTION.format(schema=json.dumps(_schema_of(schema), sort_keys=True))
        if system:
            sys_text = f"{system}\n\n{sys_text}"

        def probe(p: str) -> str:
            return ResponseCache.key({"model": self.config.model, "params": params, "attempt": 0,
                                      "messages": [{"role": "system", "content": sys_text},
                                                   {"role": "user", "content": p}]})

        return self._batch(prompts, lambda p: self._one_json(p, schema, system, params), probe)

    def text(
        self,
        prompts: Sequence[str],
        *,
        system: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
    ) -> list[LLMAnswer]:
        """One free-text answer per prompt (``value`` is the reply)."""
        params = {"temperature": temperature, "max_tokens": max_tokens}

        def probe(p: str) -> str:
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": p}]
            return ResponseCache.key({"model": self.config.model, "messages": msgs, "params": params, "attempt": 0})

        return self._batch(prompts, lambda p: self._one_text(p, system, params), probe)


class _TransportFailed(Exception):
    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts
