"""The Data Mixing Agent (Yang et al., 2025): offline RL with conservative Q-learning.

State: the current domain weights, the last ``history`` evaluation feedbacks (normalised with the
training data's statistics), the last change of feedback and the fraction of the run done (the
episode has a fixed number of re-weighting steps). Action: the next weights, one point of a simplex
lattice. The Q-network scores (state, action-vector) pairs, so the lattice is an input rather than
an output layer: the same network scores any candidate set of the same dimension, and data actions
need not lie on the lattice.

Why a discrete lattice rather than a continuous (Gaussian or Dirichlet) actor: CQL's penalty
``logsumexp_a Q(s, a) - Q(s, a_data)`` is computed exactly over the candidates instead of being
estimated by sampling, there is no actor to destabilise, and the dynamic-programming optimum the
agent is tested against lives on the same lattice. With ~400 candidates the lattice of 4 domains
has steps of 1/12, of 8 domains 1/4; finer control past that would need the continuous actor.

No public code exists for the agent; d3rlpy's DiscreteCQL would need a fixed action head (no
action-as-input scoring), so this is a compact torch implementation (double DQN targets, Polyak
target network, Huber TD loss, the CQL(H) penalty with weight ``cql_alpha``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tools.mixing.env import MixingEnv, Trajectory


@dataclass
class AgentConfig:
    dim: int
    n_feedback: int
    horizon: int
    history: int = 4
    hidden: int = 128
    layers: int = 2
    cql_alpha: float = 0.2
    gamma: float = 0.99
    steps: int = 3000
    batch: int = 256
    lr: float = 1e-3
    tau: float = 0.01
    seed: int = 0
    fb_mean: list[float] = field(default_factory=list)
    fb_std: list[float] = field(default_factory=list)
    reward_scale: float = 1.0
    feedback_names: list[str] = field(default_factory=list)

    @property
    def state_dim(self) -> int:
        return self.dim + self.n_feedback * (self.history + 1) + 1


def _features(cfg: AgentConfig, prev_w: np.ndarray, norm: np.ndarray, t: int) -> np.ndarray:
    """State at decision ``t`` from normalised feedbacks ``norm`` (rows o_0 .. o_t, at least)."""
    hist = [norm[max(t - j, 0)] for j in range(cfg.history)]
    delta = norm[t] - norm[t - 1] if t > 0 else np.zeros(cfg.n_feedback)
    return np.concatenate([np.asarray(prev_w, dtype=np.float64), *hist, delta, [t / max(cfg.horizon, 1)]])


def featurize(cfg: AgentConfig, prev_w: np.ndarray, obs: list[np.ndarray], t: int) -> np.ndarray:
    """State vector at decision ``t``; ``obs`` = feedbacks o_0 .. o_t (o_0 before any training)."""
    norm = (np.asarray(obs[: t + 1], dtype=np.float64) - np.asarray(cfg.fb_mean)) / np.asarray(cfg.fb_std)
    return _features(cfg, prev_w, norm, t).astype(np.float32)


def transitions(cfg: AgentConfig, trajs: list[Trajectory]) -> dict[str, np.ndarray]:
    """(s, a, r, s', done) arrays from trajectories."""
    S, A, R, D = [], [], [], []
    S2 = []
    uni = np.full(cfg.dim, 1.0 / cfg.dim)
    mu, sd = np.asarray(cfg.fb_mean), np.asarray(cfg.fb_std)
    for tr in trajs:
        norm = (np.vstack([tr.feedback0[None, :], tr.feedback]) - mu) / sd
        T = len(tr.rewards)
        states = [_features(cfg, tr.weights[t - 1] if t else uni, norm, t) for t in range(T + 1)]
        S += states[:-1]
        S2 += states[1:]
        A.append(tr.weights)
        R.append(tr.rewards)
        D.append((np.arange(T) == T - 1).astype(np.float32))
    return {"s": np.asarray(S, np.float32), "a": np.concatenate(A).astype(np.float32),
            "r": np.concatenate(R).astype(np.float32), "s2": np.asarray(S2, np.float32),
            "done": np.concatenate(D)}


def _qnet(cfg: AgentConfig):  # noqa: ANN202 - torch imported lazily
    """Q(s, a) = v(s) + phi(s) . psi(a): two towers, so scoring K candidates costs one state pass."""
    import torch.nn as nn

    def mlp(n_in: int, n_out: int) -> nn.Sequential:
        dims = [n_in] + [cfg.hidden] * cfg.layers
        mods: list[Any] = []
        for i in range(len(dims) - 1):
            mods += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
        mods.append(nn.Linear(dims[-1], n_out))
        return nn.Sequential(*mods)

    class QNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.state = mlp(cfg.state_dim, cfg.hidden + 1)
            self.action = mlp(cfg.dim, cfg.hidden)

        def all(self, s: Any, actions: Any) -> Any:  # (B, K)
            h = self.state(s)
            return h[:, :1] + h[:, 1:] @ self.action(actions).T

        def pair(self, s: Any, a: Any) -> Any:  # (B,)
            h = self.state(s)
            return h[:, 0] + (h[:, 1:] * self.action(a)).sum(-1)

    return QNet()


class MixingPolicy:
    """A trained agent: picks the next weights from the current state; saved as two files."""

    def __init__(self, cfg: AgentConfig, net: Any, actions: np.ndarray, log: dict | None = None):
        self.cfg = cfg
        self.net = net
        self.actions = np.asarray(actions, dtype=np.float64)
        self.log = log or {}

    def q_values(self, states: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        import torch

        acts = self.actions if actions is None else actions
        with torch.no_grad():
            q = self.net.all(torch.as_tensor(np.atleast_2d(states), dtype=torch.float32),
                             torch.as_tensor(acts, dtype=torch.float32))
        return q.numpy() / self.cfg.reward_scale

    def act(self, state: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        acts = self.actions if actions is None else actions
        return acts[int(np.argmax(self.q_values(state, acts)[0]))]

    def check_env(self, env: MixingEnv) -> None:
        if len(env.domains) != self.cfg.dim:
            raise ValueError(f"the agent was trained on {self.cfg.dim} domains; this environment has "
                             f"{len(env.domains)} (retrain it, or group the domains into {self.cfg.dim})")

    def save(self, directory: str | Path) -> None:
        import torch

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), d / "qnet.pt")
        (d / "agent.json").write_text(json.dumps({"config": asdict(self.cfg), "actions": self.actions.tolist(),
                                                  "log": self.log}, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> MixingPolicy:
        import torch

        d = Path(directory)
        meta = json.loads((d / "agent.json").read_text())
        cfg = AgentConfig(**meta["config"])
        net = _qnet(cfg)
        net.load_state_dict(torch.load(d / "qnet.pt", map_location="cpu", weights_only=True))
        net.eval()
        return cls(cfg, net, np.asarray(meta["actions"]), meta.get("log"))


def train_cql(trajs: list[Trajectory], actions: np.ndarray, **kw: Any) -> MixingPolicy:
    """Fit the Q-network by CQL on the trajectories; ``actions`` is the candidate set (K, D)."""
    import torch

    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    if not trajs:
        raise ValueError("no trajectories to learn from")
    fb = np.concatenate([np.stack([t.feedback0, *t.feedback]) for t in trajs])
    rewards = np.concatenate([t.rewards for t in trajs])
    cfg = AgentConfig(dim=int(trajs[0].weights.shape[1]), n_feedback=int(fb.shape[1]),
                      horizon=int(len(trajs[0].rewards)), **kw)
    cfg.fb_mean = fb.mean(0).tolist()
    cfg.fb_std = np.maximum(fb.std(0), 1e-6).tolist()
    cfg.reward_scale = float(1.0 / max(rewards.std(), 1e-9))
    data = transitions(cfg, trajs)
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    net, tgt = _qnet(cfg), _qnet(cfg)
    tgt.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    T = {k: torch.as_tensor(v) for k, v in data.items()}
    T["r"] = T["r"] * cfg.reward_scale
    acts = torch.as_tensor(actions, dtype=torch.float32)
    n = T["s"].shape[0]
    hist = {"td": [], "cql": []}
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (min(cfg.batch, n),), generator=g)
        s, a, r, s2, done = T["s"][idx], T["a"][idx], T["r"][idx], T["s2"][idx], T["done"][idx]
        q_data = net.pair(s, a)
        with torch.no_grad():
            best = net.all(s2, acts).argmax(1)
            q2 = tgt.all(s2, acts).gather(1, best[:, None]).squeeze(1)
            y = r + cfg.gamma * (1.0 - done) * q2
        td = torch.nn.functional.mse_loss(q_data, y)
        loss = td
        if cfg.cql_alpha > 0:
            q_cand = net.all(s, acts)
            penalty = (torch.logsumexp(torch.cat([q_cand, q_data[:, None]], 1), 1) - q_data).mean()
            loss = td + cfg.cql_alpha * penalty
            if step % 50 == 0:
                hist["cql"].append(float(penalty.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p, pt in zip(net.parameters(), tgt.parameters(), strict=True):
                pt.mul_(1 - cfg.tau).add_(cfg.tau * p)
        if step % 50 == 0:
            hist["td"].append(float(td.detach()))
    net.eval()
    return MixingPolicy(cfg, net, actions, {"transitions": int(n), "td_last": hist["td"][-5:],
                                            "cql_last": hist["cql"][-5:]})


def run_agent(policy: MixingPolicy, env: MixingEnv, n_steps: int, *, tokens: int = 1_000_000, seed: int = 0,
              actions: np.ndarray | None = None) -> Trajectory:
    """Deploy: at every step feed the state, train the interval on the chosen weights."""
    policy.check_env(env)
    obs = [np.asarray(env.reset(seed), dtype=np.float64)]
    prev = np.full(policy.cfg.dim, 1.0 / policy.cfg.dim)
    ws, fbs, rs = [], [], []
    for t in range(n_steps):
        w = policy.act(featurize(policy.cfg, prev, obs, t), actions)
        fb, r = env.step(w, tokens)
        obs.append(np.asarray(fb, dtype=np.float64))
        ws.append(w)
        fbs.append(fb)
        rs.append(r)
        prev = w
    return Trajectory(obs[0], np.asarray(ws), np.asarray(fbs), np.asarray(rs))
