"""DoReMi-style domain reweighting (Xie et al., NeurIPS 2023) by excess loss over a reference model.

The reference trains on the default weights; the proxy trains in rounds on the current weights
alpha. After each round the per-domain excess loss lambda_d = max(loss_proxy_d - loss_ref_d, 0)
updates alpha <- softmax(log alpha + eta * lambda), smoothed alpha <- (1 - c) alpha + c / D; the
answer is the average of alpha over all updates (``avg_domain_weights`` in the reference code).

Difference from the paper: the paper measures excess loss per token inside each Group-DRO training
batch and also reweights the proxy's loss; here the excess is measured on held-out text per domain
after each round and the proxy is trained on data sampled by alpha (the "resampling" variant), which
fits a proxy LM that only exposes train-on-stream and evaluate-per-group.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def update(alpha: np.ndarray, excess: np.ndarray, *, eta: float = 1.0, smoothing: float = 1e-3) -> np.ndarray:
    """One exponentiated-gradient step on the simplex, then mixing with uniform."""
    lam = np.maximum(np.asarray(excess, dtype=np.float64), 0.0)
    logits = np.log(np.maximum(alpha, 1e-300)) + eta * lam
    a = np.exp(logits - logits.max())
    a /= a.sum()
    return (1.0 - smoothing) * a + smoothing / a.size


def doremi_weights(
    ref_losses: np.ndarray,
    train_proxy: Callable[[np.ndarray], np.ndarray],
    *,
    rounds: int,
    init: np.ndarray,
    eta: float = 1.0,
    smoothing: float = 1e-3,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Run ``rounds`` proxy rounds; ``train_proxy(alpha)`` trains one round and returns per-domain losses.

    Returns (averaged alpha, alpha per round, excess per round).
    """
    alpha = np.asarray(init, dtype=np.float64) / np.sum(init)
    history, excesses = [], []
    for _ in range(rounds):
        losses = np.asarray(train_proxy(alpha), dtype=np.float64)
        ex = losses - np.asarray(ref_losses)
        alpha = update(alpha, ex, eta=eta, smoothing=smoothing)
        history.append(alpha)
        excesses.append(ex)
    avg = np.mean(history, axis=0)
    return avg / avg.sum(), history, excesses
