"""Selection bookkeeping once: record_selection writes the selection and returns its domain counts and pool shares."""

from __future__ import annotations

import pytest

from tools.corpus import NO_DOMAIN, as_corpus
from tools.selection import (
    pool_shares,
    record_selection,
    selected_domain_counts,
    selection_table,
    write_selection,
)


def test_counts_shares_and_manifest(ctx, tiny_corpus):
    table = selection_table(["math-0", "math-1", "code-3", "x"], weight=[3, 1, 2, 5],
                            domain=["math", "math", "code", None])
    rec = record_selection(ctx, table, as_corpus(str(tiny_corpus)), pool_domains=["math"] * 6 + ["code"] * 3 + [None],
                           metrics={"alpha": 0.5})
    assert rec.domain_counts == {NO_DOMAIN: 5, "math": 4, "code": 2}  # whole weights are draw counts
    assert rec.pool_share == pytest.approx({"math": 0.6, "code": 0.3, NO_DOMAIN: 0.1})
    m = ctx.workspace.get(rec.id).manifest["metrics"]
    assert m["domain_counts"] == rec.domain_counts and m["pool_domain_share"] == rec.pool_share and m["alpha"] == 0.5
    plain = write_selection(ctx, table, as_corpus(str(tiny_corpus)), name="plain")  # still returns the id
    assert isinstance(plain, str) and ctx.workspace.exists(plain)


def test_fractional_weights_count_rows():
    t = selection_table(["a", "b", "c"], weight=[0.2, 0.7, 0.1], domain=["x", "y", "x"])
    assert selected_domain_counts(t) == {"x": 2, "y": 1}
    assert selected_domain_counts(selection_table(["a"])) == {}
    assert pool_shares({"a": 1, "b": 3}) == {"b": 0.75, "a": 0.25} and pool_shares([]) == {}


def test_a_selection_without_corpus_still_counts_domains(ctx):
    table = selection_table(["r1", "r2", "r3"], weight=[1, 1, 1], domain=["a", "b", "a"])
    rec = record_selection(ctx, table, None, pool_domains={"a": 8, "b": 2})
    art = ctx.workspace.get(rec.id)
    assert art.kind == "selection" and "corpus" not in art.manifest
    assert art.manifest["metrics"]["domain_counts"] == rec.domain_counts == {"a": 2, "b": 1}
    assert rec.pool_share == {"a": 0.8, "b": 0.2}
    with pytest.raises(ValueError, match="'id' column"):
        record_selection(ctx, table.drop(["id"]), None)
