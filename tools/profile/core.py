"""Per-batch document statistics and their running totals (arrays in, arrays out; no data I/O).

:func:`profile_batch` is pure per batch and runs in the engine's workers (each loads the default
tokenizer once); :class:`ProfileCounts` folds the batch results in corpus order, so the totals are
the same for any worker count.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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


_TOKENIZER: dict[str, object] = {}


def tokenizer():  # noqa: ANN201 - one per process (workers load their own); None when unavailable
    if "default" not in _TOKENIZER:
        _TOKENIZER["default"] = _load_default_tokenizer()
    return _TOKENIZER["default"]


def profile_batch(batch, *, tokens: bool) -> dict:  # noqa: ANN001 - a pyarrow.RecordBatch
    """A pure per-batch function (runs in a worker): per-document lengths, text hashes and flags."""
    texts = batch.column("text").to_pylist()
    n = len(texts)
    tok = tokenizer() if tokens else None
    return {
        "domains": batch.column("domain").to_pylist(),
        "words": np.fromiter((len(t.split()) for t in texts), dtype=np.int32, count=n),
        "hashes": [hashlib.blake2b(t.encode("utf-8", "replace"), digest_size=12).digest() for t in texts],
        "empty": np.fromiter((not t.strip() for t in texts), dtype=bool, count=n),
        "garbled": np.fromiter((bool(t.strip()) and is_garbled(t) for t in texts), dtype=bool, count=n),
        "tokens": (np.fromiter((len(e.ids) for e in tok.encode_batch(texts)), dtype=np.int32, count=n)
                   if tok is not None else None),
    }


@dataclass
class ProfileCounts:
    """Running totals of :func:`profile_batch` results, folded in corpus order, up to ``max_rows``."""

    max_rows: int | None = None
    seen: int = 0
    duplicates: int = 0
    empty: int = 0
    garbled: int = 0
    domain_docs: Counter = field(default_factory=Counter)
    words_by_domain: dict[str, list[np.ndarray]] = field(default_factory=dict)
    token_lens: list[np.ndarray] = field(default_factory=list)
    hashes: set[bytes] = field(default_factory=set)

    @property
    def full(self) -> bool:
        return self.max_rows is not None and self.seen >= self.max_rows

    def add(self, r: dict[str, Any]) -> None:
        n = len(r["domains"])
        if self.max_rows is not None and self.seen + n > self.max_rows:
            n = self.max_rows - self.seen
        self.seen += n
        for h in r["hashes"][:n]:
            if h in self.hashes:
                self.duplicates += 1
            else:
                self.hashes.add(h)
        self.empty += int(r["empty"][:n].sum())
        self.garbled += int(r["garbled"][:n].sum())
        wl = r["words"][:n]
        dom_arr = np.array(r["domains"][:n], dtype=object)
        for d in set(dom_arr.tolist()):
            mask = dom_arr == d
            self.domain_docs[d] += int(mask.sum())
            self.words_by_domain.setdefault(d, []).append(wl[mask])
        if r["tokens"] is not None:
            self.token_lens.append(r["tokens"][:n])

    def domains(self) -> dict[str, int]:
        """Documents per domain, most first."""
        return dict(self.domain_docs.most_common())

    def words(self) -> dict[str, np.ndarray]:
        """Document lengths in words, per domain."""
        return {d: np.concatenate(v) for d, v in self.words_by_domain.items()}

    def tokens(self) -> np.ndarray:
        return np.concatenate(self.token_lens) if self.token_lens else np.zeros(0)
