"""Block content hashing, algorithm ``sha256-canonical-json-v1`` (runtime-truth.md §3).

The hashed material is the compact JSON object ``{"kind","role","payload","metadata"}`` in exactly that
key order, with every nested object's keys sorted and an empty payload/metadata written as ``{}``.
Non-ASCII text is hashed as UTF-8 (not ``\\u`` escaped), like the reference implementation's encoder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

HASH_ALGORITHM: Final = "sha256-canonical-json-v1"

_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys, UTF-8 text; NaN/Infinity are rejected (they are not JSON)."""
    return _encode(value)


def block_hash_material(kind: str, role: str, payload: Mapping[str, Any] | None, metadata: Any) -> str:
    return (
        '{"kind":'
        + _encode(kind)
        + ',"role":'
        + _encode(role)
        + ',"payload":'
        + _encode(payload or {})
        + ',"metadata":'
        + _encode(metadata or {})
        + "}"
    )


def block_content_hash(kind: str, role: str, payload: Mapping[str, Any] | None, metadata: Any) -> str:
    material = block_hash_material(kind, role, payload, metadata)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def block_content_hash_from_json(kind: str, role: str, payload_json: str, metadata_json: str) -> str:
    """The same hash from payload/metadata already encoded with :func:`canonical_json` (the stored form)."""
    material = '{"kind":' + _encode(kind) + ',"role":' + _encode(role)
    material += ',"payload":' + payload_json + ',"metadata":' + metadata_json + "}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()
