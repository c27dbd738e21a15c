"""Typed references: which request fields name data, found by their type, never by name or suffix.

A request field that points at something to read is annotated with one of these types:

- :data:`CorpusRef` (= :data:`tools.corpus.CorpusArg`): a pool of documents, or a selection artifact id
  (the documents it selected, read from its source corpus: :func:`resolve_selection`);
- :data:`ArtifactRef`: an artifact id in the workspace (``artifact_of("embeddings")`` narrows the kind);
- :data:`InputPath`: a file or folder the tool reads, whatever its suffix;
- :data:`ArtifactOrPath`: an artifact id if the workspace has one by that name, else a path
  (embeddings ``.npy``, an influence matrix, a queries ``.jsonl``).

The runtime walks a request with :func:`iter_refs` to check every path against the policy's data
roots (symlinks resolved) and to fingerprint every input for the cache; the guard, the planners and
the UI read the same markers with :func:`ref_fields`. The JSON schema of a marked field carries
``"x-ref": "<kind>"`` so front ends that only see the schema can tell as well.
"""

from __future__ import annotations

import hashlib
import os
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel

from tools.corpus import (
    CorpusArg,
    CorpusSpec,
    check_allowed,
    fingerprint,
    recorded_fingerprint,
    resolve_files,
    selection_id,
)
from tools.errors import BadInput, StateConflict

if TYPE_CHECKING:  # pragma: no cover
    from tools.artifacts import Artifact

RefKind = Literal["corpus", "artifact", "path", "artifact_or_path", "model"]

__all__ = [
    "ArtifactOrPath",
    "ModelRef",
    "ArtifactRef",
    "CorpusRef",
    "FoundRef",
    "InputPath",
    "Ref",
    "artifact_of",
    "is_artifact_id",
    "fingerprint_input",
    "iter_refs",
    "ref_fields",
    "resolve_input",
    "resolve_refs",
    "resolve_selection",
]


@dataclass(frozen=True)
class Ref:
    """The marker inside ``Annotated[...]``: what kind of reference a field holds."""

    kind: RefKind
    artifact_kinds: tuple[str, ...] = ()
    """Artifact kinds accepted (empty = any)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        schema = handler.resolve_ref_schema(schema) if "$ref" in schema else schema
        schema["x-ref"] = self.kind
        if self.artifact_kinds:
            schema["x-artifact-kinds"] = list(self.artifact_kinds)
        return schema


CorpusRef = Annotated[CorpusArg, Ref("corpus")]
ArtifactRef = Annotated[str, Ref("artifact")]
InputPath = Annotated[str, Ref("path")]
ArtifactOrPath = Annotated[str, Ref("artifact_or_path")]
ModelRef = Annotated[str, Ref("model")]
"""A model by name or local path: a value that names an existing path is checked like an ``InputPath``
(data roots, symlinks resolved); anything else is a name the loader resolves (installed or cached)."""


def artifact_of(*kinds: str, or_path: bool = False) -> Any:
    """``Annotated[str, Ref(...)]`` accepting only artifacts of ``kinds`` (or, with ``or_path``, a path)."""
    return Annotated[str, Ref("artifact_or_path" if or_path else "artifact", tuple(kinds))]


def is_artifact_id(value: str) -> bool:
    """Whether ``value`` has the shape of an artifact id (``<kind>-<12 hex>``), without a workspace."""
    import re

    from tools.kinds import ARTIFACT_KINDS

    kind, sep, key = value.partition("-")
    return bool(sep) and kind in ARTIFACT_KINDS and re.fullmatch(r"[0-9a-f]{12}", key) is not None


# ------------------------------------------------------------------------------------ finding


def _refs_in_type(tp: Any) -> Ref | None:
    """The marker carried by an annotation, looking through ``X | None``, ``list[X]``, ``Annotated``."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        for m in meta:
            if isinstance(m, Ref):
                return m
        return _refs_in_type(base)
    if tp is CorpusSpec:
        return Ref("corpus")
    if origin in (Union, types.UnionType, list, tuple, set, frozenset, Sequence):
        for arg in typing.get_args(tp):
            found = _refs_in_type(arg)
            if found is not None:
                return found
    return None


def ref_fields(model: type[BaseModel]) -> dict[str, Ref]:
    """The request fields that hold references, with their markers (static: from the model's types)."""
    out: dict[str, Ref] = {}
    hints = typing.get_type_hints(model, include_extras=True)
    for name, info in model.model_fields.items():
        found = next((m for m in info.metadata if isinstance(m, Ref)), None)
        if found is None:
            found = _refs_in_type(hints.get(name, info.annotation))
        if found is None and isinstance(info.annotation, type) and issubclass(info.annotation, CorpusSpec):
            found = Ref("corpus")
        if found is not None:
            out[name] = found
    return out


@dataclass(frozen=True)
class FoundRef:
    path: str
    """Where in the request, e.g. ``target[1]`` or ``embeddings``."""
    ref: Ref
    value: Any


def iter_refs(request: BaseModel, prefix: str = "") -> Iterator[FoundRef]:
    """Every reference a request holds: corpus specs (found by type anywhere), marked strings."""
    marked = ref_fields(type(request))
    for name in type(request).model_fields:
        value = getattr(request, name)
        where = f"{prefix}.{name}" if prefix else name
        yield from _walk_value(value, where, marked.get(name))


def _walk_value(value: Any, where: str, ref: Ref | None) -> Iterator[FoundRef]:
    if value is None:
        return
    if isinstance(value, CorpusSpec):
        yield FoundRef(where, Ref("corpus"), value)
    elif isinstance(value, BaseModel):
        yield from iter_refs(value, where)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk_value(v, f"{where}[{i}]", ref)
    elif isinstance(value, str) and ref is not None and ref.kind != "corpus" and value:
        yield FoundRef(where, ref, value)


# ---------------------------------------------------------------------------------- resolving


def _roots(ctx: Any) -> Sequence[Path] | None:
    return getattr(ctx, "data_roots", None)


def _inside(path: Path, root: Path) -> bool:
    real, r = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == r or r in real.parents


def resolve_input(value: Any, ctx: Any, *, field: str = "input", ref: Ref | None = None) -> Any:
    """The checked target of a reference: a :class:`CorpusSpec`, an :class:`Artifact`, or a ``Path``.

    Paths must exist and lie inside the context's data roots after symlinks are resolved (files in
    the workspace are always readable); an artifact must exist and, where the field says, be of an
    accepted kind. Raises :class:`BadInput` / :class:`~tools.errors.PolicyDenied` naming ``field``.
    """
    ref = ref or (Ref("corpus") if isinstance(value, CorpusSpec) else Ref("artifact_or_path"))
    if ref.kind == "corpus" or isinstance(value, CorpusSpec):
        spec = value if isinstance(value, CorpusSpec) else CorpusSpec.model_validate(
            {"path": os.fspath(value)} if isinstance(value, (str, os.PathLike)) else value)
        spec = resolve_selection(spec, ctx, field=field)
        resolve_files(spec, _roots(ctx))
        return spec
    text = os.fspath(value)
    ws = ctx.workspace
    if ref.kind in ("artifact", "artifact_or_path") and ws.exists(text):
        art = ws.get(text)
        if ref.artifact_kinds and art.kind not in ref.artifact_kinds:
            raise BadInput(f"must be an artifact of kind {' or '.join(ref.artifact_kinds)}; got {art.id} "
                           f"({art.kind})", where=field)
        return art
    if ref.kind == "artifact":
        known = ", ".join(a.id for a in ws.list()[:5])
        raise BadInput(f"must be an artifact id in the workspace; got {text!r}", where=field,
                       hint=f"known ids include: {known}" if known else "the workspace has no artifacts yet")
    p = Path(os.path.expanduser(text))
    if ref.kind == "model" and not p.exists() and not p.is_symlink():
        return text  # a model name, not a path: the loader resolves it
    if not p.exists() and not p.is_symlink():
        if ref.kind == "artifact_or_path":
            raise BadInput(f"no artifact and no file named {text!r}: must be an artifact id in {ws.artifacts_dir} "
                           "or an existing path", where=field)
        raise BadInput(f"must be an existing path; got {text!r}", where=field)
    roots = _roots(ctx)
    if roots is not None and not _inside(p, ws.root):
        check_allowed(p, roots)
    if not p.exists():
        raise BadInput(f"must be an existing path; {text!r} is a broken link", where=field)
    return p


def _names_selection(spec: CorpusSpec) -> bool:
    path = os.path.expanduser(spec.path)
    return bool(spec.selection) or (is_artifact_id(spec.path) and not os.path.lexists(path))


def resolve_selection(spec: CorpusSpec, ctx: Any, *, field: str = "corpus") -> CorpusSpec:
    """A corpus that names a selection (``"selection-1a2b3c4d5e6f"``, or ``selection=`` in the spec): the
    corpus the selection was made from, with its column mapping, restricted to the selected ids (the
    spec's ``selection`` becomes the artifact's folder, so :func:`tools.corpus.read_batches` filters).

    Everything that holds for a corpus holds for the source: its files must lie inside the data roots,
    and it must be unchanged since the selection was made (else :class:`StateConflict`, as for an
    export). Any other spec is returned as it is.
    """
    if not _names_selection(spec):
        return spec
    ref = spec.selection or spec.path
    ws = ctx.workspace
    if not ws.exists(ref):
        known = ", ".join(a.id for a in ws.list("selection")[:5])
        raise BadInput(f"no selection {selection_id(ref)!r} in the workspace {ws.artifacts_dir}: a corpus is a path "
                       "or the id of a selection made earlier", where=field,
                       hint=f"selections include: {known}" if known else "the workspace has no selections yet")
    art = ws.get(ref)
    if art.kind != "selection":
        raise BadInput(f"{art.id} is a {art.kind} artifact; a corpus is a path or a selection id", where=field)
    recorded = art.manifest.get("corpus")
    if not recorded:
        raise BadInput(f"{art.id} does not record the corpus it selects from (it was made from ids only), "
                       "so it cannot be read as a corpus", where=field)
    source = CorpusSpec.model_validate(recorded)
    if spec.selection and spec.path != source.path:
        raise BadInput(f"{art.id} selects from {source.path}, not {spec.path}", where=field)
    resolve_files(source, _roots(ctx))  # the roots first: nothing outside them is even looked at
    was, now = recorded_fingerprint(art.manifest, source), fingerprint(source)
    if was is not None and was != now:
        raise StateConflict(
            f"the corpus {source.path} changed since {art.id} was made (fingerprint {was} -> {now}): files were "
            "edited, added or removed, so its ids may no longer name the documents that were selected", where=field,
            hint="re-run the selection on the current corpus",
        )
    return source.model_copy(update={"selection": str(art.path)})


def resolve_refs(request: BaseModel, ctx: Any, prefix: str = "") -> BaseModel:
    """``request`` with every corpus that names a selection replaced by its resolved spec
    (:func:`resolve_selection`), at any depth; the same object when none does."""
    changed: dict[str, Any] = {}
    for name in type(request).model_fields:
        value = getattr(request, name)
        new = _resolve_value(value, ctx, f"{prefix}.{name}" if prefix else name)
        if new is not value:
            changed[name] = new
    return request.model_copy(update=changed) if changed else request


def _resolve_value(value: Any, ctx: Any, where: str) -> Any:
    if isinstance(value, CorpusSpec):
        return resolve_selection(value, ctx, field=where) if _names_selection(value) else value
    if isinstance(value, BaseModel):
        return resolve_refs(value, ctx, where)
    if isinstance(value, (list, tuple)):
        new = [_resolve_value(v, ctx, f"{where}[{i}]") for i, v in enumerate(value)]
        if any(n is not v for n, v in zip(new, value, strict=True)):
            return type(value)(new)
    return value


def fingerprint_input(resolved: Any) -> str:
    """Identity of a resolved input for the run cache: artifact id, corpus fingerprint, or file stats."""
    if isinstance(resolved, CorpusSpec):
        return fingerprint(resolved)
    if isinstance(resolved, Path):
        h = hashlib.sha256(os.path.realpath(resolved).encode())
        files = [resolved] if resolved.is_file() else sorted(f for f in resolved.rglob("*") if f.is_file())
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(resolved) if f != resolved else ''}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]
    return str(getattr(resolved, "id", resolved))


def resolve_artifact_or_path(value: str, ctx: Any, field: str) -> Artifact | Path:
    """:func:`resolve_input` for an ``ArtifactOrPath`` field."""
    return resolve_input(value, ctx, field=field, ref=Ref("artifact_or_path"))
