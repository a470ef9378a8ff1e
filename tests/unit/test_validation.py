"""The edge validator (``webchat.server.validation``) on its own: exact codes and boundaries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webchat.server.errors import ApiError
from webchat.server.validation import MAX_JSON_INT, check_scope, parse_json
from webchat.storable import MAX_JSON_DEPTH, Unstorable, check_json, check_text


def _code(fn: Any, *args: Any) -> str:
    """The code of the refusal: ApiError (400) at the HTTP edge, Unstorable underneath."""
    with pytest.raises((ApiError, Unstorable)) as caught:
        fn(*args)
    if isinstance(caught.value, ApiError):
        assert caught.value.status == 400
    # The message is sent as UTF-8 JSON: it must never echo the unencodable character itself.
    caught.value.message.encode("utf-8")
    return caught.value.code


@pytest.mark.parametrize("bad", ["\x00", "a\ud800", "\udfffz", "ok \udbff\udbff"])
def test_unstorable_text(bad: str) -> None:
    assert _code(check_text, bad, "field") == "invalid_text"
    assert _code(parse_json, json.dumps({"field": bad}).encode()) == "invalid_text"


@pytest.mark.parametrize("good", ["", "plain", "tab\tand newline\n", "é 漢字 \U0001f600", "\ufffd"])
def test_storable_text(good: str) -> None:
    assert check_text(good, "field") == good


def _nested(containers: int) -> Any:
    doc: Any = "leaf"
    for i in range(containers):
        doc = {"k": doc} if i % 2 else [doc]
    return doc


def test_depth_boundary() -> None:
    check_json(_nested(MAX_JSON_DEPTH), "doc")
    assert _code(check_json, _nested(MAX_JSON_DEPTH + 1), "doc") == "nesting_too_deep"
    assert parse_json(json.dumps(_nested(MAX_JSON_DEPTH)).encode()) == _nested(MAX_JSON_DEPTH)
    assert _code(parse_json, json.dumps(_nested(MAX_JSON_DEPTH + 1)).encode()) == "nesting_too_deep"
    assert _code(parse_json, b"[" * 200_000) == "nesting_too_deep"


def test_keys_are_checked_too() -> None:
    assert _code(check_json, {"ok": {"b\ud800d": 1}}, "doc") == "invalid_text"
    # YAML mappings may have non-string keys: those are not text and pass.
    check_json({1: "one", None: ["x"]}, "doc")
    assert _code(parse_json, b'{"ok": {"\\u0000": 1}}') == "invalid_text"


@pytest.mark.parametrize("n", [0, -1, MAX_JSON_INT, -MAX_JSON_INT, 10**18])
def test_integers_in_range(n: int) -> None:
    assert parse_json(str(n).encode()) == n


@pytest.mark.parametrize(
    "raw",
    [
        str(MAX_JSON_INT + 1),
        str(-MAX_JSON_INT - 1),
        "1" * 4_301,
        "-" + "9" * 50_000,
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        '{"a": [NaN]}',
    ],
)
def test_absurd_numbers(raw: str) -> None:
    assert _code(parse_json, raw.encode()) == "invalid_number"


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe\x00", b'{"a": 1,}'])
def test_malformed(raw: bytes) -> None:
    assert _code(parse_json, raw) == "malformed_json"


def test_floats_and_unicode_round_trip() -> None:
    assert parse_json('{"t": 0.5, "e": 1e300, "s": "é\\ud83d\\ude00"}'.encode()) == {
        "t": 0.5,
        "e": 1e300,
        "s": "é\U0001f600",
    }


def _scope(path: bytes = b"/x", query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    return {"type": "http", "raw_path": path, "query_string": query, "headers": headers or []}


@pytest.mark.parametrize(
    "scope",
    [
        _scope(path=b"/api/x%00y"),
        _scope(path=b"/api/x%ED%A0%80"),
        _scope(query=b"a=1&b=%FF"),
        _scope(query=b"a%00=1"),
        _scope(query=b"conv_id=x+%00"),
        _scope(headers=[(b"idempotency-key", b"k\x00")]),
    ],
)
def test_scope_refused(scope: Any) -> None:
    assert _code(check_scope, scope) == "invalid_text"


def test_scope_accepted() -> None:
    check_scope(_scope(path=b"/chat/fast", query=b"conv_id=%C3%A9t%C3%A9&x=a+b&flag&=", headers=[]))
    # Headers we do not read are not ours to judge.
    check_scope(_scope(headers=[(b"x-other", b"\x00"), (b"idempotency-key", b"k\xe9")]))
