"""End to end over real HTTP: writable (SQLite) profiles — create, chat with, patch, survive a restart,
delete — and read-only YAML/built-in registries (http-api.md "Profiles")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.e2e.client import wait_turns_final
from tests.e2e.conftest import Server, start_server

PROFILES = "/api/chat/profiles"
DOC: dict[str, Any] = {
    "slug": "e2e-mine",
    "display_name": "E2E mine",
    "runtime": {"engine": "offline", "system_prompt": "Be brief.", "options": {"token_delay_ms": 0}},
}


def _code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json().get("code", "")


def _create(server: Server) -> dict[str, Any]:
    r = httpx.post(server.base_url + PROFILES, json=DOC, timeout=10)
    if _code(r) == (409, "read_only_registry"):
        raise AssertionError(f"the server has no writable registry (is app.py wired up?): {r.text}")
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_writable_profile_lifecycle_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        base = server.base_url
        created = _create(server)
        assert (created["registry"], created["slug"], created["version"]) == ("local", "e2e-mine", 1)
        assert _code(httpx.post(base + PROFILES, json=DOC, timeout=10)) == (409, "profile_exists")

        chat = httpx.post(f"{base}/chat/e2e-mine", json={"prompt": "hello there"}, timeout=10)
        assert chat.status_code == 200, chat.text
        assert chat.json()["runtime_key"] == "e2e-mine"
        conv = chat.json()["conv_id"]
        wait_turns_final(base, conv, 1)

        stale = httpx.patch(
            f"{base}{PROFILES}/e2e-mine", json={"expected_version": 2, "description": "x"}, timeout=10
        )
        assert _code(stale) == (409, "version_conflict")
        ok = httpx.patch(
            f"{base}{PROFILES}/e2e-mine",
            json={"expected_version": 1, "description": "patched", "runtime": {"system_prompt": "Be kind."}},
            timeout=10,
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["version"] == 2 and ok.json()["runtime"]["system_prompt"] == "Be kind."
        again = httpx.post(f"{base}/chat/e2e-mine", json={"prompt": "and now?", "conv_id": conv}, timeout=10)
        assert again.status_code in (200, 202), again.text
        assert again.json()["runtime_key"] == "e2e-mine"
    finally:
        assert server.stop() == 0, server.log()

    server = start_server(data)
    try:
        base = server.base_url
        doc = httpx.get(f"{base}{PROFILES}/e2e-mine", timeout=10)
        assert doc.status_code == 200, doc.text
        assert doc.json()["version"] == 2 and doc.json()["description"] == "patched"
        assert doc.json()["registry"] == "local"
        stale = httpx.delete(f"{base}{PROFILES}/e2e-mine", params={"expected_version": 1}, timeout=10)
        assert _code(stale) == (409, "version_conflict")
        gone = httpx.delete(f"{base}{PROFILES}/e2e-mine", params={"expected_version": 2}, timeout=10)
        assert gone.status_code == 200, gone.text
        assert _code(httpx.get(f"{base}{PROFILES}/e2e-mine", timeout=10)) == (404, "unknown_profile")
        assert _code(httpx.post(f"{base}/chat/e2e-mine", json={"prompt": "hi"}, timeout=10)) == (
            404,
            "unknown_profile",
        )
    finally:
        assert server.stop() == 0, server.log()


def test_read_only_registries_and_validation(tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text("slug: team\nprofiles:\n  yaml-one:\n    runtime: {engine: offline}\n", encoding="utf-8")
    server = start_server(tmp_path / "data", "--profiles", str(team))
    try:
        base = server.base_url
        for slug, registry in (("yaml-one", "team"), ("fast", "builtin")):
            r = httpx.patch(
                f"{base}{PROFILES}/{slug}", params={"registry": registry}, json={"expected_version": 1}
            )
            assert _code(r) == (409, "read_only_registry"), r.text
            r = httpx.delete(f"{base}{PROFILES}/{slug}", params={"registry": registry, "expected_version": 1})
            assert _code(r) == (409, "read_only_registry"), r.text
        r = httpx.post(base + PROFILES, json={**DOC, "registry": "team"})
        assert _code(r) == (409, "read_only_registry"), r.text

        secret = {**DOC, "runtime": {"engine": "offline", "options": {"access_token": "tok-123"}}}
        r = httpx.post(base + PROFILES, json=secret)
        assert _code(r) == (400, "invalid_profile") and "tok-123" not in r.text
        assert _code(httpx.get(f"{base}{PROFILES}/e2e-mine")) == (404, "unknown_profile")

        # The YAML file stays the default registry; the new profile is reachable by slug.
        _create(server)
        current = httpx.get(base + "/api/chat/profile").json()
        assert current["registry"] == "team"
        listed = {(p["registry"], p["slug"]) for p in httpx.get(base + PROFILES).json()}
        assert {("team", "yaml-one"), ("local", "e2e-mine"), ("builtin", "fast")} <= listed
    finally:
        assert server.stop() == 0, server.log()
