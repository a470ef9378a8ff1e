"""Input the stores cannot hold is refused at the edge (400 JSON, exact code) and nothing is kept.

Lone surrogates cannot be encoded as UTF-8 (SQLite text), NUL is refused by PostgreSQL text, JSON
nested without bound or with absurd numbers breaks the parser: each used to be a plain-text 500, or a
200 whose turn then failed on every write (the prompt lost).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, start_server

JSON = {"content-type": "application/json"}
PROFILES = "/api/chat/profiles"
OK_RUNTIME = {"engine": "offline", "options": {"token_delay_ms": 0}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("unstorable") / "data")
    try:
        yield server
    finally:
        server.stop()


def _raw(doc: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \ud800 escapes, exactly as a JavaScript client sends them.
    return json.dumps(doc, ensure_ascii=True).encode()


def _nested(depth: int, leaf: Any = 1) -> Any:
    doc = leaf
    for _ in range(depth):
        doc = {"a": doc}
    return doc


def _deep_text(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _counts(server: Server) -> tuple[int, int]:
    """(turn rows, conversations known to the debug API): both must be unchanged by a refused request."""
    conn = sqlite3.connect(server.data_dir / "turns.db")
    try:
        turns = int(conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0])
    finally:
        conn.close()
    convs = httpx.get(server.base_url + "/api/debug/conversations", timeout=10).json()["items"]
    return turns, len(convs)


def _assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    doc = resp.json()
    assert (resp.status_code, doc.get("code")) == (status, code), resp.text
    assert set(doc) == {"error", "code"} and doc["error"]


CHAT_BODIES: list[tuple[str, bytes, str]] = [
    ("conv_id lone surrogate", _raw({"prompt": "hi", "conv_id": "x\ud800y"}), "invalid_text"),
    ("prompt lone surrogate", _raw({"prompt": "hi \udfff there"}), "invalid_text"),
    ("prompt NUL", _raw({"prompt": "hi\x00there"}), "invalid_text"),
    ("prompt raw surrogate bytes", b'{"prompt": "hi \xed\xa0\x80"}', "invalid_text"),
    ("profile lone surrogate", _raw({"prompt": "hi", "profile": "fa\ud800st"}), "invalid_text"),
    ("registry NUL", _raw({"prompt": "hi", "registry": "builtin\x00"}), "invalid_text"),
    ("idempotency_key NUL", _raw({"prompt": "hi", "idempotency_key": "k\x00"}), "invalid_text"),
    (
        "override value surrogate",
        _raw({"prompt": "hi", "request_overrides": {"options": {"x": ["ok", "\ud83d"]}}}),
        "invalid_text",
    ),
    ("override key NUL", _raw({"prompt": "hi", "request_overrides": {"a\x00": 1}}), "invalid_text"),
    (
        "overrides 50,000 deep",
        b'{"prompt": "hi", "request_overrides": ' + _deep_text(50_000) + b"}",
        "nesting_too_deep",
    ),
    ("overrides 33 deep", _raw({"prompt": "hi", "request_overrides": _nested(32)}), "nesting_too_deep"),
    (
        "integer of 10,000 digits",
        b'{"prompt": "hi", "request_overrides": {"n": ' + b"9" * 10_000 + b"}}",
        "invalid_number",
    ),
    ("integer past 2^63", _raw({"prompt": "hi", "request_overrides": {"n": 2**63}}), "invalid_number"),
    ("float overflow", b'{"prompt": "hi", "request_overrides": {"t": 1e999}}', "invalid_number"),
    ("NaN", b'{"prompt": "hi", "request_overrides": {"t": NaN}}', "invalid_number"),
    ("prompt is an absurd number", b'{"prompt": ' + b"1" * 5_000 + b"}", "invalid_number"),
]


@pytest.mark.parametrize(("name", "body", "code"), CHAT_BODIES, ids=[c[0] for c in CHAT_BODIES])
def test_chat_body_refused(srv: Server, name: str, body: bytes, code: str) -> None:
    before = _counts(srv)
    resp = httpx.post(srv.base_url + "/chat", content=body, headers=JSON, timeout=30)
    _assert_error(resp, 400, code)
    assert _counts(srv) == before, "a refused prompt must leave nothing behind"


def test_nesting_limit_is_32_levels(srv: Server) -> None:
    # 32 containers in all (the body is the first) parse; the refusal is then about the override itself.
    body = _raw({"prompt": "hi", "request_overrides": _nested(30, {"x": 1})})
    resp = httpx.post(srv.base_url + "/chat", content=body, headers=JSON, timeout=10)
    assert resp.status_code == 400 and resp.json()["code"] == "unsupported_override_key", resp.text
    deeper = _raw({"prompt": "hi", "request_overrides": _nested(31, {"x": 1})})
    _assert_error(
        httpx.post(srv.base_url + "/chat", content=deeper, headers=JSON, timeout=10), 400, "nesting_too_deep"
    )


URL_CASES: list[tuple[str, str, str]] = [
    ("POST", "/chat?profile=fa%00st", "invalid_text"),
    ("POST", "/chat/fa%ED%A0%80st", "invalid_text"),
    ("GET", "/api/timeline?conv_id=a%ED%A0%80b", "invalid_text"),
    ("GET", "/api/timeline?conv_id=c1&x%00=1", "invalid_text"),
    ("GET", "/api/chat/profiles/fa%ED%A0%80st", "invalid_text"),
    ("GET", "/api/chat/profiles?registry=%C3", "invalid_text"),
    ("DELETE", "/api/chat/profiles/x?expected_version=1&registry=lo%00cal", "invalid_text"),
    ("GET", "/api/debug/turns?conv_id=c1&runtime_key=fa%00st", "invalid_text"),
    ("GET", "/api/debug/turns?conv_id=c1&inference_id=%ED%BF%BF", "invalid_text"),
    ("GET", "/api/debug/events/c1?type=llm%00", "invalid_text"),
    ("GET", "/api/debug/conversations/c%ED%A0%80", "invalid_text"),
]


@pytest.mark.parametrize(("method", "url", "code"), URL_CASES, ids=[f"{m} {u}" for m, u, _ in URL_CASES])
def test_path_and_query_refused(srv: Server, method: str, url: str, code: str) -> None:
    before = _counts(srv)
    body = _raw({"prompt": "hi"}) if method == "POST" else None
    resp = httpx.request(method, srv.base_url + url, content=body, headers=JSON, timeout=10)
    _assert_error(resp, 400, code)
    assert _counts(srv) == before


PROFILE_BODIES: list[tuple[str, bytes, str]] = [
    (
        "display_name surrogate",
        _raw({"slug": "u1", "display_name": "a\ud800", "runtime": OK_RUNTIME}),
        "invalid_text",
    ),
    ("description NUL", _raw({"slug": "u1", "description": "a\x00", "runtime": OK_RUNTIME}), "invalid_text"),
    ("slug surrogate", _raw({"slug": "u\udc00", "runtime": OK_RUNTIME}), "invalid_text"),
    (
        "runtime option surrogate",
        _raw({"slug": "u1", "runtime": {**OK_RUNTIME, "system_prompt": "be \ud800"}}),
        "invalid_text",
    ),
    ("policy key NUL", _raw({"slug": "u1", "runtime": OK_RUNTIME, "policy": {"\x00": True}}), "invalid_text"),
    ("runtime 50,000 deep", b'{"slug": "u1", "runtime": ' + _deep_text(50_000) + b"}", "nesting_too_deep"),
    (
        "version of 10,000 digits",
        b'{"slug": "u1", "runtime": {}, "version": ' + b"7" * 10_000 + b"}",
        "invalid_number",
    ),
]


@pytest.mark.parametrize(("name", "body", "code"), PROFILE_BODIES, ids=[c[0] for c in PROFILE_BODIES])
def test_profile_create_refused(srv: Server, name: str, body: bytes, code: str) -> None:
    resp = httpx.post(srv.base_url + PROFILES, content=body, headers=JSON, timeout=30)
    _assert_error(resp, 400, code)
    slugs = {p["slug"] for p in httpx.get(srv.base_url + PROFILES, timeout=10).json()}
    assert "u1" not in slugs


def test_profile_patch_refused_and_unchanged(srv: Server) -> None:
    base = srv.base_url + PROFILES
    created = httpx.post(base, json={"slug": "edge-p", "runtime": OK_RUNTIME}, timeout=10)
    assert created.status_code == 201, created.text
    patches = [
        (_raw({"expected_version": 1, "description": "x\ud800"}), "invalid_text"),
        (_raw({"expected_version": 1, "runtime": {"options": {"k\udbff": 1}}}), "invalid_text"),
        (_raw({"expected_version": 1, "policy": {"x": "\x00"}}), "invalid_text"),
        (b'{"expected_version": 1, "runtime": ' + _deep_text(50_000) + b"}", "nesting_too_deep"),
        (b'{"expected_version": ' + b"1" * 10_000 + b"}", "invalid_number"),
    ]
    for body, code in patches:
        _assert_error(httpx.patch(f"{base}/edge-p", content=body, headers=JSON, timeout=30), 400, code)
    doc = httpx.get(f"{base}/edge-p", timeout=10).json()
    assert doc["version"] == 1 and not doc.get("description")


def test_valid_unicode_still_accepted(srv: Server) -> None:
    # Astral characters arrive as surrogate *pairs* in JSON escapes: those are valid and must pass.
    body = _raw({"prompt": "emoji \U0001f600 and accents é", "conv_id": "edge-ok-\U0001f600"})
    resp = httpx.post(srv.base_url + "/chat/fast", content=body, headers=JSON, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["conv_id"] == "edge-ok-\U0001f600"
    ok_query = httpx.get(srv.base_url + "/api/timeline", params={"conv_id": "edge-ok-\U0001f600"}, timeout=10)
    assert ok_query.status_code == 200 and ok_query.json()["conv_id"] == "edge-ok-\U0001f600"
