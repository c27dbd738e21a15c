"""trace_fact: retrieval recall and F1 on a synthetic fact corpus (oracle verifier), BM25 lower, call
accounting against the formula, the LLM verifier (garbage -> retry -> unverified), the offline
matcher's normalisation, the tool's artifacts and bad input, and a real-data run on LAMA T-REx."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fact_synth  # noqa: E402

from tools.fact_index import core as fic  # noqa: E402
from tools.trace_fact import baselines, core, match  # noqa: E402

# ------------------------------------------------------------------------------------ helpers


class Index:
    """A fact index over texts + vectors, built with the same core functions the tool uses."""

    def __init__(self, texts: list[str], vecs: np.ndarray, max_leaf: int = 40):
        self.texts = texts
        self.tree = fic.recursive_kmeans(vecs, max_leaf=max_leaf, seed=0)
        dt = fic.doc_terms(texts)
        self.labels, _ = fic.ctfidf_labels(self.tree, dt.matrix, dt.vocab, top_n=20)
        self.terms = fic.leaf_term_index(self.tree, dt.matrix)
        self.vocab = {w: i for i, w in enumerate(dt.vocab)}
        self.leaves = self.tree.leaves()

    def term_leaves(self, w: str) -> np.ndarray:
        i = self.vocab.get(w)
        return np.zeros(0, np.int64) if i is None else self.terms.indices[self.terms.indptr[i] : self.terms.indptr[i + 1]]

    def trace(self, facts: list[core.Fact], verifier: core.Verifier, q: np.ndarray | None, **kw) -> core.TraceOutput:  # noqa: ANN003
        return core.trace(facts, [self.labels[int(lf)] for lf in self.leaves], self.tree.centroid[self.leaves],
                          [self.tree.members(int(lf)) for lf in self.leaves],
                          lambda rows: [self.texts[r] for r in rows], verifier, q, term_leaves=self.term_leaves, **kw)


class Oracle(core.Verifier):
    """Rule-based stand-in for the LLM: supports iff the document's generating triple is the fact's."""

    name = "oracle"

    def __init__(self, triple_of: dict[str, tuple]):
        self.triple_of = triple_of
        self.calls = 0

    def verify(self, facts, pairs):  # noqa: ANN001, ANN201
        return [core.Judgement("supports" if self.triple_of[t] == (facts[f].subject, facts[f].relation,
                                                                     facts[f].object) else "rejected", t)
                for f, t in pairs]


@pytest.fixture(scope="module")
def synth():  # noqa: ANN201
    docs, facts = fact_synth.make(100, seed=3)
    texts = [d["text"] for d in docs]
    vecs = fact_synth.hash_vectors(texts)
    q = fact_synth.hash_vectors([f["query"] for f in facts])
    F = [core.make_fact(f["id"], f["query"], f["subject"], f["object"], f["relation"]) for f in facts]
    return docs, facts, texts, Index(texts, vecs), q, F, fact_synth.gold(docs, facts), vecs


# --------------------------------------------------------------------------- synthetic corpus


def test_synthetic_recall_f1_and_bm25_lower(synth) -> None:  # noqa: ANN001
    docs, facts, texts, idx, q, F, gold, vecs = synth
    out = idx.trace(F, Oracle({d["text"]: tuple(d["triple"]) for d in docs}), q)
    cand = [{r.doc for r in out.rows if r.fact == i} for i in range(len(F))]
    cluster_recall = np.mean([len(c & g) / len(g) for c, g in zip(cand, gold, strict=True)])
    assert cluster_recall >= 0.9
    ours = core.macro_prf([out.supporting(i) for i in range(len(F))], gold)
    assert ours["f1"] >= 0.85
    bm = baselines.bm25_topk(texts, [f["query"] for f in facts], 5)
    best_bm25 = max(core.macro_prf([set(x[:k]) for x in bm], gold)["f1"] for k in (1, 2, 3, 5))
    assert best_bm25 < ours["f1"]
    em = baselines.embedding_topk(vecs, q, 5)
    assert max(core.macro_prf([set(x[:k]) for x in em], gold)["f1"] for k in (1, 3, 5)) < ours["f1"]
    # the offline fallback on the same candidates: contradictions and other relations are rejected
    off = idx.trace(F, core.OfflineVerifier(), q)
    assert core.macro_prf([off.supporting(i) for i in range(len(F))], gold)["f1"] >= 0.85
    contra = {i for i, d in enumerate(docs) for f in facts
              if d["triple"][0] == f["subject"] and d["triple"][1] == f["relation"] and d["triple"][2] != f["object"]}
    assert not any(r.doc in contra and r.verdict == "supports" and docs[r.doc]["triple"][2] != F[r.fact].object
                   for r in off.rows)


def test_every_candidate_is_verified_once_and_rows_match_leaves(synth) -> None:  # noqa: ANN001
    docs, facts, texts, idx, q, F, gold, vecs = synth
    out = idx.trace(F, core.OfflineVerifier(), q)
    for f, cs in enumerate(out.candidates):
        want = sorted(int(d) for c in cs for d in idx.tree.members(int(idx.leaves[c.leaf])))
        got = sorted(r.doc for r in out.rows if r.fact == f)
        assert got == want and len(got) == out.pairs_per_fact[f]
        for c in cs:
            assert c.via in ("keywords", "centroid", "keywords+centroid")
            assert (c.keyword_score > 0) or c.via == "centroid"


# ----------------------------------------------------------------------------- LLM verifier


class Answer:
    def __init__(self, ok: bool, value=None, attempts: int = 1, cached: bool = False, error: str | None = None):  # noqa: ANN001
        self.ok, self.value, self.attempts, self.cached, self.error = ok, value, attempts, cached, error


def _items(prompt: str) -> list[tuple[str, str]]:
    out = []
    for block in prompt.split("\n[")[0:]:
        if "Fact: " in block and "Document: " in block:
            fact = json.loads(block.split("Fact: ", 1)[1].split("\n", 1)[0])
            doc = json.loads(block.split("Document: ", 1)[1].split("\n\n", 1)[0].split("\n[", 1)[0])
            out.append((fact, doc))
    return out


def oracle_ask(triple_of: dict[str, tuple], fact_of: dict[str, tuple], log: list):  # noqa: ANN201
    def ask(prompts: list[str]) -> list[Answer]:
        log.append(len(prompts))
        res = []
        for p in prompts:
            items = _items(p)
            res.append(Answer(True, {"verdicts": [
                {"item": i + 1, "supports": triple_of[d] == fact_of[f], "span": d if triple_of[d] == fact_of[f] else ""}
                for i, (f, d) in enumerate(items)]}))
        return res

    return ask


def test_call_accounting_shared_batches(synth) -> None:  # noqa: ANN001
    docs, facts, texts, idx, q, F, gold, vecs = synth
    F = F[:12]
    log: list[int] = []
    ask = oracle_ask({d["text"]: tuple(d["triple"]) for d in docs},
                     {f.query: (f.subject, f.relation, f.object) for f in F}, log)
    for b in (7, 10):
        log.clear()
        v = core.LLMVerifier(ask, batch_size=b)
        out = idx.trace(F, v, q[:12])
        p = out.pairs_per_fact
        assert v.calls == core.expected_llm_calls(p, b) == math.ceil(sum(p) / b)
        assert sum(log) == v.batches == v.calls  # one round: every answer valid
        assert core.expected_llm_calls(p, b) <= core.expected_llm_calls(p, b, shared=False) == \
            sum(math.ceil(x / b) for x in p)
        ours = core.macro_prf([out.supporting(i) for i in range(len(F))], gold[:12])
        assert ours["f1"] >= 0.85
        assert all(r.verdict in ("supports", "rejected") for r in out.rows)


def test_llm_garbage_is_retried_then_unverified() -> None:
    facts = [core.make_fact("a", "Ann Lee was born in Paris.", "Ann Lee", "Paris")]
    pairs = [(0, "Ann Lee was born in Paris."), (0, "Ann Lee died in Rome."), (0, "Ann Lee is a painter.")]
    calls = []

    def garbage(prompts: list[str]) -> list[Answer]:
        calls.append(len(prompts))
        return [Answer(False, None, attempts=2, error="unparsable after one repair") for _ in prompts]

    v = core.LLMVerifier(garbage, batch_size=2, max_rounds=2)
    out = v.verify(facts, pairs)
    assert [j.verdict for j in out] == ["unverified"] * 3
    assert all("unparseable" in j.reason for j in out)
    assert calls == [2, 2] and v.calls == 8  # 2 rounds x 2 batches x 2 attempts

    # a "yes" whose span is not in the document, and a missing item: re-asked, then unverified
    def liar(prompts: list[str]) -> list[Answer]:
        return [Answer(True, {"verdicts": [{"item": 1, "supports": True, "span": "Ann Lee was born in Rome"}]})
                for _ in prompts]

    out = core.LLMVerifier(liar, batch_size=3).verify(facts, pairs)
    assert [j.verdict for j in out] == ["unverified"] * 3


def test_parse_verdicts_is_strict() -> None:
    docs = ["Alpha beta gamma.", "Delta."]
    assert core.parse_verdicts({"verdicts": [{"item": 1, "supports": True, "span": "beta  Gamma"},
                                             {"item": 2, "supports": False, "span": ""}]}, docs)[0].verdict == "supports"
    bad = [{"verdicts": "yes"}, [], {"verdicts": [{"item": "1", "supports": True, "span": "Alpha"}]},
           {"verdicts": [{"item": 1, "supports": "yes", "span": "Alpha"}]},
           {"verdicts": [{"item": 1, "supports": True, "span": ""}]},
           {"verdicts": [{"item": 1, "supports": True, "span": "Alpha"}, {"item": 1, "supports": False, "span": ""}]},
           {"verdicts": [{"item": True, "supports": True, "span": "Alpha"}]}]
    for v in bad:
        assert core.parse_verdicts(v, docs)[0] is None, v


def test_llm_verifier_through_the_tool_llm(openai_server, tmp_path) -> None:  # noqa: ANN001
    """The tool's LLM path against a local OpenAI-compatible server: garbage first, then valid JSON."""
    from tools import trace_fact
    from tools.contract import ToolContext
    from tools.llm import LLMConfig

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate([
        "Ann Lee was born in Paris in 1901.", "Ann Lee died in Rome.", "Bob Ray was born in Lyon.",
        "The weather in Paris was mild.", "Ann Lee, a painter, lived in Paris."])]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    np.save(tmp_path / "e.npy", fact_synth.hash_vectors([d["text"] for d in docs]))
    seen = {"verify": 0, "label": 0}

    def responder(messages, params):  # noqa: ANN001, ANN202
        user = messages[-1]["content"]
        if "Documents of one cluster" in user:  # the index's LLM labeller
            seen["label"] += 1
            return json.dumps({"labels": ["people", "places"]})
        seen["verify"] += 1
        if seen["verify"] <= 2:  # garbage, and garbage again for the client's repair turn
            return "yes!! definitely"
        items = _items(user)
        return json.dumps({"verdicts": [{"item": i + 1, "supports": "born in Paris" in d, "span":
                                         "Ann Lee was born in Paris" if "born in Paris" in d else ""}
                                        for i, (_, d) in enumerate(items)]})

    openai_server.responder = responder
    ctx = ToolContext(workspace_dir=tmp_path / ".curate", show_progress=False,
                      llm_config=LLMConfig(base_url=openai_server.url, max_retries=1), max_llm_calls=100)
    res = trace_fact.run({"queries": [{"id": "f", "query": "Ann Lee was born in Paris.", "subject": "Ann Lee",
                                       "object": "Paris"}], "corpus": str(tmp_path / "c.jsonl"),
                          "embeddings": str(tmp_path / "e.npy"), "max_leaf": 3, "batch_size": 10}, ctx)
    # round 1: one call + the client's repair (both garbage); round 2: the re-asked batch, valid
    assert res.verifier == "llm" and res.llm_calls == 3 == seen["verify"]
    from tools.fact_index import load_index

    idx = load_index(res.index, ctx)
    assert seen["label"] == len(idx.tree.leaves()) and all(idx.llm_labels[int(lf)] for lf in idx.tree.leaves())
    t = ctx.workspace.get(res.artifacts["traces"]).table().to_pylist()
    sup = {r["id"] for r in t if r["verdict"] == "supports"}
    assert sup <= {"d0"}
    assert all(r["verdict"] in ("supports", "rejected", "unverified") for r in t)
    assert "LLM, 3 calls of a budget of 100" in res.summary


# ----------------------------------------------------------------------------- offline matcher


@pytest.mark.parametrize("text,subject,obj,ok", [
    ("Paul Mounsey was born in Scotland.", "Paul Mounsey", "Scotland", True),
    ("Scottish-born Paul Mounsey released an album.", "Paul Mounsey", "Scotland", True),
    ("NahooToo is the second album by SCOTTISH musician paul mounsey.", "Paul Mounsey", "Scotland", True),
    ("Yves Mirande was a French screenwriter.", "Yves Mirande", "France", True),
    ("Messmer was a Gaullist politician of France.", "Pierre Messmer", "France", True),
    ("He was born in Alexandra, Victoria.", "He", "Alexandra", True),
    ("Émile Zola lived in Paris.", "Emile Zola", "Paris", True),
    ("The Beatles recorded in Liverpool.", "Beatles", "Liverpool", True),
    ("Arthur Evans was an archaeologist.", "Arthur Evans", "archaeology", True),
    ("Krusty is Jewish.", "Krusty", "Judaism", True),
    ("Paul Mounsey was born in Ireland.", "Paul Mounsey", "Scotland", False),
    ("Paul Simon was born in Scotland.", "Paul Mounsey", "Scotland", False),
    ("They told us about Paris.", "They", "United States", False),
    ("Italy beat France.", "Italian Job", "France", False),
])
def test_offline_matcher(text: str, subject: str, obj: str, ok: bool) -> None:
    m = match.verify_offline(text, subject, obj)
    assert m.supports is ok, (m.reason, m.subject_form, m.object_form)
    if ok:
        assert m.span and m.span in text


def test_offline_span_covers_both_mentions() -> None:
    m = match.verify_offline("In 1960 Allan Peiper was born in Alexandra, Australia.", "Allan Peiper", "Alexandra")
    assert m.span == "Allan Peiper was born in Alexandra"


def test_demonyms_and_aliases() -> None:
    assert {"italian"} <= match.demonyms("Italy") and {"brazilian"} <= match.demonyms("Brazil")
    assert "scottish" in match.demonyms("Scotland") and "finnish" in match.demonyms("Finland")
    assert "french" in match.demonyms("France") and "france" in match.demonyms("French")
    jfa = {a.tokens: a.kind for a in match.aliases("Japan Football Association", partial=True)}
    assert jfa[("jfa",)] == "acronym" and ("association",) not in jfa  # a generic last word is no name
    pm = {a.tokens: a.kind for a in match.aliases("Pierre Messmer", partial=True)}
    assert pm[("messmer",)] == "partial" and ("messmer",) not in {a.tokens for a in match.aliases("Pierre Messmer")}


@pytest.mark.parametrize("text,subject,obj,ok", [
    # a fragment of the subject that is also the object does not count twice
    ("He moved to London in 1990.", "Transport for London", "London", False),
    ("Transport for London runs the buses of London.", "Transport for London", "London", True),
    ("Kidstreet is a Canadian trio from Canada.", "Young Canadians", "Canada", False),
    ("The Athens Messenger is published in Athens.", "Athens County", "Athens", False),
    # the same words are one mention, not two
    ("Venus is the brightest planet.", "Venus", "Venus", False),
    ("Venus was named after the goddess Venus.", "Venus", "Venus", True),
    # a last name that is part of someone else's name is not the subject
    ("Wardell Gray was a jazz saxophonist.", "Glen Gray", "saxophone", False),
    ("By then Gray played the saxophone.", "Glen Gray", "saxophone", True),
    ("Dylan Thomas played the harmonica.", "Bob Dylan", "harmonica", False),
    # ... but middle names, titles and post-nominal letters in between are the subject's
    ("Raymond Leo Flynn was the Mayor of Boston.", "Raymond Flynn", "Boston", True),
    ("Daniel Cardinal DiNardo is an archbishop.", "Daniel DiNardo", "archbishop", True),
    ("Dame Judith Mary Binney DNZM taught in Auckland.", "Judith Binney", "Auckland", True),
    ("The Tracy Morgan Show aired on NBC.", "The Dinah Shore Chevy Show", "NBC", False),  # "The" is no name
    # fragments are names: capitalised; acronyms in capitals and of three letters or more
    ("It aired on CBS at that time.", "Telephone Time", "CBS", False),
    ("The JFA met in Tokyo.", "Japan Football Association", "Tokyo", True),
    ("the jfa met in Tokyo.", "Japan Football Association", "Tokyo", False),
    ("He talked at Paris about it.", "Adolphe Thiers", "Paris", False),
    ("Henry IV was crowned in Rome.", "Innocent VII", "Rome", False),  # no two-letter "IV" of "Innocent VII"
    # no surname after "of"/"for": the place is not the person
    ("The archbishop of Mainz came.", "Adalbert of Mainz", "archbishop", False),
    ("King Manuel I died in Lisbon.", "Manuel I of Portugal", "Lisbon", True),
    # short capitals around a name, joined surnames, derived instrument players
    ("He played for Bayern Munich, a club based in Munich.", "FC Bayern Munich", "Munich", True),
    ("Smith played for Sheffield United in Sheffield.", "Sheffield United F.C.", "Sheffield", True),
    ("Pasqual Maragall was Mayor of Barcelona.", "Pasqual Maragall i Mira", "Barcelona", True),
    # qualifiers: a comma or a spaced parenthesis, and the rest a name of four letters or more
    ("He moved to Alexandra in Victoria.", "Alexandra, Victoria", "Victoria", True),
    ("It reacts with copper and oxygen.", "copper(I) oxide", "oxygen", False),
    ("Nickelodeon gave the go-ahead.", "Go, Diego, Go!", "Nickelodeon", False),
    # short capitals: only before a name, and only two or more single letters after it
    ("CBS Playhouse aired on CBS.", "NFL on CBS", "CBS", False),
    ("60 Minutes aired on CBS.", "60 Minutes II", "CBS", False),
    # an acronym label by its expansion (capitalised words spelling it, joiners between)
    ("Remember WENN aired on American Movie Classics.", "Remember WENN", "AMC", True),
    ("Remember WENN aired on American movie classics.", "Remember WENN", "AMC", False),
    ("The Bank of England Museum is in London.", "BOE", "London", True),
    # the words before a last name must be other words of the name to make it the subject's
    ("A biography of Khan Abdul Ghaffar Khan on Islam.", "Shakib Khan", "Islam", False),
    ("It was created by the cellist Jules Delsart.", "Jules Delsart", "cello", True),
    ("Sloane married the violist Tabea Zimmermann.", "Tabea Zimmermann", "viola", True),
])
def test_offline_matcher_name_rules(text: str, subject: str, obj: str, ok: bool) -> None:
    test_offline_matcher(text, subject, obj, ok)  # the same checks, span included


def test_offline_scores() -> None:
    def score(text: str, subject: str, obj: str, **kw) -> float:  # noqa: ANN003
        return match.verify_offline(text, subject, obj, **kw).score

    assert score("Pierre Messmer was born in Vincennes.", "Pierre Messmer", "Vincennes") == 1.0
    assert score("Messmer was born in Vincennes.", "Pierre Messmer", "Vincennes") == 0.6
    assert score("Messmer was a French politician.", "Pierre Messmer", "France") == pytest.approx(0.54)
    assert score("King Manuel I died in Lisbon.", "Manuel I of Portugal", "Lisbon") == 0.9
    assert score("Beatles fans met in Liverpool.", "The Beatles", "Liverpool") == 1.0  # the article dropped
    assert score("It aired on American Movie Classics.", "It", "AMC") == 0.9
    far = "Pierre Messmer " + "and then " * 11 + "Vincennes"  # 22 words between the two mentions
    assert score(far, "Pierre Messmer", "Vincennes") == 0.8
    # the last resort: one distinctive word of the subject, only when asked
    assert not match.verify_offline("Samson was the bishop.", "Samson of Dol", "bishop").supports
    assert score("Samson was the bishop.", "Samson of Dol", "bishop", last_resort=True) == 0.3
    assert score("The oxides of lime", "calcium oxide", "lime", last_resort=True) == 0.3
    assert not match.verify_offline("It is a type of oxide.", "calcium oxide", "oxygen", last_resort=True).supports
    # a last name that fails the name rules is a word of the subject, as a last resort
    assert score("Former goaltender Jessie Vetter", "Jessica Vetter", "goaltender", last_resort=True) == 0.3
    assert not match.verify_offline("Former goaltender Jessie Vetter", "Jessica Vetter", "goaltender").supports
    # ... but a regnal number after it names someone else
    assert not match.verify_offline("Pope Adrian III was a pope.", "Adrian V", "pope", last_resort=True).supports
    assert score("Pope Adrian was elected pope.", "Adrian V", "pope", last_resort=True) == 0.3


def test_offline_verifier_ranks_within_a_fact() -> None:
    facts = [core.make_fact("a", "Pierre Messmer was born in Vincennes.", "Pierre Messmer", "Vincennes"),
             core.make_fact("b", "Samson of Dol was a bishop.", "Samson of Dol", "bishop")]
    full, last, far = ("Pierre Messmer was born in Vincennes.", "Messmer lived in Vincennes.",
                       "Pierre Messmer " + "and then " * 11 + "Vincennes")
    v = core.OfflineVerifier()
    got = v.verify(facts, [(0, full), (0, last), (0, far), (1, "Samson was the bishop."), (1, "A bishop.")])
    assert [j.verdict for j in got] == ["supports", "rejected", "supports", "supports", "rejected"]
    assert got[1].reason.startswith("weaker evidence (partial subject")
    # alone, the last name is the best evidence the fact has
    assert v.verify(facts, [(0, last)])[0].verdict == "supports"
    # min_evidence_ratio=0 keeps every match; last_resort=False leaves a fact without a match empty
    assert [j.verdict for j in core.OfflineVerifier(min_evidence_ratio=0).verify(facts, [(0, full), (0, last)])] \
        == ["supports", "supports"]
    assert core.OfflineVerifier(last_resort=False).verify(facts, [(1, "Samson was the bishop.")])[0].verdict \
        == "rejected"


@pytest.mark.parametrize("statement,subject,obj", [
    ("Paul Mounsey was born in Scotland.", "Paul Mounsey", "Scotland"),
    ("The native language of Pierre Messmer is French.", "Pierre Messmer", "French"),
    ("Pierre Messmer's native language is French.", "Pierre Messmer", "French"),
    ("gummi candy was created in Germany", "gummi candy", "Germany"),
    ("Iginio Ugo Tarchetti speaks Italian.", "Iginio Ugo Tarchetti", "Italian"),
    ("Blaise Pascal works in the field of mathematics.", "Blaise Pascal", "mathematics"),
])
def test_extract_arguments(statement: str, subject: str, obj: str) -> None:
    assert match.extract_arguments(statement) == (subject, obj)


def test_set_prf_hand_values() -> None:
    assert core.set_prf({1, 2}, {2, 3}) == (0.5, 0.5, 0.5)
    assert core.set_prf(set(), {1}) == (0.0, 0.0, 0.0)
    assert core.set_prf(set(), set()) == (1.0, 1.0, 1.0)
    p, r, f = core.set_prf({1, 2, 3, 4}, {1})
    assert (p, r) == (0.25, 1.0) and f == pytest.approx(0.4)


# ------------------------------------------------------------------------------------ the tool


@pytest.fixture
def synth_files(tmp_path):  # noqa: ANN001, ANN201
    docs, facts = fact_synth.make(25, seed=5)
    docs.append({"id": "dx", "text": "<b>Markup</b> & Ann Lee was born in Paris.", "triple": ("Ann Lee", "born_in",
                                                                                         "Paris")})
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"id": d["id"], "text": d["text"]}) for d in docs))
    np.save(tmp_path / "e.npy", fact_synth.hash_vectors([d["text"] for d in docs]))
    facts.append({"id": "ann", "query": "Ann Lee was born in Paris.", "subject": "Ann Lee", "object": "Paris"})
    (tmp_path / "f.jsonl").write_text("\n".join(json.dumps(f) for f in facts))
    return tmp_path, docs, facts


def test_tool_traces_and_facts_tables(synth_files, ctx) -> None:  # noqa: ANN001
    from tools import trace_fact

    p, docs, facts = synth_files
    args = {"queries": str(p / "f.jsonl"), "corpus": str(p / "c.jsonl"), "embeddings": str(p / "e.npy"),
            "max_leaf": 15, "verifier": "auto"}
    res = trace_fact.run(args, ctx)
    assert res.verifier == "offline" and "fallback" in res.summary and res.llm_calls == 0
    assert res.facts == len(facts) and res.facts_supported >= len(facts) - 2
    t = ctx.workspace.get(res.artifacts["traces"]).table()
    assert {"query_id", "id", "verdict", "span", "cluster", "cluster_path", "reason", "highlight"} <= set(
        t.column_names)
    rows = t.to_pylist()
    ann = [r for r in rows if r["query_id"] == "ann" and r["verdict"] == "supports"]
    assert [r["id"] for r in ann] == ["dx"]
    assert ann[0]["highlight"] == "&lt;b&gt;Markup&lt;/b&gt; &amp; <mark>Ann Lee was born in Paris</mark>."
    assert all(r["reason"] for r in rows if r["verdict"] == "rejected")
    assert all(r["cluster_path"].startswith("0") and r["cluster_path"].endswith(str(r["cluster"])) for r in rows)
    ft = ctx.workspace.get(res.artifacts["facts"]).table().to_pylist()
    assert [r["query_id"] for r in ft] == [f["id"] for f in facts]
    # the index was built first, and is reused (cached) by the next trace
    res2 = trace_fact.run({**args, "queries": [facts[0]["query"]]}, ctx)
    assert res2.index == res.index


def test_no_candidate_cluster_gives_empty_set_and_why(synth_files, ctx) -> None:  # noqa: ANN001
    from tools import trace_fact

    p, _, _ = synth_files
    res = trace_fact.run({"queries": [{"query": "Qwxz Vbnm founded Zzyzx.", "subject": "Qwxz Vbnm",
                                       "object": "Zzyzx"}], "corpus": str(p / "c.jsonl"),
                          "embeddings": str(p / "e.npy"), "max_leaf": 15}, ctx)
    assert res.supporting_docs == 0 and res.per_fact[0].clusters == []
    assert res.per_fact[0].why_empty.startswith("no candidate cluster")


def test_bad_input(synth_files, ctx, tmp_path) -> None:  # noqa: ANN001
    from tools import trace_fact
    from tools.errors import BadInput

    p, _, _ = synth_files
    base = {"corpus": str(p / "c.jsonl"), "embeddings": str(p / "e.npy"), "max_leaf": 15}
    with pytest.raises(BadInput, match="empty fact"):
        trace_fact.run({**base, "queries": ["Ann Lee was born in Paris.", "   "]}, ctx)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "A was born in B."}\n{"query": ""}\n')
    with pytest.raises(BadInput, match="line 2"):
        trace_fact.run({**base, "queries": str(bad)}, ctx)
    bad.write_text('{"query": "A was born in B."}\nnot json\n')
    with pytest.raises(BadInput, match="line 2"):
        trace_fact.run({**base, "queries": str(bad)}, ctx)
    with pytest.raises(BadInput, match="index"):
        trace_fact.run({"queries": ["x y z"]}, ctx)
    (tmp_path / "notext.jsonl").write_text("\n".join(json.dumps({"id": f"d{i}", "body": "x"}) for i in range(4)))
    np.save(tmp_path / "e4.npy", np.eye(4, dtype=np.float32))
    with pytest.raises(BadInput, match="text"):
        trace_fact.run({"queries": ["Ann was born in Paris."], "corpus": str(tmp_path / "notext.jsonl"),
                        "embeddings": str(tmp_path / "e4.npy")}, ctx)


# ------------------------------------------------------------------------------------ real data


def _lama(raw: Path, relations: tuple[str, ...], n_facts: int) -> tuple[list[str], list[core.Fact], list[set[int]]]:
    texts: list[str] = []
    row: dict[str, int] = {}
    facts: list[core.Fact] = []
    gold: list[set[int]] = []
    pats = {}
    for r in relations:
        pp = raw / "trex_facts_pararel" / "patterns" / f"{r}.jsonl"
        pats[r] = [json.loads(x)["pattern"] for x in open(pp, encoding="utf-8") if x.strip()]
    rng = np.random.default_rng(0)
    for r in relations:
        for line in open(raw / "lama_trex_evidence" / f"{r}.jsonl", encoding="utf-8"):
            e = json.loads(line)
            g = set()
            for ev in e["evidences"]:
                t = ev["masked_sentence"].replace("[MASK]", ev["obj_surface"])
                g.add(row.setdefault(t, len(row)))
                if len(texts) < len(row):
                    texts.append(t)
            pat = pats[r][int(rng.integers(len(pats[r])))]
            q = pat.replace("[X]", e["sub_label"]).replace("[Y]", e["obj_label"])
            facts.append(core.make_fact(e["uuid"], q, e["sub_label"], e["obj_label"], r))
            gold.append(g)
    pick = np.sort(rng.choice(len(facts), size=n_facts, replace=False))
    return texts, [facts[i] for i in pick], [gold[i] for i in pick]


def test_real_lama_trex_offline_f1_floor(shared_raw) -> None:  # noqa: ANN001
    """Real facts: FASTTRACK retrieval + the offline verifier over two relations' evidence sentences.

    Measured on this exact setup (P19 + P1412, 80 facts, 2,754 documents, hash vectors, keyword
    retrieval only): F1 0.947, best BM25 top-k 0.827 (k=1). bench/fasttrack.py measures the full
    corpus (28 relations, 1000 facts, MiniLM vectors, centroid retrieval too). The floor 0.90 sits
    between the full matcher (0.947) and the matcher without partial names, demonyms and derived
    forms (0.865 on the same subset), so a broken alias rule fails the test; and ours must beat BM25.
    """
    texts, facts, gold = _lama(shared_raw, ("P19", "P1412"), 80)
    idx = Index(texts, fact_synth.hash_vectors(texts, d=64), max_leaf=100)
    out = idx.trace(facts, core.OfflineVerifier(), None, centroid_top=0)
    ours = core.macro_prf([out.supporting(i) for i in range(len(facts))], gold)
    bm = baselines.bm25_topk(texts, [f.query for f in facts], 3)
    best_bm25 = max(core.macro_prf([set(x[:k]) for x in bm], gold)["f1"] for k in (1, 2, 3))
    assert ours["f1"] >= 0.90, ours
    assert ours["f1"] > best_bm25, (ours, best_bm25)
