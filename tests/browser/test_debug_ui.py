"""The debug inspector in a real browser, and the UI with the debug API switched off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    LEGACY_CONV_IDLE,
    LEGACY_POINTER,
    PageProbe,
    chat,
    open_probe,
    wait_final_turns,
)
from tests.e2e.conftest import Server, start_server


def data_list(locator: Any, attribute: str) -> list[str]:
    values: list[str] = locator.evaluate_all(f"els => els.map(e => e.getAttribute('{attribute}'))")
    return values


@pytest.fixture(scope="module")
def three_runtimes(web_server: Server) -> dict[str, Any]:
    """A conversation of three turns: default, planner (with a calculator round trip), fast."""
    base = web_server.base_url
    conv_id = chat(base, "Hello, inspector", profile="default")["conv_id"]
    wait_final_turns(base, conv_id, 1)
    chat(base, "compute 6 * 7", conv_id=conv_id, profile="planner")
    wait_final_turns(base, conv_id, 2)
    chat(base, "bye", conv_id=conv_id, profile="fast")
    finals = wait_final_turns(base, conv_id, 3)
    turns = sorted(finals, key=lambda t: t["created_at_ms"])
    return {"conv_id": conv_id, "turns": turns}


def test_debug_inspector_runtime_per_turn_and_phase_diff(
    probe: PageProbe, web_server: Server, three_runtimes: dict[str, Any]
) -> None:
    page = probe.page
    base = web_server.base_url
    conv_id = three_runtimes["conv_id"]
    turns = three_runtimes["turns"]
    page.goto(f"{base}/debug")
    row = page.locator(f"tr[data-conv='{conv_id}']")
    expect(row).to_contain_text("fast")  # the pointer
    expect(row).to_contain_text("merged")
    row.get_by_test_id("debug-conv").click()

    # Runtime history strip and turn list: the runtime of every turn, from the turn rows.
    segments = page.get_by_test_id("strip-segment")
    expect(segments).to_have_count(3)
    assert data_list(segments, "data-runtime") == ["default", "planner", "fast"]
    rows = page.get_by_test_id("turn-row")
    expect(rows).to_have_count(3)
    assert data_list(rows, "data-runtime") == ["default", "planner", "fast"]
    assert data_list(rows, "data-turn") == [t["turn_id"] for t in turns]
    expect(page.get_by_test_id("detail-pointer")).to_have_text("fast")

    # Inspect the planner turn: provenance, phases, raw views and the diff between phases.
    planner = turns[1]
    rows.nth(1).get_by_test_id("turn-open").click()
    inspector = page.get_by_test_id("turn-inspector")
    expect(inspector.get_by_test_id("turn-runtime")).to_have_text("planner")
    expect(inspector.get_by_test_id("provenance")).to_contain_text(planner["inference_id"])
    expect(inspector.get_by_test_id("requested-model")).to_have_text("offline")
    expect(inspector.get_by_test_id("served-model")).to_contain_text("offline-planner")
    tabs = inspector.get_by_test_id("phase-tab")
    assert data_list(tabs, "data-phase") == [
        "pre_inference",
        "post_inference",
        "post_tools",
        "post_inference",
        "final",
    ]
    expect(tabs.last).to_have_attribute("aria-selected", "true")
    inspector.get_by_test_id("view-yaml").click()
    expect(inspector.get_by_test_id("raw-yaml")).to_contain_text("webchat.runtime@v1")
    inspector.get_by_test_id("view-json").click()
    expect(inspector.get_by_test_id("raw-json")).to_contain_text('"runtime_key": "planner"')
    tabs.first.click()
    inspector.get_by_test_id("view-blocks").click()
    shown = inspector.get_by_test_id("phase-blocks").get_by_test_id("block")
    expect(shown.last).to_contain_text("compute 6 * 7")  # pre_inference ends with the new prompt

    # pre_inference -> final: the answer, the tool call, its result and the final answer were added.
    diff = inspector.get_by_test_id("phase-diff")
    expect(diff.get_by_test_id("diff-summary")).to_contain_text("+4 added")
    expect(diff.get_by_test_id("diff-summary")).to_contain_text("−0 removed")
    added = diff.locator("[data-testid=diff-entry][data-status=added]")
    expect(added).to_have_count(4)
    expect(added.nth(1)).to_contain_text("tool_call")
    expect(added.nth(2)).to_contain_text("42")
    expect(diff.get_by_test_id("meta-changes")).to_contain_text("No metadata changes")
    # post_tools -> final: only the final answer.
    diff.get_by_test_id("diff-from").select_option(label="post_tools")
    expect(diff.get_by_test_id("diff-summary")).to_contain_text("+1 added")
    expect(added).to_have_count(1)
    expect(added.first).to_contain_text("6 * 7 = 42")

    # The live event stream of this (live) conversation.
    events = page.get_by_test_id("event-stream")
    expect(events.locator("[data-testid=event-row][data-type='llm.final']").first).to_be_visible()

    # Copy buttons give the equivalent commands.
    page.get_by_test_id("copy-db-history").click()
    assert page.evaluate("navigator.clipboard.readText()") == f"web-chat db history --conv-id {conv_id}"
    page.get_by_test_id("copy-curl").click()
    assert page.evaluate("navigator.clipboard.readText()") == (
        f"curl -s {base}/api/debug/conversations/{conv_id}/runtime-history"
    )
    inspector.get_by_test_id("copy-turn-curl").click()
    assert page.evaluate("navigator.clipboard.readText()").endswith(
        f"/api/debug/turn/{conv_id}/{planner['session_id']}/{planner['turn_id']}"
    )
    diff.get_by_test_id("diff-from").select_option(label="pre_inference")
    probe.screenshot("debug", full_page=True)

    # The URL names the turn: a reload shows the same inspector.
    page.reload()
    expect(page.get_by_test_id("turn-inspector").get_by_test_id("turn-runtime")).to_have_text("planner")


def test_debug_shows_unknown_runtime_history_as_unknown(probe: PageProbe, web_server: Server) -> None:
    page = probe.page
    page.goto(f"{web_server.base_url}/debug?conv={LEGACY_CONV_IDLE}")
    segments = page.get_by_test_id("strip-segment")
    expect(segments).to_have_count(2)
    assert data_list(segments, "data-runtime") == ["", "fast"]
    expect(segments.first).to_contain_text("unknown")
    expect(page.get_by_test_id("unknown-turns")).to_contain_text("1 turn(s) of unknown runtime")
    rows = page.get_by_test_id("turn-row")
    assert data_list(rows, "data-runtime") == ["", "fast"]
    expect(rows.first).to_contain_text("unknown runtime")
    expect(rows.first).not_to_contain_text(LEGACY_POINTER)
    expect(page.get_by_test_id("detail-pointer")).to_have_text(LEGACY_POINTER)
    # Not in memory since the start: no live frames, and no failed polling either.
    expect(page.get_by_test_id("event-stream")).to_contain_text("not in the server's memory")
    rows.first.get_by_test_id("turn-open").click()
    expect(page.get_by_test_id("turn-runtime")).to_have_text("unknown runtime")
    probe.screenshot("debug-unknown-runtime", full_page=True)


def test_chat_badge_links_to_the_turn_in_the_inspector(
    probe: PageProbe, web_server: Server, three_runtimes: dict[str, Any]
) -> None:
    page = probe.page
    conv_id = three_runtimes["conv_id"]
    page.goto(f"{web_server.base_url}/?conv={conv_id}")
    expect(page.locator("[data-role=assistant]")).to_have_count(4)
    page.get_by_test_id("runtime-badge").nth(1).click()
    page.get_by_role("link", name="Inspect this turn").click()
    expect(page).to_have_url(re.compile(r"/debug\?conv="))
    inspector = page.get_by_test_id("turn-inspector")
    expect(inspector.get_by_test_id("turn-runtime")).to_have_text("planner")
    assert f"turn={three_runtimes['turns'][1]['turn_id']}" in page.url


@pytest.fixture(scope="module")
def no_debug_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("browser-nodebug") / "data"
    server = start_server(data_dir, "--no-debug-api")
    try:
        yield server
    finally:
        server.stop()


def test_chat_works_without_the_debug_api(browser: Any, no_debug_server: Server) -> None:
    base = no_debug_server.base_url
    assert httpx.get(f"{base}/debug").status_code == 404
    assert httpx.get(f"{base}/api/debug/conversations").status_code == 404
    context, probe = open_probe(browser, base)
    try:
        page = probe.page
        page.goto(base + "/")
        page.get_by_test_id("prompt").fill("No debug here")
        page.get_by_test_id("prompt").press("Enter")
        expect(page.get_by_test_id("runtime-badge")).to_have_attribute("data-runtime", "default")
        expect(page.locator(".streaming")).to_have_count(0)
        expect(page.get_by_test_id("conversation-item").first).to_contain_text("No debug here")
        expect(page.get_by_test_id("debug-link")).to_have_count(0)
        page.get_by_test_id("runtime-badge").click()
        expect(page.get_by_test_id("badge-details")).to_be_visible()
        expect(page.get_by_role("link", name="Inspect this turn")).to_have_count(0)
        assert not probe.unexpected_errors(), probe.errors
    finally:
        context.close()
