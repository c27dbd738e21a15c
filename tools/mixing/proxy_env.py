"""A mixing environment over real documents: a small LM trained stage by stage (tools/proxy_lm.py).

Each domain's documents are split once (seeded) into training and validation texts. A step with
weights w and a token budget trains the same model further on a stream that holds ``w_d * tokens``
bytes sampled from domain d's training texts (documents drawn with replacement, in a seeded order),
then evaluates per-domain validation loss (nats per byte). Feedback is the byte-weighted loss of the
source field and of the target field; the reward is the decrease of their sum. CPU-sized by default
(a ~0.1M-parameter byte-level transformer, or the closed-form byte-bigram model); the same class
runs a larger model on GPU through ``ProxyConfig(device="cuda", d_model=...)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ProxyLMEnv:
    def __init__(self, texts: dict[str, list[str]], source: list[str], target: list[str], *,
                 config: Any = None, val_fraction: float = 0.2, max_val_docs: int = 64, seed: int = 0):
        from tools.proxy_lm import ProxyConfig, encode

        self.domains = list(texts)
        missing = [d for d in (*source, *target) if d not in texts]
        if missing:
            raise ValueError(f"fields name domains with no texts: {missing}")
        empty = [d for d, t in texts.items() if not t]
        if empty:
            raise ValueError(f"domains with no documents: {empty}")
        self.source, self.target = list(source), list(target)
        self.feedback_names = ["source_loss", "target_loss"]
        self.config = config or ProxyConfig()
        rng = np.random.default_rng(seed)
        self.train_bytes: dict[str, list[np.ndarray]] = {}
        self.val_texts: list[str] = []
        self.val_groups: list[str] = []
        for d, docs in texts.items():
            order = rng.permutation(len(docs))
            n_val = min(max_val_docs, max(1, int(round(val_fraction * len(docs))))) if len(docs) > 1 else 0
            val, train = order[:n_val], order[n_val:]
            if train.size == 0:  # one document: train and validate on it
                train = order
            self.val_texts += [docs[i] for i in (val if n_val else order)]
            self.val_groups += [d] * int(n_val if n_val else len(order))
            self.train_bytes[d] = [b for b in encode([docs[i] for i in train]) if b.size]
        self._seed = seed
        self.lm: Any = None
        self.last: dict[str, float] = {}

    def _field_losses(self, group_loss: dict[str, float], group_tokens: dict[str, int]) -> np.ndarray:
        out = []
        for field in (self.source, self.target):
            n = np.array([group_tokens.get(d, 0) for d in field], dtype=np.float64)
            loss = np.array([group_loss.get(d, np.nan) for d in field], dtype=np.float64)
            out.append(float((n * loss).sum() / n.sum()) if n.sum() else float("nan"))
        return np.asarray(out)

    def _evaluate(self) -> np.ndarray:
        ev = self.lm.evaluate(self.val_texts, self.val_groups)
        self.last = dict(ev.group_loss)
        self._tokens = dict(ev.group_tokens)
        return self._field_losses(ev.group_loss, ev.group_tokens)

    def domain_losses(self) -> dict[str, float]:
        return dict(self.last)

    def reset(self, seed: int) -> np.ndarray:
        from tools.proxy_lm import ProxyLM

        self._rng = np.random.default_rng([self._seed, seed])
        self.lm = ProxyLM(self.config, seed=seed)
        self.fb = self._evaluate()
        return self.fb.copy()

    def sample_stream(self, weights: np.ndarray, tokens: int) -> np.ndarray:
        """A training stream with about ``w_d * tokens`` bytes from each domain (domains interleaved)."""
        pieces: list[np.ndarray] = []
        for d, w in zip(self.domains, weights, strict=True):
            want = int(round(float(w) * tokens))
            docs = self.train_bytes[d]
            got = 0
            while got < want and docs:
                b = docs[int(self._rng.integers(len(docs)))]
                pieces.append(b[: want - got])
                got += min(b.size, want - got)
        order = self._rng.permutation(len(pieces))
        return np.concatenate([pieces[i] for i in order]) if pieces else np.zeros(0, dtype=np.int16)

    def step(self, weights: np.ndarray, tokens: int) -> tuple[np.ndarray, float]:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.domains),) or np.any(w < -1e-9) or abs(w.sum() - 1) > 1e-6:
            raise ValueError(f"weights must be {len(self.domains)} non-negative numbers summing to 1; got {w}")
        data = self.sample_stream(w, tokens)
        self.lm.train(data, tokens)
        before = float(self.fb.sum())
        self.fb = self._evaluate()
        return self.fb.copy(), before - float(self.fb.sum())


def expand_fields(domains: list[str], source: list[str], target: list[str], within: dict[str, float],
                  field_weights: np.ndarray) -> np.ndarray:
    """Domain weights from (source share, target share) and the within-field shares."""
    out = np.zeros(len(domains))
    for share, field in ((float(field_weights[0]), source), (float(field_weights[1]), target)):
        tot = sum(within.get(d, 0.0) for d in field)
        for d in field:
            out[domains.index(d)] += share * (within.get(d, 0.0) / tot if tot > 0 else 1.0 / len(field))
    return out / out.sum()


class FieldEnv:
    """Wraps a domain-level environment so an agent chooses only the target field's share.

    Inside each field the weights follow fixed within-field shares (by default the pool's), so an
    agent trained on two fields applies to any domain space: that is how one saved agent serves
    corpora with different domains.
    """

    def __init__(self, env: Any, source: list[str], target: list[str], within: dict[str, float]):
        self.env = env
        self.domains = ["source", "target"]
        self.feedback_names = list(env.feedback_names)
        self.source, self.target = source, target
        self.within = within

    def expand(self, field_weights: np.ndarray) -> np.ndarray:
        return expand_fields(self.env.domains, self.source, self.target, self.within, field_weights)

    def reset(self, seed: int) -> np.ndarray:
        return self.env.reset(seed)

    def step(self, weights: np.ndarray, tokens: int) -> tuple[np.ndarray, float]:
        return self.env.step(self.expand(weights), tokens)
