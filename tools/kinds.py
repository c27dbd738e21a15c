"""The artifact kinds: the one list that the contract, the workspace and the planners share.

It sits below everything else (no imports from ``tools``) so that ``tools.artifacts`` can check a
kind without importing the tool contract. Add a kind here (and announce it); ``tools.contract``
re-exports both names.
"""

from __future__ import annotations

from typing import Literal

ArtifactKind = Literal[
    "scores",
    "embeddings",
    "selection",
    "index",
    "mixture",
    "proposal",
    "plot",
    "traces",
    "rejected",
    "table",
    "export",
    "influence",
    "agent",
]
ARTIFACT_KINDS: tuple[str, ...] = ArtifactKind.__args__  # type: ignore[attr-defined]
