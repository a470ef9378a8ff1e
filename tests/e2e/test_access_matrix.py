"""security.md's access matrix, walked against a real team-mode server: ``web-chat serve --host 0.0.0.0``
(all traffic to 127.0.0.1) with an admin and two users made by the real ``web-chat users`` / ``tokens``
commands. Each attack found against earlier builds is replayed and shown refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e.conftest import PASSWORDS, Server, add_user, cli, free_port, new_token, start_server


class Team:
    """The server and a client per role: anonymous, alice and bob (bearer tokens), root (admin)."""

    def __init__(self, server: Server, tokens: dict[str, str]) -> None:
        self.server = server
        self.tokens = tokens
        self.anon = httpx.Client(base_url=server.base_url, timeout=30)
        self.as_ = {
            name: httpx.Client(
                base_url=server.base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}
            )
            for name, token in tokens.items()
        }

    def chat(self, who: str, prompt: str = "hello", conv_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": prompt}
        if conv_id:
            body["conv_id"] = conv_id
        resp = self.as_[who].post("/chat", json=body)
        assert resp.status_code in (200, 202), resp.text
        result: dict[str, Any] = resp.json()
        return result

    def close(self) -> None:
        self.anon.close()
        for c in self.as_.values():
            c.close()


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    data = tmp_path_factory.mktemp("team") / "data"
    data.mkdir()
    add_user(data, "root", admin=True)
    add_user(data, "alice")
    add_user(data, "bob")
    tokens = {name: new_token(data, name) for name in ("root", "alice", "bob")}
    server = start_server(data, "--host", "0.0.0.0", "--debug-api", "--debug-token", "debug-secret")
    t = Team(server, tokens)
    try:
        yield t
    finally:
        t.close()
        server.stop()


def code(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json().get("code", "") if resp.headers.get("content-type", "").startswith(
        "application/json"
    ) else ""


def ws_first_message(team: Team, who: str | None, conv_id: str, **headers: str) -> dict[str, Any]:
    if who is not None:
        headers["Authorization"] = f"Bearer {team.tokens[who]}"
    url = f"{team.server.ws_url}/ws?conv_id={conv_id}"
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        message: dict[str, Any] = json.loads(ws.recv(timeout=10))
        return message


# -- open routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/healthz", "/login", "/static/js/chat.js", "/help", "/api/help", "/api/help/webchat-security"]
)
def test_open_routes_answer_everyone(team: Team, path: str) -> None:
    for client in (team.anon, team.as_["alice"], team.as_["root"]):
        assert client.get(path).status_code == 200, (path, client.headers.get("authorization"))


def test_an_anonymous_browser_is_sent_to_sign_in_and_an_api_client_gets_401(team: Team) -> None:
    page = team.anon.get("/?conv=abc")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2F%3Fconv%3Dabc"
    assert team.as_["alice"].get("/").status_code == 200
    for method, path in [
        ("GET", "/api/conversations"),
        ("GET", "/api/timeline?conv_id=x"),
        ("GET", "/api/chat/profiles"),
        ("GET", "/api/chat/profiles/default"),
        ("GET", "/api/chat/profile"),
        ("GET", "/api/auth/me"),
        ("GET", "/api/debug/conversations"),
    ]:
        assert code(team.anon.request(method, path)) == (401, "unauthorized"), path
    assert code(team.anon.post("/chat", json={"prompt": "hi"})) == (401, "unauthorized")
    assert code(team.anon.post("/api/chat/profile", json={"profile": "fast"})) == (
        401,
        "unauthorized",
    )
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{team.server.ws_url}/ws?conv_id=x", open_timeout=10)
    assert refused.value.response.status_code == 401


def test_an_unknown_or_revoked_bearer_token_is_401_invalid_token(team: Team) -> None:
    bogus = {"Authorization": "Bearer wct_not-a-token"}
    assert code(team.anon.get("/api/conversations", headers=bogus)) == (401, "invalid_token")
    # The scheme is case-insensitive.
    lower = {"Authorization": f"bearer {team.tokens['alice']}"}
    assert team.anon.get("/api/conversations", headers=lower).status_code == 200


def test_me_says_who_and_which_mode(team: Team) -> None:
    assert team.as_["alice"].get("/api/auth/me").json() == {
        "username": "alice",
        "role": "user",
        "mode": "team",
    }
    assert team.as_["root"].get("/api/auth/me").json() == {
        "username": "root",
        "role": "admin",
        "mode": "team",
    }


# -- conversations: own only, another user's is a 404 ------------------------------------------------


def test_a_user_reads_and_steers_only_their_own_conversations(team: Team) -> None:
    alice = team.chat("alice", "alice's secret plan")
    conv = alice["conv_id"]
    bob = team.as_["bob"]
    # Bob cannot see it, read it, post into it, or join its socket: each answers as if it did not exist.
    assert conv not in [i["conv_id"] for i in bob.get("/api/conversations").json()["items"]]
    assert code(bob.get("/api/timeline", params={"conv_id": conv})) == (404, "unknown_conversation")
    steer = bob.post("/chat", json={"prompt": "now tell me", "conv_id": conv, "profile": "fast"})
    assert code(steer) == (404, "unknown_conversation")
    assert ws_first_message(team, "bob", conv) == {
        "error": f"no conversation {conv}",
        "code": "unknown_conversation",
    }
    # A conversation that does not exist answers exactly the same.
    assert code(bob.get("/api/timeline", params={"conv_id": "no-such-conv"})) == (404, "unknown_conversation")
    assert ws_first_message(team, "bob", "no-such-conv")["code"] == "unknown_conversation"
    # Alice sees hers; the admin sees everyone's.
    assert conv in [i["conv_id"] for i in team.as_["alice"].get("/api/conversations").json()["items"]]
    assert conv in [i["conv_id"] for i in team.as_["root"].get("/api/conversations").json()["items"]]
    hello = ws_first_message(team, "alice", conv)
    assert hello["event"]["type"] == "ws.hello"
    assert ws_first_message(team, "root", conv)["event"]["type"] == "ws.hello"
    root_view = team.as_["root"].get("/api/timeline", params={"conv_id": conv})
    assert root_view.status_code == 200
    # Bob's attempt changed nothing: only alice's prompt is in the conversation.
    assert _user_messages(team, conv) == ["alice's secret plan"]
    # The admin may post into it (the matrix's "all").
    team.chat("root", "admin note", conv_id=conv)
    assert _wait_user_messages(team, conv, 2) == ["alice's secret plan", "admin note"]


def _user_messages(team: Team, conv: str) -> list[str]:
    doc = team.as_["root"].get("/api/timeline", params={"conv_id": conv}).json()
    return [e["props"]["content"] for e in doc["entities"] if e["props"].get("role") == "user"]


def _wait_user_messages(team: Team, conv: str, n: int) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = _user_messages(team, conv)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError(f"saw {_user_messages(team, conv)}")


def test_a_socket_to_a_made_up_conversation_creates_nothing(team: Team) -> None:
    root = team.as_["root"]
    before = len(root.get("/api/debug/conversations").json()["items"])
    for i in range(20):
        assert ws_first_message(team, "alice", f"made-up-{i}")["code"] == "unknown_conversation"
    assert len(root.get("/api/debug/conversations").json()["items"]) == before


def test_idempotency_keys_are_per_user(team: Team) -> None:
    key = {"Idempotency-Key": "same-key-two-users"}
    a = team.as_["alice"].post("/chat", json={"prompt": "one"}, headers=key)
    b = team.as_["bob"].post("/chat", json={"prompt": "two"}, headers=key)
    assert a.status_code == 200 and b.status_code == 200
    assert a.json()["conv_id"] != b.json()["conv_id"]


# -- profiles and the debug API ----------------------------------------------------------------------


def test_users_read_profiles_and_only_admins_write_them(team: Team) -> None:
    alice, root = team.as_["alice"], team.as_["root"]
    assert alice.get("/api/chat/profiles").status_code == 200
    assert alice.get("/api/chat/profiles/default").status_code == 200
    assert alice.post("/api/chat/profile", json={"profile": "fast"}).status_code == 200
    doc = {"slug": "team-bot", "runtime": {"engine": "offline", "model": "echo"}}
    assert code(alice.post("/api/chat/profiles", json=doc)) == (403, "forbidden")
    made = root.post("/api/chat/profiles", json=doc)
    assert made.status_code == 201, made.text
    patch = {"expected_version": 1, "description": "x"}
    assert code(alice.patch("/api/chat/profiles/team-bot", json=patch)) == (403, "forbidden")
    assert code(alice.delete("/api/chat/profiles/team-bot", params={"expected_version": 1})) == (
        403,
        "forbidden",
    )
    assert root.patch("/api/chat/profiles/team-bot", json=patch).status_code == 200
    assert root.delete("/api/chat/profiles/team-bot", params={"expected_version": 2}).status_code == 200


def test_the_debug_api_is_for_admins_and_the_debug_token(team: Team) -> None:
    assert code(team.as_["alice"].get("/api/debug/conversations")) == (403, "forbidden")
    assert code(team.as_["alice"].get("/debug")) == (403, "forbidden")
    assert team.as_["root"].get("/api/debug/conversations").status_code == 200
    token = {"Authorization": "Bearer debug-secret"}
    assert team.anon.get("/api/debug/conversations", headers=token).status_code == 200
    # The debug token opens the debug API only.
    assert code(team.anon.get("/api/conversations", headers=token)) == (401, "invalid_token")


# -- attacks found against earlier builds --------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        _Recorder.seen.append(dict(self.headers))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_profile_cannot_send_another_variable_to_a_foreign_server(team: Team) -> None:
    """The key-theft attack: a profile whose base_url is the attacker's server and whose api_key_env names
    a variable of the operator's. A user may not create profiles at all; an admin may not name a variable
    off the allow-list either."""
    port = free_port()
    recorder = HTTPServer(("127.0.0.1", port), _Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    try:
        for variable in ("WEBCHAT_DEBUG_TOKEN", "HOME", "PATH"):
            doc = {
                "slug": f"steal-{variable.lower()}",
                "runtime": {
                    "engine": "openai",
                    "model": "gpt-x",
                    "base_url": f"http://127.0.0.1:{port}/v1",
                    "api_key_env": variable,
                },
            }
            assert code(team.as_["alice"].post("/api/chat/profiles", json=doc)) == (403, "forbidden")
            assert code(team.as_["root"].post("/api/chat/profiles", json=doc)) == (
                400,
                "api_key_env_not_allowed",
            )
        # Nothing was created, so there is nothing to chat with.
        names = [p["slug"] for p in team.as_["root"].get("/api/chat/profiles").json()]
        assert not [n for n in names if n.startswith("steal-")]
    finally:
        recorder.shutdown()
    assert _Recorder.seen == []


def test_forged_host_foreign_origin_and_text_plain_are_refused(team: Team) -> None:
    alice = team.as_["alice"]
    assert code(alice.get("/api/conversations", headers={"Host": "evil.example"})) == (400, "invalid_host")
    plain = alice.post("/chat", content=b'{"prompt": "hi"}', headers={"Content-Type": "text/plain"})
    assert code(plain) == (415, "unsupported_media_type")
    conv = team.chat("alice", "origin test")["conv_id"]
    with pytest.raises(InvalidStatus) as refused:
        connect(
            f"{team.server.ws_url}/ws?conv_id={conv}",
            additional_headers={
                "Authorization": f"Bearer {team.tokens['alice']}",
                "Origin": "http://evil.example",
            },
            open_timeout=10,
        )
    assert refused.value.response.status_code == 403


# -- sign-in, sessions, disabling ----------------------------------------------------------------------


def test_browser_sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session(team: Team) -> None:
    with httpx.Client(base_url=team.server.base_url, timeout=30) as browser:
        wrong = browser.post("/api/auth/login", json={"username": "bob", "password": "nope-nope"})
        assert code(wrong) == (401, "invalid_credentials")
        ok = browser.post("/api/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert ok.status_code == 200
        assert ok.json() == {"username": "bob", "role": "user", "mode": "team"}
        cookie = ok.headers["set-cookie"].lower()
        assert "webchat_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie  # plain http here; https sets Secure
        assert browser.get("/api/auth/me").json()["username"] == "bob"
        session = browser.cookies["webchat_session"]
        assert browser.post("/api/auth/logout", json={}).status_code == 200
    # The session ended server-side: the old cookie value no longer works anywhere.
    gone = httpx.get(f"{team.server.base_url}/api/auth/me", cookies={"webchat_session": session}, timeout=30)
    assert code(gone) == (401, "unauthorized")


def test_failed_sign_ins_are_rate_limited(team: Team) -> None:
    for _ in range(5):
        bad = team.anon.post("/api/auth/login", json={"username": "carol", "password": "wrong-password"})
        assert code(bad) == (401, "invalid_credentials")
    limited = team.anon.post("/api/auth/login", json={"username": "carol", "password": "wrong-password"})
    assert code(limited) == (429, "too_many_attempts")
    assert int(limited.headers["retry-after"]) >= 1


def _until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("the change did not take effect in time")


def test_a_disabled_user_and_a_revoked_token_are_refused_on_their_next_requests(team: Team) -> None:
    data = team.server.data_dir
    token = new_token(data, "bob")
    client = httpx.Client(
        base_url=team.server.base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )
    with client:
        assert client.get("/api/conversations").status_code == 200
        listed = json.loads(
            cli(data, "tokens", "list", "bob", "--output", "json", "--data-dir", str(data)).stdout
        )
        token_id = max(listed, key=lambda t: t["created_at_ms"])["token_id"]
        assert cli(data, "tokens", "revoke", token_id, "--data-dir", str(data)).returncode == 0
        _until(lambda: client.get("/api/conversations").status_code == 401)
        assert cli(data, "users", "disable", "bob", "--data-dir", str(data)).returncode == 0
        _until(lambda: team.as_["bob"].get("/api/conversations").status_code == 401)
        assert cli(data, "users", "enable", "bob", "--data-dir", str(data)).returncode == 0
        _until(lambda: team.as_["bob"].get("/api/conversations").status_code == 200)


# -- modes ---------------------------------------------------------------------------------------------


def test_team_mode_refuses_to_start_without_an_admin_and_empty_host_is_team_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for host in ("0.0.0.0", ""):
        done = subprocess.run(
            [sys.executable, "-m", "webchat", "serve", "--host", host, "--port", str(free_port())],
            capture_output=True,
            text=True,
            env=dict(os.environ, WEBCHAT_DATA_DIR=str(data)),
            timeout=60,
        )
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "web-chat users add NAME --admin" in lines[0], done.stderr
    local = subprocess.run(
        [sys.executable, "-m", "webchat", "serve", "--host", "0.0.0.0", "--auth", "local"],
        capture_output=True,
        text=True,
        env=dict(os.environ, WEBCHAT_DATA_DIR=str(data)),
        timeout=60,
    )
    assert local.returncode == 2 and "--auth local" in local.stderr


def test_empty_host_serves_the_debug_api_to_admins_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    add_user(data, "root", admin=True)
    server = start_server(data, "--host", "", "--debug-api")
    try:
        assert code(httpx.get(f"{server.base_url}/api/debug/conversations", timeout=30)) == (
            401,
            "unauthorized",
        )
        assert httpx.get(f"{server.base_url}/api/auth/me", timeout=30).status_code == 401
    finally:
        server.stop()


def test_conversations_from_before_users_belong_to_the_first_admin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    local = start_server(data)
    try:
        resp = httpx.post(f"{local.base_url}/chat", json={"prompt": "from local mode"}, timeout=30)
        conv = resp.json()["conv_id"]
        me = httpx.get(f"{local.base_url}/api/auth/me", timeout=30).json()
        assert me == {"username": "local", "role": "admin", "mode": "local"}
    finally:
        local.stop()
    add_user(data, "root", admin=True)
    add_user(data, "alice")
    tokens = {"root": new_token(data, "root"), "alice": new_token(data, "alice")}
    server = start_server(data, "--auth", "required")
    try:
        team = Team(server, tokens)
        assert code(team.as_["alice"].get("/api/timeline", params={"conv_id": conv})) == (
            404,
            "unknown_conversation",
        )
        assert team.as_["root"].get("/api/timeline", params={"conv_id": conv}).status_code == 200
        listed = [i["conv_id"] for i in team.as_["root"].get("/api/conversations").json()["items"]]
        assert conv in listed
        team.close()
    finally:
        server.stop()


def test_a_session_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    add_user(data, "root", admin=True)
    server = start_server(data, "--auth", "required")
    try:
        login = httpx.post(
            f"{server.base_url}/api/auth/login",
            json={"username": "root", "password": PASSWORDS["root"]},
            timeout=30,
        )
        session = login.cookies["webchat_session"]
    finally:
        server.stop()
    again = start_server(data, "--auth", "required")
    try:
        me = httpx.get(f"{again.base_url}/api/auth/me", cookies={"webchat_session": session}, timeout=30)
        assert me.status_code == 200 and me.json()["username"] == "root"
    finally:
        again.stop()
