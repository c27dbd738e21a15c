"""Mixing benchmark: the Data Mixing Agent against constant mixtures and the DP optimum on the
simulator (nominal dynamics and the 8 corners of +/-30% rates; the agent trains on +/-20%), and RegMix's LightGBM against a ridge on the RegMix
proxy-run tables (Spearman on the held-out 1M runs and the 1B runs). No public agent code exists,
so the reference points are the baselines and the DP optimum; RegMix's reference is its notebook's
LightGBM, reproduced here, with the ridge check of the research notes beside it.

    python bench/mixing.py [--seeds 3] [--regmix /work/shared/data/raw/regmix]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, write_result  # noqa: E402


def agent_part(seeds: int) -> dict:
    from tools.mixing.agent import run_agent, train_cql
    from tools.mixing.simplex import lattice
    from tools.mixing.simulator import Dynamics, SkillSimulator, best_constant, dp_optimum, schedule_return
    from tools.mixing.trajectories import collect_trajectories

    dyn = Dynamics.two_field()
    acts = lattice(2, 10)
    out: dict = {"n_traj": 200, "n_steps": 40, "cql_steps": 2000, "train_jitter": 0.2, "runs": []}
    for seed in range(seeds):
        t0 = time.perf_counter()
        trajs = collect_trajectories(lambda: SkillSimulator(dyn, jitter=0.2), 200, 40, "mixed", seed=seed,
                                     actions=acts)
        pol = train_cql(trajs, acts, steps=2000, seed=seed)
        row = {"seed": seed, "train_s": time.perf_counter() - t0, "cases": {}}
        for f in [(1.0, 1.0, 1.0), *itertools.product((0.7, 1.3), repeat=3)]:
            d = dyn.perturbed(*f)
            T = 40
            ret = float(np.mean([run_agent(pol, SkillSimulator(d), T, seed=s).ret for s in range(3)]))
            row["cases"]["x".join(map(str, f))] = {
                "agent": ret, "dp_optimum": dp_optimum(d, T, acts)[1],
                "best_constant": best_constant(d, T, lattice(2, 100))[1],
                "uniform": schedule_return(d, np.full((T, 2), 0.5)),
                "proportional_80_20": schedule_return(d, np.tile([0.8, 0.2], (T, 1))),
            }
        out["runs"].append(row)
    cases = out["runs"][0]["cases"].keys()
    out["summary"] = {c: {k: float(np.mean([r["cases"][c][k] for r in out["runs"]])) for k in
                          ("agent", "dp_optimum", "best_constant", "uniform", "proportional_80_20")} for c in cases}
    for v in out["summary"].values():
        v["agent_over_dp"] = v["agent"] / v["dp_optimum"]
        v["agent_over_best_constant"] = v["agent"] / v["best_constant"]
    return out


def regmix_part(root: Path) -> dict:
    from tools.mixing import regmix

    tr = regmix.read_runs(root / "train_mixture_1m.csv", root / "train_pile_loss_1m.csv")
    te = regmix.read_runs(root / "test_mixture_1m.csv", root / "test_pile_loss_1m.csv")
    big = regmix.read_runs(root / "test_mixture_1B.csv", root / "test_pile_loss_1B.csv")
    y = regmix.metric_for(tr, "pile_cc")
    out = {}
    for kind in ("ridge", "lightgbm"):
        t0 = time.perf_counter()
        fit = regmix.fit_regressor(tr.X, y, kind=kind)
        out[kind] = {
            "spearman_1m_heldout": regmix.spearman(fit.predict(regmix.align(te, tr.domains)), regmix.metric_for(te, "pile_cc")),
            "spearman_1b": regmix.spearman(fit.predict(regmix.align(big, tr.domains)), regmix.metric_for(big, "pile_cc")),
            "fit_s": time.perf_counter() - t0,
        }
    fit = regmix.fit_regressor(tr.X, y, kind="lightgbm")
    prior = np.mean(tr.X, axis=0)
    w, pred = regmix.simulate(fit, prior, n_sim=100_000, top_k=128)
    out["proposal_top"] = dict(sorted(zip(tr.domains, w.round(4).tolist(), strict=True), key=lambda kv: -kv[1])[:5])
    out["ratio_lightgbm_over_ridge_1m"] = out["lightgbm"]["spearman_1m_heldout"] / out["ridge"]["spearman_1m_heldout"]
    out["ratio_lightgbm_over_ridge_1b"] = out["lightgbm"]["spearman_1b"] / out["ridge"]["spearman_1b"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--regmix", type=Path, default=Path("/work/shared/data/raw/regmix"))
    a = ap.parse_args()
    res = {"machine": machine()}
    if a.regmix.exists():
        res["regmix"] = regmix_part(a.regmix)
        r = res["regmix"]
        print(f"RegMix Spearman (Pile-CC loss)  ridge 1M {r['ridge']['spearman_1m_heldout']:.3f} 1B "  # noqa: T201
              f"{r['ridge']['spearman_1b']:.3f} | LightGBM 1M {r['lightgbm']['spearman_1m_heldout']:.3f} 1B "
              f"{r['lightgbm']['spearman_1b']:.3f} | ratio {r['ratio_lightgbm_over_ridge_1m']:.3f} / "
              f"{r['ratio_lightgbm_over_ridge_1b']:.3f}")
    res["agent"] = agent_part(a.seeds)
    for c, v in res["agent"]["summary"].items():
        print(f"dynamics x{c}: agent {v['agent']:.3f}  DP {v['dp_optimum']:.3f} ({v['agent_over_dp']:.1%})  "  # noqa: T201
              f"best const {v['best_constant']:.3f}  uniform {v['uniform']:.3f}  prop {v['proportional_80_20']:.3f}")
    print(write_result("mixing", res))  # noqa: T201


if __name__ == "__main__":
    main()
