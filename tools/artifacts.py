"""Immutable, content-addressed artifacts in a workspace, written atomically.

An artifact is a directory ``<workspace>/artifacts/<id>/`` holding its data (Parquet, NumPy, PNG)
and a ``manifest.json`` (tool, version, request, input fingerprints, seed, timings, metrics, rows
in/out/skipped). It is built in ``<workspace>/tmp/`` and renamed into place in one ``rename``, so a
process killed mid-write leaves no half artifact; stale temp directories are swept on open.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tools.errors import BadInput
from tools.kinds import ARTIFACT_KINDS

MANIFEST = "manifest.json"
DATA_FILES = {"table": "data.parquet", "array": "data.npy", "plot": "plot.png", "json": "data.json"}


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def stable_hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Artifact:
    """A finished artifact: its id, directory and manifest."""

    def __init__(self, path: Path):
        self.path = path
        self.id = path.name
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = json.loads((self.path / MANIFEST).read_text())
        return self._manifest

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def file(self, name: str | None = None) -> Path:
        """The artifact's main data file (or a named one)."""
        if name is not None:
            return self.path / name
        files = self.manifest.get("files") or []
        if not files:
            raise BadInput("this artifact has no data file", where=self.id)
        return self.path / files[0]

    def table(self, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path / DATA_FILES["table"], columns=columns)

    def array(self, mmap: bool = True) -> np.ndarray:
        return np.load(self.path / DATA_FILES["array"], mmap_mode="r" if mmap else None)

    def json(self) -> Any:
        return json.loads((self.path / DATA_FILES["json"]).read_text())

    def __repr__(self) -> str:
        return f"Artifact({self.id!r})"


class ArtifactWriter:
    """Collects files in a temp dir; :meth:`Workspace.write` renames it into place on success."""

    def __init__(self, tmp: Path):
        self.dir = tmp
        self.files: list[str] = []
        self.meta: dict[str, Any] = {}  # merged into the manifest (e.g. metrics known only at the end)
        self.id: str = ""

    def path(self, name: str) -> Path:
        if name not in self.files:
            self.files.append(name)
        return self.dir / name

    def table(self, table: pa.Table | pa.RecordBatch, name: str = DATA_FILES["table"]) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        pq.write_table(table, self.path(name), compression="zstd")

    def array(self, array: np.ndarray, name: str = DATA_FILES["array"]) -> None:
        np.save(self.path(name), array)

    def json(self, obj: Any, name: str = DATA_FILES["json"]) -> None:
        self.path(name).write_text(json.dumps(obj, indent=2, default=str))

    def figure(self, fig: Any, name: str = DATA_FILES["plot"]) -> None:
        fig.savefig(self.path(name), dpi=110, bbox_inches="tight")


class Workspace:
    """The ``.curate/`` directory: artifacts, run records, caches, temp space."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or os.environ.get("CURATE_HOME", ".curate")).absolute()
        self.artifacts_dir = self.root / "artifacts"
        self.runs_dir = self.root / "runs"
        self.tmp_dir = self.root / "tmp"
        for d in (self.artifacts_dir, self.runs_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._sweep_tmp()

    # -- housekeeping ---------------------------------------------------------------------------

    def _sweep_tmp(self, older_than_s: float = 0.0) -> None:
        """Remove temp dirs whose owner died; a dir whose name carries no pid only after a day.

        Temp names are ``<prefix>.<pid>.<random>`` (:meth:`tmp`), so any number of processes can
        share a workspace: each sweeps only what a dead process left behind.
        """
        now = time.time()
        for d in list(self.tmp_dir.iterdir()) + [p for p in self.runs_dir.glob("*.tmp")]:
            pid = _owner_pid(d.name)
            try:
                age = now - d.stat().st_mtime
            except OSError:  # another process swept it first
                continue
            if pid is not None:
                stale = not _pid_alive(pid) and age >= older_than_s
            else:
                stale = age >= max(older_than_s, UNOWNED_TMP_MAX_AGE_S)
            if stale:
                if d.is_dir():
                    shutil.rmtree(d, ignore_errors=True)
                else:
                    d.unlink(missing_ok=True)

    def tmp(self, prefix: str) -> Path:
        """A fresh temp dir owned by this process (its pid is in the name, so sweeps leave it alone)."""
        d = self.tmp_dir / f"{prefix}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def cache_dir(self, name: str) -> Path:
        """A persistent scratch directory for a tool's resumable state (e.g. embedding shards)."""
        d = self.root / "cache" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- writing --------------------------------------------------------------------------------

    @staticmethod
    def make_id(kind: str, key: str) -> str:
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}; kinds are {ARTIFACT_KINDS}")
        return f"{kind}-{key[:12]}"

    @contextmanager
    def write(self, kind: str, key: str, manifest: dict[str, Any]) -> Iterator[ArtifactWriter]:
        """Write an artifact atomically; ``key`` content-addresses it (same key -> same id)."""
        art_id = self.make_id(kind, key)
        final = self.artifacts_dir / art_id
        tmp = self.tmp(art_id)
        writer = ArtifactWriter(tmp)
        writer.id = art_id
        try:
            yield writer
            full = {
                "id": art_id,
                "kind": kind,
                "created_at": utcnow(),
                **manifest,
                **writer.meta,
                "files": writer.files,
            }
            (tmp / MANIFEST).write_text(json.dumps(full, indent=2, default=str))
            for name in [*writer.files, MANIFEST]:
                with open(tmp / name, "rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if (final / MANIFEST).exists():  # someone wrote the same content first
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    raise
            _fsync_dir(self.artifacts_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        writer.id = art_id

    # -- reading --------------------------------------------------------------------------------

    def _find(self, ref: str | os.PathLike) -> Path | None:
        """The artifact dir for an id, or for a path to its dir or a file in it, inside this workspace only."""
        ref_s = os.fspath(ref)
        if _is_id(ref_s):
            p = self.artifacts_dir / ref_s
            return p if (p / MANIFEST).exists() else None
        real_arts = Path(os.path.realpath(self.artifacts_dir))
        q = Path(ref_s)
        for cand in (q, q.parent):
            real = Path(os.path.realpath(cand))
            if real.parent == real_arts and _is_id(real.name) and (real / MANIFEST).exists():
                return self.artifacts_dir / real.name
        return None

    def exists(self, art_id: str) -> bool:
        return isinstance(art_id, str) and self._find(art_id) is not None

    def get(self, ref: str | os.PathLike) -> Artifact:
        """An artifact by id, or by path to its directory or to a file inside it (this workspace only)."""
        p = self._find(ref)
        if p is not None:
            return Artifact(p)
        ref_s = os.fspath(ref)
        q = Path(ref_s)
        if not _is_id(ref_s) and any((c / MANIFEST).exists() for c in (q, q.parent)):
            raise BadInput(f"{ref_s} is not an artifact of this workspace ({self.artifacts_dir}); "
                           "artifacts are read only from the workspace")
        known = ", ".join(a.id for a in self.list()[:5])
        raise BadInput(
            f"no artifact {ref_s!r} in {self.artifacts_dir}",
            hint=f"known ids include: {known}" if known else "the workspace has no artifacts yet",
        )

    def list(self, kind: str | None = None) -> list[Artifact]:
        arts = [Artifact(d) for d in self.artifacts_dir.iterdir() if (d / MANIFEST).exists()]
        if kind:
            arts = [a for a in arts if a.id.startswith(kind + "-")]
        return sorted(arts, key=lambda a: a.manifest.get("created_at", ""), reverse=True)

    # -- run records (the cache of whole tool runs) ---------------------------------------------

    def run_record(self, run_key: str) -> dict[str, Any] | None:
        p = self.runs_dir / f"{run_key[:24]}.json"
        try:
            rec = json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # a damaged record is a cache miss; the run is redone and rewritten
            return None
        if not isinstance(rec, dict):
            return None
        if all(self.exists(a) for a in rec.get("result", {}).get("artifacts", {}).values()):
            return rec
        return None

    def save_run(self, run_key: str, record: dict[str, Any]) -> None:
        p = self.runs_dir / f"{run_key[:24]}.json"
        tmp = p.with_name(f"{p.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # unique per writer thread
        try:
            tmp.write_text(json.dumps(record, indent=2, default=str))
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)


UNOWNED_TMP_MAX_AGE_S = 24 * 3600.0


def _is_id(ref: str) -> bool:
    return bool(ref) and "/" not in ref and os.sep not in ref and ref not in (".", "..") and "\x00" not in ref


def _owner_pid(name: str) -> int | None:
    """The pid in a temp name ``<prefix>.<pid>.<random>[.tmp]``, else None."""
    parts = name.removesuffix(".tmp").rsplit(".", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return int(parts[1])
    return None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True
