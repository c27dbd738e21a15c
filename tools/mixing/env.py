"""The mixing environment protocol and the trajectory record the agent learns from.

An environment wraps a training run that is continued stage by stage: ``reset`` starts it and
returns the first evaluation feedback, ``step`` trains one interval on data drawn with the given
domain weights and returns the new feedback and the reward (the change of the objective that
balances the source field against the target field). The simulator and the proxy-LM environment
both implement it; the agent sees only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class MixingEnv(Protocol):
    domains: list[str]
    feedback_names: list[str]

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, weights: np.ndarray, tokens: int) -> tuple[np.ndarray, float]: ...


@dataclass
class Trajectory:
    """One run: the feedback before the first step, then per step the weights, feedback and reward."""

    feedback0: np.ndarray
    weights: np.ndarray  # (T, D)
    feedback: np.ndarray  # (T, F) after each step
    rewards: np.ndarray  # (T,)
    meta: dict = field(default_factory=dict)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"feedback0": self.feedback0, "weights": self.weights, "feedback": self.feedback,
                "rewards": self.rewards}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], meta: dict | None = None) -> Trajectory:
        return cls(np.asarray(a["feedback0"]), np.asarray(a["weights"]), np.asarray(a["feedback"]),
                   np.asarray(a["rewards"]), dict(meta or {}))


def rollout(env: MixingEnv, schedule: np.ndarray, *, tokens: int, seed: int = 0) -> Trajectory:
    """Run a fixed weight schedule (T, D) through ``env``."""
    fb0 = env.reset(seed)
    fbs, rs = [], []
    for w in schedule:
        fb, r = env.step(np.asarray(w, dtype=np.float64), tokens)
        fbs.append(fb)
        rs.append(r)
    return Trajectory(fb0, np.asarray(schedule, dtype=np.float64), np.asarray(fbs), np.asarray(rs))
