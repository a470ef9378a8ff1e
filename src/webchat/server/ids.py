"""Validation of ids that arrive in paths, queries and bodies."""

from __future__ import annotations

import re

from webchat.server.errors import ApiError

MAX_ID_LENGTH = 200
# Integers bound for SQLite columns must fit a signed 64-bit integer.
MAX_SQLITE_INT = 2**63 - 1
# Printable, no slashes or backslashes, no control characters, no lone surrogates (not storable as
# UTF-8); ids are opaque otherwise.
_ID_RE = re.compile(r"^[^\x00-\x1f\x7f/\\\ud800-\udfff]{1,200}$")


def check_id(value: str | None, name: str) -> str:
    if value is None or not value.strip():
        raise ApiError(400, "invalid_id", f"{name} must not be empty")
    if len(value) > MAX_ID_LENGTH or not _ID_RE.match(value) or value in (".", ".."):
        raise ApiError(400, "invalid_id", f"{name} is not a valid id")
    return value
