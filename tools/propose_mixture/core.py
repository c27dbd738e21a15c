"""Turning a method's weights into a feasible per-stage plan: bounds, epoch caps, tokens, plots.

``fit_box`` is the Euclidean-free "scale and clip" projection used for caps, floors and epoch caps:
w_i(tau) = clip(tau * w_i, lo_i, hi_i) with tau found by bisection so the weights sum to one. It
keeps the method's ratios among the domains that hit no bound (the UniMax water-filling rule) and is
exact whenever sum(lo) <= 1 <= sum(hi). Stages are filled in order; a domain's epoch allowance is
shared by all stages, so a later stage sees what earlier ones used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def fit_box(w: np.ndarray, lo: np.ndarray, hi: np.ndarray, iters: int = 200) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if lo.sum() > 1 + 1e-9:
        raise ValueError(f"the floors sum to {lo.sum():.4f} > 1")
    if hi.sum() < 1 - 1e-9:
        raise ValueError(f"the caps sum to {hi.sum():.4f} < 1")
    base = np.maximum(w, 0.0)
    if base.sum() <= 0:
        base = np.ones_like(w)
    if np.clip(base * 1e15, lo, hi).sum() < 1 - 1e-12:
        # the weighted domains sit at their caps and still leave room: the others share it evenly
        base = np.where(base > 0, base, 1e-9)
    a, b = 0.0, 1.0
    while np.clip(b * base, lo, hi).sum() < 1.0 and b < 1e15:
        b *= 2
    for _ in range(iters):
        m = 0.5 * (a + b)
        if np.clip(m * base, lo, hi).sum() < 1.0:
            a = m
        else:
            b = m
    out = np.clip(b * base, lo, hi)
    return out / out.sum()


@dataclass
class Plan:
    weights: np.ndarray  # (S, D)
    tokens: np.ndarray  # (S, D) int
    notes: list[str] = field(default_factory=list)


def plan_stages(stage_weights: np.ndarray, domains: list[str], pool_tokens: np.ndarray, budget: int,
                max_epochs: float | None, caps: np.ndarray, floors: np.ndarray) -> Plan:
    """Feasible per-stage weights and token counts; every change is written into ``notes``."""
    S, D = stage_weights.shape
    per_stage = np.full(S, budget // S, dtype=np.int64)
    per_stage[: budget - per_stage.sum()] += 1
    used = np.zeros(D)
    W = np.zeros((S, D))
    N = np.zeros((S, D), dtype=np.int64)
    notes: list[str] = []
    for s in range(S):
        hi = caps.copy()
        if max_epochs is not None:
            room = np.maximum(max_epochs * pool_tokens - used, 0.0)
            hi = np.minimum(hi, room / max(per_stage[s], 1))
        lo = np.minimum(floors, hi)
        w0 = np.asarray(stage_weights[s], dtype=np.float64)
        w0 = w0 / w0.sum()
        if hi.sum() < 1 - 1e-9:
            raise ValueError(
                f"stage {s + 1}: {per_stage[s]} tokens do not fit: the domains' remaining allowance "
                f"({max_epochs} epochs of {int(pool_tokens.sum())} tokens, caps) covers only {hi.sum():.1%}")
        w = fit_box(w0, lo, hi)
        moved = np.abs(w - w0)
        if moved.max() > 5e-4:
            changed = [f"{domains[i]} {w0[i]:.3f}->{w[i]:.3f}" for i in np.argsort(-moved)[:4] if moved[i] > 5e-4]
            notes.append(f"stage {s + 1}: caps/floors/epoch allowance moved " + ", ".join(changed))
        n = np.floor(w * per_stage[s]).astype(np.int64)
        rest = int(per_stage[s] - n.sum())
        if rest:
            frac = w * per_stage[s] - n
            room_left = (hi * per_stage[s]) - n
            order = [i for i in np.argsort(-frac) if room_left[i] >= 1][:rest]
            n[order] += 1
        W[s], N[s] = w, n
        used += n
    return Plan(W, N, notes)


def stage_plot(domains: list[str], weights: np.ndarray, pool_share: np.ndarray, title: str):  # noqa: ANN201
    """Stacked bars: the pool's shares, then one bar per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    S = weights.shape[0]
    cols = np.vstack([pool_share[None, :], weights])
    labels = ["pool"] + [f"stage {s + 1}" for s in range(S)]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 + 0.7 * (S + 1)), 3.6))
    bottom = np.zeros(S + 1)
    cmap = plt.get_cmap("tab20")
    for i, d in enumerate(domains):
        ax.bar(range(S + 1), cols[:, i], bottom=bottom, color=cmap(i % 20), label=d, edgecolor="white",
               linewidth=0.5)
        bottom += cols[:, i]
    ax.set_xticks(range(S + 1), labels, rotation=30 if S > 6 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of tokens")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
