"""A seeded multi-domain demo pool and target set, written by the project itself.

Eight domains with their own vocabularies and sentence shapes, log-normal lengths, a share of
off-topic sentences in every document (so no domain is trivially separable), exact and near
duplicates, and a few empty or garbled rows for ``profile`` to find. No third-party text is bundled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DOMAINS: dict[str, dict[str, list[str]]] = {
    "math": {
        "nouns": "integer polynomial equation theorem lemma proof derivative integral matrix vector "
        "eigenvalue prime divisor fraction sum product sequence series limit function variable "
        "coefficient root triangle angle hypotenuse radius circle probability expectation remainder "
        "factorial logarithm exponent inequality set subset graph vertex".split(),
        "verbs": "solve prove compute simplify factor integrate differentiate substitute divide "
        "multiply evaluate expand bound estimate".split(),
        "adjs": "positive negative rational irrational even odd prime linear quadratic convex "
        "finite infinite integer real".split(),
        "frames": [
            "Let {n1} be a {a1} {n2}; {v1} the {n3} of {n1}.",
            "If x = {num} and y = {num}, what is the {n1} of x and y?",
            "We {v1} the {n1} and obtain {num} as the {n2}.",
            "Show that every {a1} {n1} has a {a2} {n2}.",
            "The {n1} of {num} and {num} is {num}, so the {n2} equals {num}.",
            "First {v1} both sides, then {v2} to find the {n1}.",
            "Therefore the {a1} {n1} satisfies the {n2} for all {n3}.",
        ],
    },
    "code": {
        "nouns": "function variable loop array list dictionary class method module parameter "
        "return string integer exception iterator generator compiler interpreter thread process "
        "buffer pointer index query database server request response test library dependency "
        "repository commit branch".split(),
        "verbs": "return call define import raise iterate append parse compile refactor debug "
        "allocate serialize deploy".split(),
        "adjs": "recursive asynchronous mutable immutable static dynamic nested private public "
        "optional empty sorted".split(),
        "frames": [
            "Write a {a1} {n1} that takes a {n2} and will {v1} the {n3}.",
            "def {ident}({ident}, {ident}): return {ident}[{num}]",
            "The {n1} raises an {n2} when the {n3} is {a1}.",
            "Use a {a1} {n1} to {v1} each {n2} in the {n3}.",
            "for i in range({num}): {ident}.append(i * {num})",
            "This {n1} should {v1} a {a1} {n2} instead of a {n3}.",
            "Fix the bug where the {n1} does not {v1} the {a1} {n2}.",
        ],
    },
    "medicine": {
        "nouns": "patient symptom diagnosis treatment dose therapy infection antibiotic vaccine "
        "tumor biopsy clinician trial cohort syndrome artery kidney liver insulin blood pressure "
        "fever inflammation receptor enzyme pathogen outcome mortality placebo prescription "
        "surgery".split(),
        "verbs": "diagnose treat prescribe administer monitor screen reduce relieve inhibit "
        "recover examine admit".split(),
        "adjs": "chronic acute clinical randomized severe mild cardiac renal pediatric "
        "intravenous oral benign".split(),
        "frames": [
            "The {a1} {n1} presented with {n2} and {a2} {n3}.",
            "Clinicians should {v1} the {n1} before they {v2} a {n2}.",
            "In a {a1} {n1} of {num} patients, the {n2} reduced {n3}.",
            "A {a1} {n1} may {v1} the risk of {n2}.",
            "The recommended {n1} is {num} mg twice daily for {num} days.",
            "Patients with {a1} {n1} often report {n2} after {n3}.",
        ],
    },
    "law": {
        "nouns": "court plaintiff defendant contract statute clause liability damages appeal "
        "jurisdiction verdict testimony counsel tenant landlord precedent amendment regulation "
        "injunction settlement negligence evidence judgment tribunal ordinance license "
        "trademark copyright".split(),
        "verbs": "rule appeal sue enforce breach waive dismiss overturn testify negotiate "
        "arbitrate comply".split(),
        "adjs": "civil criminal federal constitutional contractual binding void liable "
        "statutory procedural appellate".split(),
        "frames": [
            "The {n1} held that the {a1} {n2} was {a2}.",
            "Under the {n1}, the {n2} must {v1} the {n3} within {num} days.",
            "The {n1} argued that the {n2} failed to {v1} the {a1} {n3}.",
            "Section {num} of the {n1} governs {a1} {n2}.",
            "On appeal, the {n1} chose to {v1} the earlier {n2}.",
            "A {a1} {n1} cannot {v1} a {n2} without {n3}.",
        ],
    },
    "sports": {
        "nouns": "team match goal player coach season league tournament striker goalkeeper "
        "referee penalty championship stadium fans score inning pitcher quarterback touchdown "
        "sprint marathon medal record transfer squad derby final".split(),
        "verbs": "score win lose defend tackle sprint train coach celebrate qualify equalize "
        "dominate".split(),
        "adjs": "unbeaten defensive offensive late decisive home away injured young veteran "
        "thrilling".split(),
        "frames": [
            "The {a1} {n1} managed to {v1} in the {n2}.",
            "After {num} minutes the {n1} made it {num} to {num}.",
            "The {n1} praised the {a1} {n2} after the {n3}.",
            "Fans watched the {n1} {v1} during the {a1} {n2}.",
            "It was the {a1} {n1} of the {n2} this {n3}.",
            "The {n1} will {v1} again before the {n2}.",
        ],
    },
    "cooking": {
        "nouns": "recipe oven pan flour butter sugar egg garlic onion sauce dough salt pepper "
        "tomato basil simmer broth skillet bowl whisk cream cheese pasta rice lemon "
        "spoon cup minute".split(),
        "verbs": "bake stir chop whisk simmer season roast knead saute fold drain marinate".split(),
        "adjs": "fresh golden crispy tender creamy fragrant minced chopped warm chilled savory".split(),
        "frames": [
            "{v1} the {a1} {n1} with the {n2} for {num} minutes.",
            "Add {num} cups of {n1} and a pinch of {n2}.",
            "Preheat the {n1} to {num} degrees and {v1} the {n2}.",
            "Serve the {a1} {n1} with {a2} {n2}.",
            "In a large {n1}, {v1} the {n2} until {a1}.",
            "This {n1} needs {a1} {n2} and {n3}.",
        ],
    },
    "finance": {
        "nouns": "market stock bond yield inflation interest rate investor portfolio dividend "
        "revenue earnings quarter bank loan credit currency asset equity fund risk "
        "valuation share price deficit budget tax".split(),
        "verbs": "invest rise fall hedge borrow lend allocate report forecast diversify "
        "trade rebalance".split(),
        "adjs": "quarterly annual volatile fiscal monetary bullish bearish long-term "
        "short-term net gross".split(),
        "frames": [
            "The {n1} expects {n2} to {v1} by {num} percent.",
            "{a1} {n1} rose {num} percent in the last {n2}.",
            "Investors should {v1} their {n1} when the {n2} is {a1}.",
            "The {n1} reported {a1} {n2} of {num} million.",
            "Rising {n1} could {v1} the {a1} {n2}.",
            "Analysts {v1} that the {n1} will {v2}.",
        ],
    },
    "general": {
        "nouns": "city people government weather school family museum festival travel history "
        "community village river mountain road news report morning weekend holiday friend "
        "neighbor library park music film book".split(),
        "verbs": "visit announce open close celebrate discover remember plan build share "
        "travel change".split(),
        "adjs": "local national new old popular quiet busy historic sunny rainy famous".split(),
        "frames": [
            "The {a1} {n1} will {v1} the {n2} next {n3}.",
            "Many {n1} came to {v1} the {a1} {n2}.",
            "Last {n1}, the {n2} decided to {v1} a {a1} {n3}.",
            "The {n1} near the {n2} is {a1} in the {n3}.",
            "Officials said the {n1} would {v1} after the {n2}.",
            "People often {v1} the {a1} {n1} during the {n2}.",
        ],
    },
}

POOL_SHARES = {
    "general": 0.30,
    "code": 0.15,
    "math": 0.10,
    "medicine": 0.10,
    "law": 0.10,
    "sports": 0.10,
    "cooking": 0.08,
    "finance": 0.07,
}
SHARED_WORDS = "also however because often this that these many some each very".split()


def _sentence(rng: np.random.Generator, dom: dict[str, list[str]]) -> str:
    frame = dom["frames"][rng.integers(len(dom["frames"]))]
    fill = {}
    for slot in ("n1", "n2", "n3"):
        fill[slot] = dom["nouns"][rng.integers(len(dom["nouns"]))]
    for slot in ("v1", "v2"):
        fill[slot] = dom["verbs"][rng.integers(len(dom["verbs"]))]
    for slot in ("a1", "a2"):
        fill[slot] = dom["adjs"][rng.integers(len(dom["adjs"]))]
    out = frame
    while "{num}" in out:
        out = out.replace("{num}", str(int(rng.integers(2, 500))), 1)
    while "{ident}" in out:
        out = out.replace("{ident}", dom["nouns"][rng.integers(len(dom["nouns"]))].split()[0], 1)
    text = out.format(**fill)
    if rng.random() < 0.3:
        text = f"{SHARED_WORDS[rng.integers(len(SHARED_WORDS))].capitalize()}, {text[0].lower()}{text[1:]}"
    return text


def make_document(rng: np.random.Generator, domain: str, n_words: int, off_topic: float = 0.15) -> str:
    sentences: list[str] = []
    words = 0
    others = [d for d in DOMAINS if d != domain]
    while words < n_words:
        d = domain if rng.random() >= off_topic else others[rng.integers(len(others))]
        s = _sentence(rng, DOMAINS[d])
        sentences.append(s)
        words += len(s.split())
    return " ".join(sentences)


def _length(rng: np.random.Generator) -> int:
    return int(np.clip(rng.lognormal(mean=4.4, sigma=0.6), 12, 1200))


def generate(out_dir: str | Path, n_docs: int = 24_000, n_target: int = 300, target_domain: str = "math",
             seed: int = 0) -> dict[str, str]:
    """Write ``pool.jsonl``, ``target_<domain>.jsonl`` and ``request.yaml`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(POOL_SHARES)
    probs = np.array([POOL_SHARES[d] for d in names])
    doms = rng.choice(names, size=n_docs, p=probs / probs.sum())
    docs: list[dict] = []
    for i, d in enumerate(doms):
        docs.append({"id": f"doc-{i:06d}", "text": make_document(rng, str(d), _length(rng)), "domain": str(d)})
    # exact duplicates (new ids, same text), near duplicates (one word changed), empty and garbled rows
    for j in rng.choice(n_docs, size=n_docs // 60, replace=False):
        src = docs[int(j)]
        docs.append({"id": f"dup-{int(j):06d}", "text": src["text"], "domain": src["domain"]})
    for j in rng.choice(n_docs, size=n_docs // 80, replace=False):
        src = docs[int(j)]
        words = src["text"].split()
        words[int(rng.integers(len(words)))] = "indeed"
        docs.append({"id": f"near-{int(j):06d}", "text": " ".join(words), "domain": src["domain"]})
    for j in range(12):
        docs.append({"id": f"empty-{j:03d}", "text": "   " if j % 2 else "", "domain": "general"})
    for j in range(12):
        junk = "".join(chr(int(c)) for c in rng.integers(33, 48, size=80))
        docs.append({"id": f"garbled-{j:03d}", "text": f"{junk} \ufffd\ufffd {junk}", "domain": "general"})
    order = rng.permutation(len(docs))
    pool_path = out / "pool.jsonl"
    with open(pool_path, "w", encoding="utf-8") as fh:
        for i in order:
            fh.write(json.dumps(docs[int(i)]) + "\n")
    trng = np.random.default_rng(seed + 1)
    target_path = out / f"target_{target_domain}.jsonl"
    with open(target_path, "w", encoding="utf-8") as fh:
        for i in range(n_target):
            text = make_document(trng, target_domain, _length(trng), off_topic=0.05)
            fh.write(json.dumps({"id": f"target-{i:04d}", "text": text, "domain": target_domain}) + "\n")
    request_path = out / "request.yaml"
    request_path.write_text(
        "# An automated-proposal request: `curate propose --request " + str(request_path) + "`\n"
        f"request: Select 2000 documents from the pool that look like the {target_domain} target set.\n"
        f"corpus: {pool_path}\n"
        f"target: {target_path}\n"
        "k: 2000\n"
    )
    return {"pool": str(pool_path), "target": str(target_path), "request": str(request_path)}
