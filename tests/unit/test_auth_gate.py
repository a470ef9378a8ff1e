"""Team mode in process: the gate's per-route refusals, sign-in, sessions, per-user conversations and the
bounds per user, against the real app with its real stores (users are added to the real auth.db with
cheap argon2 parameters; the server verifies with the parameters each hash records)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.testclient import WebSocketDenialResponse

from tests.unit.asgi_calls import call, json_body
from webchat.auth.passwords import make_hasher
from webchat.auth.store import SQLiteAuthStore
from webchat.server.app import create_app
from webchat.server.auth import (
    CACHE_MAX,
    DEBUG_TOKEN,
    LOCAL,
    LOGIN_FAILURES_PER_ADDRESS,
    LOGIN_FAILURES_PER_USER,
    LOGIN_WINDOW_S,
    Authenticator,
    AuthGate,
    CredentialCache,
    Identity,
    LoginThrottle,
    _client_address,
    _redirect_to_login,
    admin_only,
    is_debug_path,
    is_open,
    owner_scope,
    session_cookie,
)
from webchat.server.debug import require_token
from webchat.server.errors import ApiError
from webchat.server.settings import Settings

BASE = "http://127.0.0.1:8080"
WS = "ws://127.0.0.1:8080/ws"
PASSWORD = "correct horse battery"


def add_users(data: Path) -> dict[str, str]:
    """root (admin), alice and bob; returns a bearer token per name."""
    store = SQLiteAuthStore(data / "auth.db", hasher=make_hasher(1, 8192, 1))
    try:
        store.add_user("root", PASSWORD, admin=True)
        store.add_user("alice", PASSWORD)
        store.add_user("bob", PASSWORD)
        return {name: store.create_token(name)[1] for name in ("root", "alice", "bob")}
    finally:
        store.close()


def team_client(data: Path, **settings: Any) -> TestClient:
    app = create_app(
        Settings(data_dir=data, host="127.0.0.1", port=8080, auth="required", debug_api=True, **settings)
    )
    return TestClient(app, base_url=BASE)


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return add_users(tmp_path / "data")


@pytest.fixture
def client(tmp_path: Path, tokens: dict[str, str]) -> Iterator[TestClient]:
    with team_client(tmp_path / "data") as c:
        yield c


def bearer(tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def error(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["code"]


# -- the route tables --------------------------------------------------------------------------------


def test_open_routes_and_admin_routes() -> None:
    for path in ("/healthz", "/login", "/help", "/help/x", "/api/help", "/api/help/x", "/static/js/chat.js"):
        assert is_open(path), path
    for path in ("/api/auth/login", "/api/auth/logout", "/api/auth/me", "/openapi.json", "/docs"):
        assert is_open(path), path
    for path in ("/", "/chat", "/ws", "/api/timeline", "/api/conversations", "/api/chat/profiles", "/debug"):
        assert not is_open(path), path
    assert not is_open("/helpx") and not is_open("/static") and not is_open("/api/helpx")
    assert admin_only("/debug", "GET") and admin_only("/api/debug", "GET")
    assert is_debug_path("/api/debug") and is_debug_path("/api/debug/turns")
    assert not is_debug_path("/api/debugx") and not is_debug_path("/debug")
    assert admin_only("/api/debug/conversations", "GET")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert admin_only("/api/chat/profiles", method) and admin_only("/api/chat/profiles/x", method)
        assert not admin_only("/api/chat/profile", method)  # a user's own profile cookie
    assert not admin_only("/api/chat/profiles", "GET") and not admin_only("/api/chat/profiles/x", "GET")
    assert not admin_only("/api/debugger", "GET") and not admin_only("/api/chat/profilesx", "POST")


def test_session_cookie_is_found_among_others() -> None:
    assert session_cookie("a=1; webchat_session=abc ; b=2") == "abc"
    assert session_cookie("a=1;webchat_session=abc;b=2") == "abc"  # browsers may omit the spaces
    assert session_cookie("webchat_session=a=b=") == "a=b="  # only the first "=" splits
    assert session_cookie("webchat_session=") == ""
    assert session_cookie("xwebchat_session=abc") == ""
    assert session_cookie("") == ""


def test_owner_scope() -> None:
    assert owner_scope(Identity("u_1", "alice", "user", "token")) == "u_1"
    assert owner_scope(Identity("u_2", "root", "admin", "session")) is None


def test_login_throttle_counts_per_username_and_per_address() -> None:
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    # One failure a second: 1000, 1001, 1002, 1003 (from one address), then 1004 (from another).
    for _ in range(LOGIN_FAILURES_PER_USER - 1):
        throttle.failed("Alice", "10.0.0.1")
        now[0] += 1
    assert throttle.retry_after_s("alice", "10.0.0.1") == 0
    throttle.failed("ALICE", "10.0.0.2")
    # The oldest failure (1000) decides: it leaves the window first, 296 s from now (1004).
    assert throttle.retry_after_s("alice", "10.0.0.3") == int(LOGIN_WINDOW_S) - 4 + 1
    assert throttle.retry_after_s("bob", "10.0.0.1") == 0  # another name from the same address
    now[0] = 1000 + LOGIN_WINDOW_S - 0.25
    assert throttle.retry_after_s("alice", "10.0.0.3") == 1  # a quarter second left: still 1 s
    now[0] = 1000 + LOGIN_WINDOW_S
    assert throttle.retry_after_s("alice", "10.0.0.3") == 0  # the oldest left: four failures remain
    # Per address: many names from one address.
    for i in range(LOGIN_FAILURES_PER_ADDRESS):
        throttle.failed(f"user{i}", "10.9.9.9")
    assert throttle.retry_after_s("someone-new", "10.9.9.9") > 0
    assert throttle.retry_after_s("someone-new", "10.9.9.8") == 0
    # A success clears the username's count (not the address's).
    for _ in range(LOGIN_FAILURES_PER_USER):
        throttle.failed("carol", "10.1.1.1")
    throttle.succeeded("Carol")
    assert throttle.retry_after_s("carol", "10.1.1.2") == 0


def test_credential_cache_expires_and_forgets() -> None:
    cache = CredentialCache(ttl_s=60)
    who = Identity("u", "alice", "user", "token")
    assert cache.get("t:x") == (False, None)
    cache.put("t:x", who)
    cache.put("t:unknown", None)
    assert cache.get("t:x") == (True, who)
    assert cache.get("t:unknown") == (True, None)  # a refusal is cached too
    cache.forget("t:x")
    assert cache.get("t:x") == (False, None)
    stale = CredentialCache(ttl_s=-1)
    stale.put("t:x", who)
    assert stale.get("t:x") == (False, None)
    small = CredentialCache(ttl_s=60, max_entries=2)
    small.put("a", who)
    small.put("b", who)
    small.put("c", who)
    assert small.get("c") == (True, who) and len(small._entries) <= 2


# -- the gate ----------------------------------------------------------------------------------------


def test_anonymous_requests_reach_only_the_open_routes(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200
    assert client.get("/api/help").status_code == 200
    for path in ("/api/conversations", "/api/timeline?conv_id=x", "/api/chat/profiles", "/api/debug/turns"):
        assert error(client.get(path)) == (401, "unauthorized"), path
    assert error(client.post("/chat", json={"prompt": "hi"})) == (401, "unauthorized")
    page = client.get("/debug?x=1", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fdebug%3Fx%3D1"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=%2F"
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(f"{WS}?conv_id=c"):
        pass
    assert (denied.value.status_code, denied.value.json()["code"]) == (401, "unauthorized")


def test_an_open_route_that_needs_someone_refuses_the_anonymous(client: TestClient) -> None:
    resp = client.get("/api/auth/me")
    assert resp.status_code == 401
    assert resp.json() == {"error": "sign in first (or send a bearer token)", "code": "unauthorized"}


def test_tokens_users_and_admins(client: TestClient, tokens: dict[str, str]) -> None:
    alice, root = bearer(tokens, "alice"), bearer(tokens, "root")
    assert error(client.get("/api/conversations", headers={"Authorization": "Bearer nope"})) == (
        401,
        "invalid_token",
    )
    # An unknown token on an open route is not refused: the route is open.
    assert client.get("/healthz", headers={"Authorization": "Bearer nope"}).status_code == 200
    assert client.get("/api/auth/me", headers=alice).json() == {
        "username": "alice",
        "role": "user",
        "mode": "team",
    }
    assert client.get("/api/chat/profiles", headers=alice).status_code == 200
    assert client.get("/", headers=alice).status_code == 200
    assert error(client.get("/api/debug/conversations", headers=alice)) == (403, "forbidden")
    assert error(client.get("/debug", headers=alice)) == (403, "forbidden")
    doc = {"slug": "p1", "runtime": {"engine": "offline"}}
    assert error(client.post("/api/chat/profiles", json=doc, headers=alice)) == (403, "forbidden")
    assert client.get("/api/debug/conversations", headers=root).status_code == 200
    assert client.post("/api/chat/profiles", json=doc, headers=root).status_code == 201
    # Basic auth or another scheme is no credential at all.
    assert error(client.get("/api/conversations", headers={"Authorization": "Basic abc"})) == (
        401,
        "unauthorized",
    )


def test_the_debug_token_opens_the_debug_api_only(tmp_path: Path, tokens: dict[str, str]) -> None:
    with team_client(tmp_path / "data", debug_token="s3cret") as c:
        token = {"Authorization": "Bearer s3cret"}
        assert c.get("/api/debug/conversations", headers=token).status_code == 200
        assert error(c.get("/api/conversations", headers=token)) == (401, "invalid_token")
        assert error(c.get("/api/debug/conversations", headers={"Authorization": "Bearer s3cre"})) == (
            401,
            "invalid_token",
        )
        # An admin needs no debug token; a user is refused with or without one.
        assert c.get("/api/debug/conversations", headers=bearer(tokens, "root")).status_code == 200
        assert error(c.get("/api/debug/conversations", headers=bearer(tokens, "bob"))) == (403, "forbidden")


def test_local_mode_has_one_admin_and_no_sign_in(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=8080))
    with TestClient(app, base_url=BASE) as c:
        assert c.get("/api/auth/me").json() == {"username": "local", "role": "admin", "mode": "local"}
        assert error(c.post("/api/auth/login", json={"username": "a", "password": "b"})) == (
            409,
            "local_mode",
        )
        assert c.get("/login", follow_redirects=False).headers["location"] == "/"
        assert c.get("/api/conversations").status_code == 200


# -- sign-in and sessions ------------------------------------------------------------------------------


def test_sign_in_session_and_sign_out(client: TestClient) -> None:
    assert error(client.post("/api/auth/login", json={"username": "alice", "password": "wrong one"})) == (
        401,
        "invalid_credentials",
    )
    assert error(client.post("/api/auth/login", json={"username": "nobody", "password": PASSWORD})) == (
        401,
        "invalid_credentials",
    )
    ok = client.post("/api/auth/login", json={"username": "ALICE", "password": PASSWORD})
    assert ok.json() == {"username": "alice", "role": "user", "mode": "team"}
    attributes = [a.strip().lower() for a in ok.headers["set-cookie"].split(";")]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes
    assert client.get("/api/auth/me").json()["username"] == "alice"
    assert client.get("/api/conversations").status_code == 200
    session = client.cookies["webchat_session"]
    out = client.post("/api/auth/logout", json={})
    assert out.json() == {"signed_out": True}
    client.cookies.set("webchat_session", session)
    assert error(client.get("/api/auth/me")) == (401, "unauthorized")


def test_sign_in_over_https_sets_a_secure_cookie(tmp_path: Path, tokens: dict[str, str]) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=8080, auth="required"))
    with TestClient(app, base_url="https://127.0.0.1:8080") as c:
        ok = c.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
        assert "secure" in [a.strip().lower() for a in ok.headers["set-cookie"].split(";")]


def test_failed_sign_ins_get_429_with_retry_after(client: TestClient) -> None:
    for _ in range(LOGIN_FAILURES_PER_USER):
        bad = client.post("/api/auth/login", json={"username": "bob", "password": "bad password"})
        assert error(bad) == (401, "invalid_credentials")
    limited = client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert error(limited) == (429, "too_many_attempts")
    # Even the right password waits: the window is counted from the oldest failure.
    assert 1 <= int(limited.headers["retry-after"]) <= int(LOGIN_WINDOW_S) + 1


# -- per-user conversations -----------------------------------------------------------------------------


def test_another_users_conversation_is_a_404_everywhere(client: TestClient, tokens: dict[str, str]) -> None:
    alice, bob, root = bearer(tokens, "alice"), bearer(tokens, "bob"), bearer(tokens, "root")
    made = client.post("/chat", json={"prompt": "mine", "conv_id": "c-alice"}, headers=alice)
    assert made.status_code == 200
    assert error(client.get("/api/timeline", params={"conv_id": "c-alice"}, headers=bob)) == (
        404,
        "unknown_conversation",
    )
    steer = client.post("/chat", json={"prompt": "yours now", "conv_id": "c-alice"}, headers=bob)
    assert error(steer) == (404, "unknown_conversation")
    with client.websocket_connect(f"{WS}?conv_id=c-alice", headers=bob) as ws:
        assert ws.receive_json() == {"error": "no conversation c-alice", "code": "unknown_conversation"}
    listed = client.get("/api/conversations", headers=bob).json()["items"]
    assert [i["conv_id"] for i in listed] == []
    assert [i["conv_id"] for i in client.get("/api/conversations", headers=alice).json()["items"]] == [
        "c-alice"
    ]
    assert client.get("/api/timeline", params={"conv_id": "c-alice"}, headers=alice).status_code == 200
    assert client.get("/api/timeline", params={"conv_id": "c-alice"}, headers=root).status_code == 200
    with client.websocket_connect(f"{WS}?conv_id=c-alice", headers=alice) as ws:
        assert ws.receive_json()["event"]["type"] == "ws.hello"
    # Bob may not claim an id alice uses, and his own conversations are his.
    own = client.post("/chat", json={"prompt": "bob's", "conv_id": "c-bob"}, headers=bob)
    assert own.status_code == 200
    assert [i["conv_id"] for i in client.get("/api/conversations", headers=bob).json()["items"]] == ["c-bob"]
    everyone = {i["conv_id"] for i in client.get("/api/conversations", headers=root).json()["items"]}
    assert everyone == {"c-alice", "c-bob"}


def test_a_socket_never_creates_a_conversation(client: TestClient, tokens: dict[str, str]) -> None:
    root = bearer(tokens, "root")
    for i in range(5):
        with client.websocket_connect(f"{WS}?conv_id=made-up-{i}", headers=root) as ws:
            assert ws.receive_json()["code"] == "unknown_conversation"
    assert client.get("/healthz").json()["live_conversations"] == 0
    assert client.get("/api/debug/conversations", headers=root).json()["items"] == []


def test_conversations_and_sockets_per_user_are_bounded(tmp_path: Path, tokens: dict[str, str]) -> None:
    with team_client(tmp_path / "data", max_conversations_per_user=2, max_sockets_per_user=1) as c:
        alice, bob = bearer(tokens, "alice"), bearer(tokens, "bob")
        assert c.post("/chat", json={"prompt": "1", "conv_id": "a1"}, headers=alice).status_code == 200
        assert c.post("/chat", json={"prompt": "2", "conv_id": "a2"}, headers=alice).status_code == 200
        third = c.post("/chat", json={"prompt": "3", "conv_id": "a3"}, headers=alice)
        assert error(third) == (429, "too_many_conversations")
        # Her live conversations still take prompts; bob has his own allowance.
        assert c.post("/chat", json={"prompt": "4", "conv_id": "a1"}, headers=alice).status_code in (200, 202)
        assert c.post("/chat", json={"prompt": "5", "conv_id": "b1"}, headers=bob).status_code == 200
        with c.websocket_connect(f"{WS}?conv_id=a1", headers=alice) as first:
            assert first.receive_json()["event"]["type"] == "ws.hello"
            with c.websocket_connect(f"{WS}?conv_id=a2", headers=alice) as second:
                assert second.receive_json() == {
                    "error": "1 sockets of yours are already open; close one first",
                    "code": "too_many_sockets",
                }
            with c.websocket_connect(f"{WS}?conv_id=b1", headers=bob) as other:
                assert other.receive_json()["event"]["type"] == "ws.hello"
        # Closing the socket gives the allowance back.
        with c.websocket_connect(f"{WS}?conv_id=a2", headers=alice) as again:
            assert again.receive_json()["event"]["type"] == "ws.hello"


def test_a_prompt_into_another_users_conversation(client: TestClient, tokens: dict[str, str]) -> None:
    alice, bob, root = bearer(tokens, "alice"), bearer(tokens, "bob"), bearer(tokens, "root")
    assert (
        client.post("/chat/fast", json={"prompt": "mine", "conv_id": "c-alice"}, headers=alice).status_code
        == 200
    )
    # A user is told it does not exist before anything else about the request is looked at.
    for body in (
        {"prompt": "steer", "conv_id": "c-alice"},
        {"prompt": "steer", "conv_id": "c-alice", "profile": "no-such-profile"},
    ):
        resp = client.post("/chat", json=body, headers=bob)
        assert resp.json() == {"error": "no conversation c-alice", "code": "unknown_conversation"}
        assert resp.status_code == 404
    # An admin may use every conversation.
    resp = client.post("/chat/fast", json={"prompt": "admin here", "conv_id": "c-alice"}, headers=root)
    assert resp.status_code in (200, 202), resp.text


def test_prompts_waiting_or_running_per_user_are_bounded(tmp_path: Path, tokens: dict[str, str]) -> None:
    # The slow turns are cancelled at the end: no grace period to wait out.
    with team_client(tmp_path / "data", max_prompts_per_user=2, shutdown_grace_s=0) as c:
        root, alice, bob = bearer(tokens, "root"), bearer(tokens, "alice"), bearer(tokens, "bob")
        slow = {"slug": "slow", "runtime": {"engine": "offline", "options": {"token_delay_ms": 10_000}}}
        assert c.post("/api/chat/profiles", json=slow, headers=root).status_code == 201

        def send(conv_id: str, key: str, who: dict[str, str]) -> Any:
            body = {"prompt": "a long one", "conv_id": conv_id, "profile": "slow", "idempotency_key": key}
            return c.post("/chat", json=body, headers=who)

        assert send("a1", "k1", alice).json()["status"] == "started"
        queued = send("a1", "k2", alice)
        assert queued.status_code == 202
        over = send("a2", "k3", alice)
        assert error(over) == (429, "too_many_prompts")
        assert "2 prompts of yours" in over.json()["error"]
        assert error(send("a1", "k4", alice)) == (429, "too_many_prompts")  # her running conversation too
        # A retry of an accepted prompt still gets its stored answer; the refusals stored nothing.
        assert send("a1", "k2", alice).json() == queued.json()
        assert [i["conv_id"] for i in c.get("/api/conversations", headers=alice).json()["items"]] == ["a1"]
        assert c.get("/healthz").json()["live_conversations"] == 1
        # The bound is per user: bob and the admin still send.
        assert send("b1", "k1", bob).status_code == 200
        assert send("r1", "k1", root).status_code == 200


def test_local_mode_bounds_its_one_user_too(tmp_path: Path) -> None:
    settings = {
        "max_prompts_per_user": 2,
        "max_conversations_per_user": 2,
        "max_sockets_per_user": 1,
        "shutdown_grace_s": 0,  # the slow turns are cancelled at the end: no grace period to wait out
    }
    app = create_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=8080, **settings))
    with TestClient(app, base_url=BASE) as c:
        slow = {"slug": "slow", "runtime": {"engine": "offline", "options": {"token_delay_ms": 10_000}}}
        assert c.post("/api/chat/profiles", json=slow).status_code == 201
        assert c.post("/chat/slow", json={"prompt": "one", "conv_id": "l1"}).status_code == 200
        assert c.post("/chat/slow", json={"prompt": "two", "conv_id": "l1"}).status_code == 202
        assert error(c.post("/chat/slow", json={"prompt": "three", "conv_id": "l2"})) == (
            429,
            "too_many_prompts",
        )
        with c.websocket_connect(f"{WS}?conv_id=l1") as first:
            assert first.receive_json()["event"]["type"] == "ws.hello"
            with c.websocket_connect(f"{WS}?conv_id=l1") as second:
                assert second.receive_json()["code"] == "too_many_sockets"


def test_live_conversations_per_user_are_bounded_in_local_mode(tmp_path: Path) -> None:
    app = create_app(
        Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=8080, max_conversations_per_user=2)
    )
    with TestClient(app, base_url=BASE) as c:
        for conv_id in ("l1", "l2"):
            assert c.post("/chat/fast", json={"prompt": "hi", "conv_id": conv_id}).status_code == 200
        assert error(c.post("/chat/fast", json={"prompt": "hi", "conv_id": "l3"})) == (
            429,
            "too_many_conversations",
        )


def test_profile_writes_name_only_allowed_key_variables(client: TestClient, tokens: dict[str, str]) -> None:
    root = bearer(tokens, "root")
    doc = {
        "slug": "leaky",
        "runtime": {
            "engine": "openai",
            "model": "m",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": "HOME",
        },
    }
    resp = client.post("/api/chat/profiles", json=doc, headers=root)
    assert error(resp) == (400, "api_key_env_not_allowed")
    assert "HOME" in resp.json()["error"] and "--provider-key-env" in resp.json()["error"]
    doc["runtime"]["api_key_env"] = "OPENAI_API_KEY"
    assert client.post("/api/chat/profiles", json=doc, headers=root).status_code == 201
    patch = {"expected_version": 1, "runtime": {"api_key_env": "PATH"}}
    assert error(client.patch("/api/chat/profiles/leaky", json=patch, headers=root)) == (
        400,
        "api_key_env_not_allowed",
    )


# -- pieces of the gate, on their own --------------------------------------------------------------------


def test_the_sign_in_redirect_keeps_the_page_and_its_query() -> None:
    def redirect(scope: dict[str, Any]) -> dict[str, str]:
        # body=None: a redirect reads no request body.
        sent = call(
            lambda sc, receive, send: _redirect_to_login(sc, receive, send, sc["path"]), scope, body=None
        )
        assert sent[0]["status"] == 303
        return {k.decode(): v.decode() for k, v in sent[0]["headers"]}

    plain = redirect({"type": "http", "method": "GET", "path": "/", "headers": []})
    assert plain["location"] == "/login?next=%2F"  # ASGI leaves query_string out when there is none
    query = {
        "type": "http",
        "method": "GET",
        "path": "/debug",
        "headers": [],
        "query_string": b"conv_id=a&x=1",
    }
    assert redirect(query)["location"] == "/login?next=%2Fdebug%3Fconv_id%3Da%26x%3D1"


def test_the_client_address_of_a_request_without_one_is_empty() -> None:
    assert _client_address(Request({"type": "http", "headers": []})) == ""
    assert (
        _client_address(Request({"type": "http", "headers": [], "client": ("10.1.2.3", 5000)})) == "10.1.2.3"
    )


def test_sign_in_attempts_are_counted_per_client_address(tmp_path: Path, tokens: dict[str, str]) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=8080, auth="required"))
    # One client runs the app's startup; the other sends from another address to the same running app.
    second = TestClient(app, base_url=BASE, client=("10.0.0.2", 1000))
    with TestClient(app, base_url=BASE, client=("10.0.0.1", 1000)) as first:
        for i in range(LOGIN_FAILURES_PER_ADDRESS):  # a different name each time: only the address adds up
            wrong = {"username": f"nobody{i}", "password": "wrong one"}
            assert error(first.post("/api/auth/login", json=wrong)) == (401, "invalid_credentials")
        wrong = {"username": "alice", "password": "wrong one"}
        assert error(first.post("/api/auth/login", json=wrong)) == (429, "too_many_attempts")
        assert error(second.post("/api/auth/login", json=wrong)) == (401, "invalid_credentials")


def test_a_failure_exactly_one_window_old_no_longer_counts() -> None:
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    throttle.failed("dave", "10.0.0.9")
    now[0] = 1100.0
    for _ in range(LOGIN_FAILURES_PER_USER):
        throttle.failed("dave", "10.0.0.9")
    now[0] = 1000.0 + LOGIN_WINDOW_S  # the first failure leaves the window; five from 1100 still count
    assert throttle.retry_after_s("dave", "10.0.0.8") == 101


def test_forgetting_an_unknown_credential_is_harmless() -> None:
    cache = CredentialCache(ttl_s=60)
    cache.forget("s:never-seen")
    assert cache.get("s:never-seen") == (False, None)


def test_the_throttle_forgets_everything_only_past_its_bound() -> None:
    throttle = LoginThrottle(clock=lambda: 1000.0)
    # CACHE_MAX - 1 usernames and one address: exactly CACHE_MAX counters, which is still within bounds.
    for i in range(CACHE_MAX - 1):
        throttle.failed(f"user{i}", "10.9.9.9")
    throttle.failed("user0", "10.9.9.9")
    assert throttle.retry_after_s("someone", "10.9.9.9") > 0  # the address's count was kept
    throttle.failed("one-more", "10.9.9.9")  # a new name: CACHE_MAX + 1 counters after this one
    assert throttle.retry_after_s("someone", "10.9.9.9") > 0
    throttle.failed("and-another", "10.9.9.9")  # past the bound: every count is dropped first
    assert throttle.retry_after_s("someone", "10.9.9.9") == 0


def test_a_session_is_looked_up_once_per_cache_period_with_the_idle_limit_in_ms(tmp_path: Path) -> None:
    store = SQLiteAuthStore(tmp_path / "auth.db", hasher=make_hasher(1, 8192, 1))
    try:
        user = store.add_user("carol", PASSWORD)
        secret = store.create_session(user.user_id)
        auth = Authenticator(Settings(data_dir=tmp_path, session_idle_s=90.0), store)
        calls: list[tuple[str, int]] = []
        real = store.principal_for_session

        def counted(secret: str, *, idle_timeout_ms: int) -> Any:
            calls.append((secret, idle_timeout_ms))
            return real(secret, idle_timeout_ms=idle_timeout_ms)

        store.principal_for_session = counted  # type: ignore[method-assign]
        first = asyncio.run(auth.by_session(secret))
        again = asyncio.run(auth.by_session(secret))
        assert first is not None and first.username == "carol" and again == first
        assert calls == [(secret, 90_000)]
        assert asyncio.run(auth.by_session("not-a-session")) is None
        assert asyncio.run(auth.by_session("not-a-session")) is None
        assert len(calls) == 2  # an unknown cookie is remembered too
        # Bearer tokens: the same, in a separate part of the cache.
        token = store.create_token("carol")[1]
        token_calls: list[str] = []
        real_token = store.principal_for_token

        def counted_token(secret: str) -> Any:
            token_calls.append(secret)
            return real_token(secret)

        store.principal_for_token = counted_token  # type: ignore[method-assign]
        by_token = asyncio.run(auth.by_token(token))
        assert by_token is not None and by_token.via == "token"
        assert asyncio.run(auth.by_token(token)) == by_token
        assert token_calls == [token]
        assert asyncio.run(auth.by_token(secret)) is None  # a session's secret is no bearer token
    finally:
        store.close()


def _debug_request(identity: Identity, debug_token: str = "", authorization: str = "") -> Request:
    class State:
        services = type("Svc", (), {"settings": Settings(data_dir="/nonexistent", debug_token=debug_token)})()

    app = type("App", (), {"state": State()})()
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "headers": headers, "app": app, "state": {"identity": identity}})


def test_the_debug_api_checks_who_the_gate_let_through() -> None:
    # Team mode: the gate compared the debug token already; admins pass, users are refused here too.
    require_token(_debug_request(DEBUG_TOKEN, debug_token="s3cret"))
    for via in ("token", "session"):
        require_token(_debug_request(Identity("u_1", "root", "admin", via), debug_token="s3cret"))
        with pytest.raises(ApiError) as refused:
            require_token(_debug_request(Identity("u_2", "alice", "user", via), debug_token="s3cret"))
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        assert refused.value.message == "the debug API is for admins only"
    # Local mode: the --debug-token bearer, when one is set.
    local = Identity("", "local", "admin", "local")
    require_token(_debug_request(local))
    require_token(_debug_request(local, debug_token="s3cret", authorization="Bearer s3cret"))
    with pytest.raises(ApiError) as refused:
        require_token(_debug_request(local, debug_token="s3cret", authorization="Bearer nope"))
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def _through_gate(gate_settings: Settings, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Call the gate directly; returns what it sent and the identities the inner app saw."""
    seen: list[Any] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["state"]["identity"])

    return call(AuthGate(inner, settings=gate_settings), scope), seen


def test_the_gate_gives_every_request_an_identity_even_without_a_state_dict() -> None:
    local = Settings(data_dir="/nonexistent", host="127.0.0.1", port=8080)
    sent, seen = _through_gate(
        local, {"type": "http", "method": "GET", "path": "/api/conversations", "headers": []}
    )
    assert sent == [] and seen == [LOCAL]


def test_a_team_server_that_has_not_finished_starting_answers_503() -> None:
    team = Settings(data_dir="/nonexistent", host="127.0.0.1", port=8080, auth="required")
    app = type("App", (), {"state": type("State", (), {})()})()
    scope = {"type": "http", "method": "GET", "path": "/api/conversations", "headers": [], "app": app}
    sent, seen = _through_gate(team, scope)
    assert seen == [] and sent[0]["status"] == 503
    assert json_body(sent) == {
        "error": "the server is starting; try again in a moment",
        "code": "starting",
    }


def test_each_refusal_of_the_gate_says_what_is_wrong(tmp_path: Path, tokens: dict[str, str]) -> None:
    with team_client(tmp_path / "data", debug_token="s3cret") as c:
        anonymous = c.get("/api/conversations")
        assert (anonymous.status_code, anonymous.json()) == (
            401,
            {"error": "sign in first (or send a bearer token)", "code": "unauthorized"},
        )
        for value in ("Bearer nope", "Bearer not a token"):  # the credential is all after "Bearer "
            bad = c.get("/api/conversations", headers={"Authorization": value})
            assert (bad.status_code, bad.json()) == (
                401,
                {
                    "error": "the bearer token is unknown, expired or revoked, or its user is disabled",
                    "code": "invalid_token",
                },
            )
        # Off the debug API the debug token is no credential at all (the gate compares it there only).
        debug_token = c.get("/api/conversations", headers={"Authorization": "Bearer s3cret"})
        assert (debug_token.status_code, debug_token.json()["code"]) == (401, "invalid_token")
        user = c.post("/api/chat/profiles", json={"slug": "x"}, headers=bearer(tokens, "alice"))
        assert (user.status_code, user.json()) == (
            403,
            {"error": "POST /api/chat/profiles is for admins only", "code": "forbidden"},
        )
        # A session cookie that names no session is no one: the same as no cookie.
        stale = c.get("/api/conversations", headers={"Cookie": "webchat_session=gone"})
        assert (stale.status_code, stale.json()["code"]) == (401, "unauthorized")
