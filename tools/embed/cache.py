"""The embedding cache: vectors keyed by (encoder settings, text hash), written as atomic shards.

One directory per encoder setting (model, backend, precision, sequence cap, head), so corpora that
share documents share their vectors. A shard is two files, ``<name>.vecs.npy`` (float32 rows) and
``<name>.keys.npy`` (16-byte BLAKE2b text hashes), plus ``<name>.lens.npy`` (token counts, negative
when the text was truncated); each is written to a temp name and renamed, keys
last, so a shard exists only once both are complete. A process killed with ``kill -9`` therefore
loses at most the chunk it was computing; the next run finds every finished shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

KEY_BYTES = 16
_KEY_DTYPE = np.dtype(f"V{KEY_BYTES}")


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).digest()


def text_keys(texts: Sequence[str]) -> list[bytes]:
    return [text_key(t) for t in texts]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class EmbeddingCache:
    """Shards of (key, vector) in ``root``; :meth:`lookup` / :meth:`fetch` / :meth:`put`."""

    def __init__(self, root: Path, *, dim: int, info: dict | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        meta = self.root / "cache.json"
        if info is not None and not meta.exists():
            tmp = meta.with_name(f".cache.json.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**info, "dim": dim}, indent=2))
            os.replace(tmp, meta)
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[Path] = []
        self._seen: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Index every complete shard not seen yet (cheap: reads only the key files)."""
        for keys_path in sorted(self.root.glob("*.keys.npy")):
            name = keys_path.name[: -len(".keys.npy")]
            if name in self._seen:
                continue
            vecs_path = self.root / f"{name}.vecs.npy"
            if not vecs_path.exists():
                continue
            try:
                keys = np.load(keys_path)
            except (OSError, ValueError):  # a foreign or damaged file: ignore it, it will be recomputed
                continue
            sid = len(self._shards)
            self._shards.append(vecs_path)
            self._seen.add(name)
            for row, k in enumerate(keys.view(_KEY_DTYPE).ravel().tolist()):
                self._index.setdefault(k, (sid, row))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def missing(self, keys: Sequence[bytes]) -> list[int]:
        """Positions of ``keys`` not in the cache."""
        idx = self._index
        return [i for i, k in enumerate(keys) if k not in idx]

    def fetch(self, keys: Sequence[bytes], out: np.ndarray | None = None,
              lens: np.ndarray | None = None) -> np.ndarray:
        """Vectors for ``keys`` (all must be cached), float32 (n, dim) in the order given.

        ``lens``, if given, receives the signed token counts (negative = truncated).
        """
        out = out if out is not None else np.empty((len(keys), self.dim), dtype=np.float32)
        by_shard: dict[int, tuple[list[int], list[int]]] = {}
        for i, k in enumerate(keys):
            sid, row = self._index[k]
            dst, src = by_shard.setdefault(sid, ([], []))
            dst.append(i)
            src.append(row)
        for sid, (dst, src) in by_shard.items():
            vecs = np.load(self._shards[sid], mmap_mode="r")
            out[np.asarray(dst)] = vecs[np.asarray(src)]
            if lens is not None:
                lp = self._shards[sid].with_name(self._shards[sid].name.replace(".vecs.npy", ".lens.npy"))
                lens[np.asarray(dst)] = np.load(lp)[np.asarray(src)] if lp.exists() else 0
        return out

    def put(self, keys: Sequence[bytes], vecs: np.ndarray, lens: np.ndarray | None = None) -> None:
        """Write one shard (atomic); keys already cached are skipped."""
        fresh = [i for i, k in enumerate(keys) if k not in self._index]
        if not fresh:
            return
        fresh_keys = [keys[i] for i in fresh]
        arr = np.frombuffer(b"".join(fresh_keys), dtype=np.uint8).reshape(len(fresh), KEY_BYTES)
        name = f"shard-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        _atomic_save(self.root / f"{name}.vecs.npy", np.ascontiguousarray(vecs[fresh], dtype=np.float32))
        if lens is not None:
            _atomic_save(self.root / f"{name}.lens.npy", np.asarray(lens, dtype=np.int32)[fresh])
        _atomic_save(self.root / f"{name}.keys.npy", arr)  # the commit point
        sid = len(self._shards)
        self._shards.append(self.root / f"{name}.vecs.npy")
        self._seen.add(name)
        for row, k in enumerate(fresh_keys):
            self._index.setdefault(k, (sid, row))
