"""FASTTRACK vs BM25 top-k vs embedding top-k on real facts: LAMA T-REx with its Wikipedia evidence.

Corpus: every evidence sentence of ``../shared/data/raw/lama_trex_evidence`` (28 relations) with its
``[MASK]`` filled by the object's surface form, deduplicated by text. Queries: ``--facts`` facts drawn
(seeded) from those with evidence, each rendered with a ParaRel paraphrase pattern of its relation
(``trex_facts_pararel/patterns``; LAMA's template where ParaRel has none), with subject, relation and
object given as fields. Gold: the documents made from the fact's own evidence sentences (T-REx
aligned them to the triple). Same corpus, queries and embeddings (all-MiniLM-L6-v2, cached under
``--cache``) for all methods. Ours runs with the OFFLINE verifier (no LLM is configured here), so
its LLM calls are 0; the table also gives the calls the LLM verifier would make on the same
candidates (ceil(pairs / batch)). Writes bench/results/fasttrack.json.

``--split dev|test``: the 28 relations are shuffled with ``random.Random(7)`` (sorted ids), the first
14 are dev, the rest test; only the drawn facts of those relations are scored (the same draw as
``all``, so dev + test = all), while the corpus keeps every evidence sentence, distractors included.
Writes bench/results/fasttrack-<split>.json. Tune on dev only; test is measured, never tuned on.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
from _common import write_result  # noqa: I001

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RAW = ROOT.parent / "shared" / "data" / "raw"


def load(raw: Path, n_facts: int, seed: int, relations: list[str] | None = None) -> tuple[list[str], list[dict], list[set[int]]]:
    """(corpus texts, facts, gold rows per fact)."""
    rng = np.random.default_rng(seed)
    templates = {}
    for line in open(raw / "lama_trex_evidence" / "relations.jsonl", encoding="utf-8"):
        r = json.loads(line)
        templates[r["relation"]] = [r["template"]]
    for p in (raw / "trex_facts_pararel" / "patterns").glob("P*.jsonl"):
        pats = [json.loads(x)["pattern"] for x in open(p, encoding="utf-8") if x.strip()]
        if pats:
            templates[p.stem] = pats
    texts: list[str] = []
    row_of: dict[str, int] = {}
    facts: list[dict] = []
    golds: list[set[int]] = []
    for path in sorted((raw / "lama_trex_evidence").glob("P*.jsonl")):
        if relations and path.stem not in relations:
            continue
        for line in open(path, encoding="utf-8"):
            e = json.loads(line)
            gold = set()
            for ev in e["evidences"]:
                t = ev["masked_sentence"].replace("[MASK]", ev["obj_surface"])
                if t not in row_of:
                    row_of[t] = len(texts)
                    texts.append(t)
                gold.add(row_of[t])
            if gold:
                facts.append({"id": e["uuid"], "subject": e["sub_label"], "relation": e["predicate_id"],
                              "object": e["obj_label"]})
                golds.append(gold)
    pick = np.sort(rng.choice(len(facts), size=min(n_facts, len(facts)), replace=False))
    out_f, out_g = [], []
    for i in pick:
        f = dict(facts[i])
        pats = templates.get(f["relation"], ["[X] is related to [Y] ."])
        pat = pats[int(rng.integers(len(pats)))]
        f["query"] = " ".join(pat.replace("[X]", f["subject"]).replace("[Y]", f["object"]).split()).replace(" .", ".")
        out_f.append(f)
        out_g.append(golds[i])
    return texts, out_f, out_g


def split_relations(raw: Path, split: str) -> set[str] | None:
    """The relation ids of ``split`` ("dev": first 14 of the seeded shuffle, "test": the rest); None for "all"."""
    if split == "all":
        return None
    rels = sorted(p.stem for p in (raw / "lama_trex_evidence").glob("P*.jsonl"))
    random.Random(7).shuffle(rels)
    half = len(rels) // 2
    return set(rels[:half] if split == "dev" else rels[half:])


def embed(texts: list[str], cache: Path, name: str, backend: str = "torch") -> np.ndarray:
    import hashlib

    from tools.embed import encode_texts

    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{name}-{backend}-{key}.npy"
    if path.exists():
        return np.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    vec = np.asarray(encode_texts(texts, backend=backend), dtype=np.float32)
    np.save(path, vec)
    return vec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--raw", type=Path, default=RAW)
    ap.add_argument("--facts", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-leaf", type=int, default=100)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fasttrack-cache"))
    ap.add_argument("--relations", nargs="*", default=None)
    ap.add_argument("--split", default="all", choices=["all", "dev", "test"],
                    help="score only the facts of the dev or test relations (corpus unchanged)")
    ap.add_argument("--ablations", action="store_true",
                    help="also: no partial names, relation word required, arguments extracted, keywords only")
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"],
                    help="embedding backend (onnx-int8: ~2.5x faster on CPU, cosine ~0.99 to fp32)")
    args = ap.parse_args()

    from tools.fact_index import core as fic
    from tools.trace_fact import baselines
    from tools.trace_fact import core as tc

    texts, facts, golds = load(args.raw, args.facts, args.seed, args.relations)
    keep_rel = split_relations(args.raw, args.split)
    keep = [i for i, f in enumerate(facts) if keep_rel is None or f["relation"] in keep_rel]
    print(f"corpus {len(texts)} documents, {len(facts)} facts, gold docs/fact mean "
          f"{np.mean([len(g) for g in golds]):.2f}", flush=True)
    t = time.perf_counter()
    X = embed(texts, args.cache, "docs", args.backend)
    Q = embed([f["query"] for f in facts], args.cache, "queries", args.backend)[keep]  # all drawn: one cache
    facts, golds = [facts[i] for i in keep], [golds[i] for i in keep]
    print(f"split {args.split}: {len(facts)} facts scored", flush=True)
    embed_s = time.perf_counter() - t
    print(f"embeddings {embed_s:.0f}s", flush=True)

    t = time.perf_counter()
    tree = fic.recursive_kmeans(X, max_leaf=args.max_leaf, seed=args.seed)
    dt = fic.doc_terms(texts)
    labels, _ = fic.ctfidf_labels(tree, dt.matrix, dt.vocab, top_n=20)
    terms = fic.leaf_term_index(tree, dt.matrix)
    index_s = time.perf_counter() - t
    leaves = tree.leaves()
    vocab = {w: i for i, w in enumerate(dt.vocab)}

    def term_leaves(w: str) -> np.ndarray:
        i = vocab.get(w)
        return np.zeros(0, np.int64) if i is None else terms.indices[terms.indptr[i] : terms.indptr[i + 1]]

    F = [tc.make_fact(f["id"], f["query"], f["subject"], f["object"], f["relation"]) for f in facts]
    Fx = [tc.make_fact(f["id"], f["query"]) for f in facts]  # subject/object extracted from the statement
    rows: list[dict] = []

    def ours(name: str, facts_: list, verifier: tc.Verifier, **kw: object) -> tc.TraceOutput:
        t0 = time.perf_counter()
        out = tc.trace(facts_, [labels[int(lf)] for lf in leaves], tree.centroid[leaves],
                       [tree.members(int(lf)) for lf in leaves], lambda r: [texts[i] for i in r], verifier, Q,
                       term_leaves=term_leaves, **kw)
        wall = time.perf_counter() - t0
        pred = [out.supporting(i) for i in range(len(facts_))]
        m = tc.macro_prf(pred, golds)
        cand = [{r.doc for r in out.rows if r.fact == i} for i in range(len(facts_))]
        recall = float(np.mean([len(c & g) / len(g) for c, g in zip(cand, golds, strict=True)]))
        pairs = int(sum(out.pairs_per_fact))
        rows.append({"method": name, **m, "wall_s": wall, "llm_calls": verifier.calls,
                     "llm_calls_if_llm_verifier": tc.expected_llm_calls(out.pairs_per_fact, args.batch),
                     "candidate_pairs": pairs, "cluster_recall": recall})
        return out

    ours("fasttrack (offline verifier)", F, tc.OfflineVerifier())
    if args.ablations:
        ours("fasttrack (offline, no partial names)", F, tc.OfflineVerifier(partial_names=False))
        ours("fasttrack (offline, relation word required)", F, tc.OfflineVerifier(require_relation=True))
        ours("fasttrack (offline, arguments extracted)", Fx, tc.OfflineVerifier())
        ours("fasttrack (offline, keywords only)", F, tc.OfflineVerifier(), centroid_top=0)

    class Oracle(tc.Verifier):
        name = "gold"

        def __init__(self) -> None:
            self.calls = 0
            self.row = {t: i for i, t in enumerate(texts)}
            self.fact_of: dict[str, int] = {}

        def verify(self, facts_, pairs):  # noqa: ANN001, ANN202
            return [tc.Judgement("supports" if self.row[d] in golds[f] else "rejected") for f, d in pairs]

    ours("fasttrack (gold verifier: retrieval ceiling)", F, Oracle())

    queries = [f["query"] for f in facts]
    t0 = time.perf_counter()
    bm = baselines.bm25_topk(texts, queries, 10)
    bm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    em = baselines.embedding_topk(X, Q, 10)
    em_s = time.perf_counter() - t0
    for k in (1, 3, 10):
        rows.append({"method": f"bm25 top-{k}", **tc.macro_prf([set(x[:k]) for x in bm], golds), "wall_s": bm_s,
                     "llm_calls": 0})
        rows.append({"method": f"embedding top-{k}", **tc.macro_prf([set(x[:k]) for x in em], golds),
                     "wall_s": em_s, "llm_calls": 0})

    print(f"\nindex: {len(leaves)} leaves (<= {args.max_leaf}), {tree.n_nodes} nodes, {index_s:.1f}s; "
          f"embeddings {embed_s:.0f}s\n")
    print(f"{'method':46s} {'P':>6s} {'R':>6s} {'F1':>6s} {'wall s':>8s} {'LLM calls':>9s} {'(if LLM)':>9s}")
    for r in rows:
        print(f"{r['method']:46s} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} {r['wall_s']:8.2f} "
              f"{r['llm_calls']:9d} {r.get('llm_calls_if_llm_verifier', 0):9d}")
    best_bm = max((r for r in rows if r["method"].startswith("bm25")), key=lambda r: r["f1"])
    best_em = max((r for r in rows if r["method"].startswith("embedding")), key=lambda r: r["f1"])
    print(f"\nF1 ratio ours/best BM25 {rows[0]['f1'] / best_bm['f1']:.2f}, ours/best embedding "
          f"{rows[0]['f1'] / best_em['f1']:.2f}")
    name = "fasttrack" if args.split == "all" else f"fasttrack-{args.split}"
    path = write_result(name, {"split": args.split, "relations_scored": sorted({f["relation"] for f in facts}),
                               "backend": args.backend, "corpus_docs": len(texts), "facts": len(facts), "seed": args.seed,
                                      "max_leaf": args.max_leaf, "batch": args.batch, "leaves": int(len(leaves)),
                                      "index_s": index_s, "embed_s": embed_s, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
