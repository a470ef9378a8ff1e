"""Canonical turn-metadata keys (runtime-truth.md §2) and the legacy keys web-chat still reads."""

from __future__ import annotations

import re
from typing import Final

SESSION_ID: Final = "webchat.session_id@v1"
INFERENCE_ID: Final = "webchat.inference_id@v1"
RUNTIME: Final = "webchat.runtime@v1"
INFERENCE: Final = "webchat.inference@v1"
ERROR: Final = "webchat.error@v1"

# Keys written by the reference Go implementation and by older stores.
GEPPETTO_SESSION_ID: Final = "geppetto.session_id@v1"
GEPPETTO_INFERENCE_ID: Final = "geppetto.inference_id@v1"
GEPPETTO_RUNTIME: Final = "geppetto.runtime@v1"

# Backfill priority (runtime-truth.md §5): first non-empty wins.
RUNTIME_KEY_SOURCES: Final[tuple[str, ...]] = (RUNTIME, GEPPETTO_RUNTIME, "runtime", "runtime_key")
INFERENCE_ID_SOURCES: Final[tuple[str, ...]] = (INFERENCE_ID, GEPPETTO_INFERENCE_ID, "inference_id")

# Nested keys consulted, in order, when a metadata value is an object.
NESTED_VALUE_KEYS: Final[tuple[str, ...]] = (
    "runtime_key",
    "key",
    "slug",
    "profile",
    "profile_key",
    "inference_id",
)

PHASES: Final[tuple[str, ...]] = ("pre_inference", "post_inference", "post_tools", "final")


def phase_problem(phase: str) -> str | None:
    """Why ``phase`` is not a valid phase filter (``''`` means every phase), or None when it is.

    The one rule for the debug API (400 ``invalid_phase``) and ``web-chat turns list --phase``.
    """
    if phase and phase not in PHASES:
        return f"phase must be one of {', '.join(PHASES)}"
    return None


_SLUG_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")


def normalize_slug(value: str) -> str:
    """Trim and lower-case a runtime key / profile slug; raise ValueError if it is not a valid slug."""
    slug = value.strip().lower()
    if not _SLUG_RE.match(slug):
        raise ValueError(f"invalid slug: {value!r}")
    return slug


def is_valid_slug(value: str) -> bool:
    return bool(_SLUG_RE.match(value))
