"""Simulator, DP optimum, trajectories and the CQL agent (Data Mixing Agent)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tools.mixing.agent import MixingPolicy, featurize, run_agent, train_cql, transitions
from tools.mixing.env import MixingEnv
from tools.mixing.simplex import action_grid, lattice, lattice_size, nearest
from tools.mixing.simulator import (
    Dynamics,
    SkillSimulator,
    advance,
    best_constant,
    dp_optimum,
    schedule_return,
)
from tools.mixing.trajectories import TrajectoryStore, collect_trajectories, sample_schedule


def test_lattice_counts_and_sums():
    for dim, r in [(2, 10), (3, 4), (4, 3)]:
        pts = lattice(dim, r)
        assert len(pts) == lattice_size(dim, r)
        assert np.allclose(pts.sum(1), 1.0)
        assert len({tuple(p) for p in pts}) == len(pts)
    assert len(action_grid(3, 100)) <= 100
    assert np.allclose(lattice(2, 10)[nearest(lattice(2, 10), np.array([0.33, 0.67]))], [0.3, 0.7])


def test_interval_is_the_exact_ode_solution():
    """One interval of k units equals a fine Euler integration of the two ODEs."""
    dyn = Dynamics.two_field(source=2, target=2)
    w = np.array([0.1, 0.2, 0.4, 0.3])
    u_src, u_tgt = w @ dyn.exposure
    s, g = 0.6, 0.2
    n = 200_000
    h = 3.0 / n
    for _ in range(n):
        ds = dyn.b * u_src * (1 - s) - dyn.c * u_tgt * s
        dg = dyn.a * u_tgt * (1 - g)
        s, g = s + h * ds, g + h * dg
    src, tgt = advance(dyn, np.float64(0.6), np.float64(0.2), w, 3.0)
    assert abs(src - s) < 1e-4 and abs(tgt - g) < 1e-4


def test_simulator_is_a_mixing_env_and_rewards_telescope():
    dyn = Dynamics.two_field()
    env = SkillSimulator(dyn)
    assert isinstance(env, MixingEnv)
    env.reset(0)
    sched = np.array([[0.0, 1.0]] * 3 + [[1.0, 0.0]] * 3)
    total = sum(env.step(w, 1_000_000)[1] for w in sched)
    assert total == pytest.approx(schedule_return(dyn, sched))
    with pytest.raises(ValueError, match="summing to 1"):
        env.step(np.array([0.5, 0.6]), 1_000_000)


def test_dp_matches_exhaustive_enumeration():
    """On a short horizon the DP optimum equals the best of all 11^4 schedules."""
    dyn = Dynamics.two_field()
    acts = lattice(2, 10)
    T = 4
    best = max(schedule_return(dyn, acts[list(idx)]) for idx in itertools.product(range(len(acts)), repeat=T))
    _, dp = dp_optimum(dyn, T, acts, grid=401)
    assert dp == pytest.approx(best, abs=2e-4)


def test_dp_beats_constants_and_switches():
    dyn = Dynamics.two_field()
    sched, dp = dp_optimum(dyn, 40, lattice(2, 10))
    _, bc = best_constant(dyn, 40, lattice(2, 100))
    assert dp > 1.15 * bc  # a schedule, not a constant, is optimal: target first, then recover
    assert sched[0, 1] == 1.0 and sched[-1, 1] == 0.0


def test_trajectories_resume_after_a_kill(tmp_path):
    dyn = Dynamics.two_field()
    acts = lattice(2, 10)
    full = collect_trajectories(lambda: SkillSimulator(dyn), 6, 5, "mixed", seed=3, actions=acts)
    store = TrajectoryStore(tmp_path / "trajs")

    class Killed(Exception):
        pass

    def die(i: int) -> None:
        if i == 2:
            raise Killed

    with pytest.raises(Killed):
        collect_trajectories(lambda: SkillSimulator(dyn), 6, 5, "mixed", seed=3, actions=acts, store=store,
                             on_done=die)
    (tmp_path / "trajs" / ".traj-00003.123.tmp.npz").write_bytes(b"half")  # a write cut short
    assert store.indices() == [0, 1, 2]
    calls = []
    resumed = collect_trajectories(lambda: SkillSimulator(dyn), 6, 5, "mixed", seed=3, actions=acts, store=store,
                                   on_done=calls.append)
    assert calls == [3, 4, 5]
    for a, b in zip(full, resumed, strict=True):
        assert np.array_equal(a.weights, b.weights) and np.allclose(a.rewards, b.rewards)
    with pytest.raises(ValueError, match="another configuration"):
        collect_trajectories(lambda: SkillSimulator(dyn), 6, 7, "mixed", seed=3, store=store)


def test_jittered_simulator_draws_rates_per_reset():
    dyn = Dynamics.two_field()
    env = SkillSimulator(dyn, jitter=0.2)
    rates = set()
    for seed in range(5):
        env.reset(seed)
        assert 0.8 * dyn.a <= env.dyn.a <= 1.2 * dyn.a and 0.8 * dyn.c <= env.dyn.c <= 1.2 * dyn.c
        rates.add(round(env.dyn.a, 6))
    assert len(rates) == 5
    env.reset(3)
    a3 = env.dyn.a
    env.reset(3)
    assert env.dyn.a == a3


def test_samplers_stay_on_the_simplex():
    rng = np.random.default_rng(0)
    for kind in ("dirichlet", "random_walk"):
        s = sample_schedule(4, 30, kind, rng)
        assert s.shape == (30, 4) and np.allclose(s.sum(1), 1) and (s >= 0).all()
    walk = sample_schedule(3, 200, "random_walk", np.random.default_rng(1))
    iid = sample_schedule(3, 200, "dirichlet", np.random.default_rng(1))
    step = lambda x: np.abs(np.diff(x, axis=0)).sum(1).mean()  # noqa: E731
    assert step(walk) < step(iid)  # the walk persists


def _offline(n_traj: int, steps: int, seed: int = 0, keep=None):
    dyn = Dynamics.two_field()
    acts = lattice(2, 10)
    trajs = collect_trajectories(lambda: SkillSimulator(dyn), n_traj, steps, "mixed", seed=seed, actions=acts)
    if keep is not None:
        for tr in trajs:
            tr.weights = acts[[keep(nearest(acts, w)) for w in tr.weights]]
    return dyn, acts, trajs


def test_state_features_match_between_training_and_deployment():
    dyn, acts, trajs = _offline(3, 6)
    pol = train_cql(trajs, acts, steps=5, hidden=16)
    data = transitions(pol.cfg, trajs)
    tr = trajs[1]
    obs = [tr.feedback0, *tr.feedback]
    t = 4
    assert np.allclose(data["s"][6 + t], featurize(pol.cfg, tr.weights[t - 1], obs[: t + 1], t))
    assert np.allclose(data["s2"][6 + t], featurize(pol.cfg, tr.weights[t], obs[: t + 2], t + 1))
    assert data["done"][6 + 5] == 1.0 and data["done"][6 + 4] == 0.0


def test_cql_penalty_lowers_q_of_actions_outside_the_data():
    """Data only ever uses source shares <= 0.5; with the penalty, shares > 0.5 score lower."""
    acts = lattice(2, 10)
    dyn, _, trajs = _offline(60, 20, seed=1, keep=lambda i: min(i, 5))
    seen = acts[:6]
    unseen = acts[6:]
    gaps = {}
    for alpha in (0.0, 1.0):
        pol = train_cql(trajs, acts, steps=400, cql_alpha=alpha, hidden=64, seed=0)
        S = transitions(pol.cfg, trajs)["s"][::7]
        q_out = pol.q_values(S, unseen).mean()
        q_in = pol.q_values(S, seen).mean()
        gaps[alpha] = (q_out, q_out - q_in)
    assert gaps[1.0][0] < gaps[0.0][0]  # absolute Q of unseen actions lower
    assert gaps[1.0][1] < gaps[0.0][1]  # and lower relative to the actions in the data


def test_policy_save_load_and_domain_count_check(tmp_path):
    dyn, acts, trajs = _offline(4, 5)
    pol = train_cql(trajs, acts, steps=20, hidden=16)
    pol.save(tmp_path / "agent")
    back = MixingPolicy.load(tmp_path / "agent")
    S = transitions(pol.cfg, trajs)["s"][:5]
    assert np.allclose(pol.q_values(S), back.q_values(S))
    with pytest.raises(ValueError, match="trained on 2 domains"):
        run_agent(back, SkillSimulator(Dynamics.two_field(source=2, target=1)), 3)


@pytest.fixture(scope="module")
def trained():
    """Trained on a family of target models (rates within +/-20%); tested up to +/-30%, outside it."""
    dyn = Dynamics.two_field()
    acts = lattice(2, 10)
    trajs = collect_trajectories(lambda: SkillSimulator(dyn, jitter=0.2), 200, 40, "mixed", seed=0, actions=acts)
    return dyn, acts, train_cql(trajs, acts, steps=2000, seed=0)


def _baselines(dyn: Dynamics, T: int) -> dict[str, float]:
    fine = lattice(dyn.dim, 100 if dyn.dim == 2 else 20)
    return {"uniform": schedule_return(dyn, np.full((T, dyn.dim), 1 / dyn.dim)),
            "proportional (a pool of 80% general, 20% math)": schedule_return(dyn, np.tile([0.8, 0.2], (T, 1))),
            "best_constant": best_constant(dyn, T, fine)[1]}


@pytest.mark.slow
def test_agent_beats_baselines_and_is_near_the_dp_optimum(trained):
    dyn, acts, pol = trained
    ret = np.mean([run_agent(pol, SkillSimulator(dyn), 40, seed=s).ret for s in range(3)])
    base = _baselines(dyn, 40)
    _, dp = dp_optimum(dyn, 40, acts)
    for name, b in base.items():
        assert ret > b, (name, ret, b)
    assert ret >= 0.9 * dp, (ret, dp)


@pytest.mark.slow
@pytest.mark.parametrize("factors", list(itertools.product((0.7, 1.3), repeat=3)))
def test_agent_beats_constants_on_perturbed_dynamics(trained, factors):
    dyn, _, pol = trained
    pert = dyn.perturbed(*factors)
    ret = run_agent(pol, SkillSimulator(pert), 40, seed=5).ret
    for name, b in _baselines(pert, 40).items():
        assert ret > b, (factors, name, ret, b)
