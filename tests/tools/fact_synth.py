"""A synthetic fact corpus: triples rendered with paraphrase templates, plus distractors.

Distractors per subject: the same subject with another relation, the same relation with another object
(other subjects' facts), and contradictions (the same subject and relation with a different object).
Each document records the triple it expresses, which the oracle verifier reads.
"""

from __future__ import annotations

import numpy as np

SYL = ["ka", "lo", "mi", "ren", "dus", "vel", "tor", "an", "bri", "sel", "mar", "qui", "zen", "pol", "gar", "hu"]
CITIES = ["Paris", "Lyon", "Turin", "Porto", "Ghent", "Graz", "Krakow", "Malmo", "Bergen", "Split", "Cork",
          "Leeds", "Basel", "Bonn", "Seville", "Bilbao", "Tartu", "Varna", "Pilsen", "Lille"]
JOBS = ["painter", "chemist", "sculptor", "novelist", "architect", "pianist", "surgeon", "botanist", "lawyer",
        "astronomer", "engineer", "poet"]
CLUBS = ["Rovers", "Athletic", "Wanderers", "United", "Albion", "Harriers", "Corinthians", "Rangers"]
TEMPLATES = {
    "born_in": ["{s} was born in {o}.", "{o}-born {s} grew up near the river.", "{s} is a native of {o}.",
                "The birthplace of {s} is {o}.", "Born in {o}, {s} later moved abroad."],
    "died_in": ["{s} died in {o}.", "{s} passed away in {o} after a long illness.", "{o} is where {s} died.",
                "The death of {s} occurred in {o}."],
    "occupation": ["{s} worked as a {o}.", "{s} was a well known {o}.", "By profession {s} was a {o}.",
                   "The {o} {s} exhibited widely."],
    "plays_for": ["{s} plays for {o}.", "{s} signed a contract with {o}.", "{o} fielded {s} in every match.",
                  "{s} is a player of {o}."],
}
OBJECTS = {"born_in": CITIES, "died_in": CITIES, "occupation": JOBS, "plays_for": CLUBS}


def _name(rng: np.random.Generator) -> str:
    def word() -> str:
        return "".join(rng.choice(SYL, size=int(rng.integers(2, 4)))).capitalize()

    return f"{word()} {word()}"


def make(n_subjects: int = 80, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(documents, facts). Documents: id, text, triple (s, r, o). Facts: id, query, subject, relation, object."""
    rng = np.random.default_rng(seed)
    names: list[str] = []
    while len(names) < n_subjects:
        n = _name(rng)
        if n not in names:
            names.append(n)
    docs: list[dict] = []
    facts: list[dict] = []
    rels = list(TEMPLATES)
    for si, s in enumerate(names):
        r_main, r_other = rng.choice(rels, size=2, replace=False)
        o_main = str(rng.choice(OBJECTS[r_main]))
        facts.append({"id": f"f{si}", "query": TEMPLATES[r_main][0].format(s=s, o=o_main), "subject": s,
                      "relation": str(r_main), "object": o_main})
        n_gold = int(rng.integers(1, len(TEMPLATES[r_main]) + 1))
        for t in rng.choice(len(TEMPLATES[r_main]), size=n_gold, replace=False):  # gold paraphrases
            docs.append({"text": TEMPLATES[r_main][t].format(s=s, o=o_main), "triple": (s, str(r_main), o_main)})
        # same subject, other relation
        o2 = str(rng.choice(OBJECTS[r_other]))
        if r_other in ("born_in", "died_in") and r_main in ("born_in", "died_in"):
            o2 = str(rng.choice([c for c in CITIES if c != o_main]))
        docs.append({"text": str(rng.choice(TEMPLATES[r_other])).format(s=s, o=o2), "triple": (s, str(r_other), o2)})
        # contradiction: same subject and relation, another object
        o3 = str(rng.choice([x for x in OBJECTS[r_main] if x != o_main]))
        docs.append({"text": str(rng.choice(TEMPLATES[r_main])).format(s=s, o=o3), "triple": (s, str(r_main), o3)})
        # background: the subject with no relation
        docs.append({"text": f"An interview with {s} appeared in the weekend magazine.", "triple": (s, "none", "")})
    order = rng.permutation(len(docs))
    docs = [docs[i] for i in order]
    for i, d in enumerate(docs):
        d["id"] = f"d{i:05d}"
    return docs, facts


def gold(docs: list[dict], facts: list[dict]) -> list[set[int]]:
    """Per fact, the rows of the documents generated from exactly its triple."""
    by = {}
    for i, d in enumerate(docs):
        by.setdefault(tuple(d["triple"]), set()).add(i)
    return [by.get((f["subject"], f["relation"], f["object"]), set()) for f in facts]


def hash_vectors(texts: list[str], d: int = 128, seed: int = 0) -> np.ndarray:
    """A bag-of-words random projection (unit rows): a deterministic stand-in for a sentence encoder."""
    import zlib

    from tools.fact_index.core import tokenize

    table: dict[str, np.ndarray] = {}
    out = np.zeros((len(texts), d), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in tokenize(t):
            if w not in table:  # the same word gets the same vector in every call
                table[w] = np.random.default_rng([seed, zlib.crc32(w.encode())]).standard_normal(d).astype(np.float32)
            out[i] += table[w]
    out[np.linalg.norm(out, axis=1) == 0] = 1.0
    return out / np.linalg.norm(out, axis=1, keepdims=True)
