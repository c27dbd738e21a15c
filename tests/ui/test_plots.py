"""Side-panel figures from artifacts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tools.artifacts import Workspace, stable_hash
from tools.corpus import as_corpus
from tools.selection import selection_table, write_selection
from ui import plots


def _legend(fig) -> list[str]:  # noqa: ANN001
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_pca_2d_finds_the_main_direction():
    rng = np.random.default_rng(0)
    t = rng.normal(size=500)
    x = np.stack([t * 10, t * 10, rng.normal(size=500) * 0.1, rng.normal(size=500) * 0.1], axis=1)
    xy = plots.pca_2d(x)
    assert xy.shape == (500, 2)
    assert abs(np.corrcoef(xy[:, 0], t)[0, 1]) > 0.99
    assert xy[:, 0].var() > 100 * xy[:, 1].var()


def test_simple_figures():
    fig = plots.domain_mix_figure({"selection": {"math": 3, "code": 1}, "pool": {"math": 1, "code": 1, "web": 2}})
    assert _legend(fig) == ["selection", "pool"]
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert np.isclose(sum(heights[:3]), 1.0) and np.isclose(heights[0], 0.75)  # shares, not counts
    assert plots.domain_mix_figure({}) is None
    assert len(plots.weights_figure({"a": 0.7, "b": 0.3}).axes[0].patches) == 2
    staged = plots.weights_figure({"stage1": {"a": 0.5, "b": 0.5}, "stage2": {"a": 0.9, "b": 0.1}})
    assert _legend(staged) == ["stage1", "stage2"]
    assert len(plots.histogram_figure({"score": np.arange(10.0), "other": np.ones(3)}).axes) == 2
    assert plots.histogram_figure({"nan": np.array([np.nan])}) is None


def test_selection_figures_from_workspace(ctx, tiny_corpus, tmp_path):
    ws: Workspace = ctx.workspace
    corpus = as_corpus(str(tiny_corpus))
    ids = [f"math-{i}" for i in range(12)] + [f"code-{i}" for i in range(12)] + [f"cooking-{i}" for i in range(12)]
    sel_ids = ids[:10] + ids[12:14]
    sel_id = write_selection(ctx, selection_table(sel_ids, domain=["math"] * 10 + ["code"] * 2), corpus)
    sel = ws.get(sel_id)

    fig = plots.artifact_figure(sel)
    assert _legend(fig) == ["selection", "pool"], "the pool's domain mix is read from the corpus"
    assert plots.selection_map(sel, ws) is None, "no embeddings yet: no map"

    rng = np.random.default_rng(1)
    target = tmp_path / "target.jsonl"
    target.write_text('{"text": "a"}\n')
    for path, n, key in ((str(tiny_corpus), len(ids), "pool"), (str(target), 5, "target")):
        with ws.write("embeddings", stable_hash(key), {"tool": "embed", "corpus": {"path": path}}) as w:
            w.array(rng.normal(size=(n, 8)).astype(np.float32))
            w.table(pa.table({"id": ids if key == "pool" else [f"t{i}" for i in range(n)]}), name="ids.parquet")
    with ws.write("selection", stable_hash("sel2"), {"tool": "tsds", "corpus": {"path": str(tiny_corpus)},
                                                    "request": {"target": str(target)}}) as w:
        w.table(selection_table(sel_ids))
    fig = plots.selection_map(ws.get(w.id), ws)
    assert _legend(fig) == ["pool (24)", "selected (12)", "target (5)"]


def test_artifact_figure_for_scores_and_mixture(ctx):
    ws = ctx.workspace
    with ws.write("scores", stable_hash("s"), {"tool": "meta_rater"}) as w:
        w.table(pa.table({"id": ["a", "b", "c"], "quality": [0.1, 0.5, 0.9], "len": [1, 2, 3]}))
    assert len(plots.artifact_figure(ws.get(w.id)).axes) == 2
    with ws.write("mixture", stable_hash("m"), {"tool": "mixing"}) as w:
        w.table(pa.table({"stage": [1, 1, 2, 2], "domain": ["a", "b", "a", "b"], "weight": [0.5, 0.5, 0.8, 0.2]}))
    assert _legend(plots.artifact_figure(ws.get(w.id))) == ["1", "2"]
    with ws.write("mixture", stable_hash("m2"), {"tool": "mixing"}) as w:
        w.json({"a": 0.25, "b": 0.75})
    assert len(plots.artifact_figure(ws.get(w.id)).axes[0].patches) == 2
