"""influence: LESS gradient influence of a training pool on task-labelled validation examples.

Writes an ``influence`` artifact: ``data.npy`` (N x M float32, memory-mapped when read),
``ids.parquet`` (``id`` of each training row) and ``columns.parquet`` (``id``, ``task`` of each
validation column). Everything slow is resumable: the warm-up saves LoRA weights and optimizer state
every epoch, and gradient features are written in blocks of ``block_rows`` rows under
``<workspace>/cache/influence/<key>/``; a killed run reuses every finished epoch and block.
The model is loaded with ``local_files_only=True`` (no downloads at run time). On ``engine="ray"``
the warm-up stays in this process and the per-example gradient pass runs on Ray actors
(:class:`tools.influence.worker.GradWorker`, one per GPU with ``num_gpus=1`` when the cluster has
GPUs): every missing block is computed there and saved in the same cache, so the artifact is the
local engine's and an interrupted Ray run resumes from its finished blocks.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tools.contract import RowCounts, ToolContext
from tools.engine import ModelPool
from tools.errors import BadInput, field_error
from tools.influence import core
from tools.influence.schema import SPEC, InfluenceMetrics, InfluenceRequest, InfluenceResult

__all__ = ["SPEC", "InfluenceMetrics", "InfluenceRequest", "InfluenceResult", "run", "core"]

_TOOL = "influence"


def _read(corpus: Any, ctx: ToolContext, field: str, extra: tuple[str, ...] = ()) -> dict[str, list]:
    from tools.corpus import read_batches

    out: dict[str, list] = {c: [] for c in ("id", "text", *extra)}
    try:
        for b in read_batches(corpus, tuple(out), allowed_roots=ctx.data_roots):
            for c in out:
                out[c].extend(b.column(c).to_pylist() if c in b.schema.names else [None] * b.num_rows)
    except BadInput as e:
        raise BadInput(f"{e.message} ({e.where})" if e.where else e.message, where=f"{_TOOL}.{field}") from None
    return out


def _val_tasks(request: InfluenceRequest, tasks: list) -> list[str]:
    missing = [i for i, t in enumerate(tasks) if t is None or not str(t).strip()]
    if missing:
        raise field_error(_TOOL, "validation", f"rows that each carry a task label in field "
                          f"{request.task_field!r} (set task_field= to the field that holds it)",
                          f"{len(missing)} of {len(tasks)} rows without one, first row {missing[0]}")
    return [str(t) for t in tasks]


def _unequal(tasks: list[str]) -> tuple[dict[str, int], list[str]]:
    from collections import Counter

    counts = dict(sorted(Counter(tasks).items()))
    warn = []
    if max(counts.values()) > 2 * min(counts.values()):
        warn.append("unequal validation examples per task (" + ", ".join(f"{k} {v}" for k, v in counts.items())
                    + "); BIDS assumes equal counts")
    return counts, warn


def _write(ctx: ToolContext, fill: Any, ids: list[str], vids: list[str], tasks: list[str],
           metrics: InfluenceMetrics) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    N, M = metrics.n_train, metrics.n_val
    with ctx.artifact("influence", "influence", metrics=metrics.manifest(), rows=RowCounts(rows_in=N, rows_out=N)) as w:
        A = np.lib.format.open_memmap(w.path("data.npy"), mode="w+", dtype=np.float32, shape=(N, M))
        fill(A)
        A.flush()
        del A
        pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), w.path("ids.parquet"))
        pq.write_table(pa.table({"id": pa.array(vids, pa.string()), "task": pa.array(tasks, pa.string())}),
                       w.path("columns.parquet"))
    return w.id


def _bring_your_own(request: InfluenceRequest, ctx: ToolContext) -> InfluenceResult:
    from tools.bids import _check_finite, load_influence

    inf = load_influence(request.matrix, ctx, field=f"{_TOOL}.matrix")
    A = inf.A
    if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
        raise field_error(_TOOL, "matrix", "a 2-d N x M matrix", A.shape)
    N, M = A.shape
    _check_finite(A, f"{_TOOL}.matrix")
    pool = _read(request.corpus, ctx, "corpus")
    ids = inf.ids if inf.ids is not None else [str(x) for x in pool["id"]]
    if len(ids) != N or (inf.ids is None and len(pool["id"]) != N):
        raise field_error(_TOOL, "corpus", f"one row per matrix row ({N})", f"{len(pool['id'])} rows")
    if inf.ids is not None:
        known = set(pool["id"])
        absent = [i for i in ids if i not in known]
        if absent:
            raise field_error(_TOOL, "corpus", "a pool holding every row id of the matrix",
                              f"{len(absent)} missing, e.g. {absent[:3]}")
    if request.validation is not None:
        val = _read(request.validation, ctx, "validation", (request.task_field,))
        tasks, vids = _val_tasks(request, val[request.task_field]), [str(x) for x in val["id"]]
        if len(tasks) != M:
            raise field_error(_TOOL, "validation", f"one row per matrix column ({M})", f"{len(tasks)} rows")
    elif request.val_tasks is not None:
        tasks, vids = list(request.val_tasks), [str(j) for j in range(M)]
        if len(tasks) != M:
            raise field_error(_TOOL, "val_tasks", f"one task label per matrix column ({M})", f"{len(tasks)} labels")
        if any(not t.strip() for t in tasks):
            raise field_error(_TOOL, "val_tasks", "non-empty labels", tasks)
    else:
        raise field_error(_TOOL, "val_tasks", "task labels for the matrix columns (or a validation corpus)", None)
    counts, warn = _unequal(tasks)

    def fill(out: np.ndarray) -> None:
        for lo in range(0, N, 8192):
            out[lo : lo + 8192] = A[lo : lo + 8192]

    metrics = InfluenceMetrics(n_train=N, n_val=M, tasks=counts, source=inf.source, warnings=warn)
    art = _write(ctx, fill, ids, vids, tasks, metrics)
    summary = (f"Wrapped an influence matrix computed elsewhere ({N} x {M}, {len(counts)} tasks: "
               + ", ".join(f"{k} {v}" for k, v in list(counts.items())[:6]) + f") as {art}."
               + (" " + warn[0][:150] if warn else ""))
    return InfluenceResult.of(metrics, summary=summary, artifacts={"influence": art},
                              rows=RowCounts(rows_in=N, rows_out=N))


def _tokenize(tok: Any, texts: list, max_length: int, prompts: list | None = None) -> tuple[list[list[int]], list[int]]:
    """Token ids per row and where its loss starts (after the prompt's tokens, if prompts are given)."""
    if prompts is None:
        enc = tok([t or "" for t in texts], truncation=True, max_length=max_length, add_special_tokens=True)
        return [list(x) for x in enc["input_ids"]], [0] * len(texts)
    p_ids = tok([p or "" for p in prompts], add_special_tokens=True)["input_ids"]
    r_ids = tok([" " + (t or "") for t in texts], add_special_tokens=False)["input_ids"]
    keep = max_length // 2  # a long prompt keeps its last max_length/2 tokens, so the response has room
    p_ids = [list(p) if len(p) <= keep else list(p[-keep:]) for p in p_ids]
    seqs = [(p + list(r))[:max_length] for p, r in zip(p_ids, r_ids, strict=True)]
    return seqs, [len(p) for p in p_ids]


def _save_atomic(path: Path, save: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    save(tmp)
    os.replace(tmp, path)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr)


def _fingerprint_model(name: str) -> str:
    from tools.refs import fingerprint_input

    p = Path(os.path.expanduser(name))
    return fingerprint_input(p) if p.exists() else name


def _warmup(request: InfluenceRequest, ctx: ToolContext, model: Any, seqs: list, starts: list, cache: Path,
            device: str, autocast: Any) -> list[core.Checkpoint]:
    """LESS's warm-up: LoRA trained on the warm-up rows, one checkpoint (weights + Adam state) per epoch,
    each saved as it finishes; epochs saved by an earlier run are loaded, and training resumes after them."""
    import torch

    ck_path = [cache / f"ckpt-{e}.pt" for e in range(request.warmup_epochs)]
    done = [p for p in ck_path if p.exists()]
    ckpts: list[core.Checkpoint] = [core.Checkpoint(**torch.load(p, weights_only=False)) for p in done]
    if len(done) < request.warmup_epochs:
        def save(ck: core.Checkpoint) -> None:
            _save_atomic(ck_path[ck.epoch], lambda t: torch.save(ck.__dict__, t))

        steps = (request.warmup_epochs - len(done)) * -(-len(seqs) // request.batch_size)
        with ctx.progress("influence: LoRA warm-up", total=steps, unit="steps") as bar:
            ckpts += core.warmup(model, seqs, label_from=starts, epochs=request.warmup_epochs,
                                 lr=request.lr, batch_size=request.batch_size, micro_batch=request.micro_batch,
                                 seed=request.seed, device=device, autocast=autocast,
                                 resume=ckpts[-1] if ckpts else None, on_epoch=save, on_step=bar.update)
    return ckpts


def _lora_model(request: InfluenceRequest, device: str) -> tuple[Any, Any, list[str], bool]:
    """(tokenizer, the causal LM with fresh LoRA adapters on ``device``, the adapted modules, whether to use bf16)."""
    import torch

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        from tools.errors import missing_extra

        raise missing_extra("peft", "influence", "the LoRA warm-up") from None
    from tools.influence import worker

    tok, base = worker.load_model(request.model, device)
    try:
        targets = request.target_modules or core.default_targets([n for n, _ in base.named_modules()])
    except ValueError:
        raise field_error(_TOOL, "target_modules", "the names of the modules to adapt (none of q_proj/"
                          "query_key_value/c_attn found)", None) from None
    try:
        with torch.random.fork_rng(devices=[]):  # LoRA's random init: the same in any process, whatever ran before
            torch.manual_seed(request.seed)
            model = get_peft_model(base, LoraConfig(r=request.lora_r, lora_alpha=request.lora_alpha,
                                                    lora_dropout=request.lora_dropout, target_modules=targets,
                                                    bias="none"))
    except ValueError as e:
        raise field_error(_TOOL, "target_modules", "module names present in the model", targets) from e
    bf16 = request.precision == "bfloat16" or (
        request.precision == "auto" and device.startswith("cuda") and torch.cuda.is_bf16_supported())
    if bf16 and not device.startswith("cuda"):
        raise field_error(_TOOL, "precision", "'bfloat16' only on a CUDA device", request.precision)
    return tok, model, list(targets), bf16


@SPEC.implement
def run(request: InfluenceRequest, ctx: ToolContext) -> InfluenceResult:
    if request.matrix is not None:
        return _bring_your_own(request, ctx)
    import torch

    from tools.artifacts import stable_hash
    from tools.corpus import fingerprint as corpus_fp
    from tools.influence import worker

    extra = (request.prompt_field,) if request.prompt_field else ()
    pool = _read(request.corpus, ctx, "corpus", extra)
    val = _read(request.validation, ctx, "validation", (request.task_field, *extra))
    tasks = _val_tasks(request, val[request.task_field])
    if request.prompt_field:
        for name, rows in (("corpus", pool), ("validation", val)):
            if all(p is None for p in rows[request.prompt_field]):
                raise field_error(_TOOL, "prompt_field", f"a field present in the {name} rows",
                                  request.prompt_field)
    counts, warnings = _unequal(tasks)
    N, M = len(pool["id"]), len(tasks)

    device = ctx.resolve_device()
    tok, model, targets, bf16 = _lora_model(request, device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else None

    pf = request.prompt_field
    train_seqs, train_from = _tokenize(tok, pool["text"], request.max_length, pool[pf] if pf else None)
    val_seqs, val_from = _tokenize(tok, val["text"], request.max_length, val[pf] if pf else None)
    short = sum(len(s) - max(f, 1) < 1 for s, f in zip(train_seqs, train_from, strict=True))
    if short:
        warnings.append(f"{short} training rows have no token to predict (too short, or the prompt fills "
                        f"max_length): influence 0")
    if all(len(s) - max(f, 1) < 1 for s, f in zip(val_seqs, val_from, strict=True)):
        raise field_error(_TOOL, "validation", "examples of at least 2 tokens", "all shorter")

    key_fields = request.model_dump(mode="json", exclude={"block_rows", "micro_batch", "batched", "matrix"})
    key = stable_hash(key_fields, corpus_fp(request.corpus), corpus_fp(request.validation),
                      _fingerprint_model(request.model), device.split(":")[0])
    cache = ctx.workspace.cache_dir("influence") / key
    (cache / "feat").mkdir(parents=True, exist_ok=True)

    # -- 1. warm-up, resumable by epoch ------------------------------------------------------------
    n_warm = max(1, round(request.warmup_fraction * N))
    subset = np.sort(np.random.default_rng(request.seed).choice(N, n_warm, replace=False))
    ckpts = _warmup(request, ctx, model, [train_seqs[i] for i in subset], [train_from[i] for i in subset], cache,
                    device, autocast)
    model.eval()
    lp = core.lora_params(model)
    weights = core.checkpoint_weights([c.mean_lr for c in ckpts])
    proj = core.RademacherProjector(lp.dim, request.proj_dim, seed=request.proj_seed, device=device)

    # -- 2. features per checkpoint, in resumable blocks ---------------------------------------------
    batched = request.batched
    computed = reused = rows_done = 0
    grad_s = 0.0

    digests = [core.checkpoint_digest(ck) for ck in ckpts]  # a re-trained checkpoint never reuses old blocks

    def block_path(c: int, split: str, b: int) -> Path:
        return cache / "feat" / f"c{c}-{digests[c]}-{split}-{b:05d}.npy"

    fresh: set[Path] = set()  # blocks computed by Ray actors in this run

    def block_feats(c: int, split: str, seqs: list, starts: list, b: int, params: tuple, moments: Any) -> np.ndarray:
        nonlocal computed, reused, rows_done, grad_s, batched
        path = block_path(c, split, b)
        if path.exists():
            if path in fresh:
                computed += 1
            else:
                reused += 1
            return np.load(path)
        lo = b * request.block_rows
        t0 = time.perf_counter()
        out, n_rows, still = worker.grad_block(
            model, lp, params, proj, seqs[lo : lo + request.block_rows], starts[lo : lo + request.block_rows],
            micro_batch=request.micro_batch, moments=moments, batched=batched, autocast=autocast, device=device)
        if batched and not still:
            batched = False
            warnings.append("vmap failed on this model; per-example gradients fell back to a loop")
        grad_s += time.perf_counter() - t0
        rows_done += n_rows
        _save_atomic(path, lambda t: _save_npy(t, out))
        computed += 1
        return out

    nb_train = -(-N // request.block_rows)
    nb_val = -(-M // request.block_rows)
    if ctx.engine == "ray":  # every missing block on Ray actors first; the loop below then reads them
        todo = [(c, split, b) for c in range(len(ckpts)) for split, nb in (("val", nb_val), ("train", nb_train))
                for b in range(nb) if not block_path(c, split, b).exists()]
        if todo:
            make = functools.partial(
                worker.GradWorker, model=request.model, targets=list(targets),
                lora={"r": request.lora_r, "lora_alpha": request.lora_alpha, "lora_dropout": request.lora_dropout},
                checkpoints=[(ck.lora, ck.exp_avg, ck.exp_avg_sq) for ck in ckpts], proj_dim=request.proj_dim,
                proj_seed=request.proj_seed, gen_device=proj.gen_device, micro_batch=request.micro_batch,
                batched=batched, bf16=bf16)
            split_rows = {"val": (val_seqs, val_from), "train": (train_seqs, train_from)}

            def items() -> Any:
                for c, split, b in todo:
                    seqs, starts = split_rows[split]
                    lo = b * request.block_rows
                    yield c, split, seqs[lo : lo + request.block_rows], starts[lo : lo + request.block_rows]

            with ctx.progress("influence: gradient features on Ray", total=len(todo), unit="blocks") as bar, \
                    ModelPool(make, ctx, gpu=True, actors=len(todo)) as actors:
                for (c, split, b), (out, n_rows, secs, still) in zip(todo, actors.map(items()), strict=True):
                    if batched and not still:
                        batched = False
                        warnings.append("vmap failed on this model; per-example gradients fell back to a loop")
                    _save_atomic(block_path(c, split, b), lambda t, out=out: _save_npy(t, out))
                    fresh.add(block_path(c, split, b))
                    rows_done += n_rows
                    grad_s += secs / actors.workers  # actors run side by side: wall-clock share
                    bar.update(1)
    val_feats: list[np.ndarray] = []
    with ctx.progress("influence: gradient features", total=len(ckpts) * (nb_train + nb_val), unit="blocks") as bar:
        for c, ck in enumerate(ckpts):
            model.load_state_dict(ck.lora, strict=False)
            params = tuple(dict(model.named_parameters())[n].detach() for n in lp.names)
            moments = (ck.exp_avg.to(device), ck.exp_avg_sq.to(device))
            val_feats.append(np.concatenate([block_feats(c, "val", val_seqs, val_from, b, params, None)
                                             for b in range(nb_val)]))
            bar.update(nb_val)
            for b in range(nb_train):
                block_feats(c, "train", train_seqs, train_from, b, params, moments)
                bar.update(1)

    # -- 3. lr-weighted cosine over checkpoints ---------------------------------------------------------
    def fill(A: np.ndarray) -> None:
        for b in range(nb_train):
            lo = b * request.block_rows
            acc = np.zeros((min(request.block_rows, N - lo), M), dtype=np.float64)
            for c in range(len(ckpts)):
                ft = np.load(block_path(c, "train", b))
                acc += weights[c] * (ft @ val_feats[c].T)
            A[lo : lo + acc.shape[0]] = acc

    # -- 4. the artifact --------------------------------------------------------------------------------
    metrics = InfluenceMetrics(
        n_train=N, n_val=M, tasks=counts, model=request.model, target_modules=list(targets), warmup_rows=int(n_warm),
        checkpoints=len(ckpts), checkpoint_weights=weights.tolist(), mean_lrs=[c.mean_lr for c in ckpts],
        lora_params=lp.dim, proj_dim=request.proj_dim, device=device, precision="bfloat16" if bf16 else "float32",
        batched=batched, examples_per_s=rows_done / grad_s if grad_s > 0 else 0.0, blocks_computed=computed,
        blocks_reused=reused, warnings=warnings,
    )
    art = _write(ctx, fill, [str(x) for x in pool["id"]], [str(x) for x in val["id"]], tasks, metrics)
    return InfluenceResult.of(metrics, summary=_summary(metrics, request.lora_r) + f" Influence {art}."
                              + (" " + warnings[0][:120] if warnings else ""),
                              artifacts={"influence": art}, rows=RowCounts(rows_in=N, rows_out=N))


def _summary(m: InfluenceMetrics, lora_r: int) -> str:
    return (f"LESS influence of {m.n_train} training rows on {m.n_val} validation examples ({len(m.tasks)} tasks: "
            + ", ".join(f"{k} {v}" for k, v in list(m.tasks.items())[:6])
            + f"): LoRA r={lora_r} on {'/'.join(m.target_modules)} warmed up on {m.warmup_rows} rows for "
            f"{m.checkpoints} epochs, {m.lora_params} LoRA params projected to {m.proj_dim}, "
            f"{'batched vmap' if m.batched else 'looped'} gradients at {m.examples_per_s:.1f} ex/s on {m.device}"
            f"; {m.blocks_computed} feature blocks computed, {m.blocks_reused} reused.")
