"""The CLI's one output helper: JSON for scripts, rich text for people, errors as one line."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# emoji=False: text from data or errors such as ":x:" is printed as written, never as an emoji
_out = Console(soft_wrap=True, emoji=False)
_err = Console(stderr=True, soft_wrap=True, emoji=False)


def emit(obj: Any, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
        sys.stdout.flush()
    elif isinstance(obj, str):
        _out.print(obj, markup=False, highlight=False)
    else:
        _out.print_json(json.dumps(obj, default=str))


def say(text: str) -> None:
    _out.print(text, highlight=False)


def error(message: str) -> None:
    """One line on stderr starting with ``error:`` (the CLI contract)."""
    text = " ".join(str(message).split("\n")) if message else "failed"
    _err.print(f"error: {text}", markup=False, highlight=False, emoji=False, soft_wrap=True)
