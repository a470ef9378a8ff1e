"""security.md's rules that hold in both modes, against the real app in process with real stores: the
Host check (DNS rebinding), the Origin check on sockets and state changes, JSON-only bodies, the bounded
per-conversation queue, and an empty ``--host`` meaning every interface, never loopback."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from tests.unit.asgi_calls import call, json_body
from webchat.server.app import create_app
from webchat.server.edge import EdgeGuard, allowed_host_names, host_name, normal_origin, refuse
from webchat.server.settings import Settings, is_loopback

BASE = "http://127.0.0.1:8080"
WS = "ws://127.0.0.1:8080/ws"


def app_client(data: Path, **settings: Any) -> TestClient:
    app = create_app(Settings(data_dir=data, host="127.0.0.1", port=8080, debug_api=True, **settings))
    return TestClient(app, base_url=BASE)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app_client(tmp_path / "data") as c:
        yield c


def error(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["code"]


def refused(client: TestClient, headers: dict[str, str], status: int, code: str) -> None:
    """The upgrade is answered before the socket is accepted: no ws.hello, no subscription."""
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect(f"{WS}?conv_id=c1", headers=headers),
    ):
        pass
    assert (denied.value.status_code, denied.value.json()["code"]) == (status, code)


def prompt_rows(data: Path) -> int:
    with sqlite3.connect(data / "timeline.db") as conn:
        return int(conn.execute("SELECT count(*) FROM webchat_prompts").fetchone()[0])


# -- Host -----------------------------------------------------------------------------------------------


def test_a_rebound_host_name_reaches_nothing(client: TestClient, tmp_path: Path) -> None:
    forged = {"Host": "attacker.example:8080"}
    assert error(client.get("/api/debug/conversations", headers=forged)) == (400, "invalid_host")
    assert error(client.post("/chat", json={"prompt": "hi"}, headers=forged)) == (400, "invalid_host")
    assert error(client.post("/api/chat/profiles", json={"slug": "x"}, headers=forged)) == (
        400,
        "invalid_host",
    )
    assert error(client.get("/", headers=forged)) == (400, "invalid_host")
    refused(client, forged, 400, "invalid_host")
    assert prompt_rows(tmp_path / "data") == 0
    # The loopback names, with or without a port, are the server's own.
    for host in ("127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "127.0.0.1"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_are_added_to_the_defaults_and_a_wildcard_bind_is_not_a_host(tmp_path: Path) -> None:
    with app_client(tmp_path / "a", allowed_hosts=["chat.example.org"]) as c:
        assert c.get("/healthz", headers={"Host": "chat.example.org:443"}).status_code == 200
        assert c.get("/healthz", headers={"Host": "Chat.Example.org."}).status_code == 200
        assert error(c.get("/healthz", headers={"Host": "other.example.org"})) == (400, "invalid_host")
    app = create_app(Settings(data_dir=tmp_path / "b", host="0.0.0.0", port=8080))
    with TestClient(app, base_url=BASE) as c:
        assert error(c.get("/healthz", headers={"Host": "0.0.0.0:8080"})) == (400, "invalid_host")
        assert c.get("/healthz").status_code == 200


def test_the_names_a_host_header_may_carry() -> None:
    loopback = allowed_host_names("127.0.0.1", [])
    assert {"127.0.0.1", "localhost", "::1"} <= loopback
    assert allowed_host_names("192.168.1.5", []) == loopback | {"192.168.1.5"}
    assert allowed_host_names("[FE80::2]", []) == loopback | {"fe80::2"}
    assert allowed_host_names("fe80::2", []) == loopback | {"fe80::2"}
    assert allowed_host_names("MyHost.LAN", []) == loopback | {"myhost.lan"}
    assert allowed_host_names("0.0.0.0", []) == allowed_host_names("", []) == allowed_host_names("[::]", [])
    assert "0.0.0.0" not in allowed_host_names("0.0.0.0", [])
    extra = ["Chat.Example:8443", "FE80::1", "[FE80::3]:8080", "files.example.", " "]
    assert allowed_host_names("0.0.0.0", extra) == allowed_host_names("0.0.0.0", []) | {
        "chat.example",
        "fe80::1",
        "fe80::3",
        "files.example",
    }


def test_host_names_and_origins_are_normalised() -> None:
    assert host_name("Example.COM:8080") == "example.com"
    assert host_name("WWW.EXAMPLEX.:8080") == "www.examplex"  # the trailing dot goes, the X stays
    assert host_name(" files.example. ") == "files.example"
    assert host_name("[::1]:80") == "::1"
    assert host_name("[FE80::1]") == "fe80::1"
    assert host_name("::1") == "::1"
    assert host_name("") == ""
    for malformed in (
        "[::1",
        "[]",
        "[]:80",
        "[::1]]",
        "[::1]x",
        "[::1]:",
        "[::1]:8o",
        "[::1]:x8",
        "[::1]]:80",
    ):
        assert host_name(malformed) == "", malformed
    assert normal_origin("HTTPS://Chat.Example:8443/") == "https://chat.example:8443"
    assert normal_origin("null") == ""
    assert normal_origin("http://[::1") == ""
    # An origin needs both a scheme and a host: these never match a listed origin or the server's own.
    assert normal_origin("file:///etc/passwd") == ""
    assert normal_origin("localhost:8080") == ""
    assert normal_origin("//chat.example") == ""


# -- Origin -----------------------------------------------------------------------------------------------


def test_a_foreign_origin_cannot_open_a_socket_or_change_state(client: TestClient, tmp_path: Path) -> None:
    evil = {"Origin": "https://attacker.example"}
    refused(client, evil, 403, "invalid_origin")
    assert error(client.post("/chat", json={"prompt": "hi"}, headers=evil)) == (403, "invalid_origin")
    assert error(client.post("/chat", json={"prompt": "hi"}, headers={"Origin": "null"})) == (
        403,
        "invalid_origin",
    )
    assert prompt_rows(tmp_path / "data") == 0
    # Reads carry no Origin check (a cross-site page cannot read the answer anyway).
    assert client.get("/api/chat/profiles", headers=evil).status_code == 200
    # The server's own pages: the Origin names the Host the request is addressed to.
    own = {"Origin": BASE}
    assert client.post("/chat", json={"prompt": "hi", "conv_id": "c1"}, headers=own).status_code == 200
    with client.websocket_connect(f"{WS}?conv_id=c1", headers=own) as ws:
        assert ws.receive_json()["event"]["type"] == "ws.hello"


def test_the_own_origin_is_compared_with_the_host_whatever_its_case(client: TestClient) -> None:
    for host in ("localhost:8080", "LocalHost:8080"):
        own = {"Host": host, "Origin": "http://localhost:8080"}
        resp = client.post("/chat", json={"prompt": "hi", "conv_id": f"c-{host}"}, headers=own)
        assert resp.status_code == 200, resp.text


def test_a_listed_origin_without_a_host_lets_nothing_in(tmp_path: Path) -> None:
    with app_client(tmp_path / "data", allowed_origins=["file://"]) as c:
        resp = c.post("/chat", json={"prompt": "hi"}, headers={"Origin": "file://"})
        assert error(resp) == (403, "invalid_origin")


def test_allowed_origins_may_open_sockets_and_post(tmp_path: Path) -> None:
    with app_client(tmp_path / "data", allowed_origins=["https://app.example.org"]) as c:
        ok = {"Origin": "https://APP.example.org"}
        assert c.post("/chat", json={"prompt": "hi", "conv_id": "c2"}, headers=ok).status_code == 200
        with c.websocket_connect(f"{WS}?conv_id=c2", headers=ok) as ws:
            assert ws.receive_json()["event"]["type"] == "ws.hello"
        assert error(
            c.post("/chat", json={"prompt": "hi"}, headers={"Origin": "http://app.example.org"})
        ) == (
            403,
            "invalid_origin",
        )


# -- JSON only ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_starts_nothing(
    client: TestClient, tmp_path: Path, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"prompt": "hi from a cross-site form"}'
    resp = client.post("/chat", content=body, headers=headers)
    assert error(resp) == (415, "unsupported_media_type")
    assert prompt_rows(tmp_path / "data") == 0
    resp = client.post("/api/chat/profiles", content=b'{"slug": "x"}', headers=headers)
    assert error(resp) == (415, "unsupported_media_type")
    ok = client.post("/chat", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200, ok.text
    assert prompt_rows(tmp_path / "data") == 1


# -- bounded queue ----------------------------------------------------------------------------------------


def test_a_conversation_queues_at_most_max_queue_prompts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with app_client(data, max_queue=2, shutdown_grace_s=0) as c:
        slow = {
            "slug": "slow",
            "display_name": "Slow",
            "description": "one token every 5 s",
            "runtime": {"engine": "offline", "system_prompt": "", "options": {"token_delay_ms": 5000}},
        }
        assert c.post("/api/chat/profiles", json=slow).status_code == 201
        first = c.post("/chat/slow", json={"prompt": "take your time"}).json()
        conv = first["conv_id"]
        assert first["status"] == "started"
        queued = [c.post("/chat/slow", json={"prompt": f"then {n}", "conv_id": conv}) for n in (1, 2)]
        assert [(r.status_code, r.json()["queue_position"]) for r in queued] == [(202, 1), (202, 2)]
        full = c.post("/chat/slow", json={"prompt": "one too many", "conv_id": conv, "idempotency_key": "k3"})
        assert error(full) == (429, "queue_full")
        # A retry of a prompt that was queued still gets its stored answer, not 429.
        key = queued[0].json()["idempotency_key"]
        again = c.post("/chat/slow", json={"prompt": "then 1", "conv_id": conv, "idempotency_key": key})
        assert again.status_code == 202 and again.json()["turn_id"] == queued[0].json()["turn_id"]
        # Another conversation is not affected.
        assert c.post("/chat/slow", json={"prompt": "elsewhere"}).status_code == 200
    assert prompt_rows(data) == 4  # the refused prompt left no row


# -- an empty host is every interface ---------------------------------------------------------------------


def test_an_empty_host_is_every_interface_not_loopback() -> None:
    assert not is_loopback("")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
    assert (
        is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    )
    # So the debug API is off by default there, and the server runs in team mode: only signed-in users
    # get in, and only admins reach the debug API when it is switched on.
    assert Settings(host="").debug_enabled is False
    assert Settings(host="").mode == "team" and Settings(host="", auth="local").mode == "team"
    with pytest.raises(ValueError, match="--auth local"):
        Settings(host="", auth="local").validate_security()
    assert Settings(host="127.0.0.1").mode == "local"
    assert Settings(host="127.0.0.1", auth="required").mode == "team"


# -- the refusal itself -----------------------------------------------------------------------------------


def _refusal(scope: dict[str, Any]) -> list[dict[str, Any]]:
    return call(
        lambda sc, receive, send: refuse(sc, send, 403, "invalid_origin", "origin 'x' is not allowed"), scope
    )


def test_a_refusal_is_a_complete_json_response() -> None:
    body = b'{"error": "origin \'x\' is not allowed", "code": "invalid_origin"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    assert _refusal({"type": "http"}) == [
        {"type": "http.response.start", "status": 403, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]
    # A socket upgrade: answered with an HTTP response when the server can (denial-response extension)...
    denied = {"type": "websocket", "extensions": {"websocket.http.response": {}}}
    assert _refusal(denied) == [
        {"type": "websocket.http.response.start", "status": 403, "headers": headers},
        {"type": "websocket.http.response.body", "body": body},
    ]
    # ...and closed before it is accepted when it cannot (the server then answers 403 itself).
    assert _refusal({"type": "websocket", "extensions": {}}) == [{"type": "websocket.close", "code": 1008}]
    assert _refusal({"type": "websocket"}) == [{"type": "websocket.close", "code": 1008}]


def test_the_guard_names_what_it_refused() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a refused request never reaches the app")

    def status_and_json(scope: dict[str, Any]) -> tuple[int, Any]:
        sent = call(EdgeGuard(inner, bind_host="127.0.0.1"), scope)
        return sent[0]["status"], json_body(sent)

    no_host = {"type": "http", "method": "GET", "path": "/healthz", "headers": []}
    assert status_and_json(no_host) == (
        400,
        {"error": "host '' is not an allowed host", "code": "invalid_host"},
    )
    foreign = {
        "type": "http",
        "method": "POST",
        "path": "/chat",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"origin", b"https://attacker.example")],
    }
    assert status_and_json(foreign) == (
        403,
        {"error": "origin 'https://attacker.example' is not allowed", "code": "invalid_origin"},
    )
