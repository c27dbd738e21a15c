"""Quality signals core: RedPajama-V2 / Gopher natural-language statistics, vectorised over Arrow.

``signals(texts)`` takes a ``pyarrow`` string array and returns one float64 NumPy column per signal.
Everything is computed with ``pyarrow.compute`` kernels on the flattened words / lines / paragraphs of
the whole batch and reduced per document with ``bincount`` and sorted group boundaries, so there is
no Python loop over documents or words.

Definitions (Rae et al. 2021, "Gopher", appendix A; RedPajama-V2 ``rps_doc_*``):

- words: whitespace-separated tokens. A *symbol word* consists only of punctuation/symbol characters
  (Unicode P* and S*). ``word_count`` and ``mean_word_length`` use the non-symbol words (Gopher's
  filter); the ratios below divide by all words, as Gopher does.
- ``unique_word_fraction``, ``unigram_entropy`` (nats): over lower-cased words.
- ``frac_words_no_alpha``: words with no letter (Unicode L*), i.e. 1 - Gopher's alpha-word ratio.
- ``stop_word_fraction``: words in a small English function-word list; ``gopher_stop_words``: how
  many of Gopher's eight ("the", "be", "to", "of", "and", "that", "have", "with") occur (distinct,
  case-sensitive); Gopher keeps documents with at least 2.
- ``symbol_word_ratio_hash`` = count("#") / words; ``symbol_word_ratio_ellipsis`` = (count("...") +
  count("…")) / words.
- lines split at line breaks (``str.splitlines``); ``frac_lines_bullet``: lines starting (after
  leading whitespace) with "•" or "-"; ``frac_lines_ellipsis``: lines ending with "..." or "…".
- repetition (Gopher): ``frac_lines_duplicated`` / ``frac_chars_dup_lines`` over lines split at
  ``\\n+``; ``frac_paragraphs_duplicated`` / ``frac_chars_dup_paragraphs`` over the stripped text
  split at ``\\n{2,}``; an element counts as duplicated from its second occurrence on, chars are
  divided by the text's length.
- ``frac_chars_top_{2,3,4}gram``: (length of the most frequent word n-gram joined by spaces) x (its
  count) / text length; ties go to the n-gram seen first.
- ``frac_chars_dup_{5..10}gram`` (RedPajama-V2): characters of the words covered by any word n-gram
  that occurs more than once, over the characters of all words. (DataTrove's Gopher filter uses a
  greedy left-to-right variant divided by the text length; the two differ.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

STOP_WORDS = (
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "because", "been",
    "but", "by", "can", "could", "do", "for", "from", "had", "has", "have", "he", "her", "his", "how", "i",
    "if", "in", "into", "is", "it", "its", "more", "not", "of", "on", "one", "or", "our", "she", "so",
    "some", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was",
    "we", "were", "what", "when", "which", "who", "will", "with", "would", "you", "your",
)
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
_LINE_BREAKS = "\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]"
_WS = r"[\s\pZ\x0b\x1c-\x1f\x85]"  # str.isspace in RE2 syntax

SIGNALS = (
    "char_count", "word_count", "mean_word_length", "unique_word_fraction", "unigram_entropy",
    "frac_words_no_alpha", "stop_word_fraction", "gopher_stop_words", "symbol_word_ratio_hash",
    "symbol_word_ratio_ellipsis", "line_count", "frac_lines_bullet", "frac_lines_ellipsis",
    "frac_lines_duplicated", "frac_chars_dup_lines", "frac_paragraphs_duplicated", "frac_chars_dup_paragraphs",
    *(f"frac_chars_top_{n}gram" for n in TOP_NGRAMS), *(f"frac_chars_dup_{n}gram" for n in DUP_NGRAMS),
)


def _np(a: Any, dtype: Any = np.float64) -> np.ndarray:
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=dtype)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, np.float64), where=den > 0)


def _codes(values: Any) -> np.ndarray:
    """Integer code per string (equal strings, equal codes) for a flat string array."""
    import pyarrow.compute as pc

    enc = pc.dictionary_encode(values)
    return _np(enc.indices if hasattr(enc, "indices") else enc.combine_chunks().indices, np.int64)


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort ``key`` once: (order, group id per sorted item, start of each group in sorted order)."""
    order = np.argsort(key)
    ks = key[order]
    new = np.empty(ks.size, dtype=bool)
    if ks.size:
        new[0] = True
        np.not_equal(ks[1:], ks[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    return order, np.cumsum(new) - 1, starts


def _dup_stats(doc: np.ndarray, code: np.ndarray, length: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per document: elements that repeat an earlier one, and their characters (Gopher's find_duplicates).

    Equal elements have equal lengths, so a group of c copies contributes c - 1 repeats of its length.
    """
    if doc.size == 0:
        return np.zeros(n_docs), np.zeros(n_docs)
    order, _, starts = _groups(doc * (int(code.max()) + 1) + code)
    sizes = np.diff(np.r_[starts, order.size]).astype(np.float64)
    first = order[starts]
    gdoc = doc[first]
    return (np.bincount(gdoc, weights=sizes - 1, minlength=n_docs),
            np.bincount(gdoc, weights=(sizes - 1) * length[first], minlength=n_docs))


def _mix(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Combine 64-bit hashes (splitmix64 finaliser); wraps modulo 2**64."""
    with np.errstate(over="ignore"):
        x = (h * np.uint64(0x9E3779B97F4A7C15)) ^ v
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def signals(texts: Any) -> dict[str, np.ndarray]:
    """Every signal of :data:`SIGNALS` for a pyarrow string array (nulls read as empty text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(list(texts), pa.string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.fill_null(texts.cast(pa.string()), "")
    n_docs = len(texts)
    out: dict[str, np.ndarray] = {}
    n_chars = _np(pc.utf8_length(texts))
    out["char_count"] = n_chars

    # -- words ----------------------------------------------------------------------------------
    wl = pc.utf8_split_whitespace(texts)
    words = pc.list_flatten(wl)
    wdoc = _np(pc.list_parent_indices(wl), np.int64)
    wlen = _np(pc.utf8_length(words))
    nonempty = wlen > 0  # the kernel leaves empty pieces at leading/trailing whitespace
    if not nonempty.all():
        words, wdoc, wlen = pc.filter(words, pa.array(nonempty)), wdoc[nonempty], wlen[nonempty]
    n_words = np.bincount(wdoc, minlength=n_docs).astype(np.float64)
    symbol = _np(pc.match_substring_regex(words, r"^[\pP\pS]+$"), bool)
    non_sym = np.bincount(wdoc, weights=(~symbol).astype(np.float64), minlength=n_docs)
    out["word_count"] = non_sym
    out["mean_word_length"] = _ratio(np.bincount(wdoc, weights=np.where(symbol, 0.0, wlen), minlength=n_docs), non_sym)
    lower = pc.utf8_lower(words)
    lcode = _codes(lower)
    if lcode.size:
        order, _, starts = _groups(wdoc * (int(lcode.max()) + 1) + lcode)
        sizes = np.diff(np.r_[starts, order.size]).astype(np.float64)
        gdoc = wdoc[order[starts]]
        uniq = np.bincount(gdoc, minlength=n_docs).astype(np.float64)
        clogc = np.bincount(gdoc, weights=sizes * np.log(sizes), minlength=n_docs)
    else:
        uniq = clogc = np.zeros(n_docs)
    out["unique_word_fraction"] = _ratio(uniq, n_words)
    safe_n = np.maximum(n_words, 1.0)
    out["unigram_entropy"] = np.where(n_words > 0, np.log(safe_n) - clogc / safe_n, 0.0)
    has_alpha = _np(pc.match_substring_regex(words, r"\pL"), bool)
    out["frac_words_no_alpha"] = _ratio(np.bincount(wdoc, weights=(~has_alpha).astype(np.float64),
                                                    minlength=n_docs), n_words)
    stop = _np(pc.is_in(lower, value_set=pa.array(STOP_WORDS)), bool)
    out["stop_word_fraction"] = _ratio(np.bincount(wdoc, weights=stop.astype(np.float64), minlength=n_docs), n_words)
    gidx = _np(pc.index_in(words, value_set=pa.array(GOPHER_STOP_WORDS)).fill_null(-1), np.int64)
    hit = gidx >= 0
    pairs = np.unique(wdoc[hit] * len(GOPHER_STOP_WORDS) + gidx[hit])  # distinct (document, stop word)
    out["gopher_stop_words"] = np.bincount(pairs // len(GOPHER_STOP_WORDS), minlength=n_docs).astype(np.float64)
    out["symbol_word_ratio_hash"] = _ratio(_np(pc.count_substring(texts, "#")), n_words)
    ell = _np(pc.count_substring(texts, "...")) + _np(pc.count_substring(texts, "…"))
    out["symbol_word_ratio_ellipsis"] = _ratio(ell, n_words)

    # -- lines (str.splitlines) -----------------------------------------------------------------
    ll = pc.split_pattern_regex(texts, _LINE_BREAKS)
    lines = pc.list_flatten(ll)
    ldoc = _np(pc.list_parent_indices(ll), np.int64)
    trailing = _np(pc.match_substring_regex(texts, f"(?:{_LINE_BREAKS})$"), bool)
    n_lines = np.bincount(ldoc, minlength=n_docs) - trailing - (n_chars == 0)  # splitlines drops the tail
    n_lines = np.maximum(n_lines, 0).astype(np.float64)
    out["line_count"] = n_lines
    bullet = _np(pc.match_substring_regex(lines, f"^{_WS}*[•\\-]"), np.float64)
    end_ell = _np(pc.match_substring_regex(lines, f"(?:\\.\\.\\.|…){_WS}*$"), np.float64)
    out["frac_lines_bullet"] = _ratio(np.bincount(ldoc, weights=bullet, minlength=n_docs), n_lines)
    out["frac_lines_ellipsis"] = _ratio(np.bincount(ldoc, weights=end_ell, minlength=n_docs), n_lines)

    # -- repetition: lines at \n+, paragraphs at \n{2,} of the stripped text ------------------------
    for name, arr, pattern in (("lines", texts, r"\n+"), ("paragraphs", pc.utf8_trim_whitespace(texts), r"\n{2,}")):
        parts = pc.split_pattern_regex(arr, pattern)
        flat = pc.list_flatten(parts)
        pdoc = _np(pc.list_parent_indices(parts), np.int64)
        dups, dchars = _dup_stats(pdoc, _codes(flat), _np(pc.utf8_length(flat)), n_docs)
        count = np.bincount(pdoc, minlength=n_docs).astype(np.float64)
        out[f"frac_{name}_duplicated"] = _ratio(dups, count)
        out[f"frac_chars_dup_{name}"] = _ratio(dchars, n_chars)

    # -- word n-grams ---------------------------------------------------------------------------
    # An n-gram can repeat only where both its (n-1)-grams repeat, so after one full sort of the
    # bigrams each larger n sorts only those candidate positions (usually a small share).
    wcode = _codes(words).astype(np.uint64)
    cum_len = np.r_[0.0, np.cumsum(wlen)]
    word_chars = np.bincount(wdoc, weights=wlen, minlength=n_docs)
    rep = np.zeros(wcode.size + 1, dtype=bool)  # rep[i]: the (n-1)-gram starting at i occurs again
    # hashes of (document, n-gram) at candidate positions, built from the (n-1)-gram's hash
    sc = np.arange(wcode.size, dtype=np.int64)
    hc = _mix(wdoc.astype(np.uint64) + np.uint64(1), wcode + np.uint64(1))
    start = np.zeros(0, np.int64)
    for n in range(2, max(DUP_NGRAMS) + 1):
        ok = sc + n - 1 < wcode.size
        sc, hc = sc[ok], hc[ok]
        ok = wdoc[sc] == wdoc[sc + n - 1]  # the n-gram stays inside one document
        if n == 2:
            start = sc[ok]  # every bigram start: the top-n-gram fallback needs each document's first n-gram
        if n > 2:
            ok &= rep[sc] & rep[sc + 1]
        sc, hc = sc[ok], _mix(hc[ok], wcode[sc[ok] + n - 1] + np.uint64(1))
        if n in TOP_NGRAMS and n > 2:
            start = start[start + n - 1 < wcode.size]
            start = start[wdoc[start] == wdoc[start + n - 1]]
        rep = np.zeros(wcode.size + 1, dtype=bool)
        sizes = np.zeros(0, np.int64)
        if hc.size:
            order, gid, starts = _groups(hc)
            sizes = np.diff(np.r_[starts, order.size])
            rep[sc[order[sizes[gid] > 1]]] = True
        keep = rep[sc]  # only repeated n-grams can extend to repeated (n+1)-grams
        sc_next, hc_next = sc[keep], hc[keep]
        if n in TOP_NGRAMS:
            top = np.zeros(n_docs)
            if start.size:  # every document's first n-gram, count 1 (the answer when nothing repeats)
                d = wdoc[start]
                firsts = start[np.r_[0, np.flatnonzero(d[1:] != d[:-1]) + 1]]
                top[wdoc[firsts]] = cum_len[firsts + n] - cum_len[firsts] + (n - 1)
            multi = sizes > 1
            if multi.any():
                # most frequent n-gram per document, ties to the one seen first (Counter.most_common):
                # the largest (count, -first position), packed into one integer per n-gram
                first_pos = np.minimum.reduceat(sc[order], starts)[multi]
                packed = sizes[multi].astype(np.int64) * (1 << 32) - first_pos
                best = np.full(n_docs, np.iinfo(np.int64).min)
                np.maximum.at(best, wdoc[first_pos], packed)
                has = best > np.iinfo(np.int64).min
                cnt = -(-best[has] // (1 << 32))
                pos = cnt * (1 << 32) - best[has]
                top[has] = (cum_len[pos + n] - cum_len[pos] + (n - 1)) * cnt
            out[f"frac_chars_top_{n}gram"] = _ratio(top, n_chars)
        if n in DUP_NGRAMS:
            covered_chars = np.zeros(n_docs)
            s_rep = np.flatnonzero(rep[:-1])
            if s_rep.size:
                diff = np.zeros(wcode.size + 1, np.int64)
                np.add.at(diff, s_rep, 1)
                np.add.at(diff, s_rep + n, -1)
                cov = np.cumsum(diff[:-1]) > 0
                covered_chars = np.bincount(wdoc, weights=np.where(cov, wlen, 0.0), minlength=n_docs)
            out[f"frac_chars_dup_{n}gram"] = _ratio(covered_chars, word_chars)
        sc, hc = sc_next, hc_next
    return {k: out[k] for k in SIGNALS}


def signals_batch(batch: Any) -> dict[str, Any]:
    """The engine's per-batch function: ids and signal columns of one Arrow record batch."""
    cols = signals(batch.column("text"))
    return {"id": batch.column("id").to_pylist(), **cols}


# ----------------------------------------------------------------------------- reference loops


def signals_python(text: str) -> dict[str, float]:
    """The same definitions one document at a time in plain Python: the tests' oracle."""
    import math
    import re
    import unicodedata
    from collections import Counter

    def is_sym(w: str) -> bool:
        return all(unicodedata.category(c)[0] in "PS" for c in w)

    words = text.split()
    nw = len(words)
    non_sym = [w for w in words if not is_sym(w)]
    lower = [w.lower() for w in words]
    cnt = Counter(lower)
    lines = text.splitlines()
    r: dict[str, float] = {
        "char_count": len(text),
        "word_count": len(non_sym),
        "mean_word_length": sum(map(len, non_sym)) / len(non_sym) if non_sym else 0.0,
        "unique_word_fraction": len(cnt) / nw if nw else 0.0,
        "unigram_entropy": -sum(c / nw * math.log(c / nw) for c in cnt.values()) if nw else 0.0,
        "frac_words_no_alpha": sum(not any(c.isalpha() for c in w) for w in words) / nw if nw else 0.0,
        "stop_word_fraction": sum(w in STOP_WORDS for w in lower) / nw if nw else 0.0,
        "gopher_stop_words": len(set(GOPHER_STOP_WORDS) & set(words)),
        "symbol_word_ratio_hash": text.count("#") / nw if nw else 0.0,
        "symbol_word_ratio_ellipsis": (text.count("...") + text.count("…")) / nw if nw else 0.0,
        "line_count": len(lines),
        "frac_lines_bullet": sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines) if lines else 0.0,
        "frac_lines_ellipsis": sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines) if lines else 0.0,
    }
    for name, parts in (("lines", re.split(r"\n+", text)), ("paragraphs", re.split(r"\n{2,}", text.strip()))):
        seen: set[str] = set()
        dup = dup_chars = 0
        for p in parts:
            if p in seen:
                dup += 1
                dup_chars += len(p)
            seen.add(p)
        r[f"frac_{name}_duplicated"] = dup / len(parts) if parts else 0.0
        r[f"frac_chars_dup_{name}"] = dup_chars / len(text) if text else 0.0
    for n in TOP_NGRAMS:
        grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        if grams and text:
            g, c = Counter(grams).most_common(1)[0]
            r[f"frac_chars_top_{n}gram"] = len(g) * c / len(text)
        else:
            r[f"frac_chars_top_{n}gram"] = 0.0
    total = sum(map(len, words))
    for n in DUP_NGRAMS:
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        c = Counter(grams)
        cov = [False] * len(words)
        for i, g in enumerate(grams):
            if c[g] > 1:
                for j in range(i, i + n):
                    cov[j] = True
        r[f"frac_chars_dup_{n}gram"] = sum(len(w) for w, k in zip(words, cov, strict=True) if k) / total if total else 0.0
    return r


# ----------------------------------------------------------------------------- Gopher's rules

# Rae et al. 2021 (appendix A), the thresholds DataTrove's Gopher filters default to.
GOPHER_RULES: tuple[tuple[str, str, str, float], ...] = (
    ("gopher_short_doc", "word_count", "<", 50),
    ("gopher_long_doc", "word_count", ">", 100_000),
    ("gopher_below_avg_threshold", "mean_word_length", "<", 3),
    ("gopher_above_avg_threshold", "mean_word_length", ">", 10),
    ("gopher_too_many_hashes", "symbol_word_ratio_hash", ">", 0.1),
    ("gopher_too_many_ellipsis", "symbol_word_ratio_ellipsis", ">", 0.1),
    ("gopher_too_many_bullets", "frac_lines_bullet", ">", 0.9),
    ("gopher_too_many_end_ellipsis", "frac_lines_ellipsis", ">", 0.3),
    ("gopher_below_alpha_threshold", "frac_words_no_alpha", ">", 0.2),
    ("gopher_too_few_stop_words", "gopher_stop_words", "<", 2),
    ("dup_para_frac", "frac_paragraphs_duplicated", ">", 0.3),
    ("dup_para_char_frac", "frac_chars_dup_paragraphs", ">", 0.2),
    ("dup_line_frac", "frac_lines_duplicated", ">", 0.3),
    ("dup_line_char_frac", "frac_chars_dup_lines", ">", 0.2),
    ("top_2_gram", "frac_chars_top_2gram", ">", 0.2),
    ("top_3_gram", "frac_chars_top_3gram", ">", 0.18),
    ("top_4_gram", "frac_chars_top_4gram", ">", 0.16),
    ("duplicated_5_n_grams", "frac_chars_dup_5gram", ">", 0.15),
    ("duplicated_6_n_grams", "frac_chars_dup_6gram", ">", 0.14),
    ("duplicated_7_n_grams", "frac_chars_dup_7gram", ">", 0.13),
    ("duplicated_8_n_grams", "frac_chars_dup_8gram", ">", 0.12),
    ("duplicated_9_n_grams", "frac_chars_dup_9gram", ">", 0.11),
    ("duplicated_10_n_grams", "frac_chars_dup_10gram", ">", 0.10),
)


def gopher_failures(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Which documents fail each Gopher rule (True = the rule would drop it)."""
    out = {}
    for reason, col, op, thr in GOPHER_RULES:
        v = cols[col]
        out[reason] = v < thr if op == "<" else v > thr
    return out
