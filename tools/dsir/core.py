"""DSIR core: hashed n-gram features, bag-of-n-grams models, log importance weights, resampling.

Pure NumPy (plus the standard library); no pydantic, no tool context, so benchmarks and other tools
can call it directly. The steps follow the ``data-selection`` package (p-lambda/dsir, v1.0.3):

1. lower-case, tokenize with the word-punct regex ``\\w+|[^\\w\\s]+`` (NLTK's WordPunctTokenizer);
2. every unigram and every m-gram for 2 <= m <= ``ngrams`` goes to one of ``num_buckets`` buckets;
3. raw and target models are normalised bucket counts; ``log_diff = log p_target - log q_raw``;
4. a document's log importance weight is ``sum_b count_b * log_diff_b``;
5. documents shorter than ``min_example_length`` words are not eligible; Gumbel top-k picks k
   without replacement with probability proportional to the importance weights (Plackett-Luce).

Two hashes. ``"sha256"`` (parity): the bucket of an n-gram is ``int(sha256(' '.join(tokens)), 16) %
num_buckets`` and tokenization uses the ``regex`` engine as NLTK >= 3.9 does, so bucket ids, counts
and log weights equal the reference package's. ``"fast"`` (default): each distinct token is hashed
once (blake2b, cached) to 64 bits, n-gram hashes are combined from token hashes with vectorised
splitmix64 arithmetic, and tokenization uses the stdlib ``re`` engine (it differs from ``regex`` only
on a few Unicode number/mark characters such as '½' or '³'). Same model, different bucket ids.

Parallelism: the caller reads the corpus in batches; each batch is featurized in a worker process
and its bucket ids are written to a scratch file (2 bytes per n-gram when ``num_buckets <= 65536``).
Counts are integers and per-document sums are taken in a fixed order inside one document, so every
number is the same whatever the number of workers or the batch boundaries.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

HashName = Literal["fast", "sha256"]
WORDPUNCT = r"\w+|[^\w\s]+"
REFERENCE_FLOOR = 1e-8  # the reference's log(p + 1e-8) floor
_FLAGS = re.UNICODE | re.MULTILINE | re.DOTALL
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CACHE_LIMIT = 2_000_000  # distinct tokens (or n-grams, parity mode) cached per process

# ------------------------------------------------------------------------------- tokenization


def _compile(hash_name: HashName) -> Any:
    if hash_name == "sha256":
        try:  # NLTK >= 3.9 compiles its tokenizer regexes with the `regex` engine
            import regex

            return regex.compile(WORDPUNCT, _FLAGS)
        except ImportError:  # pragma: no cover - regex ships with nltk
            pass
    return re.compile(WORDPUNCT, _FLAGS)


def tokenize(text: str, hash_name: HashName = "fast") -> list[str]:
    """Lower-case and split into word and punctuation runs (the reference's 'wordpunct')."""
    return _pattern(hash_name).findall(text.lower())


_PATTERNS: dict[str, Any] = {}


def _pattern(hash_name: HashName) -> Any:
    p = _PATTERNS.get(hash_name)
    if p is None:
        p = _PATTERNS[hash_name] = _compile(hash_name)
    return p


def sha256_bucket(text: str, num_buckets: int = 10_000) -> int:
    """The reference's ``hash_buckets``: ``int(sha256(text).hexdigest(), 16) % num_buckets``."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % num_buckets


# ------------------------------------------------------------------------------------ hashing


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


class _TokenHashes(dict):
    """token -> stable 64-bit hash (blake2b), computed once per distinct token."""

    def __missing__(self, token: str) -> int:
        if len(self) > _CACHE_LIMIT:
            self.clear()
        v = int.from_bytes(hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        self[token] = v
        return v


class _Sha256Buckets(dict):
    """n-gram string -> sha256 bucket (parity mode), cached."""

    def __init__(self, num_buckets: int):
        super().__init__()
        self.num_buckets = num_buckets

    def __missing__(self, text: str) -> int:
        if len(self) > _CACHE_LIMIT:
            self.clear()
        v = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % self.num_buckets
        self[text] = v
        return v


@dataclass(frozen=True)
class FeatureConfig:
    ngrams: int = 2
    num_buckets: int = 10_000
    hash: HashName = "fast"

    def __post_init__(self) -> None:
        if self.ngrams < 1:
            raise ValueError("ngrams must be >= 1")
        if self.num_buckets < 2:
            raise ValueError("num_buckets must be >= 2")

    @property
    def bucket_dtype(self) -> np.dtype:
        return np.dtype(np.uint16) if self.num_buckets <= 65536 else np.dtype(np.uint32)


@dataclass
class BatchFeatures:
    """Hashed n-grams of a batch of documents.

    ``buckets[m-1]`` holds the bucket of every m-gram, documents in order and positions in order
    within a document; document i has ``max(ntok[i] - m + 1, 0)`` of them.
    """

    ntok: np.ndarray  # (n,) int64 tokens per document
    buckets: list[np.ndarray] = field(default_factory=list)

    @property
    def n_docs(self) -> int:
        return int(self.ntok.size)

    @staticmethod
    def concat(parts: Sequence[BatchFeatures]) -> BatchFeatures:
        parts = list(parts)
        n = max((len(p.buckets) for p in parts), default=0)
        return BatchFeatures(
            ntok=np.concatenate([p.ntok for p in parts]) if parts else np.zeros(0, dtype=np.int64),
            buckets=[np.concatenate([p.buckets[m] for p in parts]) for m in range(n)],
        )

    def head(self, n_docs: int) -> BatchFeatures:
        """The first ``n_docs`` documents."""
        return BatchFeatures(ntok=self.ntok[:n_docs],
                             buckets=[b[: int(self.per_doc(m)[:n_docs].sum())] for m, b in enumerate(self.buckets, 1)])

    def per_doc(self, m: int) -> np.ndarray:
        return np.maximum(self.ntok - m + 1, 0)

    def doc_index(self, m: int) -> np.ndarray:
        return np.repeat(np.arange(self.n_docs), self.per_doc(m))

    def ngram_totals(self) -> np.ndarray:
        """Feature-count sum per document (the reference's ``features.sum()``)."""
        return sum(self.per_doc(m) for m in range(1, len(self.buckets) + 1))

    def counts(self, num_buckets: int, docs: np.ndarray | None = None) -> np.ndarray:
        """Bucket counts summed over the batch, or over the documents where the mask ``docs`` is true."""
        out = np.zeros(num_buckets, dtype=np.int64)
        for m, b in enumerate(self.buckets, start=1):
            if docs is not None:
                b = b[np.repeat(docs, self.per_doc(m))]
            out += np.bincount(b, minlength=num_buckets)
        return out

    def doc_dot(self, log_diff: np.ndarray) -> np.ndarray:
        """Per-document ``<log_diff, counts>`` for a (B,) or (T, B) ``log_diff`` -> (n,) or (n, T)."""
        ld = np.atleast_2d(log_diff)
        out = np.zeros((self.n_docs, ld.shape[0]), dtype=np.float64)
        for m, b in enumerate(self.buckets, start=1):
            idx = self.doc_index(m)
            bi = b.astype(np.intp)
            for t in range(ld.shape[0]):
                out[:, t] += np.bincount(idx, weights=ld[t][bi], minlength=self.n_docs)
        return out if log_diff.ndim == 2 else out[:, 0]


class Featurizer:
    """Texts -> :class:`BatchFeatures` under one :class:`FeatureConfig`; keeps per-process caches."""

    def __init__(self, config: FeatureConfig):
        self.config = config
        self._pattern = _pattern(config.hash)
        self._tok = _TokenHashes()
        self._sha = _Sha256Buckets(config.num_buckets)

    def __call__(self, texts: Sequence[str | None]) -> BatchFeatures:
        findall = self._pattern.findall
        toks = [findall(t.lower()) if t else [] for t in texts]
        ntok = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
        if self.config.hash == "sha256":
            buckets = self._sha256(toks)
        else:
            buckets = self._fast(toks, ntok)
        dt = self.config.bucket_dtype
        return BatchFeatures(ntok=ntok, buckets=[b.astype(dt, copy=False) for b in buckets])

    def _fast(self, toks: list[list[str]], ntok: np.ndarray) -> list[np.ndarray]:
        n, B = self.config.ngrams, np.uint64(self.config.num_buckets)
        total = int(ntok.sum())
        flat = itertools.chain.from_iterable(toks)
        h = np.fromiter(map(self._tok.__getitem__, flat), dtype=np.uint64, count=total)
        out = [_mix(h ^ np.uint64(1)) % B]
        if n >= 2 and total:
            # tokens left in the document from each position (inclusive)
            starts = np.cumsum(ntok) - ntok
            left = np.repeat(starts + ntok, ntok) - np.arange(total)
            g = h
            for m in range(2, n + 1):
                g = _mix(g[:-1] * _GOLDEN + h[m - 1 :])
                valid = left[: g.size] >= m
                out.append(_mix(g[valid] ^ np.uint64(m)) % B)
        else:
            out += [np.zeros(0, dtype=np.uint64) for _ in range(2, n + 1)]
        return out

    def _sha256(self, toks: list[list[str]]) -> list[np.ndarray]:
        n, sha = self.config.ngrams, self._sha
        out = []
        for m in range(1, n + 1):
            if m == 1:
                grams = itertools.chain.from_iterable(toks)
            else:
                grams = itertools.chain.from_iterable(
                    (" ".join(w[i : i + m]) for i in range(len(w) - m + 1)) for w in toks
                )
            out.append(np.fromiter(map(sha.__getitem__, grams), dtype=np.int64))
        return out


def ngram_counts(text: str, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Bucket counts of one text (the reference's ``get_ngram_counts`` in parity mode)."""
    return Featurizer(config)([text]).counts(config.num_buckets)


def example_lengths(ngram_totals: np.ndarray, ngrams: int) -> np.ndarray:
    """The reference's word-count estimate ``(sum(z) + n(n-1)/2) // n`` (= tokens for long texts)."""
    return ((np.asarray(ngram_totals, dtype=np.int64) + ngrams * (ngrams - 1) // 2) // ngrams).astype(np.int32)


# ------------------------------------------------------------------------------------- models


@dataclass
class DSIRModel:
    raw_counts: np.ndarray  # (B,) int64
    target_counts: np.ndarray  # (T, B) int64, one row per target model
    log_diff: np.ndarray  # (T, B) float64
    target_probs: np.ndarray  # (T, B)
    raw_probs: np.ndarray  # (B,)
    prior: list[float | None]  # Dirichlet prior strength per target (None = reference floor only)


def _golden_max(f: Callable[[float], float], a: float, b: float, tol: float = 1e-3) -> float:
    """Maximiser of a unimodal f on [a, b] (golden-section search)."""
    gr = (math.sqrt(5) - 1) / 2
    c, d = b - gr * (b - a), a + gr * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            a, c, fc = c, d, fd
            d = a + gr * (b - a)
            fd = f(d)
        else:
            b, d, fd = d, c, fc
            c = b - gr * (b - a)
            fc = f(c)
    return (a + b) / 2


def loo_log_likelihood(feats: BatchFeatures, base: np.ndarray, alpha: float) -> float:
    """Leave-one-document-out log likelihood per n-gram of target documents under the posterior mean.

    Document d is scored by ``p_-d = (c - c_d + alpha * base) / (N - N_d + alpha)``, the target model
    fitted without it: how well the smoothed model predicts an unseen target-like document.
    """
    return _LOO(feats, base.size)(base, alpha)


class _LOO:
    def __init__(self, feats: BatchFeatures, num_buckets: int):
        key = np.concatenate(
            [feats.doc_index(m).astype(np.int64) * num_buckets + b.astype(np.int64)
             for m, b in enumerate(feats.buckets, start=1)]
        )
        uk, cnt = np.unique(key, return_counts=True)
        self.doc, self.bucket, self.cnt = uk // num_buckets, uk % num_buckets, cnt.astype(np.float64)
        self.c = np.bincount(self.bucket, weights=self.cnt, minlength=num_buckets)
        self.Nd = np.bincount(self.doc, weights=self.cnt)
        self.N = float(self.c.sum())

    def __call__(self, base: np.ndarray, alpha: float) -> float:
        num = self.c[self.bucket] - self.cnt + alpha * base[self.bucket]
        den = self.N - self.Nd[self.doc] + alpha
        return float(np.sum(self.cnt * (np.log(num) - np.log(den)))) / max(self.N, 1.0)


def fit_prior_strength(feats: BatchFeatures, base: np.ndarray, lo: float = 1.0, hi: float = 1e9) -> float:
    """Prior strength alpha maximising the leave-one-document-out likelihood of the target documents.

    Cross-validation across documents, not the Polya evidence of the pooled counts: n-grams repeat
    within a document (numbers, names), so pooled counts look more certain than they are and the
    evidence picks too weak a prior (about 2-3x smaller on GSM8K questions).
    """
    if feats.n_docs < 2:
        return float(np.clip(sum(b.size for b in feats.buckets), lo, hi))
    loo = _LOO(feats, base.size)
    x = _golden_max(lambda t: loo(base, math.exp(t)), math.log(lo), math.log(hi), tol=0.01)
    return math.exp(x)


def fit_model(
    raw_counts: np.ndarray,
    target_counts: np.ndarray,
    *,
    prior: float | Literal["auto", "none"] = "auto",
    laplace: float = 0.0,
    target_docs: Sequence[BatchFeatures] | None = None,
) -> DSIRModel:
    """Target and raw models and ``log_diff``.

    ``prior="none"`` is the reference: ``p = (c + laplace) / sum``, ``log_diff = log(p + 1e-8) -
    log(q + 1e-8)``. Otherwise the target model is the posterior mean under a Dirichlet prior centred
    on the raw model, ``p = (c + alpha * q) / (N + alpha)`` (``alpha`` fitted by empirical Bayes when
    ``"auto"``, from the documents in ``target_docs``, one entry per target): buckets a small target never saw fall back towards the raw frequency instead of to
    1e-8, so one unseen n-gram costs ``log(alpha / (N + alpha))`` rather than about -9 nats.
    """
    raw_counts = np.asarray(raw_counts, dtype=np.int64)
    tc = np.atleast_2d(np.asarray(target_counts, dtype=np.int64))
    q = raw_counts / max(raw_counts.sum(), 1)
    rows, alphas = [], []
    for i, c in enumerate(tc):
        cl = c + laplace
        if prior == "none":
            p = cl / max(cl.sum(), 1e-300)
            rows.append((p, np.log(p + REFERENCE_FLOOR) - np.log(q + REFERENCE_FLOOR)))
            alphas.append(None)
            continue
        # q with the reference floor, so buckets the raw fit never saw stay finite
        qf = (q + REFERENCE_FLOOR) / (1 + REFERENCE_FLOOR * q.size)
        if prior == "auto":
            if target_docs is None:
                raise ValueError("prior='auto' needs the target documents' features (target_docs)")
            alpha = fit_prior_strength(target_docs[i], qf)
        else:
            alpha = float(prior)
        p = (cl + alpha * qf) / (cl.sum() + alpha)
        rows.append((p, np.log(p) - np.log(qf)))
        alphas.append(alpha)
    return DSIRModel(
        raw_counts=raw_counts,
        target_counts=tc,
        log_diff=np.stack([r[1] for r in rows]),
        target_probs=np.stack([r[0] for r in rows]),
        raw_probs=q,
        prior=alphas,
    )


# ---------------------------------------------------------------------------------- resampling


def gumbel_topk(
    log_w: np.ndarray,
    k: int,
    *,
    eligible: np.ndarray | None = None,
    top_k: bool = False,
    proportions: Sequence[float] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick k rows without replacement, P(order) = Plackett-Luce with weights exp(log_w).

    ``log_w`` is (N,) or (N, T) for T targets; target t gets ``int(k * pi_t)`` picks (the remainder
    to the last), each from the rows still eligible, as the reference does. The noise comes from
    ``np.random.RandomState(seed)``, the same stream as the reference's ``np.random.seed(seed)``.
    Returns (indices in pick order per target, the target of each pick).
    """
    lw = np.asarray(log_w)
    if lw.ndim == 1:
        lw = lw[:, None]
    n, T = lw.shape
    mask = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool).copy()
    if T == 1:
        quotas = [k]
    else:
        pi = np.full(T, 1.0 / T) if proportions is None else np.asarray(proportions, dtype=np.float64)
        pi = pi / pi.sum()
        quotas = [int(k * p) for p in pi]
        quotas[-1] += k - sum(quotas)
    rs = np.random.RandomState(seed)
    picks, owner = [], []
    for t, kt in enumerate(quotas):
        if kt == 0:
            continue
        rows = np.flatnonzero(mask)
        if kt > rows.size:
            raise ValueError(f"cannot pick {kt} of {rows.size} eligible rows")
        key = lw[rows, t].astype(np.float64)
        if not top_k:
            key = key + rs.gumbel(size=key.shape)
        part = np.argpartition(-key, kt - 1)[:kt] if kt < rows.size else np.arange(rows.size)
        part = part[np.argsort(-key[part], kind="stable")]
        chosen = rows[part]
        mask[chosen] = False
        picks.append(chosen)
        owner.append(np.full(kt, t, dtype=np.int32))
    if not picks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
    return np.concatenate(picks).astype(np.int64), np.concatenate(owner)


# ------------------------------------------------------------------------------ batch pipeline


_FEATURIZERS: dict[FeatureConfig, Featurizer] = {}


def _featurizer(config: FeatureConfig) -> Featurizer:
    f = _FEATURIZERS.get(config)
    if f is None:
        f = _FEATURIZERS[config] = Featurizer(config)
    return f


def save_features(path: str | os.PathLike, feats: BatchFeatures) -> None:
    with open(path, "wb") as fh:
        np.save(fh, feats.ntok)
        for b in feats.buckets:
            np.save(fh, b)


def load_features(path: str | os.PathLike, ngrams: int) -> BatchFeatures:
    with open(path, "rb") as fh:
        ntok = np.load(fh)
        buckets = [np.load(fh) for _ in range(ngrams)]
    return BatchFeatures(ntok=ntok, buckets=buckets)


def _worker_dot(path: str, ngrams: int, log_diff: np.ndarray) -> np.ndarray:
    return load_features(path, ngrams).doc_dot(log_diff)


def _worker_counts(path: str, ngrams: int, num_buckets: int, docs: np.ndarray | None) -> np.ndarray:
    return load_features(path, ngrams).counts(num_buckets, docs)


def featurize_texts(texts: Sequence[str], config: FeatureConfig = FeatureConfig()) -> BatchFeatures:
    """Featurize in this process (small inputs, tests, metrics)."""
    return _featurizer(config)(list(texts))


def scratch_files(directory: Path) -> Iterator[str]:
    for i in itertools.count():
        yield str(directory / f"{i:07d}.npf")


# ------------------------------------------------------------------------------------ lengths

REFERENCE_MIN_LENGTH = 100  # the reference's min_example_length (words)
LENGTH_FLOOR_QUANTILE = 0.05


def length_floor(target_lengths: np.ndarray, reference: int = REFERENCE_MIN_LENGTH,
                 quantile: float = LENGTH_FLOOR_QUANTILE) -> int:
    """``min_example_length="auto"``: the reference's 100 words, or less when the target is shorter.

    The floor is the target's own 5th-percentile length (at least 1 word): a pool document shorter
    than all but 5% of the target's documents is unlike it by length alone, while a floor above the
    target's typical length (100 words against questions of 10-40 words) removes the very documents
    the target resembles. Long-document targets keep the reference's 100.
    """
    t = np.asarray(target_lengths)
    if t.size == 0:
        return int(reference)
    return int(max(1, min(reference, math.floor(float(np.quantile(t, quantile))))))


def _bandwidth(x: np.ndarray) -> float:
    """Silverman's rule on log lengths, at least 0.1 (a 10% change of length)."""
    if x.size < 2:
        return 0.25
    iqr = float(np.subtract(*np.quantile(x, [0.75, 0.25])))
    spread = min(float(x.std()), iqr / 1.34) if iqr > 0 else float(x.std())
    return max(0.9 * spread * x.size ** -0.2, 0.1)


def length_log_ratio(target_lengths: np.ndarray, pool_lengths: np.ndarray, *, prior: float = 1.0,
                     grid: int = 2048) -> np.ndarray:
    """Per pool document ``log p_T(l) - log q(l)``: the length part of the importance weight.

    The hashed n-gram model scores a document as a bag of n-grams and says nothing about how many it
    has, so its log weight, a sum over n-grams, grows with length: against a target of short
    questions a long off-domain document with slightly target-like words outweighs an in-domain
    question. A generative model of the target fixes the number of n-grams too: ``p_T(x) =
    p_T(l) * prod p_T(z_i)``, so the importance weight gains the factor ``p_T(l) / q(l)``. Both
    length densities are Gaussian kernel density estimates on ``log(1 + l)`` (Silverman bandwidths);
    the target's is smoothed towards the pool's with ``prior`` pseudo-documents, ``p_T = (n KDE_T +
    prior q) / (n + prior)`` (the counterpart of the n-gram model's Dirichlet prior), so a length
    the target never shows costs at most ``log((n + prior) / prior)`` nats and no length is
    impossible. Computed on a grid of ``grid`` points and interpolated.
    """
    x = np.log1p(np.asarray(target_lengths, dtype=np.float64))
    y = np.log1p(np.asarray(pool_lengths, dtype=np.float64))
    if y.size == 0:
        return np.zeros(0)
    if x.size == 0:
        return np.zeros(y.size)
    hx, hy = _bandwidth(x), _bandwidth(y)
    lo = min(x.min(), y.min()) - 4 * max(hx, hy)
    hi = max(x.max(), y.max()) + 4 * max(hx, hy)
    g = np.linspace(lo, hi, grid)
    step = g[1] - g[0]
    # pool density: counts on the grid, convolved with the kernel (the pool may hold millions)
    cnt = np.bincount(np.clip(np.rint((y - lo) / step).astype(np.int64), 0, grid - 1), minlength=grid)
    half = int(math.ceil(4 * hy / step))
    ker = np.exp(-0.5 * (np.arange(-half, half + 1) * step / hy) ** 2)
    q = np.convolve(cnt.astype(np.float64), ker, mode="same")[:grid] if half < grid else \
        np.exp(-0.5 * ((g[:, None] - g[None, :]) / hy) ** 2) @ cnt
    q = q / (q.sum() * step)
    # target density: exact kernel sums at the grid points, in blocks
    pt = np.zeros(grid)
    for s in range(0, x.size, 4096):
        pt += np.exp(-0.5 * ((g[:, None] - x[None, s : s + 4096]) / hx) ** 2).sum(axis=1)
    pt = pt / (x.size * hx * math.sqrt(2 * math.pi))
    n = float(x.size)
    q = np.maximum(q, 1e-300)
    ratio = np.log((n * pt + prior * q) / (n + prior)) - np.log(q)
    return np.interp(y, g, ratio)


def filter_effect(rank_w: np.ndarray, eligible: np.ndarray, k: int) -> tuple[float, float]:
    """(share of the pool a filter removes, share of the k documents the weights rank highest over the
    whole pool that it removes); for several targets a document's best weight counts."""
    n = eligible.size
    if n == 0:
        return 0.0, 0.0
    w = np.asarray(rank_w, dtype=np.float64)
    w = w.max(axis=1) if w.ndim == 2 else w
    k = max(1, min(int(k), n))
    top = np.argpartition(-w, k - 1)[:k]
    return float(1.0 - eligible.mean()), float(1.0 - eligible[top].mean())


@dataclass
class LengthRule:
    log_w: np.ndarray  # (N, T) log weights, with the length term when ``length_model``
    lengths: np.ndarray  # (N,) word counts (the reference's estimate)
    eligible: np.ndarray  # (N,) bool: at least ``floor`` words
    floor: int  # the min_example_length used
    auto_floor: bool  # the floor came from the target's lengths
    length_model: bool  # the length term was added

    def describe(self, k: int, rank_w: np.ndarray | None = None) -> tuple[float, float, str]:
        """(pool share removed, share of the top-k removed, a sentence when either is a majority)."""
        pool_cut, top_cut = filter_effect(self.log_w if rank_w is None else rank_w, self.eligible, k)
        words = []
        if pool_cut > 0.5:
            words.append(f"the {self.floor}-word floor removes {pool_cut:.0%} of the pool")
        if top_cut > 0.5:
            words.append(f"it removes {top_cut:.0%} of the {k} documents the weights rank highest"
                         if words else f"the {self.floor}-word floor removes {top_cut:.0%} of the {k} "
                         "documents the weights rank highest")
        txt = ("Warning: " + " and ".join(words) + "; a lower min_example_length admits them.") if words else ""
        return pool_cut, top_cut, txt


def length_rule(log_w: np.ndarray, pool_totals: np.ndarray, target_docs: Sequence[BatchFeatures], ngrams: int, *,
                min_example_length: int | str = "auto", length_model: bool = True) -> LengthRule:
    """The eligibility floor (:func:`length_floor` when ``"auto"``) and, when ``length_model``, the
    length term :func:`length_log_ratio` added to each target's log weights (``target_docs``: one
    sample of target documents per column of ``log_w``). With an explicit floor and no length model
    the weights are returned unchanged (the reference)."""
    lengths = example_lengths(pool_totals, ngrams)
    t_lens = [example_lengths(f.ngram_totals(), ngrams) for f in target_docs]
    auto = min_example_length == "auto"
    floor = length_floor(np.concatenate(t_lens) if t_lens else np.zeros(0)) if auto else int(min_example_length)
    if length_model:
        log_w = log_w.copy()
        for t in range(log_w.shape[1]):
            log_w[:, t] += length_log_ratio(t_lens[min(t, len(t_lens) - 1)], lengths).astype(log_w.dtype)
    return LengthRule(log_w=log_w, lengths=lengths, eligible=lengths >= floor, floor=floor, auto_floor=auto,
                      length_model=length_model)
