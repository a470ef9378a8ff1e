"""What every store can hold: the one rule for client- and file-supplied text and JSON documents.

SQLite stores text as UTF-8, so a lone surrogate (JSON ``"\\ud800"``, YAML ``"\\ud800"``) cannot be
written at all, and PostgreSQL refuses NUL in text. Documents nested without bound are refused too.
The HTTP edge (:mod:`webchat.server.validation`) and profile documents (:mod:`webchat.runtimes.profiles`)
both check with these functions, so the rule lives in one place.
"""

from __future__ import annotations

import re
from typing import Any

MAX_JSON_DEPTH = 32
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Unstorable(ValueError):
    """``code`` is ``invalid_text`` or ``nesting_too_deep``; the message never holds the bad character."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def printable(value: str, limit: int = 40) -> str:
    """``value`` safe to echo in an error message (which must itself be encodable as UTF-8)."""
    short = value if len(value) <= limit else value[:limit] + "…"
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", short)


def check_text(value: str, where: str) -> str:
    """``value`` unchanged; :class:`Unstorable` (``invalid_text``) if it holds a NUL or a lone surrogate."""
    found = _UNSTORABLE.search(value)
    if found is not None:
        char = found.group()
        what = "a NUL character" if char == "\x00" else f"a lone surrogate (\\u{ord(char):04x})"
        raise Unstorable(
            "invalid_text",
            f"{where} contains {what} at position {found.start()}; text must be valid Unicode without NUL",
        )
    return value


def check_json(value: Any, where: str) -> None:
    """Every string of a decoded document (mapping keys included) passes :func:`check_text`, and the
    document is at most :data:`MAX_JSON_DEPTH` containers deep. Other values (numbers, YAML dates) pass."""
    _walk(value, where, 0)


def _walk(value: Any, where: str, depth: int) -> None:
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, dict):
        _enter(where, depth)
        for key, item in value.items():
            if isinstance(key, str):
                check_text(key, f"a key of {where}")
            _walk(item, f"{where}.{printable(str(key))}", depth + 1)
    elif isinstance(value, list):
        _enter(where, depth)
        for index, item in enumerate(value):
            _walk(item, f"{where}[{index}]", depth + 1)


def _enter(where: str, depth: int) -> None:
    if depth >= MAX_JSON_DEPTH:
        raise Unstorable(
            "nesting_too_deep", f"{printable(where, 80)} is nested deeper than {MAX_JSON_DEPTH} levels"
        )
