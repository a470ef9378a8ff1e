"""Bad input over real HTTP: each a 4xx JSON error ``{error, code}``, and nothing stored."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server


def _turn_count(server: Server) -> int:
    import sqlite3

    conn = sqlite3.connect(server.data_dir / "turns.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0])
    finally:
        conn.close()


def _assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    doc = resp.json()
    assert set(doc) == {"error", "code"}, doc
    assert doc["error"]
    assert doc["code"] == code, doc


CHAT_CASES = [
    ("malformed json", {"content": b"{not json"}, 400, "malformed_json"),
    ("not an object", {"json": ["a"]}, 400, "invalid_request"),
    ("missing prompt", {"json": {"conv_id": "x"}}, 400, "invalid_request"),
    ("blank prompt", {"json": {"prompt": "   "}}, 400, "blank_prompt"),
    (
        "legacy runtime_key",
        {"json": {"prompt": "hi", "runtime_key": "fast"}},
        400,
        "unsupported_legacy_selector",
    ),
    (
        "legacy registry_slug",
        {"json": {"prompt": "hi", "registry_slug": "builtin"}},
        400,
        "unsupported_legacy_selector",
    ),
    ("unknown profile", {"json": {"prompt": "hi", "profile": "nope"}}, 404, "unknown_profile"),
    ("unknown registry", {"json": {"prompt": "hi", "registry": "nope"}}, 404, "unknown_registry"),
    ("invalid slug", {"json": {"prompt": "hi", "profile": "Bad Slug!"}}, 400, "invalid_slug"),
    ("unknown field", {"json": {"prompt": "hi", "bogus": 1}}, 400, "invalid_request"),
    (
        "override not allowed",
        {"json": {"prompt": "hi", "request_overrides": {"system_prompt": "x"}}},
        400,
        "override_not_allowed",
    ),
    (
        "unsupported override",
        {"json": {"prompt": "hi", "request_overrides": {"temperature": 2}}},
        400,
        "unsupported_override_key",
    ),
    ("oversize prompt", {"json": {"prompt": "x" * 40_000}}, 413, "prompt_too_large"),
    ("oversize body", {"content": b'{"prompt": "' + b"x" * (2 << 20) + b'"}'}, 413, "payload_too_large"),
    ("bad conv id", {"json": {"prompt": "hi", "conv_id": "../etc"}}, 400, "invalid_id"),
]


@pytest.mark.parametrize(("name", "kwargs", "status", "code"), CHAT_CASES, ids=[c[0] for c in CHAT_CASES])
def test_chat_rejects_bad_input(server: Server, name: str, kwargs: dict, status: int, code: str) -> None:
    headers = {"content-type": "application/json"}
    resp = httpx.post(server.base_url + "/chat", headers=headers, timeout=10, **kwargs)
    _assert_error(resp, status, code)
    assert _turn_count(server) == 0


@pytest.mark.parametrize(("selector", "value"), [("runtime_key", "fast"), ("registry_slug", "builtin")])
def test_legacy_selector_in_query(server: Server, selector: str, value: str) -> None:
    resp = httpx.post(f"{server.base_url}/chat?{selector}={value}", json={"prompt": "hi"})
    _assert_error(resp, 400, "unsupported_legacy_selector")
    assert resp.json()["error"] == f"unsupported legacy selector: {selector}"
    assert _turn_count(server) == 0


def test_unknown_profile_in_path(server: Server) -> None:
    _assert_error(httpx.post(server.base_url + "/chat/nope", json={"prompt": "hi"}), 404, "unknown_profile")


DEBUG_CASES = [
    ("/api/debug/turns", 400, "missing_filter"),
    ("/api/debug/turns?conv_id=x&phase=bogus", 400, "invalid_phase"),
    ("/api/debug/turn/a/b", 400, "invalid_path"),
    ("/api/debug/turn//s/t", 400, "invalid_path"),
    ("/api/debug/turn/a/%2E%2E/t", 400, "invalid_id"),
    ("/api/debug/turn/a/s/t/extra", 400, "invalid_path"),
    ("/api/debug/turn/c/s/unknown", 404, "unknown_turn"),
    ("/api/debug/conversations/unknown-conv", 404, "unknown_conversation"),
    ("/api/debug/conversations/unknown-conv/runtime-history", 404, "unknown_conversation"),
    ("/api/debug/events/not-live", 404, "not_live"),
    ("/api/debug/turns?conv_id=x&limit=0", 400, "invalid_request"),
    ("/api/timeline", 400, "invalid_request"),
]


@pytest.mark.parametrize(("path", "status", "code"), DEBUG_CASES)
def test_debug_routes_reject_bad_ids(server: Server, path: str, status: int, code: str) -> None:
    _assert_error(httpx.get(server.base_url + path), status, code)


def test_path_traversal_never_escapes(server: Server) -> None:
    resp = httpx.get(server.base_url + "/api/debug/turn/..%2F..%2Fetc/passwd/x")
    _assert_error(resp, 400, "invalid_path")


def test_token_protected_debug_api_answers_401_without_the_bearer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.e2e.conftest import start_server

    srv = start_server(tmp_path / "d", "--debug-token", "e2e-debug-token-42")
    try:
        url = srv.base_url + "/api/debug/conversations"
        _assert_error(httpx.get(url), 401, "unauthorized")
        _assert_error(httpx.get(url, headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
        ok = httpx.get(url, headers={"Authorization": "Bearer e2e-debug-token-42"})
        assert ok.status_code == 200 and ok.json() == {"items": []}
    finally:
        srv.stop()


def test_debug_api_absent_when_disabled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.e2e.conftest import start_server

    srv = start_server(tmp_path / "d", "--no-debug-api")
    try:
        resp = httpx.get(srv.base_url + "/api/debug/conversations")
        _assert_error(resp, 404, "not_found")
        ok = httpx.post(srv.base_url + "/chat", json={"prompt": "hi", "conv_id": str(uuid.uuid4())})
        assert ok.status_code == 200
    finally:
        srv.stop()


def test_team_mode_without_an_admin_refuses_to_start_and_creates_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "webchat", "serve", "--host", "0.0.0.0", "--port", "1", "--debug-api"],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, WEBCHAT_DATA_DIR=str(data)),
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "web-chat users add NAME --admin" in proc.stderr
    assert not data.exists()
