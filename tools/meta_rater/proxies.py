"""Proxy runs for Meta-rater: one proxy LM per selected document set, cached in the workspace.

The cache key is (proxy settings, seed, validation set, corpus fingerprint, selected ids), so a rerun
or a resumed run reuses every finished proxy, and two weight vectors that select the same documents
share one run.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from tools.contract import ToolContext
from tools.corpus import fingerprint
from tools.meta_rater.schema import MetaRaterRequest

_MAX_TRAIN_FACTOR = 20  # a proxy's training stream is capped at 20 x its token budget (a seeded sample)

def _proxy_job(job: tuple) -> float:
    """Engine worker: train one proxy from scratch on its texts and score the validation texts."""
    from tools.proxy_lm import ProxyConfig, ProxyLM

    cfg, seed, tokens, texts, val_texts = job
    lm = ProxyLM(ProxyConfig(**cfg), seed=seed)
    lm.train(texts, tokens)
    return lm.evaluate(val_texts).loss


class ProxyRunner:
    """Trains and scores one proxy per selection, through the workspace cache.

    Uncached runs of a batch go to the engine's worker processes (one single-threaded proxy each; on a
    GPU they run in this process), and each finished run is written to the cache as it arrives.
    """

    def __init__(self, request: MetaRaterRequest, ctx: ToolContext, texts: list[str], ids: list[str],
                 val_texts: list[str], val_key: str, oracle: np.ndarray | None):
        from tools.proxy_lm import ProxyConfig

        self.req, self.ctx, self.texts, self.ids, self.val_texts, self.oracle = (
            request, ctx, texts, ids, val_texts, oracle)
        device = "cpu" if request.proxy != "transformer" else ctx.resolve_device()
        self.cfg = ProxyConfig(kind="bigram" if request.proxy == "bigram" else "transformer", device=device,
                               d_model=request.proxy_width, n_layers=request.proxy_layers,
                               n_heads=max(1, request.proxy_width // 16))
        self.cache = ctx.workspace.cache_dir("meta_rater")
        self.base_key = json.dumps({"proxy": request.proxy, "cfg": self.cfg.__dict__, "tokens": request.proxy_tokens,
                                    "seed": request.seed, "val": val_key, "corpus": fingerprint(request.corpus)},
                                   sort_keys=True, default=str)
        self.reused = self.trained = 0

    def __call__(self, idx: np.ndarray) -> float:
        return self.many([idx])[0]

    def _key(self, idx: np.ndarray) -> str:
        h = hashlib.blake2b(self.base_key.encode(), digest_size=16)
        for i in idx:
            h.update(self.ids[i].encode())
            h.update(b"\x00")
        return h.hexdigest()

    def _lookup(self, key: str) -> float | None:
        path = self.cache / f"{key}.json"
        try:
            return float(json.loads(path.read_text())["loss"]) if path.exists() else None
        except (ValueError, KeyError, OSError):
            return None

    def _store(self, key: str, loss: float, docs: int) -> None:
        path = self.cache / f"{key}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"loss": loss, "docs": docs}))
        tmp.replace(path)

    def _texts(self, idx: np.ndarray, key: str) -> list[str]:
        texts = [self.texts[i] for i in idx]
        cap = _MAX_TRAIN_FACTOR * self.req.proxy_tokens
        sizes = np.fromiter((len(t.encode("utf-8")) for t in texts), dtype=np.int64, count=len(texts))
        if sizes.sum() > cap:  # a seeded sample of the selection, enough for the budget many times over
            order = np.random.default_rng(int(key[:8], 16)).permutation(len(texts))
            n = int(np.searchsorted(np.cumsum(sizes[order]), cap)) + 1
            texts = [texts[i] for i in np.sort(order[:n])]
        return texts

    def many(self, selections: list[np.ndarray]) -> list[float]:
        """Proxy loss for each selection (row indices), from the cache or trained."""
        if self.oracle is not None:
            return [float(-np.nanmean(self.oracle[idx])) for idx in selections]
        keys = [self._key(np.sort(idx)) for idx in selections]
        found = {k: v for k in dict.fromkeys(keys) if (v := self._lookup(k)) is not None}
        self.reused += sum(k in found for k in keys)
        todo = [k for k in dict.fromkeys(keys) if k not in found]
        sel = {k: np.sort(idx) for k, idx in zip(keys, selections, strict=True)}
        jobs = ((self.cfg.__dict__, self.req.seed, self.req.proxy_tokens, self._texts(sel[k], k), self.val_texts)
                for k in todo)
        if todo:
            if self.cfg.device != "cpu" or len(todo) == 1:
                results = map(_proxy_job, jobs)
            else:
                from tools.engine import map_items

                results = map_items(_proxy_job, jobs, self.ctx, workers=min(self.ctx.workers(), len(todo)))
            for k, loss in zip(todo, results, strict=True):
                self._store(k, float(loss), int(sel[k].size))
                found[k] = float(loss)
                self.trained += 1
        return [found[k] for k in keys]
