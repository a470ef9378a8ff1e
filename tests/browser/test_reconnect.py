"""The chat page survives a server restart: it reconnects with backoff, hydrates, and shows nothing twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import open_probe
from tests.e2e.conftest import start_server

# While the server is down the browser reports the refused connections; those are expected here.
OUTAGE_ERRORS = ["WebSocket connection to", "ERR_CONNECTION_REFUSED", "Failed to load resource"]


def entity_ids(page: Any) -> list[str]:
    ids: list[str] = page.locator("[data-testid=message]").evaluate_all(
        "els => els.map(e => e.dataset.entity)"
    )
    return ids


def test_reconnect_after_server_restart_without_duplicates(browser: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    context, probe = open_probe(browser, server.base_url)
    try:
        page = probe.page
        page.goto(server.base_url + "/")
        page.get_by_test_id("prompt").fill("Before the restart")
        page.get_by_test_id("prompt").press("Enter")
        expect(page.locator("[data-role=assistant]")).to_have_count(1)
        expect(page.locator(".streaming")).to_have_count(0)
        conv_url = page.url
        before = entity_ids(page)

        probe.allowed.extend(OUTAGE_ERRORS)
        port = int(server.base_url.rsplit(":", 1)[1])
        server.stop()
        expect(page.get_by_test_id("connection")).to_have_attribute("data-status", "reconnecting")
        server = start_server(data_dir, port=port)
        expect(page.get_by_test_id("connection")).to_have_attribute("data-status", "live", timeout=15_000)
        assert entity_ids(page) == before

        page.get_by_test_id("prompt").fill("After the restart")
        page.get_by_test_id("prompt").press("Enter")
        expect(page.locator("[data-role=assistant]")).to_have_count(2)
        expect(page.locator(".streaming")).to_have_count(0)
        # History survived the restart, and every entity is shown exactly once.
        expect(page.locator("[data-role=assistant]").last).to_contain_text("1 earlier message")
        ids = entity_ids(page)
        assert len(ids) == len(set(ids)) == 4
        assert ids[:2] == before
        assert page.url == conv_url
        assert not probe.unexpected_errors(), probe.errors
    finally:
        context.close()
        server.stop()
