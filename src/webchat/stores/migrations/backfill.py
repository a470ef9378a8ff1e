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


# -- the same rules in SQL (SQLite JSON1), for the migration's row pass ------------------------------
#
# The migration resolves most rows in SQL and calls the Python resolver above only for rows the SQL
# cannot decide with certainty. Each SQL expression below yields the resolved value, ``''`` for
# "decided: unresolved", or NULL for "ask Python". A row goes to Python when SQLite's reading of its
# text could differ from ``json.loads``:
#
# - not TEXT (bytes may be UTF-16/32, which json.loads decodes and SQLite does not), or NULL;
# - a backslash anywhere: SQLite matches object keys on their raw text, so an escaped key such as
#   "runtime\u005fkey" would be missed, and an escaped NUL cuts SQLite's string value short;
# - a NUL character (SQLite's parser stops there, json.loads does not);
# - nested deep enough that json.loads could hit the interpreter's recursion limit (the resolver then
#   reports valid-but-unresolved);
# - not valid to SQLite (json.loads also accepts NaN / Infinity, so only Python can say "invalid");
# - a source or nested key occurring twice: json.loads keeps the last value, json_extract the first;
# - an object inside an object under a source key (deeper than SQL_MAX_NESTING: rare, and each level
#   multiplies the size of the SQL by seven).
#
# A text that does not start with "{" (after JSON whitespace) is never an object to json.loads, so SQL
# decides it as unresolved and counts it invalid, as resolve_metadata_json would.

SQL_MAX_NESTING = 1
# A text this short cannot nest deeper than half its length: far below the recursion limit.
_SQL_SHORT_TEXT = 800
_SQL_MAX_BRACKETS = 400
# str.strip() removes every character with isspace(); the ones below U+0020 cannot appear unescaped
# inside a valid JSON string, and escaped ones already send the row to Python.
_STRIP_CHARS = "".join(ch for ch in map(chr, range(0x20, 0x3001)) if ch.isspace())
_JSON_WS = "' ' || char(9, 10, 13)"
# Marks "Python must decide" (a duplicate key, or an object nested too deep) inside the expressions: a
# BLOB, so it can never equal a resolved TEXT value, and COALESCE stops at it like at a value.
_DEFER = "X'00'"


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_path(path: str, key: str) -> str:
    return f'{path}."{key}"'


def _sql_once(doc: str, key: str) -> str:
    """True when ``"key"`` occurs at most once in the text.

    Without backslashes (checked first) every quote delimits a string, so a key occurring twice anywhere
    in the document shows as the quoted key occurring twice (perhaps harmlessly, as a value: Python then
    decides). Checked only for keys the resolution reaches and finds present, which keeps it cheap; GLOB
    is the cheapest form measured (no copy, no character counting). Keys hold no GLOB wildcards.
    """
    pattern = _sql_str(f'*"{key}"*"{key}"*')
    return f"{doc} NOT GLOB {pattern}"


def _sql_value(doc: str, path: str, key: str, depth: int) -> str:
    """``resolve_value`` of the JSON value at ``path``: TEXT, NULL (non-canonical) or the defer BLOB."""
    p = _sql_str(path)
    extract = f"json_extract({doc}, {p})"
    if depth < SQL_MAX_NESTING:
        nested = ", ".join(_sql_value(doc, _sql_path(path, k), k, depth + 1) for k in NESTED_VALUE_KEYS)
        obj = f"COALESCE({nested})"
    else:
        obj = _DEFER
    once = _sql_once(doc, key)
    # json_type is looked up once for a present value; the duplicate test only runs for keys present.
    return (
        f"CASE json_type({doc}, {p}) "
        f"WHEN 'text' THEN CASE WHEN {once} "
        f"THEN NULLIF(TRIM({extract}, {_sql_str(_STRIP_CHARS)}), '') ELSE {_DEFER} END "
        # Integers beyond 64 bits come back as REAL from json_extract: their JSON text is the exact
        # decimal form (a JSON integer has no leading zeros, and "-0" fits in 64 bits).
        f"WHEN 'integer' THEN CASE WHEN NOT {once} THEN {_DEFER} "
        f"WHEN typeof({extract}) = 'integer' THEN CAST({extract} AS TEXT) ELSE {doc} -> {p} END "
        f"WHEN 'object' THEN CASE WHEN {once} THEN {obj} ELSE {_DEFER} END "
        # Present but non-canonical: only a duplicate of the key could still make it count.
        f"ELSE CASE WHEN json_type({doc}, {p}) IS NOT NULL AND NOT {once} THEN {_DEFER} END END"
    )


def _sql_not_too_deep(doc: str) -> str:
    # Bytes bound characters from above, and a blob's size is known without a scan.
    size = f"length(CAST({doc} AS BLOB))"
    brackets = f"{size} - length(CAST(replace(replace({doc}, '[', ''), '{{', '') AS BLOB))"
    return f"({size} <= {_SQL_SHORT_TEXT} OR {brackets} <= {_SQL_MAX_BRACKETS})"


def _sql_starts_with_brace(doc: str) -> str:
    return f"({doc} GLOB '{{*' OR ltrim({doc}, {_JSON_WS}) GLOB '{{*')"


def sql_never_an_object(doc: str) -> str:
    """True for TEXT the resolver always reports as invalid metadata (it cannot parse to an object)."""
    return f"(typeof({doc}) = 'text' AND {_sql_not_too_deep(doc)} AND NOT {_sql_starts_with_brace(doc)})"


def sql_decidable(doc: str) -> str:
    """True for a JSON object SQL reads exactly as ``json.loads`` does (see the list above)."""
    return (
        f"(typeof({doc}) = 'text' AND instr({doc}, '\\') = 0 AND instr({doc}, char(0)) = 0 AND "
        f"{_sql_not_too_deep(doc)} AND {_sql_starts_with_brace(doc)} AND json_valid({doc}))"
    )


def _sql_resolved(doc: str, sources: tuple[str, ...]) -> str:
    values = ", ".join(_sql_value(doc, _sql_path("$", key), key, 0) for key in sources)
    return f"NULLIF(COALESCE({values}, ''), {_DEFER})"


def sql_decided_runtime_key(doc: str) -> str:
    """For a row where :func:`sql_decidable` holds: the runtime key, ``''``, or NULL to ask Python."""
    return _sql_resolved(doc, RUNTIME_KEY_SOURCES)


def sql_decided_inference_id(doc: str) -> str:
    """For a row where :func:`sql_decidable` holds: the inference id, ``''``, or NULL to ask Python."""
    return _sql_resolved(doc, INFERENCE_ID_SOURCES)
