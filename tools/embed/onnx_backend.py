"""The ONNX Runtime CPU path: the transformer exported once, fused, optionally int8-quantized.

``backend="onnx"``: the transformer exported with ``torch.onnx`` (opset 17, dynamic batch and
sequence axes), then ONNX Runtime's transformer optimizer fuses attention, GELU, LayerNorm and the embedding layer (the model
is exported with eager attention, whose pattern the optimizer recognises).
``backend="onnx-int8"``: that graph with dynamic int8 quantization of the weight MatMuls and the fused
attention projections (``onnxruntime.quantization.quantize_dynamic``: per-channel QInt8 weights,
activation-by-activation products, embedding tables and the FFN down-projections left in fp32),
which runs on VNNI kernels.
Pooling and the rest of the sentence-transformers head run in fp32 torch, as on the torch path.

Exports are cached under ``$CURATE_MODEL_CACHE`` (default ``~/.cache/curate/models``), keyed by the
model's files, so the one-off export (~20 s for MiniLM) happens once per machine. Needs the ``onnx``
package (``pip install 'curation-assistant[onnx]'``); ``onnxruntime`` ships with chromadb.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.errors import ResourceUnavailable, missing_extra
from tools.models import model_fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from tools.embed.encoder import Encoder

ONNX_OPSET = 17
EXPORT_VERSION = "3"


def model_cache_root() -> Path:
    root = os.environ.get("CURATE_MODEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "curate", "models")
    return Path(root)


def _model_fingerprint(ref: str, label: str) -> str:
    return hashlib.sha256(f"{model_fingerprint(ref, label)}|{EXPORT_VERSION}|{ONNX_OPSET}".encode()).hexdigest()[:16]


def _export(enc: Encoder, path: Path) -> None:
    import torch

    class _Body(torch.nn.Module):
        def __init__(self, model: Any):
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)[0]

    model = enc.hf_model.float().eval()
    # eager attention exports the classic BERT pattern, which ONNX Runtime fuses into one Attention op
    # (SDPA exports an IsNaN/Where pattern that it does not fuse)
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except Exception:  # noqa: BLE001 - models without the switch export as they are
            pass
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    axes = {0: "batch", 1: "seq"}
    import warnings

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Body(model), (ids, mask), str(path),
            input_names=["input_ids", "attention_mask"], output_names=["token_embeddings"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_embeddings": axes},
            opset_version=ONNX_OPSET, dynamo=False,
        )


def _optimize(enc: Encoder, src: Path, dst: Path) -> bool:
    """ONNX Runtime's BERT fusions (attention, GELU, LayerNorm); False when the model is not BERT-like."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError:  # pragma: no cover
        return False
    cfg = enc.hf_model.config
    mtype = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "mpnet": "bert",
             "distilbert": "bert"}.get(getattr(cfg, "model_type", ""), None)
    if mtype is None:
        return False
    try:
        opt = optimize_model(str(src), model_type=mtype, num_heads=int(cfg.num_attention_heads),
                             hidden_size=int(cfg.hidden_size), opt_level=1)
        opt.save_model_to_file(str(dst))
    except Exception:  # noqa: BLE001 - fusion is an optimisation; the plain graph still runs
        return False
    return True


def ensure_onnx_model(enc: Encoder, *, quantized: bool) -> Path:
    """Path of the exported (and optimized / quantized) model, building it once."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise missing_extra("onnx", "onnx", "the ONNX embedding backends") from e
    d = model_cache_root() / f"onnx-{_model_fingerprint(enc.ref, enc.label)}"
    final = d / ("model.int8.onnx" if quantized else "model.opt.onnx")
    if final.exists():
        return final
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".build-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        raw = tmp / "model.onnx"
        _export(enc, raw)
        opt = tmp / "model.opt.onnx"
        if not _optimize(enc, raw, opt):
            shutil.copy(raw, opt)
        if quantized:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q = tmp / "model.int8.onnx"
            import onnx

            # the FFN down-projections read post-GELU activations (heavy-tailed): kept fp32, they hold
            # the worst-row cosine to stock at ~0.99 instead of ~0.98, for ~20% of the int8 speed-up
            graph = onnx.load(str(opt), load_external_data=False).graph
            ffn_out = [nd.name for nd in graph.node if nd.op_type == "MatMul" and "/output/dense/" in nd.name
                       and "attention" not in nd.name]

            # weights only (MatMulConstBOnly: activation x activation products stay fp32), per channel;
            # the embedding tables stay fp32 (quantizing them costs accuracy on short texts, not time).
            # Fused ops (com.microsoft domain) defeat shape inference: tell the quantizer their type.
            quantize_dynamic(str(opt), str(q), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=ffn_out,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True})
            os.replace(q, d / "model.int8.onnx")
        if not (d / "model.opt.onnx").exists():
            os.replace(opt, d / "model.opt.onnx")
    except ResourceUnavailable:
        raise
    except Exception as e:
        raise ResourceUnavailable(
            f"exporting {enc.label!r} to ONNX failed: {type(e).__name__}: {str(e)[:200]}",
            hint="use backend='torch'",
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


class OnnxRunner:
    """An ONNX Runtime session over the exported transformer; the ST head runs in torch."""

    def __init__(self, enc: Encoder, *, quantized: bool):
        import onnxruntime as ort

        self.enc = enc
        path = ensure_onnx_model(enc, quantized=quantized)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            threads = os.cpu_count() or 1
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.path = path

    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        (h,) = self.session.run(None, feeds)
        with torch.inference_mode():
            return self.enc._head(torch.from_numpy(h), torch.from_numpy(attention_mask),
                                  torch.from_numpy(input_ids)).numpy()
