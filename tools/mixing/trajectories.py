"""Random mixing trajectories (the agent's offline data), stored so a killed collection resumes.

Two samplers, as in the Data Mixing Agent's trajectory collection:
- ``dirichlet``: every step draws fresh weights from Dirichlet(alpha * 1), alpha log-uniform in
  [0.1, 5] per trajectory (RegMix's strengths), so some runs jump between near-vertices and some
  stay near uniform;
- ``random_walk``: a walk in logit space from a Dirichlet start, step size drawn per trajectory, so
  runs persist in one regime long enough to reach the states a good schedule reaches (e.g. a long
  stretch of mostly-target data).
``mixed`` alternates them. Trajectory i uses its own seed (spawned from ``seed``), so a resumed
collection equals an uninterrupted one. A store is a directory of ``traj-NNNNN.npz`` files, each
written to a temp name and renamed, plus ``meta.json``; existing files are skipped on resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from tools.mixing.env import MixingEnv, Trajectory

Sampler = Literal["dirichlet", "random_walk", "mixed"]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def sample_schedule(dim: int, n_steps: int, sampler: Sampler, rng: np.random.Generator, index: int = 0
                    ) -> np.ndarray:
    """One random weight schedule (n_steps, dim)."""
    kind = sampler if sampler != "mixed" else ("dirichlet", "random_walk")[index % 2]
    strength = float(np.exp(rng.uniform(np.log(0.1), np.log(5.0))))
    if kind == "dirichlet":
        return rng.dirichlet(np.full(dim, strength), size=n_steps)
    sigma = float(rng.uniform(0.15, 1.2))
    logits = np.log(np.maximum(rng.dirichlet(np.full(dim, strength)), 1e-6))
    out = np.empty((n_steps, dim))
    for t in range(n_steps):
        logits = np.clip(logits + rng.normal(0.0, sigma, dim), -12.0, 12.0)
        out[t] = _softmax(logits)
    return out


def _seeds(seed: int, n: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def snap(schedule: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Each row replaced by its nearest (L1) point of the action lattice."""
    d = np.abs(schedule[:, None, :] - actions[None, :, :]).sum(-1)
    return actions[d.argmin(1)]


def collect_one(env: MixingEnv, n_steps: int, sampler: Sampler, seed: int, index: int, tokens: int,
                actions: np.ndarray | None = None) -> Trajectory:
    rng = np.random.default_rng(seed)
    sched = sample_schedule(len(env.domains), n_steps, sampler, rng, index)
    if actions is not None:
        sched = snap(sched, actions)
    fb0 = env.reset(seed)
    fbs, rs = [], []
    for w in sched:
        fb, r = env.step(w, tokens)
        fbs.append(fb)
        rs.append(r)
    return Trajectory(np.asarray(fb0, dtype=np.float64), sched, np.asarray(fbs, dtype=np.float64),
                      np.asarray(rs, dtype=np.float64), {"index": index, "seed": seed, "sampler": sampler})


class TrajectoryStore:
    """A directory of trajectories; safe to kill at any point (each file lands by one rename)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, i: int) -> Path:
        return self.root / f"traj-{i:05d}.npz"

    def has(self, i: int) -> bool:
        return self._path(i).exists()

    def put(self, i: int, traj: Trajectory) -> None:
        tmp = self.root / f".traj-{i:05d}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **traj.to_arrays(), meta=np.asarray(json.dumps(traj.meta)))
        os.replace(tmp, self._path(i))

    def get(self, i: int) -> Trajectory:
        with np.load(self._path(i)) as z:
            return Trajectory.from_arrays(dict(z), json.loads(str(z["meta"])))

    def indices(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.root.glob("traj-*.npz"))

    def load(self) -> list[Trajectory]:
        return [self.get(i) for i in self.indices()]

    def write_meta(self, meta: dict) -> None:
        path = self.root / "meta.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old != meta:
                raise ValueError(f"store {self.root} holds trajectories of another configuration: {old}")
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, sort_keys=True))
        os.replace(tmp, path)


def collect_trajectories(
    env_factory: Callable[[], MixingEnv],
    n_traj: int,
    n_steps: int = 40,
    sampler: Sampler = "mixed",
    seed: int = 0,
    *,
    tokens: int = 1_000_000,
    store: TrajectoryStore | None = None,
    actions: np.ndarray | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[Trajectory]:
    """Collect ``n_traj`` random trajectories; with a ``store``, resume where a killed run stopped.

    With ``actions`` (the agent's lattice) every sampled weight vector is snapped to its nearest
    lattice point, so the data's actions are candidates and CQL's penalty acts only on the
    candidates the data never tried.
    """
    seeds = _seeds(seed, n_traj)
    if store is not None:
        store.write_meta({"n_steps": n_steps, "sampler": sampler, "seed": seed, "tokens": tokens,
                          "actions": None if actions is None else np.asarray(actions).round(6).tolist()})
    out: list[Trajectory] = []
    env: MixingEnv | None = None
    for i in range(n_traj):
        if store is not None and store.has(i):
            out.append(store.get(i))
            continue
        env = env or env_factory()
        traj = collect_one(env, n_steps, sampler, seeds[i], i, tokens, actions)
        if store is not None:
            store.put(i, traj)
        out.append(traj)
        if on_done is not None:
            on_done(i)
    return out


def iter_transitions(trajs: list[Trajectory]) -> Iterator[tuple[Trajectory, int]]:
    for tr in trajs:
        for t in range(len(tr.rewards)):
            yield tr, t
