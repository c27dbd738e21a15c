"""Routing: which registered tools a request (and each of its steps) is about.

With no LLM configured the agent still plans: the request is split into clauses at sequence words
("profile the pool, then select 2000 like the target") and each clause is scored for every
registered tool and ``none`` by :mod:`agent.classifier` (embeddings + method cues). What the
offline planner does with the scores is :mod:`agent.offline`; how the chosen tools' arguments are
filled from the words is :mod:`agent.arguments`.
"""

from __future__ import annotations

import re

from agent.arguments import ARTIFACT_ID, QUOTED
from tools.contract import ToolSpec

_SEQ = re.compile(
    r"\s*(?:;|,?\s+and\s+then\s+|,?\s+then\s+|,?\s+after\s+that,?\s+|,?\s+afterwards,?\s+|,?\s+followed\s+by\s+|"
    r",?\s+and\s+afterwards\s+|,?\s+once\s+(?:that|done|finished)(?:\s+is\s+done)?,?\s+|\.\s+(?:then|next|after\s+that|"
    r"afterwards|finally),?\s+"
    # "take a sample of 500 and profile it": an "and" whose next words work on what came before
    r"|,?\s+and\s+(?=(?:(?!and\b)[a-z][\w-]*\s+){1,4}(?:it|them|those|these)\b))\s*",
    re.I,
)


def split_clauses(request: str) -> list[str]:
    """The request's steps, split at sequence words ("then", "after that", ";"), and at an "and" whose
    clause points back ("sample 500 and profile them")."""
    return [c.strip(" ,.") for c in _SEQ.split(request) if c and c.strip(" ,.")]


def _mask_quote(m: re.Match[str]) -> str:
    """A quoted statement or query is masked; a quoted title ('BIDS: Balanced Influence-based ...') is kept."""
    words = re.findall(r"[A-Za-z][\w-]*", m.group(0))
    caps = sum(w[0].isupper() for w in words)
    return m.group(0) if words and caps >= 0.6 * len(words) else '"..."'


class Router:
    """Scores of a request (and of each of its clauses) for every registered tool and ``none``."""

    def __init__(self, specs: list[ToolSpec]):
        from agent.classifier import classifier_for

        self.specs = {s.name: s for s in specs}
        self.clf = classifier_for(specs)

    def score_many(self, texts: list[str]) -> list[dict[str, dict[str, float]]]:
        """Quoted text (a query, a fact, a clause to search for) and artifact ids are data, not intent: masked."""
        masked = [ARTIFACT_ID.sub("", QUOTED.sub(_mask_quote, t)) for t in texts]
        return self.clf.score_texts(masked) if self.specs else [{} for _ in texts]

    def scores(self, text: str) -> dict[str, float]:
        """Combined score per label, best first."""
        return {k: v["score"] for k, v in self.score_many([text])[0].items()}

