"""Team mode in a real browser: sign in at /login, chat, sign out; another user's conversation, opened by
its URL, is refused without showing a word of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import open_probe
from tests.e2e.conftest import PASSWORDS, Server, add_user, start_server


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("team-browser") / "data"
    data.mkdir()
    for name in PASSWORDS:
        add_user(data, name, admin=name == "root")
    server = start_server(data, "--auth", "required")
    try:
        yield server
    finally:
        server.stop()


def sign_in(page: Any, base_url: str, name: str, path: str = "/") -> None:
    page.goto(base_url + path)
    # The chat page sends an anonymous visitor to the sign-in page, remembering where they were going.
    expect(page.get_by_test_id("login-form")).to_be_visible()
    page.get_by_test_id("login-username").fill(name)
    page.get_by_test_id("login-password").fill(PASSWORDS[name])
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("signed-in")).to_contain_text(name)


def test_sign_in_chat_and_sign_out(browser: Any, team_server: Server) -> None:
    context, probe = open_probe(browser, team_server.base_url)
    # The first visit's 401s (before signing in) are expected console noise; nothing else is.
    probe.allowed.append("401")
    try:
        page = probe.page
        page.goto(team_server.base_url + "/login")
        page.get_by_test_id("login-username").fill("alice")
        page.get_by_test_id("login-password").fill("not her password")
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("login-error")).to_contain_text("wrong username or password")
        probe.screenshot("login-error")

        sign_in(page, team_server.base_url, "alice")
        page.get_by_test_id("prompt").fill("Hello from alice")
        page.get_by_test_id("prompt").press("Enter")
        expect(page.locator("[data-role=user]")).to_have_count(1)
        expect(page.locator("[data-role=assistant]")).to_have_count(1)
        expect(page.locator(".streaming")).to_have_count(0)
        # The new conversation is in the URL and in the list once its first prompt was accepted.
        expect(page).to_have_url(re.compile(r"/\?conv=[0-9a-f-]{36}$"))
        expect(page.get_by_test_id("conversation-item")).to_have_count(1)
        probe.screenshot("signed-in-chat")

        page.get_by_test_id("sign-out").click()
        expect(page.get_by_test_id("login-form")).to_be_visible()
        # The session is over: the chat page sends the browser back to sign in.
        page.goto(team_server.base_url + "/")
        expect(page.get_by_test_id("login-form")).to_be_visible()
        assert probe.unexpected_errors() == []
    finally:
        context.close()


def test_another_users_conversation_by_url_is_refused(browser: Any, team_server: Server) -> None:
    # Bob starts a conversation through the API with his own session.
    with httpx.Client(base_url=team_server.base_url, timeout=30) as bob:
        assert (
            bob.post("/api/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]}).status_code
            == 200
        )
        conv = bob.post("/chat", json={"prompt": "bob's private words"}).json()["conv_id"]
    context, probe = open_probe(browser, team_server.base_url)
    probe.allowed.extend(["401", "404"])
    try:
        page = probe.page
        # Alice follows a link to it: she signs in and lands on the URL she asked for.
        sign_in(page, team_server.base_url, "alice", f"/?conv={conv}")
        assert f"conv={conv}" in page.url
        expect(page.get_by_test_id("notice")).to_contain_text("does not exist, or it is not yours")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-status", "missing")
        expect(page.locator("[data-role=user]")).to_have_count(0)
        assert "bob's private words" not in page.content()
        probe.screenshot("someone-elses-conversation")
        assert probe.unexpected_errors() == []
    finally:
        context.close()
