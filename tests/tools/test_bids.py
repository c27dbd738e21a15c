"""BIDS: the fast loop against the naive loop, the published behaviours, the tool's contract."""

from __future__ import annotations

import numpy as np
import pytest

from tools.bids import core


def _brute_bids(A: np.ndarray, budget: int) -> list[int]:
    """Oracle written from the paper's loop with plain Python floats (independent of core)."""
    N, M = A.shape
    S: list[int] = []
    sums = [0.0] * M
    for t in range(budget):
        aid = [s / t if t else 0.0 for s in sums]
        best, bu = -1, -np.inf
        for i in range(N):
            if i in S:
                continue
            u = max(float(A[i, j]) - aid[j] for j in range(M))
            if u > bu:
                best, bu = i, u
        S.append(best)
        for j in range(M):
            sums[j] += float(A[best, j])
    return S


@pytest.mark.parametrize("seed", range(40))
def test_fast_equals_naive_with_ties(seed):
    rng = np.random.default_rng(seed)
    N = int(rng.integers(5, 60))
    M = int(rng.integers(1, 12))
    hi = int(rng.integers(2, 5))  # few distinct values: many ties
    A = rng.integers(0, hi, size=(N, M)).astype(np.float32)
    for budget in {1, int(rng.integers(1, N + 1)), N // 3 or 1, N}:
        fast = core.bids_fast(A, budget)
        naive = core.bids_naive(A, budget)
        np.testing.assert_array_equal(fast.indices, naive.indices)
        np.testing.assert_array_equal(fast.scores, naive.scores)
        Z = core.zscore_columns(A).Z if A.std(axis=0).min() > 0 else A
        np.testing.assert_array_equal(core.bids_fast(Z, budget).indices, core.bids_naive(Z, budget).indices)


def test_naive_matches_plain_python_oracle():
    rng = np.random.default_rng(7)
    for _ in range(5):
        A = rng.integers(0, 3, size=(12, 4)).astype(np.float32)
        assert core.bids_naive(A, 8).indices.tolist() == _brute_bids(A, 8)


def test_truncated_candidate_lists_fall_back_on_long_tie_runs():
    A = np.zeros((200, 3), dtype=np.float32)  # every column one long tie run
    A[::7, 1] = 1.0
    fast = core.bids_fast(A, 20)
    assert fast.meta["fallback_scans"] > 0
    np.testing.assert_array_equal(fast.indices, core.bids_naive(A, 20).indices)


@pytest.mark.parametrize("seed", range(10))
def test_fast_equals_naive_continuous(seed):
    rng = np.random.default_rng(100 + seed)
    A = rng.standard_normal((300, 25)).astype(np.float32) * rng.uniform(0.1, 20, 25).astype(np.float32)
    Z = core.zscore_columns(A).Z
    for budget in (1, 17, 120):
        np.testing.assert_array_equal(core.bids_fast(Z, budget).indices, core.bids_naive(Z, budget).indices)


@pytest.mark.parametrize("seed", range(15))
def test_task_variant_fast_equals_naive(seed):
    rng = np.random.default_rng(200 + seed)
    N, M = int(rng.integers(5, 50)), int(rng.integers(2, 9))
    A = rng.integers(0, 3, size=(N, M)).astype(np.float32)
    codes = rng.integers(0, 3, size=M)
    _, codes = np.unique(codes, return_inverse=True)
    for agg in ("mean", "max"):
        for budget in (1, N // 2 or 1, N):
            f = core.bids_task_fast(A, codes, budget, agg)
            n = core.bids_task_naive(A, codes, budget, agg)
            np.testing.assert_array_equal(f.indices, n.indices)


def test_two_groups_alternate_where_one_shot_takes_one_group():
    A = np.array([[3.0, 0.0]] * 10 + [[0.0, 2.5]] * 10, dtype=np.float32)
    one_shot = core.select(A, 10, method="instance_max", normalize=False)
    assert sorted(one_shot.indices.tolist()) == list(range(10))
    for loop in ("fast", "naive"):
        sel = core.select(A, 10, method="bids", normalize=False, loop=loop)
        groups = [0 if i < 10 else 1 for i in sel.indices]
        assert groups == [0, 1] * 5  # pick [3,0]; AID=[3,0]; utilities 0 vs 2.5; ...
        assert sel.indices.tolist()[:4] == [0, 10, 1, 11]


def _scale_bias(seed: int = 0, N: int = 3000, per_task: int = 20, T: int = 3, boost: float = 20.0):
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, T, size=N)
    codes = np.repeat(np.arange(T), per_task)
    A = rng.standard_normal((N, T * per_task))
    A += (owner[:, None] == codes[None, :]).astype(float)  # +1 on the owner's columns
    A[:, codes == 0] *= boost  # task 0's influence inflated 20x
    return A.astype(np.float32), codes, owner


def test_scale_bias_bids_spreads_budget_task_max_does_not():
    A, codes, owner = _scale_bias()
    budget = 450
    tm = core.select(A, budget, method="task_max", codes=codes, normalize=False)
    share_tm = np.bincount(owner[tm.indices], minlength=3) / budget
    assert share_tm[0] > 0.8
    sel = core.select(A, budget, method="bids", codes=codes, normalize=True)
    share = np.bincount(owner[sel.indices], minlength=3) / budget
    assert np.all(np.abs(share - 1 / 3) < 0.1), share
    Z = core.zscore_columns(A).Z
    rep = core.task_report(Z, codes, 3, sel.indices)
    assert rep["mean_influence"].max() - rep["mean_influence"].min() < 0.2
    assert np.all(np.abs(rep["share"] - 1 / 3) < 0.1)
    rep_tm = core.task_report(Z, codes, 3, tm.indices)
    assert rep_tm["share"][0] > 0.8
    # the task-level variant balances too
    sel_t = core.select(A, budget, method="bids", codes=codes, mode="task")
    share_t = np.bincount(owner[sel_t.indices], minlength=3) / budget
    assert np.all(np.abs(share_t - 1 / 3) < 0.1), share_t


def test_budget_n_gives_a_permutation_and_is_deterministic():
    A, codes, _ = _scale_bias(N=200, per_task=4)
    for method in ("bids", "task_max", "instance_max", "sum"):
        for mode in ("instance", "task"):
            sel = core.select(A, 200, method=method, codes=codes, mode=mode)
            assert sorted(sel.indices.tolist()) == list(range(200))
            again = core.select(A, 200, method=method, codes=codes, mode=mode)
            np.testing.assert_array_equal(sel.indices, again.indices)


def test_normalisation_mean0_std1_drops_constant_columns():
    rng = np.random.default_rng(3)
    A = (rng.standard_normal((500, 6)) * [1, 5, 0.01, 1, 100, 2] + [0, 3, -2, 7, 1, 0]).astype(np.float32)
    A[:, 3] = 4.0
    n = core.zscore_columns(A)
    assert n.dropped.tolist() == [3]
    assert n.kept.tolist() == [0, 1, 2, 4, 5]
    np.testing.assert_allclose(n.Z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(n.Z.std(axis=0, ddof=1), 1, atol=1e-5)
    np.testing.assert_allclose(n.Z[:, 1], (A[:, 1] - A[:, 1].mean()) / A[:, 1].std(ddof=1), rtol=1e-4, atol=1e-5)


def test_baselines_against_hand_formulas():
    A = np.array([[1, 5, 0, 0], [2, 2, 2, 2], [0, 0, 9, 0], [4, 0, 0, 1]], dtype=np.float32)
    codes = np.array([0, 0, 1, 1])
    tm = core.baseline_scores(A, "task_max", codes)
    np.testing.assert_allclose(tm, [3.0, 2.0, 4.5, 2.0])  # mean per task, then max over tasks
    np.testing.assert_allclose(core.baseline_scores(A, "instance_max"), [5, 2, 9, 4])
    np.testing.assert_allclose(core.baseline_scores(A, "sum"), [6, 8, 9, 5])
    assert core.top_k(tm, 2, "task_max").indices.tolist() == [2, 0]
    assert core.top_k(np.array([1.0, 2.0, 2.0, 0.0]), 2, "x").indices.tolist() == [1, 2]


def test_budget_out_of_range():
    with pytest.raises(ValueError, match="budget"):
        core.bids_fast(np.zeros((3, 2), np.float32), 4)


# -- the tool ------------------------------------------------------------------------------------

from tests.conftest import write_jsonl  # noqa: E402
from tools.errors import BadInput  # noqa: E402


def _matrix_files(tmp_path, N=90, per_task=4, boost=20.0, seed=0):
    import pyarrow as pa
    import pyarrow.parquet as pq

    A, codes, owner = _scale_bias(seed=seed, N=N, per_task=per_task, boost=boost)
    names = ["code", "math", "reading"]
    tasks = [names[c] for c in codes]
    rows = [{"id": f"ex-{i}", "text": f"example {i}", "domain": names[owner[i]]} for i in range(N)]
    corpus = write_jsonl(tmp_path / "pool.jsonl", rows)
    npy = tmp_path / "A.npy"
    np.save(npy, A)
    data = {"id": [r["id"] for r in rows], **{f"v{j}": A[:, j] for j in range(A.shape[1])}}
    pq.write_table(pa.table(data), tmp_path / "A.parquet")
    return A, tasks, owner, corpus, npy, tmp_path / "A.parquet"


def test_tool_bids_balances_and_reports_against_task_max(tmp_path, ctx):
    from tools import bids

    A, tasks, owner, corpus, npy, _ = _matrix_files(tmp_path, N=600, per_task=6)
    res = bids.run({"influence": str(npy), "val_tasks": tasks, "fraction": 0.15, "corpus": str(corpus)}, ctx)
    assert res.k == 90 and res.pool_size == 600
    assert all(abs(v - 1 / 3) < 0.12 for v in res.task_share.values()), res.task_share
    assert res.baseline_share["code"] > 0.8  # the inflated task wins the one-shot LESS selection
    assert res.influence_spread < res.baseline_spread
    sel = ctx.workspace.get(res.artifacts["selection"])
    t = sel.table()
    ref = core.select(A, 90, method="bids", codes=core.task_codes(tasks)[1])
    assert t.column("id").to_pylist() == [f"ex-{i}" for i in ref.indices]
    assert set(t.column("domain").to_pylist()) == {"code", "math", "reading"}
    assert ctx.workspace.get(res.artifacts["plot"]).kind == "plot"
    assert len(res.summary) <= 600 and "task-max" in res.summary
    # a cache hit on repeat
    assert bids.run({"influence": str(npy), "val_tasks": tasks, "fraction": 0.15, "corpus": str(corpus)},
                    ctx).cached


def test_tool_parquet_ids_and_baselines(tmp_path, ctx):
    from tools import bids

    A, tasks, _, _, _, pq_path = _matrix_files(tmp_path)
    for method in ("task_max", "instance_max", "sum"):
        for normalize in (True, False):
            res = bids.run({"influence": str(pq_path), "val_tasks": tasks, "k": 10, "method": method,
                            "normalize": normalize}, ctx)
            ids = ctx.workspace.get(res.artifacts["selection"]).table().column("id").to_pylist()
            ref = core.select(A, 10, method=method, codes=core.task_codes(tasks)[1], normalize=normalize)
            assert ids == [f"ex-{i}" for i in ref.indices]
    res = bids.run({"influence": str(pq_path), "val_tasks": tasks, "k": 10, "mode": "task"}, ctx)
    assert res.k == 10


def test_tool_row_numbers_without_ids(tmp_path, ctx):
    from tools import bids

    A, tasks, *_ = _matrix_files(tmp_path)
    np.save(tmp_path / "B.npy", A[:20])
    res = bids.run({"influence": str(tmp_path / "B.npy"), "val_tasks": tasks, "k": 20}, ctx)
    ids = ctx.workspace.get(res.artifacts["selection"]).table().column("id").to_pylist()
    assert sorted(ids, key=int) == [str(i) for i in range(20)]


def test_tool_bad_input_names_the_field(tmp_path, ctx):
    from tools import bids

    A, tasks, _, corpus, npy, _ = _matrix_files(tmp_path)
    base = {"influence": str(npy), "val_tasks": tasks, "k": 5}
    with pytest.raises(BadInput, match=r"bids.val_tasks.*one task label per validation column"):
        bids.run({**base, "val_tasks": tasks[:-1]}, ctx)
    with pytest.raises(BadInput, match=r"bids.val_tasks.*non-empty task label"):
        bids.run({**base, "val_tasks": tasks[:-1] + [""]}, ctx)
    with pytest.raises(BadInput, match=r"bids.k.*at most the 90 rows"):
        bids.run({**base, "k": 91}, ctx)
    with pytest.raises(BadInput, match="exactly one of k"):
        bids.run({**base, "fraction": 0.1}, ctx)
    with pytest.raises(BadInput, match=r"bids.val_tasks"):
        bids.run({"influence": str(npy), "k": 5}, ctx)
    bad = A.copy()
    bad[7, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(BadInput, match=r"bids.influence.*row 7, column 3"):
        bids.run({**base, "influence": str(tmp_path / "nan.npy")}, ctx)
    bad[7, 3] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(BadInput, match=r"bids.influence.*finite"):
        bids.run({**base, "influence": str(tmp_path / "inf.npy")}, ctx)
    short = write_jsonl(tmp_path / "short.jsonl", [{"id": "a", "text": "x"}])
    with pytest.raises(BadInput, match=r"bids.corpus.*one row per influence matrix row"):
        bids.run({**base, "corpus": str(short)}, ctx)
    with pytest.raises(BadInput, match=r"bids.influence"):
        bids.run({**base, "influence": str(tmp_path / "missing.npy")}, ctx)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(BadInput, match=r"bids.influence.*\.npy or a \.parquet"):
        bids.run({**base, "influence": str(tmp_path / "x.txt")}, ctx)
    assert not ctx.workspace.list("selection")  # nothing half-written


def test_tool_unequal_task_counts_warn(tmp_path, ctx):
    from tools import bids

    A, tasks, _, _, npy, _ = _matrix_files(tmp_path)
    skewed = ["code"] * 9 + ["math"] * 2 + ["reading"]
    res = bids.run({"influence": str(npy), "val_tasks": skewed, "k": 5}, ctx)
    assert res.warnings and "unequal" in res.warnings[0]
    assert res.task_columns == {"code": 9, "math": 2, "reading": 1}
    A2 = A.copy()
    A2[:, 0] = 1.0
    np.save(tmp_path / "const.npy", A2)
    res = bids.run({"influence": str(tmp_path / "const.npy"), "val_tasks": tasks, "k": 5}, ctx)
    assert res.dropped_columns == [0]


def test_conformance_case_runs(tmp_path, ctx):
    from tools import bids
    from tools.bids.schema import conformance_case

    rows = [{"id": f"{d}-{i}", "text": "t", "domain": d} for d in ("math", "code", "food") for i in range(15)]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    args = conformance_case(tmp_path, corpus)
    res = bids.run({**args, "corpus": str(corpus)}, ctx)
    assert res.k == 9 and max(res.task_share.values()) < 0.6


def test_sampled_thresholds_and_their_fallback(monkeypatch):
    rng = np.random.default_rng(11)
    A = rng.integers(0, 6, size=(9000, 4)).astype(np.float32)
    A[:, 2] = rng.standard_normal(9000)
    naive = core.bids_naive(A, 40).indices
    np.testing.assert_array_equal(core.bids_fast(A, 40).indices, naive)  # sampled thresholds
    monkeypatch.setattr(core, "_thresholds", lambda Z, L: np.full(Z.shape[1], np.inf, np.float32))
    np.testing.assert_array_equal(core.bids_fast(A, 40).indices, naive)  # every guess too high


def test_bids_selection_becomes_a_proposal_with_task_shares(tmp_path, ctx):
    from agent.proposals import build_proposal
    from policies.schema import load_policy
    from tools import bids

    A, tasks, owner, corpus, npy, _ = _matrix_files(tmp_path, N=120)
    args = {"influence": str(npy), "val_tasks": tasks, "fraction": 0.15, "corpus": str(corpus)}
    res = bids.run(args, ctx)
    step = {"tool": "bids", "status": "done", "args": args, "artifacts": res.artifacts, "summary": res.summary,
            "result": res.model_dump(mode="json")}
    rec = build_proposal(thread_id="t1", plan={"steps": [step], "request": "balance tasks"}, tctx=ctx,
                         policy=load_policy("default"))
    assert rec["kind"] == "selection" and rec["selection"] == res.artifacts["selection"]
    assert rec["n_docs"] == 18 and res.artifacts["plot"] in rec["plots"]
    shares = [e for e in rec["evidence"] if "task_share" in e["metrics"] and "task_max_share" in e["metrics"]]
    assert shares and shares[0]["metrics"]["task_share"] == res.task_share
