"""propose_mixture: per-stage domain weights for (continued) pre-training, as a reviewable proposal.

``run`` reads the pool once (per-domain documents and bytes; texts kept only for the methods that
train proxy models, at most ``_KEEP_DOCS`` per domain), asks the chosen method for weights per stage,
makes them feasible (caps, floors, an epoch allowance shared by the stages; every change recorded
in ``corrections``), and writes a ``mixture`` artifact (JSON: per-stage weights and tokens, the
pool's shares, expected feedback, evidence) and a stacked-bar ``plot``. The agent also writes its
trajectories (``table``) and the trained agent (``agent``), which a later run reuses via ``agent=``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.corpus import NO_DOMAIN, ReadStats, read_batches
from tools.errors import BadInput, field_error
from tools.propose_mixture import core
from tools.propose_mixture.schema import (
    SPEC,
    ProposeMixtureMetrics,
    ProposeMixtureRequest,
    ProposeMixtureResult,
)

__all__ = ["SPEC", "ProposeMixtureMetrics", "ProposeMixtureRequest", "ProposeMixtureResult", "run", "core"]

_KEEP_DOCS = 2000
_PROXY_METHODS = ("doremi",)
T = "propose_mixture"


def _read_pool(request: ProposeMixtureRequest, ctx: ToolContext, keep_texts: bool) -> tuple[dict, dict, dict, ReadStats]:
    stats = ReadStats()
    docs: dict[str, int] = defaultdict(int)
    nbytes: dict[str, int] = defaultdict(int)
    texts: dict[str, list[str]] = defaultdict(list)
    labels = None
    if request.clusters:
        labels = _cluster_labels(request, ctx)
    try:
        for b in read_batches(request.corpus, ("id", "text", "domain"), allowed_roots=ctx.data_roots, stats=stats):
            ids = b.column("id").to_pylist()
            doms = b.column("domain").to_pylist() if labels is None else [labels.get(i, NO_DOMAIN) for i in ids]
            for d, t in zip(doms, b.column("text").to_pylist(), strict=True):
                t = t or ""
                docs[d] += 1
                nbytes[d] += len(t.encode("utf-8"))
                if keep_texts and len(texts[d]) < _KEEP_DOCS and t:
                    texts[d].append(t)
    except BadInput as e:
        raise BadInput(e.message, where=e.where or f"{T}.corpus", hint=e.hint) from None
    return dict(docs), dict(nbytes), dict(texts), stats


def _cluster_labels(request: ProposeMixtureRequest, ctx: ToolContext) -> dict[str, str]:
    from sklearn.cluster import KMeans

    from tools.embeddings import pool_vectors

    pv = pool_vectors(request.corpus, ctx, embeddings=request.embeddings)
    if len(pv.ids) < request.clusters:
        raise field_error(T, "clusters", f"at most the {len(pv.ids)} documents", request.clusters)
    km = KMeans(n_clusters=request.clusters, n_init=4, random_state=request.seed).fit(pv.vectors)
    return {i: f"cluster-{c}" for i, c in zip(pv.ids, km.labels_, strict=True)}


def _domains(request: ProposeMixtureRequest, docs: dict[str, int]) -> list[str]:
    if not docs:
        raise BadInput("the corpus has no documents", where=f"{T}.corpus")
    if request.domains is not None:
        unknown = [d for d in request.domains if d not in docs]
        if unknown:
            raise field_error(T, "domains", f"domains of the corpus ({', '.join(sorted(docs)[:12])})", unknown)
        doms = list(dict.fromkeys(request.domains))
    else:
        doms = sorted(docs)
    if len(doms) < 2:
        hint = (" — the corpus has no domain column; pass clusters=k to mix k embedding clusters"
                if doms == [NO_DOMAIN] else "")
        raise BadInput(f"a mixture needs at least two domains; got {doms}{hint}", where=f"{T}.domains")
    return doms


def _check_names(field: str, names: list[str] | dict, doms: list[str]) -> None:
    unknown = [d for d in names if d not in doms]
    if unknown:
        raise field_error(T, field, f"names among the mixed domains ({', '.join(doms[:12])})", unknown)


def _bounds(request: ProposeMixtureRequest, doms: list[str]) -> tuple[np.ndarray, np.ndarray]:
    _check_names("caps", request.caps, doms)
    _check_names("floors", request.floors, doms)
    for name, vals in (("caps", request.caps), ("floors", request.floors)):
        bad = {d: v for d, v in vals.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise field_error(T, name, "shares between 0 and 1", bad)
    caps = np.array([request.caps.get(d, 1.0) for d in doms])
    floors = np.array([request.floors.get(d, 0.0) for d in doms])
    if floors.sum() > 1 + 1e-9:
        raise field_error(T, "floors", "shares summing to at most 1", request.floors)
    if caps.sum() < 1 - 1e-9:
        raise field_error(T, "caps", "shares summing to at least 1 over the mixed domains", request.caps)
    if np.any(floors > caps + 1e-12):
        raise field_error(T, "floors", "no floor above its domain's cap", request.floors)
    return caps, floors


def _proxy_config(request: ProposeMixtureRequest, ctx: ToolContext) -> Any:
    from tools.proxy_lm import ProxyConfig

    return ProxyConfig(kind=request.proxy_model, device=ctx.resolve_device())


def _proxy_env(request: ProposeMixtureRequest, ctx: ToolContext, texts: dict[str, list[str]], doms: list[str],
               source: list[str], target: list[str]) -> Any:
    from tools.mixing.proxy_env import ProxyLMEnv

    return ProxyLMEnv({d: texts.get(d, []) for d in doms}, source or doms, target or doms,
                      config=_proxy_config(request, ctx), seed=request.seed)


# ------------------------------------------------------------------------------------- methods


def _static(request: ProposeMixtureRequest, sizes: np.ndarray) -> tuple[np.ndarray, dict]:
    from tools.mixing import baselines

    if request.method == "uniform":
        w = baselines.uniform(sizes.size)
    elif request.method == "proportional":
        w = baselines.proportional(sizes)
    else:
        w = baselines.temperature(sizes, request.temperature)
    ev = {"method": request.method, "runs": 0}
    if request.method == "temperature":
        ev["temperature"] = request.temperature
    return w, ev


def _regmix(request: ProposeMixtureRequest, ctx: ToolContext, doms: list[str], share: np.ndarray,
            texts: dict, source: list[str], target: list[str]) -> tuple[np.ndarray, dict, list[dict]]:
    from tools.mixing import regmix
    from tools.refs import resolve_input

    notes: list[str] = []
    if request.proxy_runs:
        mix_path = resolve_input(request.proxy_runs, ctx, field=f"{T}.proxy_runs")
        met_path = resolve_input(request.proxy_metrics, ctx, field=f"{T}.proxy_metrics") if request.proxy_metrics else None
        try:
            runs = regmix.read_runs(mix_path, met_path)
            X = regmix.align(runs, doms)
            y = (regmix.metric_for(runs, request.metric) if request.metric
                 else np.mean(np.stack(list(runs.metrics.values())), axis=0))
        except (KeyError, ValueError, FileNotFoundError) as e:
            raise BadInput(str(e).strip("\"'"), where=f"{T}.proxy_runs") from None
        extra = [d for d in runs.domains if d not in doms]
        if extra:
            notes.append(f"the table's domains {extra[:6]} are not mixed here; rows renormalised over the mixed domains")
        sums = X.sum(1)
        keep = sums > 0
        X = X[keep] / sums[keep, None]
        y = y[keep]
        source_desc = runs.source
    else:
        from tools.mixing.regmix import sample_configs

        X = sample_configs(share, request.n_configs, seed=42 + request.seed, multiplier=100)
        env = _proxy_env(request, ctx, texts, doms, source, target)
        ys = []
        with ctx.progress("propose_mixture: regmix proxy runs", total=len(X), unit="runs") as bar:
            for i, w in enumerate(X):
                env.reset(request.seed * 1000 + i)
                fb, _ = env.step(w, request.proxy_tokens)
                ys.append(float(fb.sum()) if (source and target) else float(np.mean(list(env.domain_losses().values()))))
                bar.update(1)
        y = np.asarray(ys)
        source_desc = f"{len(X)} proxy runs of {request.proxy_model} on {request.proxy_tokens} bytes"
    n = len(X)
    leaf = int(min(20, max(2, n // 10)))
    held = regmix.fit_regressor(X, y, kind="lightgbm", val_fraction=0.1 if n >= 30 else 0.25, min_data_in_leaf=leaf)
    ridge = regmix.fit_regressor(X, y, kind="ridge", val_fraction=0.1 if n >= 30 else 0.25)
    fit = regmix.fit_regressor(X, y, kind="lightgbm", min_data_in_leaf=leaf,
                               num_iterations=max(held.model.best_iteration or 1000, 50))
    w, pred = regmix.simulate(fit, share, n_sim=100_000, top_k=128, seed=42 + request.seed)
    ev = {"method": "regmix", "runs": n, "source": source_desc, "metric": request.metric or "mean of metrics",
          "fit": {"model": "lightgbm", "spearman_heldout": held.spearman_val, "ridge_spearman_heldout": ridge.spearman_val,
                  "heldout_runs": n - held.n_train},
          "simulated": 100_000, "top_k": 128, "notes": notes}
    return w, ev, [{"predicted_metric": pred}]


def _doremi(request: ProposeMixtureRequest, ctx: ToolContext, doms: list[str], share: np.ndarray, texts: dict
            ) -> tuple[np.ndarray, dict, list[dict]]:
    from tools.mixing.doremi import doremi_weights

    ref = _proxy_env(request, ctx, texts, doms, [], [])
    ref.reset(request.seed)
    ref.step(share, request.proxy_tokens * request.doremi_rounds)
    ref_loss = np.array([ref.domain_losses()[d] for d in doms])
    prox = _proxy_env(request, ctx, texts, doms, [], [])
    prox.reset(request.seed + 1)
    with ctx.progress("propose_mixture: doremi rounds", total=request.doremi_rounds, unit="rounds") as bar:
        def train(alpha: np.ndarray) -> np.ndarray:
            prox.step(alpha, request.proxy_tokens)
            bar.update(1)
            return np.array([prox.domain_losses()[d] for d in doms])


        w, hist, ex = doremi_weights(ref_loss, train, rounds=request.doremi_rounds, init=np.full(len(doms), 1 / len(doms)))
    ev = {"method": "doremi", "runs": 2, "rounds": request.doremi_rounds, "reference_weights": "proportional",
          "reference_loss": dict(zip(doms, ref_loss.round(4).tolist(), strict=True)),
          "final_excess": dict(zip(doms, ex[-1].round(4).tolist(), strict=True))}
    last = ex[-1] + ref_loss
    return w, ev, [{f"proxy_loss/{d}": float(v) for d, v in zip(doms, last, strict=True)}]


def _agent(request: ProposeMixtureRequest, ctx: ToolContext, doms: list[str], share: np.ndarray, texts: dict,
           source: list[str], target: list[str], budget: int) -> tuple[np.ndarray, dict, list[dict]]:
    from tools.artifacts import stable_hash
    from tools.mixing.agent import MixingPolicy, run_agent, train_cql
    from tools.mixing.env import rollout
    from tools.mixing.proxy_env import FieldEnv, expand_fields
    from tools.mixing.simplex import lattice
    from tools.mixing.simulator import Dynamics, SkillSimulator
    from tools.mixing.trajectories import TrajectoryStore, collect_trajectories
    from tools.refs import resolve_input

    if not target:
        raise field_error(T, "target_domains", "the target field's domains for method='agent' (e.g. ['math'])", [])
    S = request.stages
    within = dict(zip(doms, share.tolist(), strict=True))
    acts = lattice(2, 10)
    if request.env == "simulator":
        # the whole budget is 40 simulator units however many stages it is cut into
        tokens = max(budget // S, 1)
        dyn = Dynamics.two_field(tokens_per_step=max(tokens * S // 40, 1))
        make = lambda: SkillSimulator(dyn, ["source", "target"])  # noqa: E731
        # trajectories from a family of target models (+/-20% rates): the agent reads the dynamics
        # from the feedback instead of memorising one schedule
        make_data = lambda: SkillSimulator(dyn, ["source", "target"], jitter=0.2)  # noqa: E731
    else:
        make = lambda: FieldEnv(_proxy_env(request, ctx, texts, doms, source, target), source, target, within)  # noqa: E731
        make_data = make
        tokens = request.proxy_tokens
    if request.agent:
        art = resolve_input(request.agent, ctx, field=f"{T}.agent")
        try:
            policy = MixingPolicy.load(art.path)
        except (OSError, KeyError, ValueError) as e:
            raise BadInput(f"not a saved agent ({e})", where=f"{T}.agent") from None
        trajs = []
        traj_id = None
    else:
        key = stable_hash(request.env, request.model_dump(mode="json", include={"corpus", "domains", "target_domains",
                          "source_domains", "stages", "token_budget", "n_trajectories", "seed", "proxy_tokens",
                          "proxy_model"}), budget)[:16]
        store = TrajectoryStore(ctx.workspace.cache_dir("mixing-trajectories") / key)
        with ctx.progress("propose_mixture: trajectories", total=request.n_trajectories, unit="runs") as bar:
            bar.update(len(store.indices()))
            trajs = collect_trajectories(make_data, request.n_trajectories, S, "mixed", seed=request.seed, tokens=tokens,
                                         store=store, actions=acts, on_done=lambda i: bar.update(1))
        policy = train_cql(trajs, acts, steps=request.agent_steps, seed=request.seed, history=min(4, S))
        traj_id = _write_trajectories(ctx, trajs)
    env = make()
    try:
        policy.check_env(env)
    except ValueError as e:
        raise BadInput(str(e), where=f"{T}.agent") from None
    run = run_agent(policy, env, S, tokens=tokens, seed=request.seed)
    base = {}
    for name, w in (("uniform", np.array([0.5, 0.5])),
                    ("proportional", np.array([sum(within[d] for d in source), sum(within[d] for d in target)]))):
        base[name] = rollout(make(), np.repeat(w[None, :] / w.sum(), S, 0), tokens=tokens, seed=request.seed).ret
    ev: dict[str, Any] = {"method": "agent", "env": request.env, "runs": len(trajs), "trajectories": traj_id,
                          "agent": None, "policy_return": run.ret, "baseline_returns": base,
                          "algorithm": "CQL over a 2-field simplex lattice (11 target shares)",
                          "feedback": list(env.feedback_names)}
    if request.env == "simulator":
        from tools.mixing.simulator import dp_optimum

        ev["dp_optimum_return"] = dp_optimum(dyn, S, acts)[1]
        ev["note"] = "expected feedback comes from the analytic simulator, not a trained model"
    with ctx.artifact("agent", "agent", metrics={"policy_return": run.ret, **policy.log}) as w:
        policy.save(w.dir)
        for f in ("qnet.pt", "agent.json"):
            w.path(f)
    ev["agent"] = w.id
    weights = np.stack([expand_fields(doms, source, target, within, fw) for fw in run.weights])
    fb = [dict(zip(env.feedback_names, map(float, f), strict=True)) for f in run.feedback]
    return weights, ev, fb


def _write_trajectories(ctx: ToolContext, trajs: list) -> str:
    import pyarrow as pa

    rows: dict[str, list] = {"trajectory": [], "step": [], "weights": [], "feedback": [], "reward": []}
    for i, tr in enumerate(trajs):
        for t in range(len(tr.rewards)):
            rows["trajectory"].append(i)
            rows["step"].append(t)
            rows["weights"].append(tr.weights[t].tolist())
            rows["feedback"].append(tr.feedback[t].tolist())
            rows["reward"].append(float(tr.rewards[t]))
    with ctx.artifact("table", "trajectories", rows=RowCounts(rows_in=len(trajs), rows_out=len(rows["step"]))) as w:
        w.table(pa.table(rows))
    return w.id


# ------------------------------------------------------------------------------------- run


@dataclass
class _Pool:
    """The mixed domains of the pool, the two fields, the bounds and the token budget."""

    doms: list[str]
    source: list[str]
    target: list[str]
    caps: np.ndarray
    floors: np.ndarray
    tokens: np.ndarray  # estimated tokens per domain
    budget: int

    @property
    def share(self) -> np.ndarray:
        return self.tokens / self.tokens.sum()


def _pool(request: ProposeMixtureRequest, docs: dict[str, int], nbytes: dict[str, int]) -> _Pool:
    """The domains to mix, the source/target fields, caps/floors and a budget the pool can serve."""
    doms = _domains(request, docs)
    empty = [d for d in doms if nbytes.get(d, 0) == 0]
    if empty:
        raise BadInput(f"domains with no text to train on: {empty}", where=f"{T}.domains")
    _check_names("target_domains", request.target_domains, doms)
    _check_names("source_domains", request.source_domains or [], doms)
    target = list(request.target_domains)
    source = list(request.source_domains) if request.source_domains is not None else [d for d in doms if d not in target]
    if target and not source:
        raise field_error(T, "source_domains", "at least one domain outside the target field", source)
    caps, floors = _bounds(request, doms)
    pool_tokens = np.array([nbytes[d] / request.bytes_per_token for d in doms])
    budget = int(request.token_budget or round(pool_tokens.sum()))
    per_stage = budget // request.stages
    mean_doc = pool_tokens.sum() / max(sum(docs[d] for d in doms), 1)
    if per_stage < max(mean_doc, len(doms)):
        raise field_error(T, "token_budget", f"at least {int(np.ceil(max(mean_doc, len(doms)))) * request.stages} "
                          f"tokens for {request.stages} stage(s) (one average document of {mean_doc:.0f} tokens per "
                          "stage)", budget)
    if request.max_epochs is not None and budget > request.max_epochs * pool_tokens.sum() * (1 + 1e-9):
        raise field_error(T, "token_budget", f"at most {request.max_epochs:g} epochs of the mixed domains "
                          f"({int(request.max_epochs * pool_tokens.sum())} tokens; raise max_epochs or set it to null)",
                          budget)
    return _Pool(doms, source, target, caps, floors, pool_tokens, budget)


def _method_weights(request: ProposeMixtureRequest, ctx: ToolContext, pool: _Pool, texts: dict
                    ) -> tuple[np.ndarray, dict, list[dict]]:
    """The chosen method's weights per stage (stages x domains), its evidence and expected feedback."""
    S, doms, share = request.stages, pool.doms, pool.share
    if request.method in ("uniform", "proportional", "temperature"):
        w, evidence = _static(request, pool.tokens)
        return np.repeat(w[None, :], S, 0), evidence, []
    if request.method == "regmix":
        w, evidence, feedback = _regmix(request, ctx, doms, share, texts, pool.source, pool.target)
    elif request.method == "doremi":
        w, evidence, feedback = _doremi(request, ctx, doms, share, texts)
    else:
        return _agent(request, ctx, doms, share, texts, pool.source, pool.target, pool.budget)
    return np.repeat(w[None, :], S, 0), evidence, feedback


def _write_plot(ctx: ToolContext, request: ProposeMixtureRequest, pool: _Pool, plan: core.Plan, mix_id: str) -> str:
    import matplotlib.pyplot as plt

    fig = core.stage_plot(pool.doms, plan.weights, pool.share,
                          f"{request.method}: {request.stages} stage(s), {pool.budget:,} tokens")
    with ctx.artifact("plot", "plot", metrics={"of": mix_id}) as w:
        w.figure(fig)
    plt.close(fig)
    return w.id


@SPEC.implement
def run(request: ProposeMixtureRequest, ctx: ToolContext) -> ProposeMixtureResult:
    needs_texts = request.method in _PROXY_METHODS or (request.method == "regmix" and not request.proxy_runs) or \
        (request.method == "agent" and request.env == "proxy_lm" and not request.agent)
    docs, nbytes, texts, stats = _read_pool(request, ctx, needs_texts)
    pool = _pool(request, docs, nbytes)
    doms, S = pool.doms, request.stages
    stage_w, evidence, feedback = _method_weights(request, ctx, pool, texts)
    try:  # caps, floors and the epoch allowance shared by the stages; every change noted
        plan = core.plan_stages(stage_w, doms, pool.tokens, pool.budget, request.max_epochs, pool.caps, pool.floors)
    except ValueError as e:
        raise BadInput(str(e), where=f"{T}.token_budget") from None

    stages = [dict(zip(doms, map(float, row), strict=True)) for row in plan.weights]
    tokens = [dict(zip(doms, map(int, row), strict=True)) for row in plan.tokens]
    total = plan.tokens.sum(0)
    pool_share = dict(zip(doms, pool.share.tolist(), strict=True))
    pool_tokens = {d: int(t) for d, t in zip(doms, pool.tokens, strict=True)}
    metrics = ProposeMixtureMetrics(method=request.method, token_budget=pool.budget,
                                    weights=dict(zip(doms, (total / max(total.sum(), 1)).tolist(), strict=True)))
    doc = {
        "kind": "mixture", "domains": doms, "method": request.method,
        "fields": {"source": pool.source, "target": pool.target},
        "token_budget": pool.budget, "max_epochs": request.max_epochs, "bytes_per_token": request.bytes_per_token,
        "stages": [{"stage": i + 1, "weights": stages[i], "tokens": tokens[i]} for i in range(S)],
        "weights": metrics.weights,
        "pool": {"docs": {d: docs[d] for d in doms}, "tokens": pool_tokens, "share": pool_share},
        "expected_feedback": feedback, "evidence": evidence, "corrections": plan.notes,
        "caps": request.caps, "floors": request.floors, "seed": request.seed,
    }
    rows = RowCounts(rows_in=sum(docs.values()) + sum(stats.skipped.values()), rows_out=len(doms),
                     skipped=dict(stats.skipped))
    headline = {k: v for k, v in evidence.items() if k in ("method", "runs", "fit", "policy_return")}
    with ctx.artifact("mixture", "mixture", metrics=metrics.manifest(stages=S, evidence=headline), rows=rows) as w:
        w.json(doc)
    mix_id = w.id
    plot_id = _write_plot(ctx, request, pool, plan, mix_id)

    top = sorted(metrics.weights.items(), key=lambda kv: -kv[1])[:5]
    summary = (f"{request.method} mixture over {len(doms)} domains, {S} stage(s), {pool.budget:,} tokens: "
               + ", ".join(f"{d} {v:.1%}" for d, v in top))
    if plan.notes:
        summary += f"; {len(plan.notes)} correction(s) for caps/epochs"
    if "fit" in evidence and evidence["fit"].get("spearman_heldout") is not None:
        summary += f"; fit Spearman {evidence['fit']['spearman_heldout']:.2f}"
    return ProposeMixtureResult.of(
        metrics, summary=summary, artifacts={"mixture": mix_id, "plot": plot_id}, rows=rows, domains=doms,
        stages=stages, tokens=tokens, pool_share=pool_share, pool_tokens=pool_tokens, source_domains=pool.source,
        target_domains=pool.target, expected_feedback=feedback, evidence=evidence, corrections=plan.notes,
    )
