"""Figures for the side panel and the review panel, built from workspace artifacts.

Every function returns a ``matplotlib.figure.Figure`` made without pyplot (no global figure
registry, safe in Gradio's worker threads) or ``None`` when the artifact has nothing to plot.
Plot artifacts (``plot.png``) are shown as images, not redrawn: :func:`artifact_image`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from matplotlib.figure import Figure

MAX_POOL_ROWS = 500_000  # domain counts of a pool are read only up to this many rows
MAX_MAP_POINTS = 4_000
_NUMERIC = ("int", "uint", "float", "double", "decimal")


def _fig(w: float = 6.0, h: float = 3.4) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    fig.set_layout_engine("tight")
    return fig


def _shares(counts: dict[str, float]) -> dict[str, float]:
    total = float(sum(counts.values()))
    return {k: v / total for k, v in counts.items()} if total else {}


def domain_mix_figure(series: dict[str, dict[str, float]], title: str = "domain mix") -> Figure | None:
    """Grouped bars of per-domain shares, one group per domain, one bar per series
    (e.g. selection vs pool vs target)."""
    series = {name: _shares(c) for name, c in series.items() if c}
    if not series:
        return None
    domains: list[str] = []
    for c in series.values():
        for d in sorted(c, key=lambda d: -c[d]):
            if d not in domains:
                domains.append(d)
    domains = domains[:20]
    fig = _fig(max(5.0, 0.55 * len(domains) * max(1, len(series)) + 2), 3.4)
    ax = fig.add_subplot()
    x = np.arange(len(domains))
    width = 0.8 / len(series)
    for i, (name, shares) in enumerate(series.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [shares.get(d, 0.0) for d in domains], width, label=name)
    ax.set_xticks(x, domains, rotation=30, ha="right")
    ax.set_ylabel("share of documents")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def weights_figure(weights: dict[str, Any], title: str = "mixture weights") -> Figure | None:
    """Bars of domain -> weight; a dict of stage -> {domain: weight} gives one bar group per stage."""
    if not weights:
        return None
    if all(isinstance(v, dict) for v in weights.values()):
        return domain_mix_figure({str(s): w for s, w in weights.items()}, title=title + " per stage")
    items = [(str(k), float(v)) for k, v in weights.items() if isinstance(v, int | float)]
    if not items:
        return None
    fig = _fig(max(4.0, 0.5 * len(items) + 2), 3.2)
    ax = fig.add_subplot()
    ax.bar([k for k, _ in items], [v for _, v in items], color="#4C72B0")
    ax.set_ylabel("weight")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    return fig


def histogram_figure(columns: dict[str, np.ndarray], title: str = "score distribution") -> Figure | None:
    cols = {k: np.asarray(v, dtype=float) for k, v in columns.items()}
    cols = {k: v[np.isfinite(v)] for k, v in cols.items()}
    cols = {k: v for k, v in cols.items() if v.size}
    if not cols:
        return None
    cols = dict(list(cols.items())[:6])
    fig = _fig(6.0, 2.4 * ((len(cols) + 1) // 2))
    for i, (name, v) in enumerate(cols.items()):
        ax = fig.add_subplot((len(cols) + 1) // 2, 2 if len(cols) > 1 else 1, i + 1)
        ax.hist(v, bins=40, color="#55A868")
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def pca_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def map_figure(groups: dict[str, np.ndarray], title: str = "2-D map (PCA)", seed: int = 0) -> Figure | None:
    """Scatter of several point sets (e.g. pool, selected, target) on the first two principal
    components of their union."""
    groups = {k: np.asarray(v) for k, v in groups.items() if v is not None and len(v)}
    if not groups:
        return None
    rng = np.random.default_rng(seed)
    sub = {}
    for k, v in groups.items():
        if len(v) > MAX_MAP_POINTS:
            v = v[np.sort(rng.choice(len(v), MAX_MAP_POINTS, replace=False))]
        sub[k] = v
    allx = np.concatenate(list(sub.values()))
    if allx.ndim != 2 or allx.shape[1] < 2:
        return None
    xy = pca_2d(allx)
    fig = _fig(5.5, 4.2)
    ax = fig.add_subplot()
    start = 0
    styles = {"pool": dict(s=4, alpha=0.25, color="#999999"), "selected": dict(s=8, alpha=0.7, color="#4C72B0"),
              "target": dict(s=14, alpha=0.9, color="#C44E52", marker="x")}
    for k, v in sub.items():
        pts = xy[start:start + len(v)]
        start += len(v)
        ax.scatter(pts[:, 0], pts[:, 1], label=f"{k} ({len(groups[k]):,})", **styles.get(k, dict(s=6, alpha=0.6)))
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(fontsize=8, markerscale=2)
    return fig


# -- artifacts --------------------------------------------------------------------------------------


def _corpus_domain_counts(corpus: Any) -> dict[str, int]:
    from tools.corpus import read_batches

    counts: Counter[str] = Counter()
    n = 0
    for b in read_batches(corpus, ("id", "domain"), check_ids=False):
        col = b.column(b.schema.get_field_index("domain")).to_pylist() if "domain" in b.schema.names else []
        counts.update("(none)" if d is None else str(d) for d in col)
        n += b.num_rows
        if n >= MAX_POOL_ROWS:
            break
    return dict(counts)


def _numeric_columns(table: Any) -> dict[str, np.ndarray]:
    out = {}
    for field in table.schema:
        if str(field.type).startswith(_NUMERIC) and field.name not in ("id", "row", "index"):
            out[field.name] = table.column(field.name).to_numpy(zero_copy_only=False)
    return out


def _request_corpus(manifest: dict[str, Any], key: str) -> Any:
    req = manifest.get("request") or manifest.get("params") or {}
    return manifest.get(key) or (req.get(key) if isinstance(req, dict) else None)


def artifact_figure(art: Any) -> Figure | None:
    """The figure a person would rather look at for this artifact, or None."""
    kind = art.kind
    m = art.manifest
    files = set(m.get("files") or [])
    try:
        if kind == "selection" and "data.parquet" in files:
            t = art.table()
            series: dict[str, dict[str, float]] = {}
            if "domain" in t.column_names:
                series["selection"] = dict(Counter(str(d) for d in t.column("domain").to_pylist()))
            pool = _request_corpus(m, "corpus")
            target = _request_corpus(m, "target")
            for name, ref in (("pool", pool), ("target", target)):
                if ref:
                    try:
                        series[name] = _corpus_domain_counts(ref)
                    except Exception:  # noqa: BLE001 - a moved or unreadable corpus: show what we have
                        pass
            return domain_mix_figure(series, "domain mix: selection vs pool vs target")
        if kind == "mixture":
            if "data.json" in files:
                return weights_figure(art.json())
            if "data.parquet" in files:
                t = art.table()
                cols = t.column_names
                if "domain" in cols and "weight" in cols:
                    doms, ws = t.column("domain").to_pylist(), t.column("weight").to_pylist()
                    if "stage" in cols:
                        stages: dict[str, dict[str, float]] = {}
                        for s, d, w in zip(t.column("stage").to_pylist(), doms, ws, strict=True):
                            stages.setdefault(str(s), {})[str(d)] = float(w)
                        return weights_figure(stages)
                    return weights_figure(dict(zip(doms, ws, strict=True)))
        if kind == "embeddings" and "data.npy" in files:
            return map_figure({"documents": art.array()}, "embeddings (PCA)")
        if "data.parquet" in files:
            cols = _numeric_columns(art.table())
            if cols:
                return histogram_figure(cols, f"{kind}: distributions")
        if "data.json" in files and kind in ("proposal", "table"):
            data = art.json()
            if isinstance(data, dict) and data and all(isinstance(v, int | float) for v in data.values()):
                return weights_figure(data, f"{kind}")
    except Exception:  # noqa: BLE001 - a figure is a courtesy; a broken artifact must not break the page
        return None
    return None


def _corpus_path(ref: Any) -> str | None:
    if isinstance(ref, dict):
        ref = ref.get("path")
    if not ref:
        return None
    try:
        from pathlib import Path

        return str(Path(str(ref)).expanduser().resolve())
    except OSError:
        return str(ref)


def _embeddings_for(ws: Any, corpus: Any) -> Any:
    """The newest embeddings artifact of this corpus in the workspace, or None."""
    want = _corpus_path(corpus)
    if want is None:
        return None
    for art in ws.list("embeddings"):
        m = art.manifest
        if _corpus_path(m.get("corpus") or _request_corpus(m, "corpus")) == want and "data.npy" in (m.get("files") or []):
            return art
    return None


def _embedding_rows(art: Any) -> tuple[list[str], np.ndarray]:
    import pyarrow.parquet as pq

    ids_path = art.path / "ids.parquet"
    table = pq.read_table(ids_path, columns=["id"]) if ids_path.exists() else art.table(["id"])
    return table.column("id").to_pylist(), art.array()


def selection_map(sel: Any, ws: Any) -> Figure | None:
    """Selected vs the rest of the pool vs the target on a PCA map, when the workspace holds
    embeddings of the selection's pool (and of its target)."""
    if sel.kind != "selection":
        return None
    m = sel.manifest
    try:
        pool_art = _embeddings_for(ws, _request_corpus(m, "corpus"))
        if pool_art is None:
            return None
        ids, x = _embedding_rows(pool_art)
        chosen = set(sel.table(["id"]).column("id").to_pylist())
        mask = np.fromiter((i in chosen for i in ids), dtype=bool, count=len(ids))
        groups = {"pool": np.asarray(x[~mask]), "selected": np.asarray(x[mask])}
        target_art = _embeddings_for(ws, _request_corpus(m, "target"))
        if target_art is not None:
            groups["target"] = np.asarray(_embedding_rows(target_art)[1])
        return map_figure(groups, "selected vs pool vs target (PCA of embeddings)")
    except Exception:  # noqa: BLE001 - a courtesy figure
        return None


def artifact_image(art: Any) -> Any:
    """The artifact's own PNG as a PIL image (so Gradio serves it from its cache), or None."""
    pngs = [f for f in (art.manifest.get("files") or []) if str(f).lower().endswith(".png")]
    if not pngs:
        return None
    from PIL import Image

    with Image.open(art.path / pngs[0]) as im:
        return im.copy()


def stage_mix_figure(pool: dict[str, float], stages: list[dict[str, float]], title: str = "mixture per stage"
                     ) -> Figure | None:
    """Stacked bars: the pool's domain shares, then one bar per stage of a mixture proposal."""
    if not stages:
        return None
    domains = sorted(set(pool) | {d for st in stages for d in st})
    cols = [pool, *stages]
    labels = ["pool"] + [f"stage {i + 1}" for i in range(len(stages))]
    fig = _fig(max(4.5, 0.8 * len(cols) + 2.5), 3.4)
    ax = fig.add_subplot()
    bottom = np.zeros(len(cols))
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    for i, d in enumerate(domains):
        vals = np.array([float(c.get(d, 0.0)) for c in cols])
        ax.bar(labels, vals, bottom=bottom, label=d, color=cmap(i % 20), edgecolor="white", linewidth=0.5)
        bottom += vals
    ax.set_ylim(0, max(1.0, float(bottom.max())))
    ax.set_ylabel("share of tokens")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return fig
