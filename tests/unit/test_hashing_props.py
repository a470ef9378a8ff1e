"""Block content hash ``sha256-canonical-json-v1`` (runtime-truth.md §3), as properties and fixed vectors."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webchat.turns.hashing import HASH_ALGORITHM, block_content_hash, block_hash_material, canonical_json
from webchat.turns.model import Block

HEX64 = re.compile(r"[0-9a-f]{64}")

# JSON values as Python decodes them (no NaN/Infinity: they are not JSON).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
maybe_objects = st.none() | objects
kinds = st.sampled_from(
    ["system", "user", "llm_text", "tool_call", "tool_use", "reasoning", "other"]
) | st.text(max_size=10)
roles = st.sampled_from(["", "system", "user", "assistant", "tool"]) | st.text(max_size=10)


def reorder(value: Any) -> Any:
    """The same JSON value with every object's keys inserted in reverse order, at every depth."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


def key_orders(material: str) -> tuple[list[str], list[list[str]]]:
    """Top-level key order, and the key order of every nested object, as written in the material."""
    seen: list[list[str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen.append([k for k, _ in pairs])
        return dict(pairs)

    json.loads(material, object_pairs_hook=hook)
    return seen[-1], seen[:-1]  # the outermost object is completed last


@settings(max_examples=150, deadline=None)
@given(kinds, roles, maybe_objects, maybe_objects)
def test_hash_is_sha256_of_the_material_as_64_lowercase_hex(
    kind: str, role: str, payload: Any, meta: Any
) -> None:
    digest = block_content_hash(kind, role, payload, meta)
    assert HEX64.fullmatch(digest)
    material = block_hash_material(kind, role, payload, meta)
    assert digest == hashlib.sha256(material.encode("utf-8")).hexdigest()
    assert block_content_hash(kind, role, payload, meta) == digest  # deterministic


@settings(max_examples=150, deadline=None)
@given(kinds, roles, maybe_objects, maybe_objects)
def test_material_is_compact_json_in_contract_key_order(
    kind: str, role: str, payload: Any, meta: Any
) -> None:
    material = block_hash_material(kind, role, payload, meta)
    top, nested = key_orders(material)
    assert top == ["kind", "role", "payload", "metadata"]
    for keys in nested:
        assert keys == sorted(keys), "nested keys must be sorted"
    doc = json.loads(material)
    assert doc == {"kind": kind, "role": role, "payload": payload or {}, "metadata": meta or {}}
    # compact: re-encoding what was read, in the order it was written, gives the same text back
    ordered = json.loads(material, object_pairs_hook=dict)
    assert json.dumps(ordered, separators=(",", ":"), ensure_ascii=False) == material


@settings(max_examples=150, deadline=None)
@given(kinds, roles, objects, objects)
def test_hash_ignores_dict_insertion_order(
    kind: str, role: str, payload: dict[str, Any], meta: dict[str, Any]
) -> None:
    assert block_content_hash(kind, role, payload, meta) == block_content_hash(
        kind, role, reorder(payload), reorder(meta)
    )
    assert block_hash_material(kind, role, payload, meta) == block_hash_material(
        kind, role, reorder(payload), reorder(meta)
    )


@settings(max_examples=100, deadline=None)
@given(kinds, roles, objects)
def test_empty_payload_and_metadata_hash_like_empty_objects(
    kind: str, role: str, other: dict[str, Any]
) -> None:
    assert block_content_hash(kind, role, None, other) == block_content_hash(kind, role, {}, other)
    assert block_content_hash(kind, role, other, None) == block_content_hash(kind, role, other, {})
    assert block_content_hash(kind, role, None, None) == block_content_hash(kind, role, {}, {})


@settings(max_examples=100, deadline=None)
@given(kinds, roles, objects, objects, st.text(max_size=10))
def test_block_content_hash_method_ignores_the_block_id(
    kind: str, role: str, payload: dict[str, Any], meta: dict[str, Any], block_id: str
) -> None:
    block = Block(kind=kind, role=role, payload=payload, metadata=meta, id=block_id)
    assert block.content_hash() == block_content_hash(kind, role, payload, meta)
    assert (
        Block(kind=kind, role=role, payload=payload, metadata=meta, id="other").content_hash()
        == block.content_hash()
    )


@settings(max_examples=100, deadline=None)
@given(kinds, roles, objects)
def test_any_change_of_field_changes_the_hash(kind: str, role: str, payload: dict[str, Any]) -> None:
    base = block_content_hash(kind, role, payload, {})
    assert block_content_hash(kind + "x", role, payload, {}) != base
    assert block_content_hash(kind, role + "x", payload, {}) != base
    assert block_content_hash(kind, role, {**payload, "\x00extra": 1}, {}) != base
    assert block_content_hash(kind, role, payload, {"k": 1}) != base
    # payload and metadata are not interchangeable
    if payload:
        assert block_content_hash(kind, role, {}, payload) != base


# Fixed vectors: the material is written out by hand, the digest computed here with hashlib.
VECTORS = [
    (
        ("user", "user", {"text": "hi"}, None),
        '{"kind":"user","role":"user","payload":{"text":"hi"},"metadata":{}}',
    ),
    (
        ("system", "", None, None),
        '{"kind":"system","role":"","payload":{},"metadata":{}}',
    ),
    (
        (
            "tool_call",
            "assistant",
            {"b": 1, "a": {"d": [3, {"f": 4.5, "e": None}], "c": True}},
            {"z": "é ☃", "a": False},
        ),
        '{"kind":"tool_call","role":"assistant","payload":{"a":{"c":true,"d":[3,{"e":null,"f":4.5}]},"b":1},'
        '"metadata":{"a":false,"z":"é ☃"}}',
    ),
]


@pytest.mark.parametrize(("args", "material"), VECTORS)
def test_known_vectors(args: tuple[Any, ...], material: str) -> None:
    assert block_hash_material(*args) == material
    assert block_content_hash(*args) == hashlib.sha256(material.encode("utf-8")).hexdigest()


def test_pinned_digests() -> None:
    # computed once with hashlib.sha256 over the materials of the first two VECTORS
    assert block_content_hash("user", "user", {"text": "hi"}, {}) == (
        "0d046d4e26b90459f8dfc44015c10b2c1577ed8e8d9b4df59bbf573a6fd3083f"
    )
    assert block_content_hash("system", "", {}, None) == (
        "95173e104cbac174db51f262fdb8a023a005f9afa43b324d295d1e400908f2b4"
    )
    assert HASH_ALGORITHM == "sha256-canonical-json-v1"


def test_non_ascii_is_hashed_as_utf8_not_escaped() -> None:
    material = block_hash_material("user", "user", {"text": "naïve ☃"}, {})
    assert "\\u" not in material and "naïve ☃" in material


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_canonical_json_rejects_non_json_numbers(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})
    with pytest.raises(ValueError):
        block_content_hash("user", "user", {"x": bad}, {})
