"""Proxy language models: train a tiny LM on a list of texts for a token budget, measure held-out loss.

Meta-rater and RegMix rank data by how well a *small* model trained on it predicts a validation set;
the numbers only need to order candidate datasets, so the proxy may be tiny. Two proxies share one
interface (``train`` / ``evaluate`` / ``state_dict``):

- ``kind="transformer"``: a byte-level causal transformer (2 layers, width 64, context 64 by default)
  trained with Adam on random windows of the training stream. About 0.1 M parameters; a 200 k-token
  budget takes a few seconds on one CPU core. Runs single-threaded by default (``threads=1``) so the
  result is bit-identical for a seed on any machine and several proxies can run side by side.
- ``kind="bigram"``: the analytic oracle, an add-alpha smoothed byte bigram model whose counts come from
  the same random windows. Closed form, instant; tests and quick dry runs use it.

Tokens are UTF-8 bytes; every document is prefixed with a boundary token (id 256). Training samples
``ceil(tokens / (batch * context))`` batches of windows uniformly from the concatenated stream, so a
budget larger than the data repeats it (epochs) and a smaller one sees a random part of it. Calling
``train`` again continues from the current weights and optimizer state (curriculum *stages*); each
call draws its windows from a generator seeded by (seed, stage), so a sequence of stages is
deterministic too. ``evaluate`` scores each validation text in non-overlapping context windows and
reports the mean loss per byte (nats) overall and per group label.

Usage::

    lm = ProxyLM(ProxyConfig(), seed=0)
    lm.train(texts, tokens=200_000)            # stage 1
    lm.train(more_texts, tokens=100_000)       # stage 2 continues
    ev = lm.evaluate(val_texts, groups=labels) # ev.loss, ev.group_loss["math"]
    state = lm.state_dict(); lm2 = ProxyLM.from_state(state)
    run = train_eval(texts, val_texts, tokens=200_000, seed=0)  # one call: train from scratch + evaluate
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

BOS = 256
VOCAB = 257


@dataclass(frozen=True)
class ProxyConfig:
    """Proxy hyperparameters (defaults sized for seconds on one CPU core)."""

    kind: Literal["transformer", "bigram"] = "transformer"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    context: int = 64
    batch_size: int = 32
    lr: float = 5e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    alpha: float = 0.05  # bigram add-alpha smoothing
    max_eval_bytes: int = 4096  # each validation text is cut to this many bytes
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.context < 2 or self.batch_size < 1 or self.d_model % self.n_heads:
            raise ValueError(f"bad proxy config: {self}")


@dataclass
class EvalResult:
    """Mean validation loss per byte (nats), overall and per group; byte counts behind each mean."""

    loss: float
    tokens: int
    group_loss: dict[str, float] = field(default_factory=dict)
    group_tokens: dict[str, int] = field(default_factory=dict)
    doc_loss: np.ndarray | None = None  # per validation text, mean per byte


@dataclass
class ProxyRun:
    loss: float
    group_loss: dict[str, float]
    tokens_trained: int
    steps: int
    state: dict[str, Any]


# ------------------------------------------------------------------------------------- encoding


def encode(texts: Sequence[str]) -> list[np.ndarray]:
    """Each text as int16 byte ids, prefixed by the boundary token."""
    out = []
    for t in texts:
        b = np.frombuffer(t.encode("utf-8", "replace"), dtype=np.uint8).astype(np.int16)
        out.append(np.concatenate([np.array([BOS], np.int16), b]))
    return out


def stream(texts: Sequence[str]) -> np.ndarray:
    """The training stream: every document's bytes behind a boundary token."""
    parts = encode(texts)
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def _windows(data: np.ndarray, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` windows of ``length`` tokens drawn uniformly from the stream."""
    if data.size < length:
        reps = -(-length // max(data.size, 1))
        data = np.tile(data, reps)
    starts = rng.integers(0, data.size - length + 1, size=n)
    return data[starts[:, None] + np.arange(length)[None, :]]


def _eval_chunks(texts: Sequence[str], context: int, max_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-overlapping windows over each text: (inputs, targets with -1 padding, text index per window)."""
    ins, tgts, owner = [], [], []
    for i, ids in enumerate(encode([t.encode("utf-8", "replace")[:max_bytes].decode("utf-8", "ignore")
                                    for t in texts])):
        for s in range(0, ids.size - 1, context):
            chunk = ids[s : s + context + 1]
            x = np.full(context, BOS, np.int16)
            y = np.full(context, -1, np.int16)
            x[: chunk.size - 1] = chunk[:-1]
            y[: chunk.size - 1] = chunk[1:]
            ins.append(x)
            tgts.append(y)
            owner.append(i)
    if not ins:
        return np.zeros((0, context), np.int16), np.zeros((0, context), np.int16), np.zeros(0, np.int64)
    return np.stack(ins), np.stack(tgts), np.asarray(owner, np.int64)


def _summarise(per_doc_sum: np.ndarray, per_doc_n: np.ndarray, groups: Sequence[str] | None) -> EvalResult:
    total = float(per_doc_n.sum())
    if total == 0:
        raise ValueError("the validation texts have no bytes to score")
    res = EvalResult(loss=float(per_doc_sum.sum() / total), tokens=int(total),
                     doc_loss=per_doc_sum / np.maximum(per_doc_n, 1))
    if groups is not None:
        if len(groups) != per_doc_n.size:
            raise ValueError(f"groups has {len(groups)} labels for {per_doc_n.size} validation texts")
        g = np.asarray([str(x) for x in groups], dtype=object)
        for name in sorted(set(g.tolist())):
            m = g == name
            n = float(per_doc_n[m].sum())
            if n:
                res.group_loss[name] = float(per_doc_sum[m].sum() / n)
                res.group_tokens[name] = int(n)
    return res


# ------------------------------------------------------------------------------------ the models


@contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    if n and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != old:
            torch.set_num_threads(old)


def _build_transformer(cfg: ProxyConfig):  # noqa: ANN202 - torch imported lazily
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.d_model)
            self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
            self.proj = nn.Linear(cfg.d_model, cfg.d_model)
            self.ln2 = nn.LayerNorm(cfg.d_model)
            self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                     nn.Linear(4 * cfg.d_model, cfg.d_model))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, cfg.n_heads, d // cfg.n_heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.mlp(self.ln2(x))

    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(VOCAB, cfg.d_model)
            self.pos = nn.Parameter(torch.zeros(cfg.context, cfg.d_model))
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.ln = nn.LayerNorm(cfg.d_model)
            nn.init.normal_(self.tok.weight, std=0.02)
            nn.init.normal_(self.pos, std=0.02)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            x = self.tok(idx) + self.pos[: idx.shape[1]]
            for blk in self.blocks:
                x = blk(x)
            return self.ln(x) @ self.tok.weight.T  # tied output embedding

    return TinyLM()


class ProxyLM:
    """A proxy LM that trains in stages and reports held-out loss; see the module docstring."""

    def __init__(self, config: ProxyConfig | None = None, *, seed: int = 0):
        self.config = config or ProxyConfig()
        self.seed = int(seed)
        self.stage = 0
        self.steps = 0
        self.tokens_trained = 0
        if self.config.kind == "bigram":
            self.counts = np.zeros((VOCAB, VOCAB), dtype=np.float64)
            self.model = self.opt = None
        else:
            import torch

            with _threads(self.config.threads), torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self.model = _build_transformer(self.config).to(self.config.device)
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr,
                                         weight_decay=self.config.weight_decay, betas=(0.9, 0.95))

    @property
    def n_params(self) -> int:
        if self.model is None:
            return VOCAB * VOCAB
        return sum(p.numel() for p in self.model.parameters())

    # -- training ------------------------------------------------------------------------------

    def train(self, texts: Sequence[str] | np.ndarray, tokens: int) -> int:
        """Train on ``texts`` (or an encoded stream) for ``tokens`` predicted tokens; returns the steps run."""
        data = texts if isinstance(texts, np.ndarray) else stream(texts)
        if data.size < 2:
            raise ValueError("the training texts are empty")
        cfg = self.config
        per_step = cfg.batch_size * cfg.context
        n_steps = max(1, math.ceil(int(tokens) / per_step))
        rng = np.random.default_rng([self.seed, self.stage, 0x9E37])
        self.stage += 1
        if cfg.kind == "bigram":
            w = _windows(data, n_steps * cfg.batch_size, cfg.context + 1, rng)
            np.add.at(self.counts, (w[:, :-1].ravel(), w[:, 1:].ravel()), 1.0)
        else:
            self._train_torch(data, n_steps, rng)
        self.steps += n_steps
        self.tokens_trained += n_steps * per_step
        return n_steps

    def _train_torch(self, data: np.ndarray, n_steps: int, rng: np.random.Generator) -> None:
        import torch
        from torch.nn import functional as F  # noqa: N812

        cfg = self.config
        self.model.train()
        with _threads(cfg.threads):
            for i in range(n_steps):
                w = torch.from_numpy(_windows(data, cfg.batch_size, cfg.context + 1, rng).astype(np.int64))
                w = w.to(cfg.device)
                lr = cfg.lr * min(1.0, (self.steps + i + 1) / max(cfg.warmup_steps, 1))
                for g in self.opt.param_groups:
                    g["lr"] = lr
                logits = self.model(w[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, VOCAB), w[:, 1:].reshape(-1))
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.opt.step()

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate(self, texts: Sequence[str], groups: Sequence[str] | None = None) -> EvalResult:
        """Mean loss per byte (nats) on ``texts``, overall and per group label."""
        cfg = self.config
        x, y, owner = _eval_chunks(texts, cfg.context, cfg.max_eval_bytes)
        if cfg.kind == "bigram":
            probs = (self.counts + cfg.alpha) / (self.counts.sum(1, keepdims=True) + cfg.alpha * VOCAB)
            logp = np.log(probs)
            m = y >= 0
            tok_loss = np.where(m, -logp[x, np.maximum(y, 0)], 0.0)
        else:
            tok_loss, m = self._token_losses(x, y)
        per_sum = np.bincount(owner, weights=tok_loss.sum(1), minlength=len(texts))
        per_n = np.bincount(owner, weights=m.sum(1), minlength=len(texts))
        return _summarise(per_sum, per_n, groups)

    def _token_losses(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch
        from torch.nn import functional as F  # noqa: N812

        cfg = self.config
        self.model.eval()
        out = np.zeros(y.shape, dtype=np.float64)
        with _threads(cfg.threads), torch.no_grad():
            for s in range(0, x.shape[0], 256):
                xb = torch.from_numpy(x[s : s + 256].astype(np.int64)).to(cfg.device)
                yb = torch.from_numpy(y[s : s + 256].astype(np.int64)).to(cfg.device)
                logits = self.model(xb)
                lo = F.cross_entropy(logits.reshape(-1, VOCAB), yb.clamp(min=0).reshape(-1), reduction="none")
                out[s : s + 256] = lo.view(yb.shape).double().cpu().numpy()
        m = y >= 0
        return np.where(m, out, 0.0), m

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training: config, seed, stage, weights, optimizer."""
        st: dict[str, Any] = {"config": asdict(self.config), "seed": self.seed, "stage": self.stage,
                              "steps": self.steps, "tokens_trained": self.tokens_trained}
        if self.model is None:
            st["counts"] = self.counts.copy()
        else:
            st["model"] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            st["opt"] = self.opt.state_dict()
        return st

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ProxyLM:
        lm = cls(ProxyConfig(**state["config"]), seed=state["seed"])
        lm.stage, lm.steps, lm.tokens_trained = state["stage"], state["steps"], state["tokens_trained"]
        if lm.model is None:
            lm.counts = np.array(state["counts"], dtype=np.float64)
        else:
            import copy

            lm.model.load_state_dict(state["model"])
            lm.opt.load_state_dict(copy.deepcopy(state["opt"]))
        return lm

    def to_bytes(self) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ProxyLM:
        import torch

        return cls.from_state(torch.load(io.BytesIO(data), weights_only=False))


def train_eval(
    train_texts: Sequence[str],
    val_texts: Sequence[str],
    *,
    tokens: int,
    seed: int = 0,
    config: ProxyConfig | None = None,
    val_groups: Sequence[str] | None = None,
    init: dict[str, Any] | None = None,
) -> ProxyRun:
    """Train a proxy (from scratch, or continuing ``init``) on ``train_texts`` and score ``val_texts``."""
    lm = ProxyLM.from_state(init) if init is not None else ProxyLM(config, seed=seed)
    steps = lm.train(train_texts, tokens)
    ev = lm.evaluate(val_texts, val_groups)
    return ProxyRun(loss=ev.loss, group_loss=ev.group_loss, tokens_trained=lm.tokens_trained, steps=steps,
                    state=lm.state_dict())
