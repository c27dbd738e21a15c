"""LESS gradient features (Xia et al., ICML 2024; princeton-nlp/LESS) on tensors, no I/O.

Steps (algorithms.md 3.1(b)):
1. LoRA warm-up on a random share of the pool, saving LoRA weights and Adam moments every epoch.
2. Per-example gradients of the LoRA parameters at each checkpoint: mean cross-entropy over the
   example's label tokens. Training rows get the Adam direction of that checkpoint without bias
   correction, Γ = m'/sqrt(v' + eps), m' = b1 m + (1-b1) g, v' = b2 v + (1-b2) g²; validation rows
   keep the raw gradient.
3. Seeded Rademacher projection to ``proj_dim``, generated block by block so the D x k matrix is
   never held when large; then L2 normalisation.
4. Influence = sum over checkpoints of (mean learning rate of its epoch, renormalised) x cosine.

Per-example gradients are batched with ``torch.func`` (``vmap(grad(loss))`` over a
``functional_call``): rows are right-padded and the model runs on input embeddings without an
attention mask (HF's mask and padding checks branch on data, which vmap cannot trace); with causal
attention a row's real tokens never see its padding, so its gradient equals the unpadded one.
LoRA on the input embeddings is therefore not supported (it is not in LESS either).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

# LoRA target modules per architecture family, first match wins (LESS: q/k/v/o projections)
TARGETS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj"),  # llama, mistral, qwen, opt, ...
    ("query_key_value", "dense"),  # gpt-neox / pythia
    ("c_attn", "c_proj"),  # gpt2
    ("q", "k", "v", "o"),  # t5-style
)


def default_targets(module_names: Sequence[str]) -> list[str]:
    """The attention projections present in a model, in LESS's spirit (q/k/v/o)."""
    leaves = {n.rsplit(".", 1)[-1] for n in module_names}
    for group in TARGETS:
        found = [m for m in group if m in leaves]
        if found:
            return found
    raise ValueError("no known attention projection modules; pass target_modules")


def adam_direction(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, beta1: float = 0.9,
                   beta2: float = 0.999, eps: float = 1e-8) -> torch.Tensor:
    """LESS's Adam-preconditioned gradient: one Adam step's moments, no bias correction, eps inside."""
    import torch

    m2 = beta1 * m + (1 - beta1) * g
    v2 = beta2 * v + (1 - beta2) * g * g
    return m2 / torch.sqrt(v2 + eps)


class RademacherProjector:
    """x -> x P with P in {±1/sqrt(k)}^{D x k}, so E[<xP, yP>] = <x, y>.

    P is cut into row blocks of ``block_dims`` rows; block b is drawn from a torch.Generator seeded
    with (seed, b), so any block can be regenerated alone. Blocks are kept when the whole P fits in
    ``cache_bytes``, else regenerated on every call (the cost is shared by the rows of a batch).
    """

    def __init__(self, dim: int, proj_dim: int, *, seed: int = 0, device: str = "cpu",
                 block_dims: int | None = None, cache_bytes: int = 512 << 20, gen_device: str | None = None):
        self.dim, self.k, self.seed, self.device = dim, proj_dim, seed, device
        self.gen_device = gen_device or device  # the random stream depends on the generator's device
        self.block_dims = block_dims or max(1, min(dim, (64 << 20) // (4 * proj_dim)))
        self.n_blocks = math.ceil(dim / self.block_dims)
        self._cache: dict[int, Any] | None = {} if dim * proj_dim * 4 <= cache_bytes else None

    def block(self, b: int) -> torch.Tensor:
        import torch

        if self._cache is not None and b in self._cache:
            return self._cache[b]
        lo = b * self.block_dims
        rows = min(self.block_dims, self.dim - lo)
        gen = torch.Generator(device=self.gen_device)
        gen.manual_seed(int(self.seed) * 1_000_003 + b)
        P = torch.empty((rows, self.k), dtype=torch.float32, device=self.gen_device).bernoulli_(0.5, generator=gen)
        P.mul_(2 / math.sqrt(self.k)).sub_(1 / math.sqrt(self.k))  # in place: {0,1} -> {-1,+1}/sqrt(k)
        P = P.to(self.device)
        if self._cache is not None:
            self._cache[b] = P
        return P

    def project(self, X: torch.Tensor) -> torch.Tensor:
        """(n, D) -> (n, k), float32."""
        import torch

        out = torch.zeros(X.shape[0], self.k, dtype=torch.float32, device=X.device)
        for b in range(self.n_blocks):
            lo = b * self.block_dims
            out += X[:, lo : lo + self.block_dims].to(torch.float32) @ self.block(b)
        return out


def l2_normalize(X: torch.Tensor) -> torch.Tensor:
    import torch

    return X / torch.clamp(torch.linalg.vector_norm(X, dim=1, keepdim=True), min=1e-12)


def task_max(scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """LESS aggregation: (N, M) -> (N,), mean over each task's columns, then max over tasks."""
    T = int(codes.max()) + 1
    per = np.stack([scores[:, codes == t].mean(axis=1) for t in range(T)], axis=1)
    return per.max(axis=1)


def checkpoint_weights(mean_lrs: Sequence[float]) -> np.ndarray:
    """LESS: each checkpoint weighs by its epoch's mean learning rate, renormalised to sum to 1."""
    w = np.asarray(mean_lrs, dtype=np.float64)
    if w.sum() <= 0:
        return np.full(w.size, 1.0 / w.size)
    return w / w.sum()


def linear_lr(step: int, total: int, base_lr: float, warmup_ratio: float = 0.03) -> float:
    """HF's linear schedule with warm-up (LESS: warmup ratio 0.03)."""
    warm = math.ceil(total * warmup_ratio)
    if step < warm:
        return base_lr * (step + 1) / warm
    return base_lr * max(0.0, (total - step) / max(1, total - warm))


# -- per-example gradients ------------------------------------------------------------------------


@dataclass
class LoraParams:
    """The trainable (LoRA) parameters in a fixed order, and the frozen rest."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    frozen: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(sum(math.prod(s) for s in self.shapes))


def lora_params(model: Any) -> LoraParams:
    names, shapes, frozen = [], [], {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            names.append(n)
            shapes.append(tuple(p.shape))
        else:
            frozen[n] = p.detach()
    for n, b in model.named_buffers():
        frozen[n] = b
    return LoraParams(names, shapes, frozen)


def example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not -100 (one row or a batch)."""
    import torch

    lg = logits[..., :-1, :].float()
    lab = labels[..., 1:]
    ce = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), lab.clamp(min=0).reshape(-1),
                                           reduction="none").reshape(lab.shape)
    w = (lab >= 0).to(ce.dtype)
    return (ce * w).sum(-1) / w.sum(-1).clamp(min=1.0)


def grad_fn(model: Any, lp: LoraParams, *, autocast: Any = None) -> Callable[..., Any]:
    """``f(params_tuple, input_ids (T,), labels (T,)) -> tuple of grads``, for torch.func."""
    import contextlib

    from torch.func import functional_call, grad

    embed = model.get_input_embeddings()

    def loss(params: tuple, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        state = {**lp.frozen, **dict(zip(lp.names, params, strict=True))}
        with autocast() if autocast is not None else contextlib.nullcontext():
            # embeddings passed in: input_ids would trigger HF's data-dependent padding check
            out = functional_call(model, state, args=(),
                                  kwargs={"inputs_embeds": embed(ids[None]), "use_cache": False})
        return example_loss(out.logits, labels[None])[0]

    return grad(loss)


def per_example_grads(model: Any, lp: LoraParams, params: tuple, input_ids: torch.Tensor,
                      labels: torch.Tensor, *, batched: bool = True, autocast: Any = None) -> torch.Tensor:
    """(B, D) flattened per-example gradients of the LoRA parameters.

    ``batched``: one ``vmap(grad)`` call over the batch; else one backward pass per example (the
    reference the batched path is tested against).
    """
    import torch
    from torch.func import vmap

    g = grad_fn(model, lp, autocast=autocast)
    if batched:
        grads = vmap(g, in_dims=(None, 0, 0))(params, input_ids, labels)
        return torch.cat([x.reshape(x.shape[0], -1) for x in grads], dim=1).float()
    rows = []
    for b in range(input_ids.shape[0]):
        n = int((labels[b] >= 0).nonzero().max()) + 1 if (labels[b] >= 0).any() else input_ids.shape[1]
        grads = g(params, input_ids[b, :n], labels[b, :n])
        rows.append(torch.cat([x.reshape(-1) for x in grads]).float())
    return torch.stack(rows)


def pad_batch(seqs: Sequence[Sequence[int]], label_from: Sequence[int] | None = None,
              pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists; labels are -100 on padding (and before ``label_from[i]``: prompt tokens)."""
    import torch

    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        labels[i, : len(s)] = ids[i, : len(s)]
        if label_from is not None:
            labels[i, : label_from[i]] = -100
    return ids, labels


def features(model: Any, lp: LoraParams, params: tuple, seqs: Sequence[Sequence[int]], proj: RademacherProjector,
             *, moments: tuple[torch.Tensor, torch.Tensor] | None = None, batched: bool = True,
             autocast: Any = None, device: str = "cpu", label_from: Sequence[int] | None = None) -> np.ndarray:
    """Projected, L2-normalised gradient features of one batch of token lists: (B, k) float32.

    ``moments`` (flattened Adam m, v) turn the gradients into LESS's Adam direction (training rows).
    """
    import torch

    ids, labels = pad_batch(seqs, label_from)
    G = per_example_grads(model, lp, params, ids.to(device), labels.to(device), batched=batched,
                          autocast=autocast)
    if moments is not None:
        G = adam_direction(G, moments[0][None, :], moments[1][None, :])
    with torch.no_grad():
        return l2_normalize(proj.project(G)).cpu().numpy().astype(np.float32)


# -- LoRA warm-up ----------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """End of one warm-up epoch: LoRA weights, flattened Adam moments, mean lr, optimizer state."""

    epoch: int
    lora: dict[str, Any]
    exp_avg: Any
    exp_avg_sq: Any
    mean_lr: float
    optimizer: dict[str, Any]
    step: int


def warmup(model: Any, seqs: Sequence[Sequence[int]], *, epochs: int, lr: float, batch_size: int,
           micro_batch: int, seed: int, warmup_ratio: float = 0.03, device: str = "cpu",
           autocast: Any = None, resume: Checkpoint | None = None,
           on_epoch: Callable[[Checkpoint], None] | None = None,
           on_step: Callable[[int], None] | None = None,
           label_from: Sequence[int] | None = None) -> list[Checkpoint]:
    """Train the LoRA parameters with Adam (betas 0.9/0.999, eps 1e-8, no weight decay), linear lr.

    ``batch_size`` rows per optimizer step (gradient accumulation over ``micro_batch`` rows), one
    seeded shuffle per epoch; ``resume`` continues after that checkpoint's epoch. ``label_from[i]``:
    the loss starts at that token of row i (prompt tokens before it are masked, as in LESS).
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    n = len(seqs)
    steps_per_epoch = math.ceil(n / batch_size)
    total = steps_per_epoch * epochs
    step = 0
    start = 0
    out: list[Checkpoint] = []
    if resume is not None:
        model.load_state_dict(resume.lora, strict=False)
        opt.load_state_dict(resume.optimizer)
        step, start = resume.step, resume.epoch + 1
    model.train()
    for epoch in range(start, epochs):
        with torch.random.fork_rng(devices=[device] if device.startswith("cuda") else []):
            torch.manual_seed(seed * 1009 + epoch)  # LoRA dropout: a resumed epoch replays the same masks
            ck = _epoch(model, opt, params, names, seqs, label_from, epoch=epoch, seed=seed, lr=lr, total=total,
                        step=step, steps_per_epoch=steps_per_epoch, batch_size=batch_size, micro_batch=micro_batch,
                        warmup_ratio=warmup_ratio, device=device, autocast=autocast, on_step=on_step)
        step = ck.step
        out.append(ck)
        if on_epoch is not None:
            on_epoch(ck)
    model.eval()
    return out


def _epoch(model: Any, opt: Any, params: list, names: list[str], seqs: Sequence[Sequence[int]],
           label_from: Sequence[int] | None, *, epoch: int, seed: int, lr: float, total: int, step: int,
           steps_per_epoch: int, batch_size: int, micro_batch: int, warmup_ratio: float, device: str,
           autocast: Any, on_step: Callable[[int], None] | None) -> Checkpoint:
    import contextlib

    import torch

    order = np.random.default_rng([seed, epoch]).permutation(len(seqs))
    lrs = []
    for s in range(steps_per_epoch):
        rows = order[s * batch_size : (s + 1) * batch_size]
        cur = linear_lr(step, total, lr, warmup_ratio)
        for g in opt.param_groups:
            g["lr"] = cur
        opt.zero_grad(set_to_none=True)
        for lo in range(0, rows.size, micro_batch):
            part = rows[lo : lo + micro_batch]
            ids, labels = pad_batch([seqs[i] for i in part],
                                    None if label_from is None else [label_from[i] for i in part])
            with autocast() if autocast is not None else contextlib.nullcontext():
                logits = model(input_ids=ids.to(device), use_cache=False).logits
            loss = example_loss(logits, labels.to(device)).sum() / rows.size
            loss.backward()
        opt.step()
        lrs.append(cur)
        step += 1
        if on_step is not None:
            on_step(1)
    state = opt.state_dict()
    m = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in params]).detach().float().cpu()
    v = torch.cat([opt.state[p]["exp_avg_sq"].reshape(-1) for p in params]).detach().float().cpu()
    lora = {k: p.detach().cpu().clone() for k, p in zip(names, params, strict=True)}
    return Checkpoint(epoch, lora, m, v, float(np.mean(lrs)), state, step)


def checkpoint_digest(ck: Checkpoint) -> str:
    """Short content hash of a checkpoint's LoRA weights: feature blocks are keyed by it."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(ck.lora):
        h.update(k.encode())
        h.update(ck.lora[k].float().numpy().tobytes())
    return h.hexdigest()[:12]
