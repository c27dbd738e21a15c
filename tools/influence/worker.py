"""The per-example gradient pass as a stateful worker: one LoRA model that turns token blocks into features.

The local engine computes blocks in the tool's process with :func:`grad_block`. On ``engine="ray"``
:class:`GradWorker` is built once per Ray actor (``num_gpus=1`` each when the cluster has GPUs):
it loads the model, wraps it in the same LoRA adapter and receives the warm-up checkpoints once;
each call computes one block of one checkpoint. The projection is drawn on the driver's device
kind (``gen_device``), so a block's features equal the local engine's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tools.errors import ResourceUnavailable
from tools.influence import core


def load_model(name: str, device: str) -> tuple[Any, Any]:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover
        raise ResourceUnavailable(f"the influence tool needs transformers: {e}") from None
    src, kw = name, {}
    p = Path(os.path.expanduser(name))
    if p.suffix.lower() == ".gguf" and p.is_file():  # a llama.cpp file: transformers dequantizes it
        src, kw = str(p.parent), {"gguf_file": p.name}
    try:
        tok = AutoTokenizer.from_pretrained(src, local_files_only=True, **kw)
        # eager attention: SDPA has no vmap batching rule (torch falls back to a per-row loop)
        model = AutoModelForCausalLM.from_pretrained(src, local_files_only=True, dtype="float32",
                                                     attn_implementation="eager", **kw)
    except ImportError as e:
        raise ResourceUnavailable(f"loading {name!r} needs a missing package: {e}", where="influence.model",
                                  hint="for .gguf files: pip install gguf") from None
    except (OSError, ValueError, KeyError) as e:
        raise ResourceUnavailable(
            f"model {name!r} cannot be loaded offline ({type(e).__name__}: {str(e)[:200]})",
            where="influence.model",
            hint="pass a local model folder, or download it first (huggingface-cli download NAME)",
        ) from None
    return tok, model.to(device)


def grad_block(model: Any, lp: core.LoraParams, params: tuple, proj: core.RademacherProjector,
               part: Sequence[Sequence[int]], start: Sequence[int], *, micro_batch: int, moments: Any,
               batched: bool, autocast: Any, device: str) -> tuple[np.ndarray, int, bool]:
    """Features (len(part), k) of one block; rows with no token to predict stay 0.

    Returns (features, rows computed, batched): ``batched`` turns False when vmap cannot trace the
    model (data-dependent control flow), after which each row gets its own backward pass.
    """
    out = np.zeros((len(part), proj.k), dtype=np.float32)
    order = sorted(range(len(part)), key=lambda i: len(part[i]))  # similar lengths share a batch
    order = [i for i in order if len(part[i]) - max(start[i], 1) >= 1]  # rows with a token to predict
    for s in range(0, len(order), micro_batch):
        rows = order[s : s + micro_batch]
        batch, bfrom = [part[i] for i in rows], [start[i] for i in rows]
        try:
            f = core.features(model, lp, params, batch, proj, moments=moments, batched=batched,
                              autocast=autocast, device=device, label_from=bfrom)
        except RuntimeError as e:
            if not batched or "vmap" not in str(e):
                raise
            batched = False
            f = core.features(model, lp, params, batch, proj, moments=moments, batched=False,
                              autocast=autocast, device=device, label_from=bfrom)
        out[rows] = f
    return out, len(order), batched


class GradWorker:
    """``worker((checkpoint, split, token lists, label starts))`` -> (features, rows, seconds, batched)."""

    def __init__(self, device: str, *, model: str, lora: dict[str, Any], targets: list[str],
                 checkpoints: list[tuple[dict, Any, Any]], proj_dim: int, proj_seed: int, gen_device: str,
                 micro_batch: int, batched: bool, bf16: bool):
        import torch
        from peft import LoraConfig, get_peft_model

        _, base = load_model(model, device)
        self.model = get_peft_model(base, LoraConfig(target_modules=targets, bias="none", **lora))
        self.model.eval()
        self.lp = core.lora_params(self.model)
        self.proj = core.RademacherProjector(self.lp.dim, proj_dim, seed=proj_seed, device=device,
                                             gen_device=gen_device)
        self.device, self.checkpoints, self.micro_batch, self.batched = device, checkpoints, micro_batch, batched
        cuda = device.startswith("cuda")
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 and cuda else None
        self._current: int | None = None
        self._params: tuple = ()
        self._moments: Any = None

    def _use(self, c: int) -> None:
        if self._current == c:
            return
        lora, m, v = self.checkpoints[c]
        self.model.load_state_dict(lora, strict=False)
        named = dict(self.model.named_parameters())
        self._params = tuple(named[n].detach() for n in self.lp.names)
        self._moments = (m.to(self.device), v.to(self.device))
        self._current = c

    def __call__(self, item: tuple[int, str, list, list]) -> tuple[np.ndarray, int, float, bool]:
        c, split, part, start = item
        self._use(c)
        t0 = time.perf_counter()
        out, rows, self.batched = grad_block(
            self.model, self.lp, self._params, self.proj, part, start, micro_batch=self.micro_batch,
            moments=self._moments if split == "train" else None, batched=self.batched, autocast=self.autocast,
            device=self.device)
        return out, rows, time.perf_counter() - t0, self.batched
