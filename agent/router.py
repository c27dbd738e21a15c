"""The offline planner: a semantic router over the tool texts plus argument extraction.

With no LLM configured the agent still plans: the request is split into clauses ("profile the pool,
then select 2000 like the target"), each clause is matched against every tool's description and
example requests with the default embedding model (MiniLM, cosine), and each chosen tool's
arguments are filled from the request and the thread: corpus and target paths, ``k`` ("20k",
"2,000"), seeds, domains, enum values named in the words, artifact ids of earlier steps.
"""

from __future__ import annotations

import hashlib
import re
import threading
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tools.contract import ARTIFACT_KINDS, ToolSpec

ROUTE_THRESHOLD = 0.45
"""Below this cosine a clause is not routed (the request is not about any tool)."""
CLAUSE_THRESHOLD = 0.5
"""Extra clauses of a multi-step request need at least this much to add a step."""
NAME_BONUS = 0.1
"""Added to a tool's score when the request names it ("run TSDS", "profile the pool")."""

_SPLIT = re.compile(
    r"\s*(?:;|,?\s+and then\s+|,?\s+then\s+|,?\s+after that,?\s+|,?\s+afterwards,?\s+|,?\s+followed by\s+|"
    r"\.\s+(?=[A-Za-z]))\s*",
    re.I,
)
_PATH = re.compile(r"(?<![\w@])((?:~|\.{1,2})?/?(?:[\w.*?-]+/)*[\w.*?-]+\.(?:jsonl|json|parquet|csv|tsv|arrow)(?:\.gz)?"
                   r"|(?:~|\.{1,2})?/(?:[\w.*?-]+/?)+|(?:[\w.-]+/)+[\w.*?-]*)")
_NUM = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(k|m|b|thousand|million|billion)?(?![\w%])", re.I)
_SEED = re.compile(r"\bseed\s*(?:=|of|:)?\s*(\d+)", re.I)
_TARGET_CUE = re.compile(r"(target|like|similar|resembl|match|close to|reference)\W*(?:\w+\W+){0,3}$", re.I)
_DOMAIN_LIST = re.compile(
    r"\b(?:only|from|in|of|the|keep|drop|exclude|without)\s+(?:the\s+)?"
    r"((?:[a-z_]+)(?:\s*(?:,|and|or)\s*[a-z_]+)*)\s+domains?\b"
    r"|\bdomains?\s*(?:=|:)?\s+((?:[a-z_]+)(?:\s*(?:,|and|or)\s*[a-z_]+)*)",
    re.I,
)
_NOT_DOMAINS = {"all", "each", "every", "the", "these", "those", "other", "both", "per", "across", "of", "by", "any",
                "some", "many", "several", "balanced", "equally", "different", "its", "their", "my", "two", "three"}
_MULT = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "million": 1_000_000, "b": 10**9, "billion": 10**9}
SYNONYMS: dict[str, tuple[str, ...]] = {
    "stratified": ("balanced", "per domain", "each domain", "across domains", "stratif"),
    "equal": ("equally", "same number", "equal number", "each domain equally"),
}


# ------------------------------------------------------------------------------------ routing


_MODEL_LOCK = threading.Lock()
_MODEL: Any = None
_TEXT_CACHE: dict[str, np.ndarray] = {}


def embedder() -> Any:
    """The default sentence-transformers model, loaded once per process (CPU; offline)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            from sentence_transformers import SentenceTransformer

            from tools.models import resolve_embedding_model

            _MODEL = SentenceTransformer(resolve_embedding_model(None), device="cpu")
        return _MODEL


def encode(texts: list[str]) -> np.ndarray:
    return np.asarray(embedder().encode(texts, normalize_embeddings=True, batch_size=64, show_progress_bar=False))


def tool_texts(spec: ToolSpec) -> list[str]:
    return [spec.description, *spec.examples]


class Router:
    """Cosine similarity of a request to each tool's description and example requests."""

    def __init__(self, specs: list[ToolSpec]):
        self.specs = {s.name: s for s in specs}
        texts: list[str] = []
        owner: list[str] = []
        for s in specs:
            for t in tool_texts(s):
                texts.append(t)
                owner.append(s.name)
        key = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()
        if key not in _TEXT_CACHE:  # encoded tool texts are cached per process by content
            _TEXT_CACHE[key] = encode(texts) if texts else np.zeros((0, 384), dtype=np.float32)
        self.matrix = _TEXT_CACHE[key]
        self.owner = np.array(owner)

    def scores(self, text: str) -> dict[str, float]:
        if not self.specs:
            return {}
        q = encode([text])[0]
        sims = self.matrix @ q
        out: dict[str, float] = {}
        low = text.lower()
        for name in self.specs:
            named = re.search(rf"\b{re.escape(name.replace('_', ' '))}\b|\b{re.escape(name)}\b", low)
            out[name] = float(sims[self.owner == name].max()) + (NAME_BONUS if named else 0.0)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def route(self, request: str) -> tuple[list[tuple[str, str, float]], tuple[str, float]]:
        """Tools for the request, in order, as (tool, clause, score); plus the best overall match."""
        clauses = [c.strip(" ,.") for c in _SPLIT.split(request) if c and c.strip(" ,.")]
        whole = self.scores(request)
        best = next(iter(whole.items()), ("", 0.0))
        chosen: list[tuple[str, str, float]] = []
        if len(clauses) > 1:
            for c in clauses:
                sc = self.scores(c)
                if not sc:
                    continue
                name, s = next(iter(sc.items()))
                if s >= CLAUSE_THRESHOLD and all(name != n for n, _, _ in chosen):
                    chosen.append((name, c, s))
        if not chosen and best[1] >= ROUTE_THRESHOLD:
            chosen = [(best[0], request, best[1])]
        return chosen, best


# ------------------------------------------------------------------------- argument extraction


@dataclass
class Extracted:
    corpus: str | None = None
    target: str | None = None
    numbers: list[int] = field(default_factory=list)
    seed: int | None = None
    domains: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def parse_number(digits: str, suffix: str | None) -> int:
    value = float(digits.replace(",", ""))
    if suffix:
        value *= _MULT[suffix.lower()]
    return int(round(value))


def extract(text: str, *, corpus: str | None = None, target: str | None = None) -> Extracted:
    """Paths, counts, seed and domains named in ``text``; thread defaults for corpus/target."""
    ex = Extracted()
    rest = text
    for m in _PATH.finditer(text):
        raw = m.group(1).rstrip(".,;:)")
        if not raw or raw.endswith("/") and len(raw) < 2:
            continue
        ex.paths.append(raw)
        before = text[max(0, m.start() - 40): m.start()]
        if ("target" in raw.lower() or _TARGET_CUE.search(before)) and ex.target is None:
            ex.target = raw
        elif ex.corpus is None:
            ex.corpus = raw
        elif ex.target is None:
            ex.target = raw
        rest = rest.replace(m.group(1), " ")
    ms = _SEED.search(rest)
    if ms:
        ex.seed = int(ms.group(1))
        rest = rest[: ms.start()] + " " + rest[ms.end():]
    ex.numbers = [parse_number(m.group(1), m.group(2)) for m in _NUM.finditer(rest)]
    for m in _DOMAIN_LIST.finditer(text):
        words = re.split(r"\s*(?:,|\band\b|\bor\b)\s*", (m.group(1) or m.group(2) or "").lower())
        for w in words:
            w = w.strip()
            if w and w not in _NOT_DOMAINS and not w.isdigit() and w not in ex.domains:
                ex.domains.append(w)
    ex.corpus = ex.corpus or corpus
    ex.target = ex.target or target
    return ex


def _literal_values(annotation: Any) -> list[str]:
    out: list[str] = []
    for a in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(a) is typing.Literal:
            out += [v for v in typing.get_args(a) if isinstance(v, str)]
    return out


def _mentions(text: str, value: str) -> bool:
    low = text.lower()
    if re.search(rf"\b{re.escape(value.lower().replace('_', ' '))}\b", low) or re.search(
        rf"\b{re.escape(value.lower())}\b", low
    ):
        return True
    return any(s in low for s in SYNONYMS.get(value, ()))


def fill_args(
    spec: ToolSpec,
    text: str,
    ex: Extracted,
    *,
    artifacts: dict[str, str] | None = None,
    produced: set[str] | None = None,
) -> dict[str, Any]:
    """Arguments for ``spec`` from what the request and the thread name (unknowns left out)."""
    artifacts = artifacts or {}
    args: dict[str, Any] = {}
    fields = spec.request_model.model_fields
    count_used = False
    for name, f in fields.items():
        ann = str(f.annotation)
        if name == "corpus" or (name in ("pool", "data", "dataset") and "CorpusSpec" in ann):
            if ex.corpus:
                args[name] = ex.corpus
        elif name == "target" or (name.startswith("target") and "CorpusSpec" in ann):
            if ex.target:
                args[name] = ex.target
        elif name in ("k", "n", "num_docs", "n_docs", "budget_docs") and ex.numbers and not count_used:
            args[name] = ex.numbers[0]
            count_used = True
        elif name == "seed" and ex.seed is not None:
            args[name] = ex.seed
        elif name == "domains" and ex.domains:
            args[name] = list(ex.domains)
        elif name in ARTIFACT_KINDS or name.rstrip("s") in ARTIFACT_KINDS or name.endswith("_id"):
            kind = name.removesuffix("_id")
            kind = kind if kind in ARTIFACT_KINDS else kind.rstrip("s") if kind.rstrip("s") in ARTIFACT_KINDS else kind
            if kind in artifacts:
                args[name] = artifacts[kind]
            elif produced and kind in produced and f.is_required():
                args[name] = f"${kind}"
        else:
            values = _literal_values(f.annotation)
            default = f.default if not f.is_required() else None
            hits = [v for v in values if v != default and _mentions(text, v)]
            if hits:
                args[name] = hits[0]
    return args


def missing_required(spec: ToolSpec, args: dict[str, Any]) -> list[str]:
    return [n for n, f in spec.request_model.model_fields.items() if f.is_required() and n not in args]
