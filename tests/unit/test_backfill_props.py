"""The backfill resolver of runtime-truth.md §5, as properties over arbitrary JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webchat.stores.migrations.backfill import (
    MAX_DEPTH,
    Resolution,
    resolve_inference_id,
    resolve_metadata_json,
    resolve_runtime_key,
    resolve_value,
)

# The contract's key lists, written out here (not imported) so that a change in the library shows up.
RUNTIME_SOURCES = ("webchat.runtime@v1", "geppetto.runtime@v1", "runtime", "runtime_key")
INFERENCE_SOURCES = ("webchat.inference_id@v1", "geppetto.inference_id@v1", "inference_id")
NESTED_KEYS = ("runtime_key", "key", "slug", "profile", "profile_key", "inference_id")


def expected_value(value: Any) -> str:
    """§5 value resolution, from the text of the contract."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        for key in NESTED_KEYS:
            if key in value:
                resolved = expected_value(value[key])
                if resolved:
                    return resolved
    return ""


def expected_first(metadata: dict[str, Any], sources: tuple[str, ...]) -> str:
    for key in sources:
        if key in metadata:
            resolved = expected_value(metadata[key])
            if resolved:
                return resolved
    return ""


def candidates(value: Any) -> set[str]:
    """Every string a resolver could honestly return for this input: its own (trimmed) strings and ints."""
    out: set[str] = set()
    if isinstance(value, str):
        out.add(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        out.add(str(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            out |= candidates(k) | candidates(v)
    elif isinstance(value, list):
        for v in value:
            out |= candidates(v)
    return out


# -- strategies -------------------------------------------------------------------------------------------

padded_text = st.builds(
    lambda pre, body, post: pre + body + post,
    st.sampled_from(["", " ", "  ", "\t", "\n", " \u00a0"]),
    st.text(max_size=10),
    st.sampled_from(["", " ", "\t\n", "\u2003"]),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | padded_text
)
interesting_keys = st.sampled_from([*RUNTIME_SOURCES, *INFERENCE_SOURCES, *NESTED_KEYS, "profile_slug", "x"])
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(interesting_keys | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=20,
)
metadata_docs = st.dictionaries(interesting_keys | st.text(max_size=6), json_values, max_size=8)
non_canonical = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(json_values, max_size=3)
    | st.just("")
    | st.just("   ")
    | st.just({})
)


# -- single values ------------------------------------------------------------------------------------------


@given(padded_text)
def test_strings_resolve_to_their_trimmed_text(text: str) -> None:
    assert resolve_value(text) == text.strip()


@given(st.integers(min_value=-(2**100), max_value=2**100))
def test_integers_resolve_to_decimal_strings(number: int) -> None:
    assert resolve_value(number) == str(number)


@given(non_canonical)
def test_non_canonical_values_are_unresolved(value: Any) -> None:
    assert resolve_value(value) == ""


@pytest.mark.parametrize(
    "value", [True, False, 0.0, 1.0, 42.0, 1e2, [], ["planner"], [42], None, "", " \t\n", {}]
)
def test_non_canonical_examples(value: Any) -> None:
    assert resolve_value(value) == ""
    assert resolve_runtime_key({"webchat.runtime@v1": value}) == ""
    assert resolve_inference_id({"webchat.inference_id@v1": value}) == ""


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(NESTED_KEYS), json_values, max_size=6), st.randoms(use_true_random=False)
)
def test_objects_resolve_through_the_nested_keys_in_order(obj: dict[str, Any], rnd: Any) -> None:
    # insertion order of the object must not matter, only the contract's key order
    keys = list(obj)
    rnd.shuffle(keys)
    shuffled = {k: obj[k] for k in keys}
    assert resolve_value(obj) == resolve_value(shuffled) == expected_value(obj)


@given(st.sampled_from(NESTED_KEYS), padded_text.filter(lambda t: bool(t.strip())))
def test_each_nested_key_is_read(key: str, text: str) -> None:
    assert resolve_value({key: text}) == text.strip()
    assert resolve_value({"unrelated": text}) == ""


@given(st.data())
def test_nested_key_priority(data: st.DataObject) -> None:
    i, j = sorted(
        data.draw(st.lists(st.integers(0, len(NESTED_KEYS) - 1), min_size=2, max_size=2, unique=True))
    )
    obj = {NESTED_KEYS[j]: "later", NESTED_KEYS[i]: "earlier"}
    assert resolve_value(obj) == "earlier"
    obj[NESTED_KEYS[i]] = data.draw(non_canonical)
    assert resolve_value(obj) == "later"


def test_nested_objects_resolve_recursively() -> None:
    assert resolve_value({"runtime_key": {"slug": {"profile": " deep "}}}) == "deep"
    assert resolve_value({"runtime_key": {"slug": True}, "key": 7}) == "7"
    assert resolve_value({"inference_id": {"inference_id": "inf-1"}}) == "inf-1"


# -- metadata priority --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(metadata_docs)
def test_priority_matches_the_contract(metadata: dict[str, Any]) -> None:
    assert resolve_runtime_key(metadata) == expected_first(metadata, RUNTIME_SOURCES)
    assert resolve_inference_id(metadata) == expected_first(metadata, INFERENCE_SOURCES)


@given(st.data())
def test_a_higher_priority_canonical_value_always_wins(data: st.DataObject) -> None:
    for sources, resolve in (
        (RUNTIME_SOURCES, resolve_runtime_key),
        (INFERENCE_SOURCES, resolve_inference_id),
    ):
        i = data.draw(st.integers(0, len(sources) - 1))
        metadata: dict[str, Any] = {k: data.draw(json_values) for k in sources[i + 1 :]}
        for k in sources[:i]:
            metadata[k] = data.draw(non_canonical)
        metadata[sources[i]] = "  winner  "
        assert resolve(metadata) == "winner"


@given(st.data())
def test_non_canonical_higher_keys_fall_through(data: st.DataObject) -> None:
    metadata = {
        "webchat.runtime@v1": data.draw(non_canonical),
        "geppetto.runtime@v1": data.draw(non_canonical),
        "runtime": data.draw(non_canonical),
        "runtime_key": "fallback",
        "webchat.inference_id@v1": data.draw(non_canonical),
        "geppetto.inference_id@v1": data.draw(non_canonical),
        "inference_id": 12,
    }
    assert resolve_runtime_key(metadata) == "fallback"
    assert resolve_inference_id(metadata) == "12"


@given(metadata_docs)
def test_runtime_and_inference_sources_do_not_mix(metadata: dict[str, Any]) -> None:
    runtime_only = {k: v for k, v in metadata.items() if k not in INFERENCE_SOURCES}
    inference_only = {k: v for k, v in metadata.items() if k not in RUNTIME_SOURCES}
    assert resolve_runtime_key(runtime_only) == resolve_runtime_key(metadata)
    assert resolve_inference_id(inference_only) == resolve_inference_id(metadata)
    assert resolve_runtime_key({k: v for k, v in metadata.items() if k not in RUNTIME_SOURCES}) == ""
    assert resolve_inference_id({k: v for k, v in metadata.items() if k not in INFERENCE_SOURCES}) == ""


# -- robustness and honesty ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_resolves_to_a_string_from_the_input(value: Any) -> None:
    result = resolve_value(value)
    assert isinstance(result, str)
    assert result == result.strip()
    if result:
        assert result in candidates(value), "fabricated value"


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_metadata_resolution_never_raises_and_never_fabricates(doc: Any) -> None:
    text = json.dumps(doc)
    res = resolve_metadata_json(text)
    assert isinstance(res, Resolution)
    assert isinstance(res.runtime_key, str) and isinstance(res.inference_id, str)
    assert res == resolve_metadata_json(text.encode("utf-8"))
    if isinstance(doc, dict):
        assert res == Resolution(resolve_runtime_key(doc), resolve_inference_id(doc), True)
        assert res.runtime_key == expected_first(doc, RUNTIME_SOURCES)
        assert res.inference_id == expected_first(doc, INFERENCE_SOURCES)
    else:
        assert res == Resolution("", "", False)
    for value in (res.runtime_key, res.inference_id):
        if value:
            assert value in candidates(doc), "fabricated value"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40) | st.binary(max_size=40))
def test_arbitrary_text_never_raises(text: str | bytes) -> None:
    res = resolve_metadata_json(text)
    assert isinstance(res.runtime_key, str) and isinstance(res.inference_id, str)
    try:
        doc = json.loads(text)
    except ValueError:
        assert res == Resolution("", "", False)
    else:
        assert res.valid == isinstance(doc, dict)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "null",
        "[]",
        '"planner"',
        "42",
        "true",
        "NaN",
        '{"runtime": "x"',
        "\ufeff{}",
        "{'runtime': 'x'}",
    ],
)
def test_invalid_or_non_object_metadata_is_unresolved_and_flagged(text: str) -> None:
    assert resolve_metadata_json(text) == Resolution("", "", False)


def test_none_metadata_is_unresolved() -> None:
    assert resolve_metadata_json(None) == Resolution("", "", False)


@given(metadata_docs)
def test_resolution_does_not_mutate_its_input(metadata: dict[str, Any]) -> None:
    before = json.dumps(metadata, sort_keys=True)
    resolve_runtime_key(metadata)
    resolve_inference_id(metadata)
    assert json.dumps(metadata, sort_keys=True) == before


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_deeply_nested_metadata_text_does_not_raise(depth: int) -> None:
    # valid JSON nested past the parser's recursion limit: unresolved, never an exception
    for text in ('{"a":' * depth + "1" + "}" * depth, "[" * depth + "]" * depth):
        res = resolve_metadata_json(text)
        assert (res.runtime_key, res.inference_id) == ("", "")


def test_deeply_nested_objects_do_not_raise() -> None:
    value: dict[str, Any] = {"runtime_key": "bottom"}
    for _ in range(3_000):
        value = {"runtime_key": value}
    # past the resolver's depth guard the value is unresolved; it must never raise
    assert resolve_value(value) in ("", "bottom")
    assert resolve_runtime_key({"runtime": value}) in ("", "bottom")


# -- hand-written edges (no random seed needed to catch them) ---------------------------------------------


def nested(depth: int, leaf: Any = "deep") -> Any:
    """``depth`` objects, each holding the next under ``runtime_key``, around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = {"runtime_key": value}
    return value


def test_nesting_is_followed_exactly_to_max_depth() -> None:
    assert resolve_value(nested(MAX_DEPTH)) == "deep"
    assert resolve_value(nested(MAX_DEPTH + 1)) == ""
    assert resolve_value(nested(1, {"slug": nested(MAX_DEPTH - 2)})) == "deep"
    assert resolve_value(nested(1, {"slug": nested(MAX_DEPTH - 1)})) == ""


def test_metadata_json_validity() -> None:
    assert resolve_metadata_json(None) == Resolution("", "", False)
    assert resolve_metadata_json("[1]") == Resolution("", "", False)
    assert resolve_metadata_json("{oops") == Resolution("", "", False)
    # Valid JSON nested past the parser's recursion limit: valid, and nothing canonical in it.
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    assert resolve_metadata_json(deep) == Resolution("", "", True)
    assert resolve_metadata_json(b'{"runtime": " fast ", "inference_id": 7}') == Resolution("fast", "7", True)


# Lowest-priority key first in each document, so "first key present wins" would be caught as well.
@pytest.mark.parametrize(
    ("metadata", "runtime_key", "inference_id"),
    [
        ({"runtime_key": "rk", "runtime": "rt"}, "rt", ""),
        ({"runtime_key": "rk", "runtime": "rt", "geppetto.runtime@v1": "gp"}, "gp", ""),
        ({"runtime": "rt", "geppetto.runtime@v1": "gp", "webchat.runtime@v1": {"key": "wc"}}, "wc", ""),
        ({"runtime_key": "rk", "runtime": ""}, "rk", ""),
        ({"inference_id": "i3", "geppetto.inference_id@v1": "i2"}, "", "i2"),
        ({"inference_id": "i3", "geppetto.inference_id@v1": "i2", "webchat.inference_id@v1": "i1"}, "", "i1"),
        ({"inference_id": "i3", "webchat.inference_id@v1": False}, "", "i3"),
    ],
)
def test_source_key_priority(metadata: dict[str, Any], runtime_key: str, inference_id: str) -> None:
    assert resolve_runtime_key(metadata) == runtime_key
    assert resolve_inference_id(metadata) == inference_id
