"""An analytic continual-pre-training simulator with known dynamics, and its DP optimum.

Two skills, source field and target field, in [0, 1]. Each domain d exposes the model to the two
fields with strengths ``exposure[d] = (e_src, e_tgt)`` (a math domain mostly teaches the target
field; a general web domain the source field). Training one interval of ``k = tokens /
tokens_per_step`` units with weights w, u = w @ exposure:

- learning with saturation:   ds_tgt = a * u_tgt * (1 - s_tgt)
- source: learning, forgetting: ds_src = b * u_src * (1 - s_src) - c * u_tgt * s_src

Both are linear ODEs in s, so an interval is integrated exactly (no overshoot for any k). The
feedback is the skills plus Gaussian noise; the reward is the change of the objective (the sum of
the skills, or their minimum). This is the two-field toy of the research notes (section 6(e))
generalised to D domains. Because the dynamics are known, :func:`dp_optimum` gives the best
schedule on an action grid, which the agent is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

Objective = Literal["sum", "min"]


@dataclass(frozen=True)
class Dynamics:
    exposure: np.ndarray  # (D, 2): per-domain strength on (source, target)
    a: float = 0.25  # target learning rate
    b: float = 0.06  # source (re)learning rate
    c: float = 0.10  # source forgetting per unit of target exposure
    s0: tuple[float, float] = (0.70, 0.05)  # initial (source, target) skill
    noise: float = 0.005  # feedback noise (std)
    tokens_per_step: int = 1_000_000
    objective: Objective = "sum"

    @property
    def dim(self) -> int:
        return int(self.exposure.shape[0])

    def perturbed(self, fa: float, fb: float, fc: float) -> Dynamics:
        """The same domain space with the rates scaled ("an unseen target model")."""
        return replace(self, a=self.a * fa, b=self.b * fb, c=self.c * fc)

    @classmethod
    def two_field(cls, source: int = 1, target: int = 1, **kw: object) -> Dynamics:
        """``source`` general domains then ``target`` target-field domains, with graded strengths.

        Domain i of a field has strength 1 - 0.15 * i on it and 0.05 on the other field, so the
        domains of one field are not interchangeable (the best mix is not a symmetric one).
        """
        rows = [[1.0 - 0.15 * i, 0.05] for i in range(source)] + [[0.05, 1.0 - 0.15 * i] for i in range(target)]
        if source + target == 2 and source == 1:
            rows = [[1.0, 0.0], [0.0, 1.0]]  # the exact toy of the notes
        return cls(exposure=np.asarray(rows, dtype=np.float64), **kw)  # type: ignore[arg-type]


def objective(s_src: np.ndarray, s_tgt: np.ndarray, kind: Objective) -> np.ndarray:
    return s_src + s_tgt if kind == "sum" else np.minimum(s_src, s_tgt)


def advance(dyn: Dynamics, s_src: np.ndarray, s_tgt: np.ndarray, w: np.ndarray, k: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Exact integration of one interval (vectorised over states)."""
    u_src, u_tgt = np.asarray(w, dtype=np.float64) @ dyn.exposure
    tgt = 1.0 - (1.0 - s_tgt) * np.exp(-dyn.a * u_tgt * k)
    lam = dyn.b * u_src + dyn.c * u_tgt
    if lam <= 0:
        return s_src, tgt
    star = dyn.b * u_src / lam
    src = star + (s_src - star) * np.exp(-lam * k)
    return src, tgt


class SkillSimulator:
    """A :class:`~tools.mixing.env.MixingEnv` over :class:`Dynamics`."""

    feedback_names = ["source", "target"]

    def __init__(self, dynamics: Dynamics, domains: list[str] | None = None, *, jitter: float = 0.0):
        """``jitter`` > 0: every reset draws the rates a, b, c from [1 - jitter, 1 + jitter] times the
        given ones (a family of target models, so an agent trained on it must read the dynamics from
        the feedback instead of memorising one schedule)."""
        self.base = dynamics
        self.jitter = jitter
        self.dyn = dynamics
        self.domains = list(domains or [f"d{i}" for i in range(dynamics.dim)])
        if len(self.domains) != dynamics.dim:
            raise ValueError(f"{len(self.domains)} domain names for {dynamics.dim} domains")
        self._rng = np.random.default_rng(0)
        self.s = np.asarray(dynamics.s0, dtype=np.float64)

    def _observe(self) -> np.ndarray:
        return self.s + self._rng.normal(0.0, self.dyn.noise, size=2)

    def reset(self, seed: int) -> np.ndarray:
        self._rng = np.random.default_rng(seed)
        if self.jitter > 0:
            f = self._rng.uniform(1 - self.jitter, 1 + self.jitter, 3)
            self.dyn = self.base.perturbed(*f)
        self.s = np.asarray(self.dyn.s0, dtype=np.float64)
        return self._observe()

    def value(self) -> float:
        return float(objective(self.s[0], self.s[1], self.dyn.objective))

    def step(self, weights: np.ndarray, tokens: int) -> tuple[np.ndarray, float]:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.dyn.dim,) or np.any(w < -1e-9) or abs(w.sum() - 1) > 1e-6:
            raise ValueError(f"weights must be {self.dyn.dim} non-negative numbers summing to 1; got {w}")
        before = self.value()
        src, tgt = advance(self.dyn, self.s[0], self.s[1], w, tokens / self.dyn.tokens_per_step)
        self.s = np.array([float(src), float(tgt)])
        return self._observe(), self.value() - before


def schedule_return(dyn: Dynamics, schedule: np.ndarray, tokens: int | None = None) -> float:
    """Noise-free return of a weight schedule (T, D): objective(s_T) - objective(s_0)."""
    k = (tokens or dyn.tokens_per_step) / dyn.tokens_per_step
    s_src, s_tgt = np.float64(dyn.s0[0]), np.float64(dyn.s0[1])
    start = objective(s_src, s_tgt, dyn.objective)
    for w in schedule:
        s_src, s_tgt = advance(dyn, s_src, s_tgt, w, k)
    return float(objective(s_src, s_tgt, dyn.objective) - start)


def best_constant(dyn: Dynamics, n_steps: int, candidates: np.ndarray) -> tuple[np.ndarray, float]:
    """The constant mixture (among ``candidates``) with the highest return."""
    rets = [schedule_return(dyn, np.repeat(c[None, :], n_steps, 0)) for c in candidates]
    i = int(np.argmax(rets))
    return candidates[i], float(rets[i])


def _interp(V: np.ndarray, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of V on the uniform grid of [0, 1]^2."""
    g = V.shape[0] - 1
    x = np.clip(src, 0.0, 1.0) * g
    y = np.clip(tgt, 0.0, 1.0) * g
    i = np.minimum(x.astype(np.int64), g - 1)
    j = np.minimum(y.astype(np.int64), g - 1)
    fx, fy = x - i, y - j
    return ((1 - fx) * (1 - fy) * V[i, j] + fx * (1 - fy) * V[i + 1, j]
            + (1 - fx) * fy * V[i, j + 1] + fx * fy * V[i + 1, j + 1])


def dp_optimum(dyn: Dynamics, n_steps: int, actions: np.ndarray, *, grid: int = 201
               ) -> tuple[np.ndarray, float]:
    """Backward induction over a (source, target) skill grid, then a greedy forward pass.

    Returns the schedule (T, D) over ``actions`` and its exact (noise-free) return. The value
    function is interpolated between grid points; the forward pass evaluates every action exactly
    from the true state, so the returned value is achieved, not estimated.
    """
    k = 1.0
    lin = np.linspace(0.0, 1.0, grid)
    S, G = np.meshgrid(lin, lin, indexing="ij")
    Vs = [objective(S, G, dyn.objective)]  # V_T
    nxt = [advance(dyn, S, G, a, k) for a in actions]
    for _ in range(n_steps):
        V = Vs[-1]
        Vs.append(np.max([_interp(V, s2, t2) for s2, t2 in nxt], axis=0))
    Vs = Vs[::-1]  # Vs[t] = value with t steps done
    s_src, s_tgt = np.float64(dyn.s0[0]), np.float64(dyn.s0[1])
    sched = []
    for t in range(n_steps):
        vals = []
        for a in actions:
            s2, t2 = advance(dyn, s_src, s_tgt, a, k)
            vals.append(float(_interp(Vs[t + 1], np.asarray(s2), np.asarray(t2))))
        a = actions[int(np.argmax(vals))]
        sched.append(a)
        s_src, s_tgt = advance(dyn, s_src, s_tgt, a, k)
    sched_arr = np.asarray(sched)
    return sched_arr, schedule_return(dyn, sched_arr)
