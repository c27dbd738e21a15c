"""Randomness only through an explicit seed: one helper builds the generators."""

from __future__ import annotations

import numpy as np


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def torch_generator(seed: int, device: str = "cpu"):  # noqa: ANN201 - torch imported lazily
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
