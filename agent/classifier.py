"""Which tool a request is about: a classifier over MiniLM request embeddings, plus method cues.

Trained per set of registered tools on their descriptions, their ``SPEC.examples`` and the examples
in ``agent/routing_examples.yaml``, with an off-topic class (``none``) learnt from requests that are
not about curation. Two views of the same embeddings are combined, because each fails differently:
multinomial logistic regression (smooth, generalises across phrasings) and the best cosine to any
single example (sharp on requests close to one example). Keyword cues from each tool's method
vocabulary (paper names, "importance resampling", "optimal transport") add evidence the embedding
model blurs. The trained state (example vectors and weights) is cached on disk by content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tools.contract import ToolSpec

EXAMPLES_FILE = Path(__file__).with_name("routing_examples.yaml")
NONE = "none"
STATE_VERSION = "2"
LR_C = 8.0
"""Inverse regularisation of the logistic regression (examples are few; stronger fits overfit names)."""
LR_WEIGHT, COS_WEIGHT, CUE_WEIGHT = 0.55, 0.45, 0.12
"""score = LR_WEIGHT * p(tool) + COS_WEIGHT * softmax-free cosine term + CUE_WEIGHT * cue hits (capped)."""
COS_FLOOR = 0.25
"""Cosines below this carry no evidence (MiniLM puts unrelated short texts around 0.0-0.25)."""


@cache
def routing_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLES_FILE.read_text(encoding="utf-8")) or {}


def cues_for(name: str) -> list[str]:
    return list((routing_data().get("tools") or {}).get(name, {}).get("cues") or [])


def extra_examples(name: str) -> list[str]:
    if name == NONE:
        return list((routing_data().get(NONE) or {}).get("examples") or [])
    return list((routing_data().get("tools") or {}).get(name, {}).get("examples") or [])


def arg_aliases() -> dict[str, list[str]]:
    return dict(routing_data().get("arg_aliases") or {})


_NEGATED = re.compile(r"(?:instead\s+of|rather\s+than|than|not|no|without|unlike|compared\s+(?:to|with)|"
                      r"vs\.?|versus|last\s+time)[^\w,;.]+(?:\w+[^\w,;.]+){0,2}$", re.I)
"""Words before a tool's name that say it is not wanted, within the same clause ("instead of dsir, use
tsds": tsds is wanted)."""
_CITED = re.compile(r"\s+(?:paper|authors|article)\b", re.I)
_OWN_RESULT_BEFORE = re.compile(r"\b(?:my|our|your|the|those|these)\s+$", re.I)
_OWN_RESULT_AFTER = re.compile(r"\s+(?:picks|selections?|results?|outputs?|subsets?|runs?|rankings?)\b", re.I)
_NARRATED = re.compile(r"\s+(?:keeps|kept|gave|is\s+giving|was\s+giving|returned|has\s+been\s+giving)\b", re.I)


def _not_asked(text: str, start: int, end: int) -> bool:
    """The method named as context, not as the request: "instead of dsir", "the Meta-rater paper",
    "compare against my DSIR picks", "DSIR keeps giving me near-duplicates"."""
    before, after = text[max(0, start - 30): start], text[end: end + 16]
    return bool(_NEGATED.search(before) or _CITED.match(after) or _NARRATED.match(after)
                or (_OWN_RESULT_BEFORE.search(before) and _OWN_RESULT_AFTER.match(after)))
_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _close(a: str, b: str) -> bool:
    """Same word up to a typo: one edit (or a swap of neighbours) for words of 5+ letters, two for 9+."""
    if a == b:
        return True
    if min(len(a), len(b)) < 5 or a[0] != b[0] and a[:2] != b[:2][::-1]:
        return False
    from rapidfuzz.distance import OSA

    return OSA.distance(a, b) <= (2 if min(len(a), len(b)) >= 9 else 1)


@dataclass(frozen=True)
class Cue:
    words: tuple[str, ...]
    pattern: re.Pattern[str]
    exact: bool
    """acronyms (LESS, BIDS) match only in capitals; others also up to a typo"""

    def find(self, text: str, tokens: list[str]) -> bool:
        found = list(self.pattern.finditer(text))
        if found:  # "instead of dsir", "the Meta-rater paper" do not ask for the method
            return any(not _not_asked(text, m.start(), m.end()) for m in found)
        if self.exact or not any(len(w) >= 5 for w in self.words):
            return False
        n = len(self.words)
        return any(all(_close(w, t) for w, t in zip(self.words, tokens[i: i + n], strict=True))
                   for i in range(len(tokens) - n + 1))


def _cue(cue: str) -> Cue:
    parts = [w for w in re.split(r"[\s_-]+", cue.strip()) if w]
    body = r"[\s_-]*".join(re.escape(w) for w in parts)
    exact = len(cue) >= 3 and cue.isupper()
    return Cue(tuple(_tokens(cue)), re.compile(rf"(?<![\w]){body}(?![\w])", 0 if exact else re.I), exact)


@cache
def _compiled_cues(name: str) -> tuple[Cue, ...]:
    cues = [_cue(c) for c in cues_for(name)]
    own = [_cue(name)] + ([_cue(name.replace("_", " "))] if "_" in name else [])
    return tuple(cues + own)


def cue_hits(name: str, text: str) -> int:
    """How many of the tool's method cues (and its own name) the text contains (typos allowed, negations not)."""
    tokens = _tokens(text)
    return sum(1 for c in _compiled_cues(name) if c.find(text, tokens))


@cache
def _vocabulary() -> frozenset[str]:
    """Whole words of the default embedding model's WordPiece vocabulary (everyday English words)."""
    from tools.models import default_model_path

    try:
        vocab = (default_model_path() / "vocab.txt").read_text(encoding="utf-8").split()
    except OSError:
        return frozenset()
    return frozenset(w for w in vocab if w.isalpha())


def distinctive_names(specs: list[ToolSpec]) -> set[str]:
    """Tool names that are not everyday words: naming one ("run dsir", "fact_index") picks it, while
    "maximizing influence" or "a random sample" does not pick ``influence`` / ``sample`` by name."""
    vocab = _vocabulary()
    return {s.name for s in specs if "_" in s.name or (vocab and s.name.lower() not in vocab)}


def names_tool(name: str, text: str) -> bool:
    """The text names the tool itself ("run dsir", "semantic dedup", "meta-rater"), not as "instead of dsir"."""
    tokens = _tokens(text)
    own = _compiled_cues(name)[-2:] if "_" in name else _compiled_cues(name)[-1:]
    return any(c.pattern.search(text) and c.find(text, tokens) for c in own)


def only_as_context(name: str, text: str) -> bool:
    """The text names the tool, but only as context ("not just nearest neighbours", "my DSIR picks")."""
    own = _compiled_cues(name)[-2:] if "_" in name else _compiled_cues(name)[-1:]
    return any(c.pattern.search(text) for c in own) and not names_tool(name, text)


def _cache_dir() -> Path:
    root = os.environ.get("CURATE_ROUTER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "curate", "router")
    return Path(root)


def _encode(texts: list[str]) -> np.ndarray:
    from tools.embed import encode_texts

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(encode_texts(texts, device="cpu", normalize=True), dtype=np.float32)


@dataclass
class ToolClassifier:
    """Scores of a request for each label (registered tools + ``none``)."""

    labels: list[str]
    vectors: np.ndarray
    """(n_examples, d) unit vectors of the training texts."""
    owner: np.ndarray
    """label index of each training text"""
    coef: np.ndarray
    intercept: np.ndarray

    def encode(self, texts: list[str]) -> np.ndarray:
        return _encode(texts)

    def probabilities(self, q: np.ndarray) -> np.ndarray:
        z = q @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def max_cosine(self, q: np.ndarray) -> np.ndarray:
        sims = q @ self.vectors.T
        out = np.full((q.shape[0], len(self.labels)), -1.0, dtype=np.float32)
        for j in range(len(self.labels)):
            cols = self.owner == j
            if cols.any():
                out[:, j] = sims[:, cols].max(axis=1)
        return out

    def score_texts(self, texts: list[str]) -> list[dict[str, dict[str, float]]]:
        """Per text and label: ``p`` (regression), ``cos`` (best example), ``cues``, ``score`` (combined)."""
        q = self.encode(texts)
        probs, cos = self.probabilities(q), self.max_cosine(q)
        out = []
        for i, text in enumerate(texts):
            row: dict[str, dict[str, float]] = {}
            for j, lab in enumerate(self.labels):
                hits = 0 if lab == NONE else cue_hits(lab, text)
                c = max(0.0, float(cos[i, j]) - COS_FLOOR) / (1.0 - COS_FLOOR)
                score = LR_WEIGHT * float(probs[i, j]) + COS_WEIGHT * c + CUE_WEIGHT * min(hits, 3)
                row[lab] = {"p": float(probs[i, j]), "cos": float(cos[i, j]), "cues": float(hits), "score": score}
            out.append(dict(sorted(row.items(), key=lambda kv: -kv[1]["score"])))
        return out


def training_texts(specs: list[ToolSpec]) -> tuple[list[str], list[str]]:
    """(text, label) pairs; an example listed under two tools teaches nothing and is left out."""
    texts: list[str] = []
    labels: list[str] = []
    owners: dict[str, set[str]] = {}
    for s in specs:
        for t in (*s.examples, *extra_examples(s.name)):
            owners.setdefault(t.strip().lower(), set()).add(s.name)
    for s in specs:
        for t in (s.description, *s.examples, *extra_examples(s.name)):
            if t != s.description and len(owners.get(t.strip().lower(), ())) > 1:
                continue
            texts.append(t)
            labels.append(s.name)
    for t in extra_examples(NONE):
        texts.append(t)
        labels.append(NONE)
    return texts, labels


def _fit(vectors: np.ndarray, y: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    if n_labels == 1:
        return np.zeros((1, vectors.shape[1]), dtype=np.float32), np.zeros(1, dtype=np.float32)
    lr = LogisticRegression(C=LR_C, max_iter=2000, class_weight="balanced")
    lr.fit(vectors, y)
    coef = np.zeros((n_labels, vectors.shape[1]), dtype=np.float32)
    icpt = np.full(n_labels, -1e4, dtype=np.float32)  # a label without examples never wins
    if n_labels == 2 or len(lr.classes_) == 2:
        # binary: sklearn keeps one weight vector for classes_[1]
        coef[lr.classes_[1]] = lr.coef_[0]
        icpt[lr.classes_[1]] = lr.intercept_[0]
        icpt[lr.classes_[0]] = 0.0
        coef[lr.classes_[0]] = 0.0
    else:
        coef[lr.classes_] = lr.coef_
        icpt[lr.classes_] = lr.intercept_
    return coef, icpt


_LOCK = threading.Lock()
_MEMO: dict[str, ToolClassifier] = {}


def classifier_for(specs: list[ToolSpec]) -> ToolClassifier:
    """The trained classifier for these tools (memoised per process, cached on disk by content)."""
    from tools.models import model_label

    texts, labels = training_texts(specs)
    label_names = [s.name for s in specs] + [NONE]
    key = hashlib.sha256(json.dumps([STATE_VERSION, model_label(None), LR_C, label_names, texts, labels]).encode())
    digest = key.hexdigest()[:20]
    with _LOCK:
        if digest in _MEMO:
            return _MEMO[digest]
        path = _cache_dir() / f"router-{digest}.npz"
        clf = None
        if path.exists():
            try:
                z = np.load(path, allow_pickle=False)
                clf = ToolClassifier(label_names, z["vectors"], z["owner"], z["coef"], z["intercept"])
            except (OSError, ValueError, KeyError):
                clf = None
        if clf is None:
            vectors = _encode(texts)
            y = np.array([label_names.index(lab) for lab in labels], dtype=np.int64)
            coef, icpt = _fit(vectors, y, len(label_names))
            clf = ToolClassifier(label_names, vectors, y, coef, icpt)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
                np.savez(tmp, vectors=vectors, owner=y, coef=coef, intercept=icpt)
                os.replace(tmp, path)
            except OSError:  # a read-only home: keep the in-memory state
                pass
        _MEMO[digest] = clf
        return clf
