"""Clauses of http-api.md that had no test, each against the real app in process with real SQLite stores:
WebSocket ping → pong, profile by ``?profile=`` and cookie (and the cookie's flags), the body's
idempotency key beating the header, the legacy selectors in the query string, the store connection
settings, and ``ttft_ms`` on a finished turn."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from webchat.server.app import create_app
from webchat.server.settings import Settings
from webchat.stores.sqlite.connection import Readers, Writer
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.sqlite.turn_store import SQLiteTurnStore
from webchat.stores.turns import open_turn_store


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", debug_api=True))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def assert_error(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json() == {"error": resp.json()["error"], "code": code}


def final_turn(client: TestClient, conv_id: str, turn_id: str) -> dict[str, Any]:
    """The turn once its final snapshot is stored (the inference runs in the server's own loop)."""
    for _ in range(400):
        items = client.get("/api/debug/turns", params={"conv_id": conv_id, "phase": "final"}).json()["items"]
        if any(i["turn_id"] == turn_id for i in items):
            session = items[0]["session_id"]
            doc: dict[str, Any] = client.get(f"/api/debug/turn/{conv_id}/{session}/{turn_id}").json()
            return doc
        time.sleep(0.05)
    raise AssertionError(f"turn {turn_id} of {conv_id} never reached its final phase")


# -- WebSocket ---------------------------------------------------------------------------------------


# A missing answer would block the receive forever: fail instead.
@pytest.mark.timeout(30)
@pytest.mark.parametrize("ping", ["ping", " ping\n", '{"type": "ws.ping"}'])
def test_ws_ping_is_answered_with_pong(client: TestClient, ping: str) -> None:
    assert client.post("/chat", json={"prompt": "hi", "conv_id": "c-ping"}).status_code == 200
    with client.websocket_connect("ws://127.0.0.1/ws?conv_id=c-ping") as ws:
        assert ws.receive_json()["event"]["type"] == "ws.hello"
        before = int(time.time() * 1000)
        ws.send_text(ping)
        frame = ws.receive_json()
        assert frame["sem"] is True
        event = frame["event"]
        assert event["type"] == "ws.pong" and event["id"] == "pong:c-ping"
        assert isinstance(event["data"]["server_time_ms"], int) and event["data"]["server_time_ms"] >= before


@pytest.mark.timeout(30)
def test_ws_other_text_is_not_a_ping(client: TestClient) -> None:
    first = client.post("/chat", json={"prompt": "hi", "conv_id": "c-noping"})
    assert first.status_code == 200
    final_turn(client, "c-noping", first.json()["turn_id"])  # its frames are all out before the socket
    with client.websocket_connect("ws://127.0.0.1/ws?conv_id=c-noping") as ws:
        assert ws.receive_json()["event"]["type"] == "ws.hello"
        for text in ('{"type": "ws.pingx"}', "[1]", "pong", "not json"):
            ws.send_text(text)
        ws.send_text("ping")
        assert ws.receive_json()["event"]["type"] == "ws.pong"
        # Nothing answered the four non-pings: after the one pong, the next frame is the chat's own.
        resp = client.post("/chat", json={"prompt": "hi", "conv_id": "c-noping", "profile": "fast"})
        assert resp.status_code == 200
        assert ws.receive_json()["event"]["type"] == "chat.message"


# -- profile selection on real requests ---------------------------------------------------------------


def test_profile_from_query_string(client: TestClient) -> None:
    resp = client.post("/chat?profile=planner", json={"prompt": "hi"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["runtime_key"] == "planner"
    # The body beats the query string.
    resp = client.post("/chat?profile=planner", json={"prompt": "hi", "profile": "fast"})
    assert resp.json()["runtime_key"] == "fast"


def test_profile_cookie_is_http_only_same_site_lax_and_selects_the_runtime(client: TestClient) -> None:
    resp = client.post("/api/chat/profile", json={"profile": "planner"})
    assert resp.status_code == 200 and resp.json() == {"profile": "planner", "registry": "builtin"}
    (set_cookie,) = resp.headers.get_list("set-cookie")
    attributes = [part.strip().lower() for part in set_cookie.split(";")]
    # Starlette quotes a value holding "/"; the server reads both forms.
    assert attributes[0] in ('chat_profile="builtin/planner"', "chat_profile=builtin/planner")
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert client.get("/api/chat/profile").json() == {"profile": "planner", "registry": "builtin"}

    chosen = client.post("/chat", json={"prompt": "hi"})
    assert chosen.status_code == 200 and chosen.json()["runtime_key"] == "planner"
    # The query string beats the cookie, the path beats both.
    assert client.post("/chat?profile=fast", json={"prompt": "hi"}).json()["runtime_key"] == "fast"
    assert client.post("/chat/default?profile=fast", json={"prompt": "hi"}).json()["runtime_key"] == "default"


def test_cookie_set_by_hand_selects_the_runtime(client: TestClient) -> None:
    client.cookies.set("chat_profile", "builtin/fast")
    resp = client.post("/chat", json={"prompt": "hi"})
    assert resp.status_code == 200 and resp.json()["runtime_key"] == "fast"


# -- idempotency -------------------------------------------------------------------------------------


def test_body_idempotency_key_beats_the_header(client: TestClient) -> None:
    conv = str(uuid.uuid4())
    first = client.post(
        "/chat",
        json={"prompt": "hi", "conv_id": conv, "profile": "fast", "idempotency_key": "body-key"},
        headers={"Idempotency-Key": "header-key"},
    )
    assert first.status_code == 200 and first.json()["idempotency_key"] == "body-key"
    final_turn(client, conv, first.json()["turn_id"])
    # The header's key was not used: a request with it alone is a new prompt.
    by_header = client.post(
        "/chat",
        json={"prompt": "hi", "conv_id": conv, "profile": "fast"},
        headers={"Idempotency-Key": "header-key"},
    )
    assert by_header.status_code == 200 and by_header.json()["idempotency_key"] == "header-key"
    assert by_header.json()["turn_id"] != first.json()["turn_id"]
    final_turn(client, conv, by_header.json()["turn_id"])
    # The body's key replays the stored response and starts nothing.
    replay = client.post(
        "/chat",
        json={"prompt": "hi", "conv_id": conv, "profile": "fast"},
        headers={"Idempotency-Key": "body-key"},
    )
    assert replay.json() == first.json()
    turns = client.get("/api/debug/turns", params={"conv_id": conv, "phase": "final"}).json()["items"]
    assert sorted(i["turn_id"] for i in turns) == sorted(
        [first.json()["turn_id"], by_header.json()["turn_id"]]
    )


# -- legacy selectors and override errors ---------------------------------------------------------------


@pytest.mark.parametrize("selector", ["runtime_key", "registry_slug"])
@pytest.mark.parametrize("where", ["query", "body"])
def test_legacy_selectors_are_refused(client: TestClient, tmp_path: Path, selector: str, where: str) -> None:
    body: dict[str, Any] = {"prompt": "hi"}
    params: dict[str, str] = {}
    (body if where == "body" else params)[selector] = "builtin"
    resp = client.post("/chat", json=body, params=params)
    assert_error(resp, 400, "unsupported_legacy_selector")
    assert resp.json()["error"] == f"unsupported legacy selector: {selector}"
    # A rejected request changes nothing.
    assert client.get("/api/debug/conversations").json()["items"] == []


def test_unsupported_override_key_code(client: TestClient) -> None:
    resp = client.post("/chat", json={"prompt": "hi", "request_overrides": {"temperature": 1}})
    assert_error(resp, 400, "unsupported_override_key")
    resp = client.post("/chat", json={"prompt": "hi", "request_overrides": {"system_prompt": "x"}})
    assert_error(resp, 400, "override_not_allowed")
    assert client.get("/api/debug/conversations").json()["items"] == []


# -- provenance ----------------------------------------------------------------------------------------


def test_ttft_ms_is_recorded_on_the_finished_turn(client: TestClient) -> None:
    conv = str(uuid.uuid4())
    resp = client.post("/chat", json={"prompt": "hello there", "conv_id": conv, "profile": "fast"})
    assert resp.status_code == 200
    doc = final_turn(client, conv, resp.json()["turn_id"])
    final = next(i for i in doc["items"] if i["phase"] == "final")
    inference = final["parsed"]["metadata"]["webchat.inference@v1"]
    assert isinstance(inference["ttft_ms"], (int, float)) and inference["ttft_ms"] >= 0
    assert isinstance(inference["duration_ms"], (int, float))
    assert inference["ttft_ms"] <= inference["duration_ms"]
    assert final["runtime_key"] == "fast" and final["inference_id"] == resp.json()["inference_id"]


# -- store connections -----------------------------------------------------------------------------------


def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int]:
    return (
        conn.execute("PRAGMA journal_mode").fetchone()[0],
        conn.execute("PRAGMA busy_timeout").fetchone()[0],
        conn.execute("PRAGMA foreign_keys").fetchone()[0],
    )


def test_store_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    turns = open_turn_store(tmp_path / "turns.db")
    timeline = SQLiteTimelineStore(tmp_path / "timeline.db")
    try:
        assert isinstance(turns, SQLiteTurnStore)
        assert timeline._writer is not None
        connections: list[tuple[Writer, Readers]] = [
            (turns._writer, turns._readers),
            (timeline._writer, timeline._readers),
        ]
        for writer, readers in connections:
            mode, busy, fk = writer.run(pragmas)
            assert mode == "wal" and busy >= 5000 and fk == 1
            mode, busy, fk = pragmas(readers.get())
            assert mode == "wal" and busy >= 5000 and fk == 1
    finally:
        turns.close()
        timeline.close()
