"""Best-effort backfill of ``runtime_key`` / ``inference_id`` from turn metadata (runtime-truth.md §5).

Resolution is deliberately strict: a value is only taken when it is canonical (a non-empty string, an
integer, or an object holding one of those under a known key). Anything else stays unresolved, which is
stored as the empty string: the sentinel for "unknown historical runtime/inference". Nothing here ever
looks at the conversation pointer, a neighbouring turn or a default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webchat.turns.keys import INFERENCE_ID_SOURCES, NESTED_VALUE_KEYS, RUNTIME_KEY_SOURCES

# Nested objects deeper than this are treated as non-canonical (protects against pathological input).
MAX_DEPTH = 32


def resolve_value(value: Any, _depth: int = 0) -> str:
    """Resolve one metadata value to its canonical string form, or ``''`` when it is non-canonical."""
    if isinstance(value, str):
        return value.strip()
    # bool is a subclass of int in Python but is non-canonical here.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, Mapping) and _depth < MAX_DEPTH:
        for key in NESTED_VALUE_KEYS:
            if key in value:
                resolved = resolve_value(value[key], _depth + 1)
                if resolved:
                    return resolved
    return ""


def resolve_first(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in metadata:
            resolved = resolve_value(metadata[key])
            if resolved:
                return resolved
    return ""


def resolve_runtime_key(metadata: Mapping[str, Any]) -> str:
    return resolve_first(metadata, RUNTIME_KEY_SOURCES)


def resolve_inference_id(metadata: Mapping[str, Any]) -> str:
    return resolve_first(metadata, INFERENCE_ID_SOURCES)


@dataclass(frozen=True)
class Resolution:
    runtime_key: str
    inference_id: str
    # False when the metadata text is not valid JSON or not a JSON object.
    valid: bool


def resolve_metadata_json(text: str | bytes | None) -> Resolution:
    """Resolve both values from a ``turn_metadata_json`` column value."""
    if text is None:
        return Resolution("", "", False)
    try:
        doc = json.loads(text)
    except RecursionError:
        # Valid JSON nested too deeply to parse here: nothing canonical can be taken from it.
        return Resolution("", "", True)
    except (ValueError, TypeError):
        return Resolution("", "", False)
    if not isinstance(doc, dict):
        return Resolution("", "", False)
    return Resolution(resolve_runtime_key(doc), resolve_inference_id(doc), True)
