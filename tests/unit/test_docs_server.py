"""The chat server's help sections: they load, are top-level, and cover the routes and error codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webchat import docs
from webchat.docs import Section, SectionType

SERVER_SOURCES = Path(__file__).resolve().parents[2] / "src" / "webchat" / "server"

HTTP_API = "webchat-http-api"
SECTIONS = {
    "webchat-chat-quickstart": SectionType.TUTORIAL,
    HTTP_API: SectionType.GENERAL_TOPIC,
    "webchat-profiles": SectionType.GENERAL_TOPIC,
    "webchat-debugging": SectionType.GENERAL_TOPIC,
}

# Every route path of http-api.md, written as the documentation writes it.
ROUTES = (
    "/chat",
    "/chat/{profile}",
    "/ws",
    "/api/timeline",
    "/api/chat/profiles",
    "/api/chat/profiles/{slug}",
    "/api/chat/profile",
    "/api/debug/conversations",
    "/api/debug/conversations/{conv_id}",
    "/api/debug/conversations/{conv_id}/runtime-history",
    "/api/debug/turns",
    "/api/debug/turn/{conv_id}/{session_id}/{turn_id}",
    "/api/debug/events/{conv_id}",
    "/api/debug/timeline",
    "/healthz",
    "/openapi.json",
    "/api/help",
)
DEBUG_ROUTES = tuple(r for r in ROUTES if r.startswith("/api/debug/"))

# ApiError(status, "code", ...) - the code is the string literal right after the status.
_API_ERROR_RE = re.compile(r"ApiError\(\s*\d{3}\s*,\s*\"([a-z0-9_]+)\"")


def _section(slug: str) -> Section:
    section = docs.get_section(slug)
    assert section is not None, f"missing help section {slug}"
    return section


def _api_error_codes() -> set[str]:
    files = sorted(SERVER_SOURCES.glob("*.py"))
    assert files, f"no server sources under {SERVER_SOURCES}"
    return {code for f in files for code in _API_ERROR_RE.findall(f.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("slug", sorted(SECTIONS))
def test_server_sections_load_and_are_top_level(slug: str) -> None:
    section = _section(slug)
    assert section.section_type is SECTIONS[slug]
    assert section.is_top_level
    assert section.show_per_default
    assert section.source == f"{slug}.md"
    assert "webchat" in section.topics
    assert section.body.strip()


@pytest.mark.parametrize("route", ROUTES)
def test_http_api_section_mentions_every_route(route: str) -> None:
    assert route in _section(HTTP_API).body, route


@pytest.mark.parametrize("route", DEBUG_ROUTES)
def test_debugging_section_mentions_every_debug_route(route: str) -> None:
    # The debug guide writes paths with example ids; compare the fixed part before the first parameter.
    fixed = route.split("{", 1)[0]
    assert fixed in _section("webchat-debugging").body, route


def test_regex_finds_the_error_codes_of_the_server() -> None:
    codes = _api_error_codes()
    # A few codes that exist today; if these vanish the regex (not the docs) is probably broken.
    assert {"blank_prompt", "unsupported_legacy_selector", "unknown_turn"} <= codes


def test_http_api_section_documents_every_api_error_code() -> None:
    body = _section(HTTP_API).body
    missing = sorted(code for code in _api_error_codes() if f"`{code}`" not in body)
    assert not missing, f"error codes used in src/webchat/server but not documented in {HTTP_API}: {missing}"


def test_http_api_section_covers_the_contract() -> None:
    body = _section(HTTP_API).body
    for term in (
        '{"error":',
        "Idempotency-Key",
        "chat_profile=<registry>/<slug>",
        "resolved_runtime_key",
        "current_runtime_key",
        "since_version",
        "seq",
        "ws.hello",
        "llm.delta",
        "llm.error",
        "timeline.upsert",
        "413",
        "202",
    ):
        assert term in body, term


def test_quickstart_walks_through_the_switch_and_the_truth() -> None:
    body = _section("webchat-chat-quickstart").body
    for term in (
        "make run",
        "http://127.0.0.1:8080/",
        "python -m websockets",
        "/chat/fast",
        "/api/debug/turns?conv_id=",
        "web-chat db history --conv-id",
        "resolved_runtime_key",
        "inference_id",
        "202",
    ):
        assert term in body, term


def test_profiles_section_covers_registries_and_the_offline_engine() -> None:
    body = _section("webchat-profiles").body
    for term in (
        "--profiles",
        "later",
        "web-chat profiles list",
        "web-chat profiles show",
        "runtime_fingerprint",
        "request_overrides",
        "allow_overrides",
        "token_delay_ms",
        "calculator",
        "[[fail]]",
        "api_key_env",
    ):
        assert term in body, term


def test_debugging_section_covers_operations() -> None:
    body = _section("webchat-debugging").body
    for term in (
        "--debug-token",
        "--no-debug-api",
        "Authorization: Bearer",
        "persisted",
        "merged",
        "unknown_turns",
        "webchat.inference@v1",
        "web-chat turns list",
        "web-chat timeline",
        ".backup",
    ):
        assert term in body, term


def test_sections_refer_to_each_other_by_existing_slugs() -> None:
    known = {s.slug for s in docs.load_sections()}
    for slug in SECTIONS:
        for referenced in re.findall(r"web-chat help (webchat-[a-z0-9-]+)", _section(slug).body):
            assert referenced in known, f"{slug} refers to unknown section {referenced}"


def test_getting_started_points_to_the_chat_sections() -> None:
    body = _section("webchat-getting-started").body
    assert "## Chatting" in body
    for slug in SECTIONS:
        assert slug in body, slug
