"""The offline planner's decision: a plan, one clarifying question, or a short off-topic answer.

Given the router's scores (:mod:`agent.router`, :mod:`agent.classifier`) and the arguments read
from the words (:mod:`agent.arguments`) the planner

1. answers off-topic requests in a sentence and calls no tool;
2. splits multi-step requests into clauses and keeps one step per clause that is clearly about a tool;
   a clause that points back at an earlier step's selection ("sample 300 documents, then profile them")
   gets it as its corpus (``"$selection"``; a corpus may name a selection, :mod:`tools.refs`);
3. ranks a single step's candidates by score *and* argument satisfiability: a tool whose required
   arguments the request and thread cannot fill ranks below one that can;
4. completes the plan with prerequisite steps (:mod:`agent.chain`), reusing thread artifacts;
5. asks one question instead of guessing when a required argument is missing or the two best tools
   are nearly tied, naming the tools it is choosing between (they become pending plan steps).

A question is answered in the next message: a tool name picks that tool; any other text is read as
the missing argument, and the original request is planned again with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.arguments import COUNT_FIELDS, extract, fill_args, missing_required, names_field, refers_back
from agent.classifier import NONE, names_tool, only_as_context
from agent.router import Router, split_clauses
from tools.contract import ToolSpec

_SIMILARITY = re.compile(r"\b(?:similar|resembl\w*|matching|closest|close to|look(?:s|ing)? like|more like|in the style of)\b", re.I)
"""Words that say the user compares with something: a selector that needs a target, not a random sample."""
OFFTOPIC_MIN = 0.22
"""A request whose best tool scores below this (and names no tool) is not about curation."""
CLAUSE_MIN = 0.30
"""A clause of a multi-step request adds a step only when its best tool scores at least this."""
TIE_MARGIN = 0.04
"""Two tools closer than this (combined score), neither named, both runnable: ask which one."""
UNSAT_PENALTY = 0.12
"""Subtracted from a tool whose required arguments cannot be filled (it may still win, then we ask)."""
FLIP_MARGIN = 0.10
"""When satisfiability demotes a tool that matched this much better than the runnable one, ask instead."""
NAMED_BONUS = 0.25
"""Added when the request names exactly one tool ("run dsir", "SemDeDup on the pool")."""
MADE_PENALTY = 0.25
"""Subtracted from a tool whose every product the request already names ("trace ... with index index-3f2a..."):
the user has that artifact and wants what uses it."""
CONTEXT_PENALTY = 0.25
"""Taken from a tool the request names only as context ("instead of dsir", "my DSIR picks")."""
CANDIDATES = 4


@dataclass
class Decision:
    kind: Literal["plan", "ask", "none"]
    steps: list[dict[str, Any]] = field(default_factory=list)
    """{"tool", "args"}: the plan; for a question, the plans it is choosing between (pending)."""
    question: str = ""
    choices: list[str] = field(default_factory=list)
    reason: Literal["", "missing", "tie"] = ""
    missing: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    answer: str = ""

    def question_record(self, request: str) -> dict[str, Any]:
        return {"text": self.question, "choices": list(self.choices), "reason": self.reason,
                "missing": list(self.missing), "request": request}


def short_description(spec: ToolSpec) -> str:
    d = re.split(r"(?<=[a-z)])[:.;]\s|\s\(", spec.description, maxsplit=1)[0]
    return d[:90]


def _field_hint(spec: ToolSpec, name: str) -> str:
    f = spec.request_model.model_fields.get(name)
    desc = (f.description or "") if f is not None else ""
    return f"{name} ({desc[:80]})" if desc else name


def clause_reading(clause: str, whole: Any) -> Any:
    """One clause's values, with what the whole request names where the clause names nothing."""
    ex = extract(clause, corpus=whole.corpus, target=whole.target)
    ex.numbers = ex.numbers or whole.numbers
    ex.domains = ex.domains or whole.domains
    ex.seed = ex.seed if ex.seed is not None else whole.seed
    ex.fraction = ex.fraction if ex.fraction is not None else whole.fraction
    ex.tokens = ex.tokens or whole.tokens
    ex.model = ex.model or whole.model
    ex.quoted = ex.quoted or whole.quoted
    ex.thread_corpus, ex.corpus_from_text = whole.thread_corpus, whole.corpus_from_text
    return ex


class OfflinePlanner:
    def __init__(self, specs: dict[str, ToolSpec], router: Router | None = None):
        self.specs = specs
        self.router = router or Router(list(specs.values()))
        from agent.classifier import distinctive_names

        self.distinctive = distinctive_names(list(specs.values()))

    # ---------------------------------------------------------------------------- helpers

    def _args(self, spec: ToolSpec, text: str, clause_ex: Any, artifacts: dict[str, str],
              produced: set[str]) -> dict[str, Any]:
        return fill_args(spec, text, clause_ex, artifacts=artifacts, produced=produced)

    def _complete(self, steps: list[dict[str, Any]], whole: Any, request: str,
                  artifacts: dict[str, str]) -> list[dict[str, Any]]:
        from agent.chain import complete

        def make_args(spec: ToolSpec, produced: set[str]) -> dict[str, Any]:
            return fill_args(spec, request, whole, artifacts=artifacts, produced=produced)

        return complete(steps, self.specs, artifacts=artifacts, make_args=make_args)

    def _missing(self, steps: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
        return [(s["tool"], m) for s in steps if (m := missing_required(self.specs[s["tool"]], s["args"]))]

    def _ask_missing(self, steps: list[dict[str, Any]], miss: list[tuple[str, list[str]]], scores: dict[str, float],
                     choices: list[str]) -> Decision:
        tool, fields = miss[0]
        spec = self.specs[tool]
        final = steps[-1]["tool"] if steps else tool
        what = "; ".join(_field_hint(spec, n) for n in fields[:3])
        via = f" (a step of the {final} plan)" if final != tool else ""
        q = f"To run {tool}{via} I need: {what}. What should I use?"
        if len(choices) > 1:
            q += " Or did you mean " + " / ".join(c for c in choices if c != final) + "?"
        return Decision("ask", steps=steps, question=q, choices=choices, reason="missing", missing=fields,
                        scores=scores)

    # ---------------------------------------------------------------------------- decide

    def decide(self, request: str, *, inputs: dict[str, Any] | None = None, artifacts: dict[str, str] | None = None,
               force: str | None = None) -> Decision:
        inputs = inputs or {}
        artifacts = dict(artifacts or {})
        self._artifacts = artifacts
        clauses = split_clauses(request)
        texts = [request] + (clauses if len(clauses) > 1 else [])
        scored = self.router.score_many(texts)
        whole_scores = {k: v["score"] for k, v in scored[0].items()}
        top_scores = dict(list(whole_scores.items())[:5])
        whole = extract(request, corpus=inputs.get("corpus"), target=inputs.get("target"))
        if inputs.get("k") and not whole.numbers:
            whole.numbers = [int(inputs["k"])]
        if force is not None:
            return self._single_step(request, whole, [force], [], force, whole_scores, artifacts, top_scores)
        tools = [n for n in whole_scores if n != NONE]
        named = [n for n in tools if n in self.distinctive and names_tool(n, request)]
        named = named if len(named) == 1 else []  # "compare DSIR and TSDS against a control": no pick
        best_score = whole_scores.get(tools[0], 0.0) if tools else 0.0
        if not tools or (not named and (next(iter(whole_scores)) == NONE or best_score < OFFTOPIC_MIN)):
            return Decision("none", scores=top_scores)
        whole_scores = self._demote_made(whole_scores, whole.artifact_ids)
        whole_scores = self._demote_context(whole_scores, request)
        tools = [n for n in whole_scores if n != NONE]
        if len(clauses) > 1:
            multi = self._multi_step(request, whole, clauses, scored[1:], artifacts, top_scores)
            if multi is not None:
                return multi
        candidates = named[:1] + [n for n in tools[:CANDIDATES] if n not in named[:1]]
        return self._single_step(request, whole, candidates, named, None, whole_scores, artifacts, top_scores)

    def _multi_step(self, request: str, whole: Any, clauses: list[str], scored: list[dict[str, Any]],
                    artifacts: dict[str, str], top_scores: dict[str, float]) -> Decision | None:
        """One step per clause that is clearly about a tool, in order; None when fewer than two are."""
        chosen: list[tuple[str, str]] = []
        for c, sc in zip(clauses, scored, strict=True):
            cands = [(n, v["score"]) for n, v in sc.items() if n != NONE and not only_as_context(n, c)]
            if not cands:
                continue  # "not just nearest neighbours": the clause says what the user does not want
            named_c = [n for n, _ in cands if names_tool(n, c)]
            name = named_c[0] if named_c else cands[0][0]
            if (named_c or cands[0][1] >= CLAUSE_MIN) and next(iter(sc)) != NONE or named_c:
                if all(name != n for n, _ in chosen):
                    chosen.append((name, c))
        if len(chosen) < 2:
            return None
        from agent.chain import consumer_field, makes

        steps, produced = [], set()
        for name, c in self._by_data_flow(self._fold_own_samples(chosen)):
            spec = self.specs[name]
            args = self._args(spec, c, clause_reading(c, whole), artifacts, produced)
            fld = consumer_field(spec, "selection") if "selection" in produced else None
            if fld and refers_back(c) and extract(c).corpus is None:
                args[fld] = "$selection"  # "sample 300 docs, then profile them": the sample is the corpus
            steps.append({"tool": name, "args": args})
            produced |= makes(spec)
        steps = self._complete(steps, whole, request, artifacts)
        miss = self._missing(steps)
        if miss:
            return self._ask_missing(steps, miss, top_scores, [steps[-1]["tool"]])
        return Decision("plan", steps=steps, scores=top_scores)

    def _single_step(self, request: str, whole: Any, candidates: list[str], named: list[str], force: str | None,
                     whole_scores: dict[str, float], artifacts: dict[str, str],
                     top_scores: dict[str, float]) -> Decision:
        """The best candidate by score and satisfiability, with its prerequisites; or a question."""
        ranked = []
        for name in candidates:
            spec = self.specs[name]
            steps = self._complete([{"tool": name, "args": self._args(spec, request, whole, artifacts, set())}],
                                   whole, request, artifacts)
            miss = self._missing(steps)
            eff = whole_scores.get(name, 0.0) - (UNSAT_PENALTY if miss else 0.0) + (1.0 if name == force else 0.0)
            if name in named:
                eff += NAMED_BONUS
            ranked.append((eff, name, steps, miss))
        ranked, lifted = self._prefer_downstream_selector(ranked)
        by_name = {r[1]: r for r in ranked}
        raw = sorted(ranked, key=lambda r: -whole_scores.get(r[1], 0.0))
        ranked.sort(key=lambda r: -r[0])
        eff, name, steps, miss = ranked[0]
        if len(ranked) > 1 and force is None and not named:
            a, b = raw[0][1], raw[1][1]
            runnable_one = bool(by_name[a][3]) != bool(by_name[b][3])  # what the request fills decides it
            if whole_scores.get(a, 0.0) - whole_scores.get(b, 0.0) < TIE_MARGIN and (
                    not runnable_one or self._nested(by_name[a], by_name[b]) is not None):
                return self._tie(by_name[a], by_name[b], top_scores)
            if eff - ranked[1][0] < TIE_MARGIN and not lifted:
                return self._tie(ranked[0], ranked[1], top_scores)
            wants_target = any("target" in f for _, f in raw[0][3]) and bool(_SIMILARITY.search(request))  # "pick 500 similar examples"
            if miss and not ranked[1][3] and self._nested(ranked[0], ranked[1]) is ranked[1] and \
                    whole_scores.get(name, 0.0) - whole_scores.get(ranked[1][1], 0.0) < 2 * FLIP_MARGIN:
                # "index the corpus for fact tracing": nothing to trace is given, the index is what can run
                return Decision("plan", steps=ranked[1][2], scores=top_scores)
            gap = whole_scores.get(a, 0.0) - whole_scores.get(name, 0.0)
            if raw[0][3] and raw[0][1] != name and (gap > FLIP_MARGIN or wants_target):
                # the request is clearly about a tool it cannot fill: ask for its input, offer the runnable one
                return self._ask_missing(raw[0][2], raw[0][3], top_scores, [a, name])
        if miss:
            choices = [name] + [r[1] for r in ranked[1:3] if r[0] > eff - 3 * TIE_MARGIN]
            return self._ask_missing(steps, miss, top_scores, choices)
        return Decision("plan", steps=steps, scores=top_scores)

    def _tie(self, first: tuple, second: tuple, scores: dict[str, float]) -> Decision:
        """Two tools about equally likely: the plan when one contains the other (:meth:`_nested`), else ask."""
        nested = self._nested(first, second)
        if nested is None:
            return self._ask_tie(first, second, scores)
        return Decision("plan", steps=nested[2], scores=scores)

    def _demote_context(self, scores: dict[str, float], request: str) -> dict[str, float]:
        """Scores (best first) with :data:`CONTEXT_PENALTY` taken from tools the request names only as
        context ("instead of dsir", "DSIR keeps giving me near-duplicates"): their name still pulls the
        embedding toward them."""
        out = {n: v - (CONTEXT_PENALTY if n in self.specs and only_as_context(n, request) else 0.0)
               for n, v in scores.items()}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def _demote_made(self, scores: dict[str, float], named: dict[str, str]) -> dict[str, float]:
        """Scores (best first) with :data:`MADE_PENALTY` taken from tools that only make what the request names."""
        made = set(named)
        if not made:
            return scores
        out = {n: v - (MADE_PENALTY if n in self.specs and self.specs[n].produces
                       and set(self.specs[n].produces) <= made else 0.0) for n, v in scores.items()}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def _nested(self, x: tuple, y: tuple) -> tuple | None:
        """Two tied tools where one's plan runs the other first (trace_fact's plan builds the fact_index), or
        one consumes what the other makes (bids on the influence matrix the request names): the downstream
        tool when the request fills it ("which documents support the fact ..."), else the upstream one alone
        ("index the corpus for fact tracing"); None when neither can run (then ask)."""
        for down, up in ((x, y), (y, x)):
            feeds = set(self.specs[up[1]].produces) & set(self.specs[down[1]].consumes)
            if up[1] in [s["tool"] for s in down[2][:-1]] or feeds:
                if not down[3]:
                    return down
                return up if not up[3] else None
        return None

    def _by_data_flow(self, chosen: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """A clause about the input of an earlier clause's tool goes first: "balance the selection across
        tasks; the influence matrix is at m.npy" loads the matrix, then runs bids on it."""
        out = list(chosen)
        for _ in range(len(out)):
            moved = False
            for i in range(len(out)):
                needs = set(self.specs[out[i][0]].consumes)
                j = next((j for j in range(i + 1, len(out)) if needs & set(self.specs[out[j][0]].produces)
                          and self._provides_input(out[j][1])), None)
                if j is not None:
                    out.insert(i, out.pop(j))
                    moved = True
                    break
            if not moved:
                break
        return out

    @staticmethod
    def _provides_input(clause: str) -> bool:
        """A clause that hands over an input (names an array or artifact: "the matrix is at m.npy"), or at
        least does not work on an earlier result ("..., then score the selection" stays after it)."""
        ex = extract(clause)
        named = bool(ex.artifact_ids) or any(re.search(r"\.(?:npy|npz|parquet)$", p, re.I) for p in ex.paths)
        return named or not refers_back(clause)

    def _fold_own_samples(self, chosen: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """A selection clause that only draws the sample the next tool draws itself is part of that tool's
        clause: "sample 500 docs, rate them with the LLM on readability, then distil" is one prrc_rate (it
        rates a seeded sample of ``sample_size`` and distils to the pool). As a step of its own the sample's
        selection would go unused, and be filed for review as if it were the result."""
        out: list[tuple[str, str]] = []
        for i, (name, clause) in enumerate(chosen):
            if i + 1 < len(chosen) and self._samples_for(name, clause, [n for n, _ in chosen[i + 1:]]):
                nxt, nxt_clause = chosen[i + 1]
                chosen[i + 1] = (nxt, f"{clause}, {nxt_clause}")
                continue
            out.append((name, clause))
        return out

    def _samples_for(self, name: str, clause: str, later: list[str]) -> bool:
        spec, nxt = self.specs[name], self.specs[later[0]]
        used = {k for n in later for k in self.specs[n].consumes}
        own = [n for n in nxt.request_model.model_fields if n in COUNT_FIELDS and n not in ("k", "n")]
        return (spec.family == "selection" and not (set(spec.produces) | {"selection"}) & used
                and any(names_field(clause, n) for n in own))

    def _prefer_downstream_selector(self, ranked: list[tuple]) -> tuple[list[tuple], bool]:
        """A request that names a selection size ("10%", "8,000 examples") for a tool that does not select
        wants the selector that consumes its output: "balance by gradient influence, 10%" is
        influence -> bids, not influence alone. The selector's plan contains the top tool as a step."""
        ranked = sorted(ranked, key=lambda r: -r[0])
        top = ranked[0]
        if self.specs[top[1]].family == "selection":
            return ranked, False
        for i, other in enumerate(ranked[1:], 1):
            spec = self.specs[other[1]]
            final = other[2][-1]["args"] if other[2] else {}
            sized = any(n in final for n in ("k", "fraction", *COUNT_FIELDS) if n in spec.request_model.model_fields)
            feeds = set(self.specs[top[1]].produces) & set(spec.consumes)
            if spec.family == "selection" and sized and feeds and (
                top[1] in [s["tool"] for s in other[2][:-1]] or feeds & set(self._artifacts)
            ):
                lifted = (top[0] + 1e-6, *other[1:])
                return [lifted, *ranked[:i], *ranked[i + 1:]], True
        return ranked, False

    def _ask_tie(self, first: tuple, second: tuple, scores: dict[str, float]) -> Decision:
        _, name, steps, miss = first
        _, name2, steps2, _ = second
        q = (f"Did you mean {name} ({short_description(self.specs[name])}) or {name2} "
             f"({short_description(self.specs[name2])})?")
        if miss:
            q += " Either way I also need: " + "; ".join(_field_hint(self.specs[miss[0][0]], n)
                                                     for n in miss[0][1][:2]) + "."
        return Decision("ask", steps=steps + steps2, question=q, choices=[name, name2], reason="tie",
                        missing=miss[0][1] if miss else [], scores=scores)


def answer_to_question(question: dict[str, Any], reply: str, specs: dict[str, ToolSpec]) -> tuple[str, str | None]:
    """(request to plan, tool to force) for a reply to a pending question."""
    text = reply.strip()
    low = text.lower().strip(" .!'\"`")
    choices = [c for c in question.get("choices") or [] if c in specs]
    picked = next((c for c in choices if low in (c, c.replace("_", " ")) or names_tool(c, text)), None)
    original = question.get("request") or ""
    if picked is not None:
        rest = re.sub(rf"\b{re.escape(picked)}\b|\b{re.escape(picked.replace('_', ' '))}\b", " ", text, flags=re.I)
        rest = re.sub(r"\b(use|run|the|with|please|pls|ok|yes)\b", " ", rest, flags=re.I).strip(" ,.")
        return (f"{original} {rest}".strip(), picked)
    if question.get("reason") == "tie" and low in ("1", "2") and len(choices) >= int(low):
        return (original, choices[int(low) - 1])
    if len(text.split()) > 12:  # a new request, not an answer
        return (text, None)
    missing = [m for m in question.get("missing") or [] if "." not in m and " " not in m]
    if not missing and choices and question.get("reason") == "missing":
        missing = _fields_named_in(question.get("missing") or [], specs[choices[0]])  # "give exactly one of k or ..."
    if question.get("reason") == "missing" and missing and not re.search(
        rf"\b{re.escape(missing[0].replace('_', ' '))}\b|\b{re.escape(missing[0])}\b", text, re.I
    ):
        text = f"{missing[0]}={text}" if re.fullmatch(r"[\d.,]+\s*[kKmM]?", text) else f"{missing[0]} {text}"
    return (f"{original} {text}".strip(), choices[0] if question.get("reason") == "missing" and choices else None)


def _fields_named_in(messages: list[str], spec: ToolSpec) -> list[str]:
    """The request fields a validator's message names, in order ("give exactly one of k (documents) or
    fraction ..." -> ["k", "fraction"]): a bare number answering it goes to the first."""
    text = " ".join(messages)
    found = [(m.start(), n) for n in spec.request_model.model_fields
             if (m := re.search(rf"(?<![\w.]){re.escape(n)}(?![\w.])", text))]
    return [n for _, n in sorted(found)]
