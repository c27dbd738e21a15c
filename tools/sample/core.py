"""Seeded uniform keys and k-smallest-key samples (arrays in, arrays out; no I/O).

Each document gets a uniform key from a hash of (seed, id), and a sample is the k smallest keys
(overall, or per domain). That makes a sample a pure function of the seed and the ids: independent of
row order and of how the corpus is sharded, and computable in one streaming pass.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np


def uniform_keys(ids: list[str], seed: int) -> np.ndarray:
    """A uniform(0,1) key per id, a pure function of (seed, id)."""
    prefix = f"{seed}\x1f".encode()
    out = np.empty(len(ids), dtype=np.float64)
    for i, doc_id in enumerate(ids):
        h = hashlib.blake2b(prefix + doc_id.encode("utf-8", "replace"), digest_size=8).digest()
        out[i] = (int.from_bytes(h, "little") >> 11) * (1.0 / (1 << 53))
    return out


def allocate(sizes: dict[str, int], k: int, how: Literal["proportional", "equal"]) -> dict[str, int]:
    """Per-domain quotas summing to min(k, total), never above a domain's size (largest remainder)."""
    total = sum(sizes.values())
    k = min(k, total)
    quota = dict.fromkeys(sizes, 0)
    remaining = k
    open_ = {d for d, n in sizes.items() if n > 0}
    while remaining > 0 and open_:
        if how == "equal":
            share = {d: remaining / len(open_) for d in open_}
        else:
            mass = sum(sizes[d] - quota[d] for d in open_)
            share = {d: remaining * (sizes[d] - quota[d]) / mass for d in open_}
        base = {d: min(int(np.floor(share[d])), sizes[d] - quota[d]) for d in open_}
        given = sum(base.values())
        for d in open_:
            quota[d] += base[d]
        remaining -= given
        if remaining > 0:
            order = sorted(open_, key=lambda d: (-(share[d] - np.floor(share[d])), d))
            for d in order:
                if remaining == 0:
                    break
                if quota[d] < sizes[d]:
                    quota[d] += 1
                    remaining -= 1
        open_ = {d for d in open_ if quota[d] < sizes[d]}
    return quota


class SmallestKeys:
    """The ``cap`` smallest keys overall (``by_domain=False``) or per domain, fed batch by batch.

    Bounded max-heaps (keys stored negated), so memory is ``cap`` entries per group; ``sizes`` counts
    every document offered, per domain.
    """

    def __init__(self, cap: int, *, by_domain: bool):
        self.cap, self.by_domain = cap, by_domain
        self.heaps: dict[str, list[tuple[float, str, str]]] = {}
        self.sizes: Counter = Counter()

    def add(self, ids: Sequence[str], domains: Sequence[str], keys: np.ndarray) -> None:
        for doc_id, dom, key in zip(ids, domains, keys, strict=True):
            self.sizes[dom] += 1
            h = self.heaps.setdefault(dom if self.by_domain else "*", [])
            item = (-key, doc_id, dom)
            if len(h) < self.cap:
                heapq.heappush(h, item)
            elif item > h[0]:
                heapq.heapreplace(h, item)

    def take(self, quota: dict[str, int] | None = None) -> tuple[list[str], list[str], np.ndarray]:
        """(ids, domains, keys) of the sample, smallest key first: each domain's ``quota`` smallest
        when sampling by domain, else the ``cap`` smallest overall."""
        if quota is None:
            chosen = sorted(self.heaps.get("*", []), reverse=True)
        else:
            chosen = [item for d, h in self.heaps.items() for item in sorted(h, reverse=True)[: quota.get(d, 0)]]
        chosen.sort(key=lambda t: -t[0])
        return [c[1] for c in chosen], [c[2] for c in chosen], np.array([-c[0] for c in chosen], dtype=np.float64)
