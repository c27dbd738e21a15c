"""profile: what is in a pool before anything is selected from it.

Rows, per-domain counts, length distributions in words and in model tokens, the exact-duplicate
rate, empty and garbled rows, invalid UTF-8 and duplicate ids, plus a histogram plot. It is the
first thing the agent runs on an unfamiliar corpus.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tools.contract import RowCounts, ScoresResult, ToolContext, ToolRequest, ToolSpec
from tools.corpus import CorpusArg, ReadStats

# ------------------------------------------------------------------------------------- schema


class ProfileRequest(ToolRequest):
    corpus: CorpusArg = Field(description="the pool to profile")
    tokenizer: Literal["default", "words"] = Field(
        "default",
        description="'default' counts tokens with the default embedding model's WordPiece tokenizer; "
        "'words' skips token counting",
    )
    max_rows: int | None = Field(None, ge=1, description="profile only the first N rows (None = all)")


class ProfileResult(ScoresResult):
    rows_total: int = 0
    domains: dict[str, int] = Field(default_factory=dict)
    words: dict[str, float] = Field(default_factory=dict, description="length quantiles in words")
    tokens: dict[str, float] = Field(default_factory=dict, description="length quantiles in tokens")
    exact_duplicate_rate: float = 0.0
    empty_rows: int = 0
    garbled_rows: int = 0
    invalid_utf8_rows: int = 0
    duplicate_ids: int = 0


def conformance_case(tmp_path: Path, corpus: Path) -> dict:
    """Arguments for a small CPU run over the conformance corpus."""
    return {}


SPEC = ToolSpec(
    name="profile",
    conformance="tools.profile:conformance_case",
    description="Profile a corpus: row count, documents per domain, length distributions in words and "
    "tokens, exact-duplicate rate, empty or garbled rows, with a histogram plot.",
    request_model=ProfileRequest,
    result_model=ProfileResult,
    family="report",
    examples=(
        "profile my dataset",
        "what is in this corpus?",
        "show me the domain breakdown and length distribution of the pool",
        "how many duplicates and empty documents are there",
        "give me statistics about data/pool.jsonl",
    ),
)

# --------------------------------------------------------------------------------------- core

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def is_garbled(text: str) -> bool:
    """Replacement or control characters, or mostly non-alphanumeric symbols."""
    if _CONTROL.search(text):
        return True
    n = len(text)
    if n < 20:
        return False
    alnum_space = sum(ch.isalnum() or ch.isspace() for ch in text)
    return alnum_space / n < 0.5


def quantiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    q = np.quantile(values, _QUANTILES)
    out = {f"p{int(p * 100)}": float(v) for p, v in zip(_QUANTILES, q, strict=True)}
    out["mean"] = float(values.mean())
    out["max"] = float(values.max())
    return out


def _load_default_tokenizer():  # noqa: ANN202
    try:
        from tokenizers import Tokenizer

        from tools.models import default_model_path

        tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return tok
    except Exception:  # noqa: BLE001 - token counts are optional; words still reported
        return None


def plot_lengths(words_by_domain: dict[str, np.ndarray], domains: dict[str, int]):  # noqa: ANN201
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    top = list(domains)[:8]
    all_len = np.concatenate(list(words_by_domain.values())) if words_by_domain else np.array([1])
    hi = max(2.0, float(np.quantile(all_len, 0.99)) if all_len.size else 2.0)
    bins = np.logspace(0, np.log10(hi + 1), 40)
    for d in top:
        v = words_by_domain.get(d)
        if v is not None and v.size:
            ax1.hist(np.maximum(v, 1), bins=bins, histtype="step", label=d, linewidth=1.4)
    ax1.set_xscale("log")
    ax1.set_xlabel("document length (words)")
    ax1.set_ylabel("documents")
    ax1.set_title("Length distribution by domain")
    if top:
        ax1.legend(fontsize=8)
    names = list(domains)[:15][::-1]
    ax2.barh(names, [domains[n] for n in names], color="#4c72b0")
    ax2.set_title("Documents per domain")
    fig.tight_layout()
    return fig


_TOKENIZER: dict[str, object] = {}


def _tokenizer():  # noqa: ANN202 - one per process (workers load their own)
    if "default" not in _TOKENIZER:
        _TOKENIZER["default"] = _load_default_tokenizer()
    return _TOKENIZER["default"]


def profile_batch(batch, *, tokens: bool) -> dict:  # noqa: ANN001 - a pyarrow.RecordBatch
    """A pure per-batch function (runs in a worker): per-document lengths, text hashes and flags."""
    texts = batch.column("text").to_pylist()
    n = len(texts)
    tok = _tokenizer() if tokens else None
    return {
        "domains": batch.column("domain").to_pylist(),
        "words": np.fromiter((len(t.split()) for t in texts), dtype=np.int32, count=n),
        "hashes": [hashlib.blake2b(t.encode("utf-8", "replace"), digest_size=12).digest() for t in texts],
        "empty": np.fromiter((not t.strip() for t in texts), dtype=bool, count=n),
        "garbled": np.fromiter((bool(t.strip()) and is_garbled(t) for t in texts), dtype=bool, count=n),
        "tokens": (np.fromiter((len(e.ids) for e in tok.encode_batch(texts)), dtype=np.int32, count=n)
                   if tok is not None else None),
    }


@SPEC.implement
def run(request: ProfileRequest, ctx: ToolContext) -> ProfileResult:
    import contextlib
    import functools

    from tools.engine import map_batches

    stats = ReadStats()
    tokens = request.tokenizer == "default" and _tokenizer() is not None
    words_by_domain: dict[str, list[np.ndarray]] = {}
    token_lens: list[np.ndarray] = []
    domains: Counter = Counter()
    hashes: set[bytes] = set()
    dup = empty = garbled = 0
    seen = 0
    fn = functools.partial(profile_batch, tokens=tokens)
    with contextlib.closing(map_batches(fn, request.corpus, ctx, columns=("id", "text", "domain"), desc="profile",
                                        stats=stats)) as results:
        for r in results:
            n = len(r["domains"])
            if request.max_rows is not None and seen + n > request.max_rows:
                n = request.max_rows - seen
            seen += n
            for h in r["hashes"][:n]:
                if h in hashes:
                    dup += 1
                else:
                    hashes.add(h)
            empty += int(r["empty"][:n].sum())
            garbled += int(r["garbled"][:n].sum())
            wl = r["words"][:n]
            dom_arr = np.array(r["domains"][:n], dtype=object)
            for d in set(dom_arr.tolist()):
                mask = dom_arr == d
                domains[d] += int(mask.sum())
                words_by_domain.setdefault(d, []).append(wl[mask])
            if r["tokens"] is not None:
                token_lens.append(r["tokens"][:n])
            if request.max_rows is not None and seen >= request.max_rows:
                break
    ordered = dict(domains.most_common())
    wbd = {d: np.concatenate(v) for d, v in words_by_domain.items()}
    all_words = np.concatenate(list(wbd.values())) if wbd else np.zeros(0)
    all_tokens = np.concatenate(token_lens) if token_lens else np.zeros(0)
    n = int(all_words.size)
    dup_rate = dup / n if n else 0.0

    import pyarrow as pa

    per_domain = pa.table(
        {
            "domain": list(ordered),
            "documents": [ordered[d] for d in ordered],
            "share": [ordered[d] / n for d in ordered],
            "words_median": [float(np.median(wbd[d])) if wbd[d].size else 0.0 for d in ordered],
            "words_mean": [float(wbd[d].mean()) if wbd[d].size else 0.0 for d in ordered],
        }
    )
    metrics = {
        "rows": n,
        "domains": ordered,
        "exact_duplicate_rate": dup_rate,
        "empty_rows": empty,
        "garbled_rows": garbled,
        **{f"read_{k}": v for k, v in stats.as_dict().items() if k != "rows"},
    }
    rows = RowCounts(rows_in=n + sum(stats.skipped.values()), rows_out=n, skipped=dict(stats.skipped))
    with ctx.artifact("table", "profile", metrics=metrics, rows=rows) as w:
        w.table(per_domain)
    table_id = w.id
    fig = plot_lengths(wbd, ordered)
    with ctx.artifact("plot", "histogram", metrics={"title": "length distribution by domain"}) as w:
        w.figure(fig)
    import matplotlib.pyplot as plt

    plt.close(fig)
    wq = quantiles(all_words)
    tq = quantiles(all_tokens)
    top = ", ".join(f"{d} {c}" for d, c in list(ordered.items())[:6])
    summary = (
        f"{n} documents in {len(ordered)} domains ({top}{', ...' if len(ordered) > 6 else ''}). "
        f"Median {wq.get('p50', 0):.0f} words"
        + (f" / {tq.get('p50', 0):.0f} tokens" if tq else "")
        + f"; p95 {wq.get('p95', 0):.0f} words. Exact duplicates {dup_rate:.1%}, empty {empty}, garbled {garbled}"
        + (f", invalid UTF-8 rows {stats.invalid_utf8_rows}" if stats.invalid_utf8_rows else "")
        + (f", duplicate ids {stats.duplicate_ids}" if stats.duplicate_ids else "")
        + (f", skipped {dict(stats.skipped)}" if stats.skipped else "")
        + "."
    )
    return ProfileResult(
        summary=summary,
        artifacts={"table": table_id, "plot": w.id},
        rows=rows,
        score_columns=[],
        rows_total=n,
        domains=ordered,
        words=wq,
        tokens=tq,
        exact_duplicate_rate=dup_rate,
        empty_rows=empty,
        garbled_rows=garbled,
        invalid_utf8_rows=stats.invalid_utf8_rows,
        duplicate_ids=stats.duplicate_ids,
    )
