"""Distillation by fine-tuning a small sentence encoder on the LLM-rated sample (the GPU path).

Meta-rater fine-tunes ModernBERT on LLM grades; here the default MiniLM sentence-transformer
(resolved like the embed tool's model: the packaged all-MiniLM-L6-v2, offline) gets one linear
head with an output per PRRC dimension, trained jointly with a masked mean-squared error (a
document may be rated on some dimensions only). Plain torch: mean pooling over the attention mask,
L2 normalisation (as the model's own pipeline), AdamW with a linear decay, gradient clipping.

The head starts as a ridge fit on the frozen encoder's embeddings (linear probe, then fine-tune:
Kumar et al., ICLR 2022): fine-tuning then starts from the CPU rater's solution instead of a random
head that would first distort the pretrained features, which matters on a few hundred ratings.

Held-out agreement uses the same folds as the ridge rater (:func:`tools.prrc_rate.core.fold_of`,
assigned by hashing each document id), so the two sets of numbers compare: ``folds`` fine-tunes
give out-of-fold predictions, one more on every rating scores the pool.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from tools.prrc_rate.core import agreement, fold_of

POOL_CHUNK = 8192
"""Pool documents tokenized and scored at a time."""


@dataclass
class EncoderDistilled:
    predict_pool: np.ndarray  # (n_pool, n_dims) predicted grades in [1, 5]
    oof: np.ndarray  # (n_rated, n_dims) out-of-fold predictions; NaN where a row has no rating
    spearman: list[float]
    within_one: list[float]
    exact: list[float]
    device: str
    epochs: int
    steps: int  # optimiser steps over all fits


@contextmanager
def _tqdm(desc: str, total: int | None = None, unit: str = "it") -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None)
    try:
        yield bar
    finally:
        bar.close()


_PRETRAINED: dict[str, tuple[Any, Any, int]] = {}


def _pretrained(model: str | None) -> tuple[Any, Any, int]:
    """(transformer, tokenizer, max sequence length) of a sentence-transformers model, loaded once per process
    (each fine-tune works on a copy)."""
    from tools.embed.encoder import load_sentence_transformer
    from tools.errors import ResourceUnavailable
    from tools.models import model_label, resolve_embedding_model

    ref = resolve_embedding_model(model)
    if ref not in _PRETRAINED:
        st = load_sentence_transformer(ref, model_label(model), "cpu")
        hf = getattr(st[0], "auto_model", None) or getattr(st[0], "model", None)
        if hf is None or st.tokenizer is None:
            raise ResourceUnavailable(f"model {model_label(model)!r} is not a text transformer model",
                                      hint="pass a sentence-transformers text model (Transformer + Pooling)")
        _PRETRAINED[ref] = (hf, st.tokenizer, int(st.get_max_seq_length() or 0))
    return _PRETRAINED[ref]


class _Rater:
    """The encoder, its tokenizer and a linear head; weights reset to the pretrained ones per fit."""

    def __init__(self, model: str | None, device: str, max_length: int):
        import torch

        base, self.tokenizer, seq_len = _pretrained(model)
        self.encoder = copy.deepcopy(base).float().to(device)
        # the word-embedding table is half of MiniLM's weights; a few hundred ratings cannot retrain it,
        # and freezing it halves the optimiser's work
        emb = getattr(self.encoder, "embeddings", None)
        for p in (emb.parameters() if emb is not None else ()):
            p.requires_grad_(False)
        self.dim = int(self.encoder.config.hidden_size)
        self.max_length = min(max_length, seq_len or max_length)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.initial = {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}
        self.device = torch.device(device)
        self.head: Any = None

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer([t or "" for t in texts], truncation=True, max_length=self.max_length)["input_ids"]

    def _batch(self, ids: list[list[int]]) -> tuple[Any, Any]:
        import torch

        from tools.embed.encoder import pad_batch

        ii, mm = pad_batch(ids, self.pad_id)
        return torch.from_numpy(ii).to(self.device), torch.from_numpy(mm).to(self.device)

    def embed(self, ids: list[list[int]], mask_ids: Any) -> Any:
        """Mean-pooled, L2-normalised sentence vectors (what the head sees)."""
        import torch

        out = self.encoder(input_ids=ids, attention_mask=mask_ids, return_dict=True).last_hidden_state.float()
        m = mask_ids.unsqueeze(-1).float()
        pooled = (out * m).sum(1) / m.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def features(self, toks: list[list[int]], batch_size: int) -> np.ndarray:
        import torch

        self.encoder.eval()
        out = np.empty((len(toks), self.dim), dtype=np.float64)
        order = np.argsort([-len(t) for t in toks], kind="stable")
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                b = order[s : s + batch_size]
                out[b] = self.embed(*self._batch([toks[i] for i in b])).cpu().numpy()
        return out

    def predict(self, toks: list[list[int]], batch_size: int, on_batch: Callable[[int], None] | None = None
                ) -> np.ndarray:
        import torch

        self.encoder.eval()
        out = np.empty((len(toks), self.head.out_features), dtype=np.float64)
        order = np.argsort([-len(t) for t in toks], kind="stable")
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                b = order[s : s + batch_size]
                out[b] = self.head(self.embed(*self._batch([toks[i] for i in b]))).double().cpu().numpy()
                if on_batch is not None:
                    on_batch(len(b))
        return np.clip(out * 2.0 + 3.0, 1.0, 5.0)  # targets are (grade - 3) / 2

    def fit(self, toks: list[list[int]], T: np.ndarray, Z0: np.ndarray, *, epochs: int, batch_size: int, lr: float,
            head_lr: float, seed: int, on_step: Callable[[int], None] | None = None) -> int:
        """Reset to the pretrained encoder, ridge-initialise the head on ``Z0``, fine-tune on ``T`` (NaN = unrated)."""
        import torch
        from sklearn.linear_model import RidgeCV

        torch.manual_seed(seed)
        self.encoder.load_state_dict(self.initial)
        head = torch.nn.Linear(self.dim, T.shape[1]).to(self.device)
        with torch.no_grad():
            for j in range(T.shape[1]):
                have = np.isfinite(T[:, j])
                r = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(Z0[have], T[have, j])
                head.weight[j] = torch.as_tensor(r.coef_, dtype=torch.float32, device=self.device)
                head.bias[j] = float(r.intercept_)
        self.head = head
        trainable = [p for p in self.encoder.parameters() if p.requires_grad]
        params = [{"params": trainable, "lr": lr},
                  {"params": head.parameters(), "lr": head_lr}]
        opt = torch.optim.AdamW(params, weight_decay=0.01)
        steps_per_epoch = (len(toks) + batch_size - 1) // batch_size
        total = max(1, epochs * steps_per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total))
        mask_all = np.isfinite(T)
        target_all = np.where(mask_all, T, 0.0)
        rng = np.random.default_rng(seed)
        use_amp = self.device.type == "cuda"
        step = 0
        self.encoder.train()
        for _ in range(epochs):
            perm = rng.permutation(len(toks))
            for s in range(0, len(perm), batch_size):
                b = perm[s : s + batch_size]
                ii, mm = self._batch([toks[i] for i in b])
                tgt = torch.as_tensor(target_all[b], dtype=torch.float32, device=self.device)
                msk = torch.as_tensor(mask_all[b], dtype=torch.float32, device=self.device)
                with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext():
                    pred = head(self.embed(ii, mm)).float()
                loss = (((pred - tgt) ** 2) * msk).sum() / msk.sum().clamp(min=1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*trainable, *head.parameters()], 1.0)
                opt.step()
                sched.step()
                step += 1
                if on_step is not None:
                    on_step(1)
        self.encoder.eval()
        return step


def distil_encoder(
    texts_rated: Sequence[str],
    Y: np.ndarray,
    texts_pool: Sequence[str],
    *,
    ids: Sequence[str],
    model: str | None = None,
    device: str = "cpu",
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 5e-5,
    head_lr: float = 1e-3,
    max_length: int = 256,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[..., Any] | None = None,
    threads: int | None = None,
) -> EncoderDistilled:
    """Fine-tune the encoder on grades ``Y`` (n_rated, n_dims; NaN = unrated), score ``texts_pool``.

    Out-of-fold agreement per dimension on the folds of :func:`fold_of` (by id, like the ridge rater).
    ``progress`` is a ``ctx.progress``-like factory ``(desc, total=, unit=)``; default tqdm. ``threads``
    caps torch's CPU threads for the call (on a shared machine fewer threads than cores is much faster).
    """
    from tools.proxy_lm import _threads

    with _threads(threads or 0):
        return _distil_encoder(texts_rated, Y, texts_pool, ids=ids, model=model, device=device, epochs=epochs,
                               batch_size=batch_size, lr=lr, head_lr=head_lr, max_length=max_length, folds=folds,
                               seed=seed, progress=progress)


def _distil_encoder(texts_rated: Sequence[str], Y: np.ndarray, texts_pool: Sequence[str], *, ids: Sequence[str],
                    model: str | None, device: str, epochs: int, batch_size: int, lr: float, head_lr: float,
                    max_length: int, folds: int, seed: int, progress: Callable[..., Any] | None) -> EncoderDistilled:
    import torch

    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] != len(texts_rated) or len(ids) != len(texts_rated):
        raise ValueError(f"Y must be (n_rated, n_dims) with one row per rated text; got {Y.shape} for "
                         f"{len(texts_rated)} texts and {len(ids)} ids")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    progress = progress or _tqdm
    torch.manual_seed(seed)
    rater = _Rater(model, device, max_length)
    toks = rater.tokenize(texts_rated)
    T = (Y - 3.0) / 2.0
    Z0 = rater.features(toks, batch_size * 4)  # the frozen encoder's vectors: the head's ridge start
    fold = fold_of(ids, folds, seed)
    oof = np.full(Y.shape, np.nan)
    per_fit = epochs * ((len(toks) + batch_size - 1) // batch_size)
    steps = 0
    with progress("prrc_rate: fine-tune encoder", total=per_fit * (folds + 1), unit="steps") as bar:
        for f in range(folds):
            test = np.flatnonzero(fold == f)
            train = np.flatnonzero(fold != f)
            if not test.size:
                continue
            Tt = T[train]
            if any(np.unique(Tt[np.isfinite(Tt[:, j]), j]).size < 2 for j in range(T.shape[1])):
                # a fold whose training part has one grade for some dimension: the mean (as the ridge path)
                oof[test] = np.nanmean(Y[train], axis=0)
                bar.update(per_fit)
                continue
            steps += rater.fit([toks[i] for i in train], Tt, Z0[train], epochs=epochs, batch_size=batch_size,
                               lr=lr, head_lr=head_lr, seed=seed + f, on_step=bar.update)
            oof[test] = rater.predict([toks[i] for i in test], batch_size * 4)
        steps += rater.fit(toks, T, Z0, epochs=epochs, batch_size=batch_size, lr=lr, head_lr=head_lr,
                           seed=seed + folds, on_step=bar.update)
    oof[~np.isfinite(Y)] = np.nan
    pool = np.empty((len(texts_pool), Y.shape[1]), dtype=np.float64)
    with progress("prrc_rate: encoder scores the pool", total=len(texts_pool), unit="docs") as bar:
        for s in range(0, len(texts_pool), POOL_CHUNK):  # tokenized a chunk at a time: memory stays flat
            part = rater.tokenize(texts_pool[s : s + POOL_CHUNK])
            pool[s : s + len(part)] = rater.predict(part, batch_size * 4, on_batch=bar.update)
    sp, w1, ex = [], [], []
    for j in range(Y.shape[1]):
        have = np.isfinite(Y[:, j])
        s, w, e = agreement(oof[have, j], Y[have, j])
        sp.append(s)
        w1.append(w)
        ex.append(e)
    return EncoderDistilled(pool, oof, sp, w1, ex, str(rater.device), epochs, steps)
