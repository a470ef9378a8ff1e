"""Browser tests: a real ``web-chat serve`` and Debian's Chromium driven by Playwright (sync API).

A missing ``/usr/bin/chromium`` fails the tests with the reason (``make test`` installs it); no test is
ever skipped. Every page records
console errors and uncaught exceptions; a test fails on any of them.
Screenshots of the main screens go to ``artifacts/screenshots/`` at the repository root.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, start_server
from webchat.events.projector import MESSAGE
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.timeline import ConversationRecord, Entity
from webchat.stores.turns import open_turn_store
from webchat.turns.model import Block, Turn

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - the dev dependency is missing
    sync_api = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = (
    "Debian's Chromium is not installed at /usr/bin/chromium (make test installs it with "
    "apt-get install -y chromium)"
)

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
TIMEOUT_MS = 15_000
if sync_api is not None:
    # Generous for a loaded 2-core CI machine; a passing run waits only as long as it must.
    sync_api.expect.set_options(timeout=TIMEOUT_MS)

# A conversation from before the per-turn cutover: its first turn has no recorded runtime. The
# conversation pointer says "planner"; the UI must still call that turn "unknown runtime".
LEGACY_CONV = "legacy-conv-1"
# The same history again, for the debug tests: never opened by a chat page, so never live.
LEGACY_CONV_IDLE = "legacy-conv-2"
LEGACY_SESSION = "legacy-session-1"
LEGACY_POINTER = "planner"
LEGACY_MARKDOWN = (
    "Here is the snippet:\n\n"
    "```python\nprint('hello <world>')\n```\n\n"
    "<img src=x onerror=\"document.title='pwned'\"> and [click me](javascript:alert(1))\n\n"
    "- **bold** item\n- `inline code` item"
)


def seed_legacy_conversation(data_dir: Path, conv_id: str) -> None:
    """Write a pre-cutover conversation straight into the stores, before the server opens them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    t0 = 1_700_000_000_000
    turns = open_turn_store(data_dir / "turns.db")
    try:
        first = Turn(
            "legacy-t1",
            [
                Block("user", "user", {"text": "An old question"}, id="legacy-t1#user"),
                Block("llm_text", "assistant", {"text": LEGACY_MARKDOWN}, id="legacy-t1#1"),
            ],
        )
        turns.save_snapshot(conv_id, LEGACY_SESSION, first, "final", t0 + 10)
        second = Turn(
            "legacy-t2",
            [
                *first.blocks,
                Block("user", "user", {"text": "A newer question"}, id="legacy-t2#user"),
                Block("llm_text", "assistant", {"text": "[fast] Noted."}, id="legacy-t2#3"),
            ],
        )
        turns.save_snapshot(
            conv_id,
            LEGACY_SESSION,
            second,
            "final",
            t0 + 20,
            runtime_key="fast",
            inference_id="legacy-inference-2",
        )
    finally:
        turns.close()
    timeline = SQLiteTimelineStore(data_dir / "timeline.db")
    try:
        entities = [
            ("legacy-t1:user", {"role": "user", "content": "An old question", "turn_id": "legacy-t1"}),
            (
                "legacy-t1:assistant",
                {
                    "role": "assistant",
                    "content": LEGACY_MARKDOWN,
                    "streaming": False,
                    "runtime_key": "",
                    "inference_id": "",
                    "turn_id": "legacy-t1",
                },
            ),
            (
                "legacy-t2:user",
                {
                    "role": "user",
                    "content": "A newer question",
                    "turn_id": "legacy-t2",
                    "runtime_key": "fast",
                },
            ),
            (
                "legacy-t2:assistant",
                {
                    "role": "assistant",
                    "content": "[fast] Noted.",
                    "streaming": False,
                    "runtime_key": "fast",
                    "inference_id": "legacy-inference-2",
                    "turn_id": "legacy-t2",
                },
            ),
        ]
        for seq, (entity_id, props) in enumerate(entities, start=1):
            at = t0 + seq
            timeline.apply(conv_id, seq, [Entity(entity_id, MESSAGE, at, at, seq, props)])
        timeline.upsert_conversation(
            ConversationRecord(
                conv_id=conv_id,
                session_id=LEGACY_SESSION,
                runtime_key=LEGACY_POINTER,
                created_at_ms=t0,
                last_activity_ms=t0 + 30,
                last_seen_version=len(entities),
            )
        )
    finally:
        timeline.close()


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    seed_legacy_conversation(data_dir, LEGACY_CONV)
    seed_legacy_conversation(data_dir, LEGACY_CONV_IDLE)
    server = start_server(data_dir)
    try:
        yield server
    finally:
        server.stop()


# Module scope, not session: the sync API keeps an asyncio loop running in this thread while it is
# open, which must be over before other test packages (asyncio.run in unit tests) run.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        # Never a skip: a browser test that does not run tests nothing, and make test installs Chromium.
        pytest.fail(CHROMIUM_MISSING, pytrace=False)
    if sync_api is None:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageProbe:
    """A page plus what its console said; ``allowed`` substrings mark expected errors."""

    page: Any
    base_url: str
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path


def open_probe(browser: Any, base_url: str, **context_options: Any) -> tuple[Any, PageProbe]:
    options: dict[str, Any] = {"viewport": {"width": 1280, "height": 860}, **context_options}
    context = browser.new_context(**options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    probe = PageProbe(page, base_url)
    page.on("console", lambda msg: probe.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: probe.errors.append(f"uncaught: {exc}"))
    return context, probe


@pytest.fixture
def probe(browser: Any, web_server: Server) -> Iterator[PageProbe]:
    context, page_probe = open_probe(browser, web_server.base_url)
    try:
        yield page_probe
    finally:
        context.close()
    assert not page_probe.unexpected_errors(), f"browser console errors: {page_probe.unexpected_errors()}"


# --- helpers shared by the tests -----------------------------------------------------------------------


def chat(
    base_url: str, prompt: str, conv_id: str | None = None, profile: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt}
    if conv_id:
        body["conv_id"] = conv_id
    if profile:
        body["profile"] = profile
    response = httpx.post(f"{base_url}/chat", json=body, timeout=10)
    assert response.status_code in (200, 202), response.text
    result: dict[str, Any] = response.json()
    return result


def wait_final_turns(base_url: str, conv_id: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    """The conversation's final snapshots (newest first) once ``count`` turns have one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = httpx.get(
            f"{base_url}/api/debug/turns", params={"conv_id": conv_id, "phase": "final", "limit": 1000}
        ).json()["items"]
        if len(items) >= count:
            return list(items)
        time.sleep(0.05)
    raise AssertionError(f"{conv_id}: fewer than {count} final turns after {timeout}s")
