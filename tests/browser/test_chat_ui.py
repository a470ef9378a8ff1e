"""The chat page in a real browser: runtime switches, per-message runtime badges, reload, queue, errors."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import (
    LEGACY_CONV,
    LEGACY_POINTER,
    PageProbe,
    wait_final_turns,
)
from tests.e2e.conftest import Server

CONV_URL = re.compile(r"/\?conv=([0-9a-f-]{36})$")


def send(page: Any, text: str) -> None:
    box = page.get_by_test_id("prompt")
    box.fill(text)
    box.press("Enter")


def wait_idle(page: Any, assistants: int) -> None:
    """``assistants`` assistant messages are shown and none is still streaming."""
    expect(page.locator("[data-role=assistant]")).to_have_count(assistants)
    expect(page.locator(".streaming")).to_have_count(0)


def transcript(page: Any) -> list[dict[str, str]]:
    """What a reader sees, message by message: role, runtime badge and text."""
    rows: list[dict[str, str]] = page.locator("[data-testid=message]").evaluate_all(
        """els => els.map(e => ({
            role: e.dataset.role,
            entity: e.dataset.entity,
            runtime: e.dataset.role === 'assistant' ? e.querySelector('.rt-badge').dataset.runtime : '',
            badge: e.dataset.role === 'assistant' ? e.querySelector('.rt-badge').innerText : '',
            text: (e.querySelector('.md, .user-text') || e).innerText,
        }))"""
    )
    return rows


def badge_runtimes(page: Any) -> list[str]:
    runtimes: list[str] = page.get_by_test_id("runtime-badge").evaluate_all(
        "els => els.map(e => e.dataset.runtime)"
    )
    return runtimes


def markers(page: Any) -> list[tuple[str, str]]:
    pairs: list[list[str]] = page.get_by_test_id("switch-marker").evaluate_all(
        "els => els.map(e => [e.dataset.from, e.dataset.to])"
    )
    return [(a, b) for a, b in pairs]


def test_multi_turn_runtime_switch_badges_and_reload(probe: PageProbe, web_server: Server) -> None:
    page = probe.page
    page.goto(web_server.base_url + "/")
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    select = page.get_by_test_id("runtime-select")
    expect(select).to_have_value("builtin/default")

    send(page, "Hello from the browser")
    expect(page).to_have_url(CONV_URL)
    conv_id = CONV_URL.search(page.url).group(1)  # type: ignore[union-attr]
    expect(page.locator("[data-role=assistant]").first).to_contain_text("[default] Hello!")
    wait_idle(page, 1)

    # Switch THIS conversation to planner for the next prompt (a tool call follows).
    select.select_option("builtin/planner")
    expect(page.get_by_test_id("switch-hint")).to_contain_text("default")
    send(page, "compute (17 + 4) * 23")
    expect(page.get_by_test_id("tool-card")).to_contain_text("483")
    expect(page.locator("[data-role=assistant]").last).to_contain_text("(17 + 4) * 23 = 483")
    wait_idle(page, 3)

    select.select_option("builtin/fast")
    send(page, "What did I say earlier?")
    expect(page.locator("[data-role=assistant]").last).to_contain_text("Earlier you said")
    wait_idle(page, 4)

    # Every answer is labelled with the runtime that produced it, and the switches are marked.
    assert badge_runtimes(page) == ["default", "planner", "planner", "fast"]
    assert markers(page) == [("default", "planner"), ("planner", "fast")]
    expect(page.get_by_test_id("pointer")).to_have_text("fast")
    # The history went along to the new runtime.
    last = page.locator("[data-role=assistant]").last
    expect(last).to_contain_text("Hello from the browser")
    expect(last).to_contain_text("compute (17 + 4) * 23")

    # The badges agree with the per-turn truth in the turn store, and the model that served them.
    finals = wait_final_turns(web_server.base_url, conv_id, 3)
    truth = {t["turn_id"]: (t["runtime_key"], t["inference_id"]) for t in finals}
    for row in transcript(page):
        if row["role"] == "assistant":
            turn_id = row["entity"].split(":")[0]
            assert row["runtime"] == truth[turn_id][0], row
            assert f"offline-{row['runtime']}" in row["badge"], row
    # Inference id on click.
    page.get_by_test_id("runtime-badge").last.click()
    details = page.get_by_test_id("badge-details")
    last_turn = page.locator("[data-role=assistant]").last.get_attribute("data-entity").split(":")[0]
    expect(details).to_contain_text(truth[last_turn][1])
    expect(details).to_contain_text("offline-fast")
    page.get_by_test_id("runtime-badge").last.click()
    expect(details).to_have_count(0)

    # The conversation list: most recent first, titled by the first prompt.
    first_item = page.get_by_test_id("conversation-item").first
    expect(first_item).to_have_attribute("data-conv", conv_id)
    expect(first_item).to_contain_text("Hello from the browser")
    probe.screenshot("chat")

    # Reload: hydration gives the same transcript.
    before = transcript(page)
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-status", "live")
    wait_idle(page, 4)
    assert transcript(page) == before
    assert markers(page) == [("default", "planner"), ("planner", "fast")]
    expect(page.get_by_test_id("runtime-select")).to_have_value("builtin/fast")

    # Opening it from a fresh page (a shared link) gives the same again.
    other = page.context.new_page()
    other.goto(f"{web_server.base_url}/?conv={conv_id}")
    expect(other.locator("[data-role=assistant]")).to_have_count(4)
    expect(other.locator(".streaming")).to_have_count(0)
    assert transcript(other) == before
    other.close()


def test_queued_prompt_is_shown_as_queued(probe: PageProbe, web_server: Server) -> None:
    page = probe.page
    page.goto(web_server.base_url + "/")
    long_prompt = " ".join(f"word{i}" for i in range(70))
    send(page, long_prompt)
    expect(page.locator("[data-role=assistant]")).to_have_count(1)
    send(page, "and this one waits")
    expect(page.get_by_test_id("notice")).to_contain_text("Queued (position")
    expect(page.get_by_test_id("queued")).to_be_visible()
    expect(page.get_by_test_id("queued")).to_contain_text("default")
    # Once its turn runs it is no longer marked queued, and both are answered.
    wait_idle(page, 2)
    expect(page.get_by_test_id("queued")).to_have_count(0)
    expect(page.locator("[data-role=assistant]").last).to_contain_text("and this one waits")


def test_failed_answer_shows_error_in_place_with_retry(probe: PageProbe, web_server: Server) -> None:
    page = probe.page
    page.goto(web_server.base_url + "/")
    page.get_by_test_id("runtime-select").select_option("builtin/fast")
    send(page, "please [[fail]] now")
    error = page.get_by_test_id("message-error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("engine_failed")
    # What streamed before the failure stays, labelled with its runtime.
    assert badge_runtimes(page) == ["fast"]
    page.get_by_test_id("retry").click()
    expect(page.locator("[data-role=user]")).to_have_count(2)
    expect(page.get_by_test_id("message-error")).to_have_count(2)
    expect(page.locator("[data-role=user]").last).to_contain_text("please [[fail]] now")
    probe.screenshot("chat-error-retry")


def test_unknown_runtime_history_never_shows_the_pointer(probe: PageProbe, web_server: Server) -> None:
    page = probe.page
    page.goto(f"{web_server.base_url}/?conv={LEGACY_CONV}")
    expect(page.locator("[data-role=assistant]")).to_have_count(2)
    badges = page.get_by_test_id("runtime-badge")
    expect(badges.first).to_have_text("unknown runtime")
    expect(badges.first).to_have_attribute("data-runtime", "")
    expect(badges.nth(1)).to_contain_text("fast")
    assert markers(page) == [("", "fast")]
    expect(page.get_by_test_id("switch-marker")).to_contain_text("unknown runtime")
    # The pointer (planner) is only what the next prompt would use; no answer claims it.
    expect(page.get_by_test_id("pointer")).to_have_text(LEGACY_POINTER)
    assert LEGACY_POINTER not in badge_runtimes(page)
    expect(page.get_by_test_id("runtime-select")).to_have_value(f"builtin/{LEGACY_POINTER}")

    # The stored Markdown is rendered safely: code block with copy, no HTML from the text.
    first = page.locator("[data-role=assistant]").first
    expect(first.locator(".code-block code.language-python")).to_have_text("print('hello <world>')")
    expect(first.locator("strong")).to_have_text("bold")
    expect(first.locator("img")).to_have_count(0)
    expect(first.locator("a")).to_have_count(0)
    expect(first).to_contain_text("<img src=x")
    first.locator("button.copy-code").click()
    expect(first.locator("button.copy-code")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "print('hello <world>')"
    assert page.title() == "web-chat"
    probe.screenshot("chat-unknown-runtime")
