"""Argument filling: the values a request names, put into a chosen tool's request fields.

:func:`extract` reads one text (a whole request or one of its clauses) for what it names: paths
(the corpus, a target, files), document counts, fractions, token budgets, a seed, domains, quoted
statements, a model and a document id, with the thread's corpus and target as defaults.
:func:`fill_args` puts those values into one tool's request, finding each field by its *type*
(``tools.refs``: a corpus, an artifact or a path; ``Literal`` choices; counts, fractions, token
budgets, thresholds, texts), never by a list of tool names. Which tools run is decided elsewhere
(:mod:`agent.router`, :mod:`agent.offline`).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Any

from agent.chain import placeholder_kind
from tools.contract import ARTIFACT_KINDS, ToolSpec

_DATA_SUFFIX = r"(?:jsonl|json|parquet|csv|tsv|arrow|npy|npz|txt)(?:\.gz|\.zst)?"
_PATH = re.compile(
    rf"(?<![\w@'\"])((?:~|\.{{1,2}})?/?(?:[\w.*?-]+/)*[\w.*?-]*[\w*?]\.{_DATA_SUFFIX}"
    r"|(?:~|\.{1,2})?/(?:[\w.*?-]+/?)+|(?:[\w.-]+/)+[\w.*?-]*)"
)
_NUM = re.compile(
    r"(?<![\w.\-/])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(k|m|b|bn|thousand|million|billion)?(?![\w.]*\d)(?![\w%])",
    re.I,
)
_PERCENT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:%|percent\b|per\s*cent\b|pct\b)", re.I)
_WORD_FRACTION = {"half": 0.5, "a third": 1 / 3, "one third": 1 / 3, "a quarter": 0.25, "one quarter": 0.25,
                  "a tenth": 0.1, "one tenth": 0.1, "a fifth": 0.2, "one fifth": 0.2}
_SEED = re.compile(r"\bseed\s*(?:=|of|:|is)?\s*(\d+)", re.I)
_TARGET_CUE = re.compile(
    r"(target|like|similar|resembl|match|close to|closer to|reference|towards|toward|against"
    r"|validation|valdiation|\bval\b|dev[- ]set|eval(?:uation)?[- ]set|held[- ]out)"
    r"\W*(?:\w+\W+){0,3}$", re.I)
_EVAL_SET_NAME = re.compile(r"(?:^|[_.-])(?:target|val|valid|validation|dev|eval|heldout)(?:[_.-]|$)", re.I)


def _named_target(raw: str) -> bool:
    """The file's own name says target or evaluation set (not its folder: /mnt/dev/pool.jsonl is a pool)."""
    if "target" in raw.lower():  # targets/qa.jsonl, data/math_target.jsonl
        return True
    name = raw.rstrip("/").rsplit("/", 1)[-1].lower()
    return bool(_EVAL_SET_NAME.search(name)) and not re.search(r"pool|train|corpus", name)
"""A path named like a target or an evaluation set (data/val_web.jsonl): never the pool when a pool is named too."""
_DOMAIN_LIST = re.compile(
    r"\b(?:only|from|in|of|the|keep|drop|exclude|without)\s+(?:the\s+)?"
    r"((?:[a-z_]+)(?:\s*(?:,|and|or)\s*[a-z_]+)*)\s+domains?\b"
    r"|\bdomains?\s*(?:=|:)?\s+((?:[a-z_]+)(?:\s*(?:,|and|or)\s*[a-z_]+)*)"
    r"|\b([a-z_]+)\s+domain\s+only\b",
    re.I,
)
_NOT_DOMAINS = {"all", "each", "every", "the", "these", "those", "other", "both", "per", "across", "of", "by", "any",
                "some", "many", "several", "balanced", "equally", "different", "its", "their", "my", "two", "three",
                "only", "in", "from", "pool", "corpus", "over", "a", "one", "same", "whole", "at", "random", "is",
                "are", "with", "to", "for", "and", "or", "that", "which", "must", "should", "have", "has", "be",
                "proportions", "proportion", "weights", "weight", "shares", "share", "counts", "mix", "mixture",
                "balance", "breakdown", "distribution", "labels", "label", "names", "name", "field", "column"}
"""Words that stand before or after "domain(s)" without naming one ("the domain proportions", "domain weights")."""
_MULT = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "million": 1_000_000, "b": 10**9, "bn": 10**9,
         "billion": 10**9}
QUOTED = re.compile(r"\"([^\"]{3,})\"|“([^”]{3,})”|‘([^’]{3,})’|(?<![\w])'([^']{3,}?)'(?![\w])")
_THAT_CLAUSE = re.compile(
    r"\b(?:says?|said|states?|stated|claims?|claiming|mentions?|(?:teach(?:es)?|taught)(?: the model)?|support(?:s|ing)?|"
    r"evidence|the fact|the claim)\s+(?:that\s+)?(?:for\s+)?(?:the\s+(?:fact|claim)\s+)?(?:that\s+)?"
    r"([^?.!;]{6,}?)\s*(?:[?.!;]|$|,\s*(?:verified|only|please|pls|and)\b)", re.I)
_EARLIER_RESULT = re.compile(
    r"\b(?:them|it|those|these"
    r"|(?:the|this|that)\s+(?:same\s+)?(?:sample|selection|subset|result|results|output|rest|remainder|survivors"
    r"|(?:selected|sampled|picked|chosen|kept|remaining|deduped|deduplicated|filtered)(?:\s+(?:docs?|documents"
    r"|examples|ones|rows|set|pool))?)"
    r"|what'?s\s+left|what\s+(?:is\s+)?(?:left|remains|survived|was\s+kept|got\s+selected))\b",
    re.I,
)
"""Words that point at what an earlier step made: "then profile them", "rate the sample", "on what's left"."""
_NOT_A_STATEMENT = re.compile(
    r"(?:the|this|that|these|those|my|our|a|an|some|any)\s+(?:\w+\s+)?(?:facts?|claims?|statements?|sentences?|"
    r"ones?|things?)(?:\s+(?:above|below|here|there|i\s+gave|you\s+know))?", re.I)
"""A phrase that points at a fact without stating it ("support the fact?"): the planner asks for it."""
_DOC_ID = re.compile(r"\b(?:doc(?:ument)?s?\s*(?:id)?|id)\s*[:=#]?\s*([A-Za-z][\w]*[-_]\d+|\d{2,})\b", re.I)
_ID_LIKE = re.compile(r"\b([a-z][a-z0-9]*-\d{2,})\b")
ARTIFACT_ID = re.compile(rf"\b((?:{'|'.join(sorted(ARTIFACT_KINDS, key=len, reverse=True))})-[0-9a-f]{{6,}})\b")
"""An artifact id the request names (``index-3f2a9c01b7de``): the workspace's ``<kind>-<key>``."""
_NOT_MODELS = {"the", "a", "an", "it", "my", "this", "that", "threshold", "seed", "alpha", "on", "and", "or", "to",
               "for", "with", "of", "in", "from", "at", "by", "as", "then", "so", "into", "over", "we", "you", "rate",
               "rates", "rating", "ratings", "score", "scores", "judge", "rater", "raters", "call", "calls", "model",
               "models", "encoder", "llm", "lm"}
"""Words after "model" / "llm" that are not a model's name ("rate with the llm on four dimensions")."""
_MODEL = re.compile(
    r"\b(?:model|encoder|lm|llm)\s*(?:=|:|is)?\s*([A-Za-z][\w.-]*(?:/[\w.-]+)?)"
    r"|\b(?:with|using|via|under|on|by)\s+(?:the\s+)?(?:model\s+)?([A-Za-z][\w.]*(?:/[\w.-]+)?-[\w.-]+|"
    r"[A-Za-z]+\d[\w.-]*|[A-Z][\w.-]*/[\w.-]+|[a-z][\w.-]*/[\w.-]*\d[\w.-]*)",
)
_COUNT_VERBS = re.compile(
    r"\b(select|selecting|pick|picking|choose|choosing|sample|sampling|keep|keeping|take|taking|grab|draw|get|"
    r"want|need|budget|top|retrieve|return|find|give|subsample|down to|k|n|limit|size)\W*(?:\w+\W+){0,3}$", re.I)
_COUNT_NOUNS = re.compile(r"^\s*(?:\w+\s+){0,2}?(docs?|documents?|examples?|exmaples?|rows?|samples?|items?|records?|"
                          r"texts?|results?|neighbou?rs?|matches|instances|pairs|entries|lines|files|hits)\b", re.I)
_TOKENS_AFTER = re.compile(r"^\s*-?\s*(?:tokens?|tok)\b", re.I)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "stratified": ("balanced", "per domain", "each domain", "every domain", "across domains", "stratif",
                   "same number", "domain proportions"),
    "equal": ("equally", "same number", "equal number", "each domain equally", "equal per domain",
              "documents per domain", "docs per domain", "examples per domain", "from every domain",
              "from each domain"),
    "data_mixing_agent": ("mixing agent", "rl-based", "reinforcement learning"),
    "agent": ("mixing agent", "rl-based", "reinforcement learning", "learned policy"),
}


# ------------------------------------------------------------------------------------ extraction


@dataclass
class Number:
    value: float
    start: int
    end: int
    decimal: bool
    score: int = 0
    tokens: bool = False


@dataclass
class Extracted:
    corpus: str | None = None
    target: str | None = None
    numbers: list[int] = field(default_factory=list)
    """counts (k), best candidate first"""
    seed: int | None = None
    domains: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fraction: float | None = None
    tokens: list[int] = field(default_factory=list)
    decimals: list[float] = field(default_factory=list)
    quoted: list[str] = field(default_factory=list)
    model: str | None = None
    doc_id: str | None = None
    artifact_ids: dict[str, str] = field(default_factory=dict)
    """artifact ids the text names, by kind"""
    thread_corpus: str | None = None
    corpus_from_text: bool = False
    path_spans: list[tuple[str, int]] = field(default_factory=list)
    text: str = ""
    masked: str = ""
    """``text`` with quotes and paths blanked (same offsets): what surrounds the values"""


def parse_number(digits: str, suffix: str | None) -> int:
    value = float(digits.replace(",", ""))
    if suffix:
        value *= _MULT[suffix.lower()]
    return int(round(value))


def _model_like(raw: str) -> bool:
    """``org/name`` without a data suffix that reads as a model name (BAAI/bge-small-en-v1.5)."""
    if raw.startswith(("/", ".", "~")) or raw.endswith("/") or raw.count("/") != 1 or re.search(r"[*?]", raw):
        return False
    if re.search(rf"\.{_DATA_SUFFIX}$", raw, re.I):
        return False
    org, name = raw.split("/")
    return bool(re.search(r"[A-Z]", org) or re.search(r"\d", name) or "-" in name)


_UNIT_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS_WORDS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_NUM_WORD = (rf"(?:(?:{'|'.join(_TENS_WORDS)})(?:[\s-](?:{'|'.join(list(_UNIT_WORDS)[1:10])}))?"
             rf"|{'|'.join(sorted(_UNIT_WORDS, key=len, reverse=True))})")
_SCALE = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 10**9}
_WORD = rf"(?:{_NUM_WORD}|{'|'.join(_SCALE)})"
_SPELLED_RUN = re.compile(  # starts with a number word, or "a"/"an" before a scale ("5 thousand" is _NUM's)
    rf"\b(?:{_NUM_WORD}|(?:a|an)\s+(?:{'|'.join(_SCALE)}))(?:(?:[\s-]+|\s+and\s+){_WORD})*\b", re.I)
_CITATION_BEFORE = re.compile(
    r"(?:\bet\s+al\.?,?|\band\s+others,?|\band\s+colleagues,?|\(|\b[A-Z][a-z]+,"
    r"|\b(?:like|as\s+in|from|see|per|following|by)\s+[A-Z][a-z]+)\s*$")
"""Before a year that cites a paper: "et al.", "and others", "(", "Xie,", "like Xie" (not "Sample 2000")."""


def _run_value(words: str) -> tuple[int, bool]:
    """("two thousand five hundred") -> (2500, True): the value and whether a scale word was in it."""
    total = current = 0
    scaled = False
    for w in re.split(r"[\s-]+", words.lower()):
        if w in ("and",):
            continue
        if w in ("a", "an"):
            current = max(current, 1)
        elif w in _SCALE:
            scaled = True
            current = max(current, 1) * _SCALE[w]
            if _SCALE[w] >= 1000:
                total, current = total + current, 0
        else:
            current += _TENS_WORDS.get(w, _UNIT_WORDS.get(w, 0))
    return total + current, scaled


def spelled_numbers_to_digits(text: str) -> str:
    """"two thousand five hundred docs" -> "2500 docs", "nearest five documents" -> "nearest 5
    documents". Only scaled numbers and numbers before a count noun are rewritten: "one of the tasks"
    stays words."""
    def sub(m: re.Match[str]) -> str:
        value, scaled = _run_value(m.group(0))
        if scaled or (value >= 2 and _COUNT_NOUNS.match(text[m.end():])):
            return str(value)
        return m.group(0)

    return _SPELLED_RUN.sub(sub, text)


def _citation_year(value: float, suffix: str | None, before: str, after: str) -> bool:
    """"Xie et al. 2023", "Liu and others 2024", "(2024)": a year that cites a paper, not a count."""
    return (suffix is None and value.is_integer() and 1900 <= value <= 2039 and not _COUNT_NOUNS.match(after)
            and bool(_CITATION_BEFORE.search(before)))


def _numbers(text: str) -> list[Number]:
    """Every number with a score for how much it reads as a document count ("select 2k docs")."""
    out: list[Number] = []
    for m in _NUM.finditer(text):
        digits, suffix = m.group(1), m.group(2)
        if suffix and suffix.lower() in ("m", "b") and re.match(r"\s*[a-z]", text[m.end():], re.I) and not re.match(
            r"\s*(?:tokens?|docs?|documents?|rows?|examples?)", text[m.end():], re.I
        ) and m.group(0).endswith(" " + suffix):
            suffix = None  # "5 m tall" is metres
        value = float(digits.replace(",", "")) * (_MULT[suffix.lower()] if suffix else 1)
        n = Number(value, m.start(), m.end(), "." in digits and not suffix)
        before, after = text[max(0, m.start() - 40): m.start()], text[m.end(): m.end() + 30]
        if _citation_year(value, suffix, before, after):
            continue
        n.tokens = bool(_TOKENS_AFTER.match(after)) or bool(re.search(r"tokens?\s*(?:budget)?\s*(?:of|=|:|is)?\s*$",
                                                                      before, re.I))
        if re.search(r"\bk\s*=\s*$", before, re.I):
            n.score += 3
        if _COUNT_VERBS.search(before):
            n.score += 1
        if _COUNT_NOUNS.match(after):
            n.score += 1
        if re.search(r"(?:~|about|around|approximately)\s*$", before, re.I) and re.match(r"\s*examples?\s+of", after):
            n.score -= 2
        if re.search(r"\b(?:have|has|had|with|of|from|across|in|into|for)\s+(?:~|about|around)?\s*$", before, re.I):
            n.score -= 1
        out.append(n)
    return out


def _quoted(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) .strip() for m in QUOTED.finditer(text)]


def _path_spans(rest: str) -> list[tuple[str, int]]:
    """Paths in ``rest`` (quotes already blanked) with their offsets; model names and prose slashes skipped."""
    spans = []
    for m in _PATH.finditer(rest):
        raw = m.group(1).rstrip(".,;:)?!")
        if not raw or len(raw) < 3 or (raw.endswith("/") and len(raw) < 3) or _model_like(raw):
            continue
        if re.fullmatch(r"[\d./,]+", raw) or raw.lower() in ("and/or", "w/", "n/a") or re.fullmatch(r"\w+/\w+", raw) and \
                not re.search(r"\.\w+$", raw) and raw.split("/")[0].lower() in ("p_target", "and", "or", "either"):
            continue
        if not re.search(rf"\.{_DATA_SUFFIX}$|[*?]|/$", raw, re.I) and not raw.startswith(("/", ".", "~")) and not re.search(
            r"(?:\b(?:in|from|at|on|under|inside|pool|corpus|dir|directory|folder|path|files?)\W+)$",
            rest[max(0, m.start() - 20): m.start()], re.I
        ):
            continue  # "coding/math/reading" in prose is not a folder
        spans.append((raw, m.start()))
    return spans


def _place_paths(ex: Extracted, rest: str, spans: list[tuple[str, int]]) -> None:
    """Each path is the corpus or the target: by its name (targets/t.jsonl, data/val.jsonl), else by its
    words ("like data/t.jsonl"), else by order."""
    named = [raw for raw, _ in spans if not re.search(r"\.npy$|\.npz$", raw, re.I) and _named_target(raw)]
    by_name = bool(named)
    for raw, start in spans:
        ex.paths.append(raw)
        ex.path_spans.append((raw, start))
        before = rest[max(0, start - 40): start]
        if re.search(r"\.npy$|\.npz$", raw, re.I):
            continue  # arrays: never a corpus or target
        named_target = raw in named if by_name else False
        if (named_target or (not by_name and _TARGET_CUE.search(before))) and ex.target is None:
            ex.target = raw
        elif ex.corpus is None:
            ex.corpus = raw
            ex.corpus_from_text = True
        elif ex.target is None:
            ex.target = raw


def _fraction(rest: str) -> tuple[float | None, str]:
    """A percentage or a word fraction ("15%", "half"), and ``rest`` with a percentage removed."""
    pm = _PERCENT.search(rest)
    if pm:
        return float(pm.group(1)) / 100.0, rest[: pm.start()] + " " + rest[pm.end():]
    low = rest.lower()
    for w, v in _WORD_FRACTION.items():
        if re.search(rf"\b{w}\b", low):
            return v, rest
    return None, rest


def _domains(text: str) -> list[str]:
    out: list[str] = []
    for m in _DOMAIN_LIST.finditer(text):
        words = re.split(r"\s*(?:,|\band\b|\bor\b)\s*", (m.group(1) or m.group(2) or m.group(3) or "").lower())
        for w in words:
            w = w.strip()
            if w and w not in _NOT_DOMAINS and not w.isdigit() and w not in out:
                out.append(w)
    return out


def _model(text: str) -> str | None:
    mm = _MODEL.search(text)
    while mm:
        cand = (mm.group(1) or mm.group(2) or "").rstrip(".,;:")
        explicit = bool(re.match(r"\w+\s*(?:=|:|is\b|named\b|called\b)", text[mm.start():]))
        looks_named = bool(re.search(r"[\d/.-]|[A-Z]", cand))  # gpt2, Qwen/Qwen2.5-0.5B; not "our model certain facts"
        if cand and not re.search(rf"\.{_DATA_SUFFIX}$", cand, re.I) and cand.lower() not in _NOT_MODELS and (
            looks_named or (mm.group(1) and explicit)
        ) and not ARTIFACT_ID.fullmatch(cand):
            return cand
        mm = _MODEL.search(text, mm.start() + 1)  # "encoder model=gpt2": the next keyword may start inside
    return None


def extract(text: str, *, corpus: str | None = None, target: str | None = None) -> Extracted:
    """Paths, counts, fractions, seed, domains, quotes, model and ids named in ``text``; thread defaults."""
    ex = Extracted(text=text, thread_corpus=corpus)
    ex.quoted = _quoted(text)
    rest = text
    for q in ex.quoted:
        rest = rest.replace(q, " " * len(q))  # same length: path offsets stay those of ``text``
    for m in ARTIFACT_ID.finditer(rest):
        ex.artifact_ids.setdefault(m.group(1).split("-", 1)[0], m.group(1))
    rest = ARTIFACT_ID.sub(lambda m: " " * len(m.group(0)), rest)
    _place_paths(ex, rest, _path_spans(rest))
    masked = rest
    for raw in ex.paths:
        rest = rest.replace(raw, " ")
        masked = masked.replace(raw, " " * len(raw))
    ex.masked = masked
    ms = _SEED.search(rest)
    if ms:
        ex.seed = int(ms.group(1))
        rest = rest[: ms.start()] + " " + rest[ms.end():]
    ex.fraction, rest = _fraction(rest)
    rest = spelled_numbers_to_digits(rest)  # quotes are blanked: a quoted statement keeps its words
    nums = _numbers(rest)
    ex.tokens = [int(n.value) for n in nums if n.tokens]
    ex.decimals = [n.value for n in nums if n.decimal]
    counts = [n for n in nums if not n.tokens and not n.decimal and n.value >= 1]
    ex.numbers = [int(n.value) for n in sorted(counts, key=lambda n: -n.score)]
    if ex.fraction is None:
        m = re.search(r"\b(?:keep|top|best|select|retain|fraction|ratio)\s*(?:=|:|of)?\s*(0?\.\d+)\b", rest, re.I)
        if m:
            ex.fraction = float(m.group(1))
    ex.domains = _domains(text)
    ex.model = _model(text)
    md = _DOC_ID.search(rest) or _ID_LIKE.search(rest)
    if md:
        ex.doc_id = md.group(1)
    ex.corpus = ex.corpus or corpus
    ex.target = ex.target or target
    return ex


# --------------------------------------------------------------------------------- field types


def _literal_values(annotation: Any) -> list[str]:
    out: list[str] = []
    for a in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(a) is typing.Literal:
            out += [v for v in typing.get_args(a) if isinstance(v, str)]
        elif typing.get_origin(a) in (list, tuple, set):
            out += _literal_values(typing.get_args(a)[0]) if typing.get_args(a) else []
    return list(dict.fromkeys(out))


def _only_list(annotation: Any) -> bool:
    """A list field that takes no single value (``list[CorpusRef] | None``)."""
    args = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
    if typing.get_origin(annotation) is list:
        return True
    return bool(args) and all(typing.get_origin(a) is list for a in args)


def _is_list(annotation: Any) -> bool:
    return any(typing.get_origin(a) in (list, tuple, set) for a in (annotation, *typing.get_args(annotation)))


def _base_types(annotation: Any) -> set[type]:
    out: set[type] = set()
    for a in (annotation, *typing.get_args(annotation)):
        if isinstance(a, type):
            out.add(a)
        if typing.get_origin(a) is typing.Annotated:
            out |= _base_types(typing.get_args(a)[0])
    return out


def _mentions(text: str, value: str, *, stem: bool = False) -> bool:
    low = text.lower()
    v = value.lower()
    if re.search(rf"\b{re.escape(v.replace('_', ' '))}\b", low) or re.search(rf"\b{re.escape(v)}\b", low) or (
        "_" in v and re.search(rf"\b{re.escape(v.replace('_', '-'))}\b", low)
    ):
        return True
    if stem and len(v) >= 7 and re.search(rf"\b{re.escape(v[:5])}", low):
        return True
    return any(s in low for s in SYNONYMS.get(value, ()))


def _aliases(name: str) -> list[str]:
    from agent.classifier import arg_aliases

    return [name, name.replace("_", " "), *arg_aliases().get(name, [])]


def _near_alias(text: str, name: str, pattern: str) -> re.Match[str] | None:
    """``<alias> [=:|of|is|at] <value>`` or ``<value> <alias>`` for one field."""
    for a in _aliases(name):
        ea = re.escape(a)
        flags = 0 if len(a) == 1 else re.I  # "T=0.7" but not "t" inside words
        m = re.search(rf"(?<![\w]){ea}(?:\s*(?:=|:|<=|≤)|\s+(?:of|is|at|to|has|have|holds?|with|up|most|max|maximum)\b)*"
                      rf"\s*(?:~|about)?\s*({pattern})(?![\w.])", text, flags)
        if m:
            return m
        m = re.search(rf"(?<![\w.])({pattern})\s+{ea}\b", text, flags)
        if m:
            return m
    return None


def names_field(text: str, name: str) -> bool:
    """The text says one of the field's aliases ("sample" for ``sample_size``)."""
    return any(len(a) > 2 and re.search(rf"\b{re.escape(a)}\b", text, re.I) for a in _aliases(name))


def _kind_of_field(name: str, ref: Any) -> str | None:
    kinds = tuple(getattr(ref, "artifact_kinds", ()) or ())
    if kinds:
        return kinds[0]
    stem = name.removesuffix("_id")
    for cand in (stem, stem.rstrip("s"), stem + "s"):
        if cand in ARTIFACT_KINDS:
            return cand
    return None


def _path_for(name: str, ex: Extracted, taken: set[str], *, corpus: bool = False) -> str | None:
    """A path in the text that follows one of the field's aliases (``val data/v.jsonl``); for a corpus
    field never an array (``.npy``: a matrix or vectors, not documents)."""
    for raw, start in ex.path_spans:
        if raw in taken or (corpus and re.search(r"\.(?:npy|npz)$", raw, re.I)):
            continue
        before = (ex.masked or ex.text)[max(0, start - 50): start].lower()
        for a in _aliases(name):
            if len(a) > 2 and re.search(rf"\b{re.escape(a.lower())}\b(?:\W+\w+){{0,2}}\W*$", before):
                return raw
    return None


def _mixture_target(text: str) -> str | None:
    """The domain a mixture should favour: "CPT on code", "targeting legal", "math-heavy"."""
    skip = _NOT_DOMAINS | {"continued", "pretraining", "pre", "cpt", "next", "domains", "it", "this", "continual",
                           "training", "stage", "stages", "tokens", "the", "run", "model", "mix", "mixture"}
    m = re.search(r"\b([a-z]+)-(?:heavy|focused|centric)\b", text, re.I)
    if m and m.group(1).lower() not in skip:
        return m.group(1).lower()
    for m in re.finditer(r"\b(?:targeting|target|towards|on|for|boost(?:ing)?|focus(?:ed)? on|strengthen)\s+"
                         r"(?:the\s+)?([a-z]+)\b", text, re.I):
        if m.group(1).lower() not in skip:
            return m.group(1).lower()
    return None


# --------------------------------------------------------------------------------- filling


COUNT_FIELDS = ("k", "n", "num_docs", "n_docs", "budget_docs", "n_select", "sample_size", "subset_size", "n_samples",
                "num_samples")
"""Integer fields that take the request's document count ("2000 docs", "k=500")."""
QUERY_FIELDS = ("queries", "facts", "claims", "statements", "questions")
"""List fields that take the request's statements (quoted, or "the fact that ...")."""
FRACTION_FIELDS = ("fraction", "frac", "keep_fraction", "ratio", "top_fraction")


class _Filler:
    """One tool's arguments from one reading of the request; a field's value by its type, in this order:
    typed references (corpus, statements, model, artifact or path), seed, domains, ``Literal`` choices,
    counts, token budgets, fractions, other numbers, a mixture's target domain, texts."""

    def __init__(self, spec: ToolSpec, text: str, ex: Extracted, artifacts: dict[str, str], produced: set[str]):
        from tools.refs import ref_fields

        self.spec, self.text, self.ex = spec, text, ex
        self.artifacts, self.produced = artifacts, produced
        self.args: dict[str, Any] = {}
        self.taken: set[str] = set()
        self.fields = spec.request_model.model_fields
        self.refs = ref_fields(spec.request_model)
        corpus_fields = [n for n, r in self.refs.items() if r.kind == "corpus"]
        self.primary = "corpus" if "corpus" in corpus_fields else (corpus_fields[0] if corpus_fields else None)
        self.corpus, self.target = ex.corpus, ex.target
        needs_target = spec.needs_target or ("target" in corpus_fields and self.fields["target"].is_required())
        if needs_target and self.target is None and ex.corpus_from_text and ex.thread_corpus and \
                ex.corpus != ex.thread_corpus:
            self.corpus, self.target = ex.thread_corpus, ex.corpus  # one path named next to a known pool: the target
        self.count_fields = [n for n in self.fields if n in COUNT_FIELDS and int in _base_types(self.fields[n].annotation)]
        takes_two = len(corpus_fields) > 1 or spec.needs_target
        pool_in_words = re.search(r"\b(?:pool|corpus|dataset)\b", ex.masked or text, re.I)
        if not takes_two and ex.target and not ex.corpus_from_text and ex.target in ex.paths and not pool_in_words:
            self.corpus = ex.target  # "embed the target set t.jsonl": the one path named is what this tool reads

    def fill(self) -> dict[str, Any]:
        for name, f in self.fields.items():
            value = self.value(name, f)
            if value is not None:
                self.args[name] = value
        return self.args

    def value(self, name: str, f: Any) -> Any:
        """The value for one field, or None (left out)."""
        ref = self.refs.get(name)
        if ref is not None:
            return self.reference(name, f, ref)
        ann = f.annotation
        types = _base_types(ann)
        if name == "seed":
            return self.ex.seed
        if name == "domains" and _is_list(ann):
            return list(self.ex.domains) or None
        values = _literal_values(ann)
        if values and _is_list(ann):
            return [v for v in values if _mentions(self.text, v, stem=True)] or None
        if values and not (types & {int, float}):
            return self.choice(values, f)
        if name in self.count_fields and int in types:
            return self.count(name)
        if ("token" in name and "budget" in name or name in ("tokens", "total_tokens", "n_tokens")) and (
            int in types or float in types
        ):
            return self.ex.tokens[0] if self.ex.tokens else None
        if name in FRACTION_FIELDS and float in types:
            return self.ex.fraction
        if types & {int, float} and bool not in types:
            m = _near_alias(self.text, name, r"\d+(?:\.\d+)?|\.\d+")
            if not m:
                return None
            v = float(m.group(1))
            return int(v) if int in types and float not in types and v.is_integer() else v
        if name in ("target", "target_domains", "target_domain") and self.spec.family == "mixture" and str in types:
            dom = _mixture_target(self.text)
            return ([dom] if _is_list(ann) else dom) if dom else None
        if str in types and _is_list(ann):
            return self.statements() if name in QUERY_FIELDS else None
        if str in types:
            return self.text_value(name)
        return None

    # -------------------------------------------------------------------------- by kind

    def reference(self, name: str, f: Any, ref: Any) -> Any:
        """A corpus, statements (or a file of them), a model, or an artifact id / path."""
        ex = self.ex
        if ref.kind == "corpus":
            if name == self.primary:
                val = _path_for(name, ex, self.taken, corpus=True) if name != "corpus" else None
                val = val or (self.corpus if self.corpus not in self.taken else ex.thread_corpus)
                if "selection" in self.artifacts and not ex.corpus_from_text and refers_back(self.text, pronouns=False):
                    val = self.artifacts["selection"]  # "profile the sample": the thread's selection is the corpus
            elif name == "target":
                val = self.target
            else:
                val = _path_for(name, ex, self.taken, corpus=True)
                secondary = [n for n, r in self.refs.items() if r.kind == "corpus" and n != self.primary]
                if val is None and self.target not in self.taken and (len(secondary) == 1 or names_field(self.text, name)):
                    val = self.target  # the one other corpus this tool reads (influence's validation set)
            if val:
                self.taken.add(val)
            return ([val] if val and name != self.primary and _only_list(f.annotation) else val) or None
        if name in QUERY_FIELDS and _is_list(f.annotation):
            path = _path_for(name, ex, self.taken) or next(
                (p for p in ex.paths if p not in self.taken and p not in (self.corpus, self.target)
                 and p.endswith(".jsonl") and re.search(r"fact|quer|claim|question", p, re.I)), None)
            return path or self.statements()
        if ref.kind == "model":  # a model name (or a local folder) named in the request
            return ex.model
        kind = _kind_of_field(name, ref)
        path = None
        if kind in ("embeddings", "influence") or name in ("influence", "matrix", "embeddings"):
            path = next((p for p in ex.paths if p not in self.taken and re.search(r"\.(npy|npz)$", p, re.I)), None)
        path = path or _path_for(name, ex, self.taken)
        if path:
            self.taken.add(path)
            return path
        if kind and kind in ex.artifact_ids:  # named in the request: it wins over the thread's
            return ex.artifact_ids[kind]
        if kind and kind in self.artifacts:
            return self.artifacts[kind]
        if kind and kind in self.produced and (f.is_required() or kind in self.spec.consumes):
            return f"${kind}"  # an earlier step of this plan makes it
        return None

    def statements(self) -> list[str] | None:
        said = [m.group(1).strip() for m in _THAT_CLAUSE.finditer(self.text)]
        said = [t for t in said if len(t.split()) >= 3 and not _NOT_A_STATEMENT.fullmatch(t)]
        return self.ex.quoted or said[:1] or None

    def choice(self, values: list[str], f: Any) -> str | None:
        default = f.get_default(call_default_factory=True) if not f.is_required() else None
        hits = [v for v in values if _mentions(self.text, v)]
        hits = [v for v in hits if v != default] or hits  # a named default is kept: it was asked for
        return hits[0] if hits else None

    def count(self, name: str) -> int | None:
        """A count next to the field's own name ("sample of 500"), else the request's document count."""
        own = _near_alias(self.text, name, r"\d[\d,]*(?:\.\d+)?\s*(?:k|m|thousand|million)?") if name not in (
            "k", "n") else None
        if own:
            num = re.match(r"([\d,.]+)\s*(k|m|thousand|million)?", own.group(1).strip())
            return parse_number(num.group(1), num.group(2)) if num else self.ex.numbers[0]
        if self.ex.numbers and not any(a in self.args for a in self.count_fields) and (
            name in ("k", "n") or not any(c in self.fields for c in ("k", "n"))
        ):
            return self.ex.numbers[0]
        return None

    def text_value(self, name: str) -> str | None:
        ex = self.ex
        if name == "model" and ex.model:
            return ex.model
        if name in ("query", "text", "fact", "question") and ex.quoted:
            return ex.quoted[0]
        if name in ("doc_id", "id", "document_id") and ex.doc_id:
            return ex.doc_id
        return None


def refers_back(text: str, *, pronouns: bool = True) -> bool:
    """The clause works on an earlier step's result ("then profile them", "dedup what's left"), not the pool.
    ``pronouns=False``: only words that name the result ("the sample", "the selection", "what's left")."""
    return any(not (m.group(0).lower() in _PRONOUNS and not pronouns) for m in _EARLIER_RESULT.finditer(text))


_PRONOUNS = {"them", "it", "those", "these"}


def fill_args(
    spec: ToolSpec,
    text: str,
    ex: Extracted,
    *,
    artifacts: dict[str, str] | None = None,
    produced: set[str] | None = None,
) -> dict[str, Any]:
    """Arguments for ``spec`` from what the request and the thread name (unknowns left out)."""
    return _Filler(spec, text, ex, artifacts or {}, produced or set()).fill()


def missing_required(spec: ToolSpec, args: dict[str, Any]) -> list[str]:
    """Required fields not filled, plus what the request model's own checks reject (one of ...)."""
    from pydantic import ValidationError

    fields = spec.request_model.model_fields
    missing = [n for n, f in fields.items() if f.is_required() and n not in args]
    if spec.needs_target and not any(n.startswith("target") and args.get(n) for n in fields) and "target" in fields:
        missing.append("target")  # a target-based selector without any target
    if missing:
        return missing
    probe = {k: "placeholder" if placeholder_kind(v) else v for k, v in args.items()}
    try:
        spec.request_model.model_validate(probe)
    except ValidationError as e:
        out = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or err["msg"].removeprefix("Value error, ")
            out.append(loc)
        return out
    return []
