"""Keyboard-only use, phone width, dark theme and the help pages."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import PageProbe, chat, open_probe, wait_final_turns
from tests.e2e.conftest import Server


def active(page: Any) -> dict[str, str]:
    info: dict[str, str] = page.evaluate(
        "() => ({tag: document.activeElement.tagName, id: document.activeElement.id,"
        " testid: document.activeElement.dataset.testid || ''})"
    )
    return info


def test_keyboard_only_send(probe: PageProbe, web_server: Server) -> None:
    page = probe.page
    page.goto(web_server.base_url + "/")
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    # The first Tab reaches the skip link; Enter jumps to the message box.
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("prompt")).to_be_focused()

    # Tab onwards: past the (disabled) Send button to the runtime selector; arrows change it.
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("runtime-select")).to_be_focused()
    # The options arrive from /api/chat/profiles: wait for them before using the arrows.
    expect(page.get_by_test_id("runtime-select")).to_have_value("builtin/default")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_test_id("runtime-select")).to_have_value("builtin/fast")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_test_id("prompt")).to_be_focused()

    # Shift+Enter adds a line, Enter sends.
    page.keyboard.type("First line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    page.keyboard.press("Enter")
    user = page.locator("[data-role=user]")
    expect(user).to_have_count(1)
    assert user.locator(".user-text").inner_text() == "First line\nsecond line"
    expect(page.locator("[data-role=assistant]")).to_have_count(1)
    expect(page.locator(".streaming")).to_have_count(0)
    expect(page.get_by_test_id("runtime-badge")).to_have_attribute("data-runtime", "fast")
    # Focus stays in the message box, ready for the next prompt.
    expect(page.get_by_test_id("prompt")).to_be_focused()

    # The runtime badge opens with the keyboard and closes with Escape.
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_test_id("runtime-badge")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("badge-details")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("badge-details")).to_have_count(0)

    # New conversation by keyboard: Tab order from the top reaches the button.
    page.keyboard.press("Control+Home")
    page.locator("body").focus()
    for _ in range(6):
        page.keyboard.press("Tab")
        if active(page)["testid"] == "new-conversation":
            break
    expect(page.get_by_test_id("new-conversation")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    expect(page.get_by_test_id("prompt")).to_be_focused()
    assert page.url == web_server.base_url + "/"


def test_narrow_viewport_phone(browser: Any, web_server: Server) -> None:
    base = web_server.base_url
    conv_id = chat(base, "Plan a picnic for six people", profile="planner")["conv_id"]
    wait_final_turns(base, conv_id, 1)
    chat(base, "compute 12 * 7", conv_id=conv_id, profile="default")
    wait_final_turns(base, conv_id, 2)

    context, probe = open_probe(browser, base, viewport={"width": 390, "height": 844}, has_touch=True)
    try:
        page = probe.page
        page.goto(f"{base}/?conv={conv_id}")
        expect(page.locator("[data-role=assistant]")).to_have_count(3)
        expect(page.locator(".streaming")).to_have_count(0)
        # Nothing is wider than the screen; the list is tucked away behind a button.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        expect(page.get_by_test_id("conversation-list")).to_be_hidden()
        for box in page.get_by_test_id("runtime-badge").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().right)"
        ):
            assert box <= 390
        expect(page.get_by_test_id("prompt")).to_be_visible()
        expect(page.get_by_test_id("runtime-select")).to_be_visible()
        probe.screenshot("mobile-chat")

        page.get_by_role("button", name="Show conversations").click()
        expect(page.get_by_test_id("conversation-list")).to_be_visible()
        expect(page.locator(f"[data-testid=conversation-item][data-conv='{conv_id}']")).to_be_visible()
        probe.screenshot("mobile-conversations")
        page.get_by_role("button", name="Close the list").click()
        expect(page.get_by_test_id("conversation-list")).to_be_hidden()

        # Chatting works at this width too.
        page.get_by_test_id("prompt").fill("thanks")
        page.get_by_test_id("send").click()
        expect(page.locator("[data-role=assistant]")).to_have_count(4)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert not probe.unexpected_errors(), probe.errors
    finally:
        context.close()


def test_dark_theme_follows_the_system(browser: Any, web_server: Server) -> None:
    context, probe = open_probe(browser, web_server.base_url, color_scheme="dark")
    try:
        page = probe.page
        page.goto(web_server.base_url + "/")
        expect(page.get_by_test_id("empty-state")).to_be_visible()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(22, 24, 28)", background
        page.get_by_test_id("prompt").fill("Hello in the dark")
        page.get_by_test_id("prompt").press("Enter")
        expect(page.locator("[data-role=assistant]")).to_have_count(1)
        expect(page.locator(".streaming")).to_have_count(0)
        probe.screenshot("chat-dark")
        assert not probe.unexpected_errors(), probe.errors
    finally:
        context.close()


def test_help_search_finds_the_migration_playbook(probe: PageProbe, web_server: Server) -> None:
    page = probe.page
    page.goto(web_server.base_url + "/help")
    expect(page.get_by_role("heading", name="web-chat help")).to_be_visible()
    search = page.get_by_label("Search help")
    search.fill("migration playbook")
    search.press("Enter")
    link = page.locator("a[href='/help/webchat-runtime-truth-migration-playbook']")
    expect(link).to_be_visible()
    expect(link).to_have_text("Runtime truth migration playbook")
    probe.screenshot("help-search")
    link.click()
    expect(page).to_have_url(web_server.base_url + "/help/webchat-runtime-truth-migration-playbook")
    expect(page.get_by_role("heading", name="Purpose")).to_be_visible()
    expect(page.locator("body")).to_contain_text("web-chat db migrate")
    # The chat page is one click away.
    page.get_by_role("link", name="Chat", exact=True).click()
    expect(page.get_by_test_id("prompt")).to_be_visible()
