"""The SQLite (writable) profile registry: what only a file has (its schema version), and the HTTP routes
exercised in-process (the app is built here and the store attached by hand, as app.py's lifespan does).
The store's behaviour, shared with PostgreSQL, is in tests/conformance/test_profile_store.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from webchat.runtimes.sqlite_registry import (
    SCHEMA_VERSION,
    SQLiteProfileStore,
    merge_patch,
    open_profile_store,
)
from webchat.server.app import create_app
from webchat.server.settings import Settings
from webchat.stores.protocol import StoreError

DOC: dict[str, Any] = {
    "display_name": "Mine",
    "description": "a stored profile",
    "runtime": {"engine": "offline", "system_prompt": "Be brief.", "options": {"token_delay_ms": 0}},
}


# --- the file -----------------------------------------------------------------------------------------


def test_a_new_file_gets_the_schema_version_and_the_local_registry(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    SQLiteProfileStore(path).close()
    SQLiteProfileStore(path).close()  # opening again changes nothing
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT slug FROM profile_registries").fetchall() == [("local",)]
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"^profiles database has schema version 99; this release knows 1$"):
        SQLiteProfileStore(path)


def test_merge_patch() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1,
        "b": {"d": 3, "e": 4},
        "f": [1],
    }


# --- routes, in-process -------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "data", debug_api=False))  # type: ignore[call-arg]
    with TestClient(app, base_url="http://127.0.0.1") as c:
        regs = app.state.services.registries
        app.state.profile_store = open_profile_store(tmp_path / "data" / "profiles.db", regs)
        try:
            yield c
        finally:
            app.state.profile_store.close()


def test_routes_round_trip(client: TestClient) -> None:
    r = client.post("/api/chat/profiles", json={"slug": "mine", **DOC})
    assert r.status_code == 201, r.text
    assert r.json()["registry"] == "local" and r.json()["version"] == 1
    assert client.post("/api/chat/profiles", json={"slug": "mine", **DOC}).json()["code"] == "profile_exists"
    listed = {(p["registry"], p["slug"]) for p in client.get("/api/chat/profiles").json()}
    assert ("local", "mine") in listed
    assert client.get("/api/chat/profiles/mine").json()["runtime"]["system_prompt"] == "Be brief."

    chat = client.post("/chat/mine", json={"prompt": "hi"})
    assert chat.status_code == 200, chat.text
    assert chat.json()["runtime_key"] == "mine"

    conflict = client.patch("/api/chat/profiles/mine", json={"expected_version": 5, "description": "x"})
    assert conflict.status_code == 409 and conflict.json()["code"] == "version_conflict"
    ok = client.patch("/api/chat/profiles/mine", json={"expected_version": 1, "description": "x"})
    assert ok.status_code == 200 and ok.json()["version"] == 2 and ok.json()["description"] == "x"

    gone = client.delete("/api/chat/profiles/mine", params={"expected_version": 1})
    assert gone.status_code == 409 and gone.json()["code"] == "version_conflict"
    gone = client.delete("/api/chat/profiles/mine", params={"expected_version": 2})
    assert gone.status_code == 200 and gone.json() == {"registry": "local", "slug": "mine", "deleted": True}
    assert client.get("/api/chat/profiles/mine").status_code == 404


def test_route_errors(client: TestClient) -> None:
    def err(r: Any) -> tuple[int, str]:
        return r.status_code, r.json()["code"]

    secret = {"slug": "s", "runtime": {"engine": "offline", "options": {"api_key": "sk-1"}}}
    r = client.post("/api/chat/profiles", json=secret)
    assert err(r) == (400, "invalid_profile") and "sk-1" not in r.text
    assert err(client.post("/api/chat/profiles", json={"slug": "Bad Slug!", **DOC})) == (
        400,
        "invalid_profile",
    )
    assert err(client.post("/api/chat/profiles", json={"slug": "x"})) == (400, "invalid_request")
    assert err(client.post("/api/chat/profiles", json={"slug": "x", "registry": "builtin", **DOC})) == (
        409,
        "read_only_registry",
    )
    assert err(client.post("/api/chat/profiles", json={"slug": "x", "registry": "nope", **DOC})) == (
        404,
        "unknown_registry",
    )
    assert err(client.patch("/api/chat/profiles/fast", json={"expected_version": 1})) == (
        409,
        "read_only_registry",
    )
    assert err(client.delete("/api/chat/profiles/fast", params={"expected_version": 1})) == (
        409,
        "read_only_registry",
    )
    assert err(client.delete("/api/chat/profiles/fast")) == (400, "invalid_request")
    assert err(client.patch("/api/chat/profiles/ghost", json={"expected_version": 1})) == (
        404,
        "unknown_profile",
    )
    assert client.get("/api/chat/profiles", params={"registry": "local"}).json() == []
    # An empty writable registry has no default profile: a clean 404, never a 500.
    r = client.post("/api/chat/profile", json={"profile": " ", "registry": "local"})
    assert err(r) == (404, "unknown_profile")
    assert client.post("/api/chat/profiles", json={"slug": "x", **DOC}).status_code == 201
    bad = client.patch("/api/chat/profiles/x", json={"expected_version": 1, "runtime": {"engine": "zzz"}})
    assert err(bad) == (400, "invalid_profile")
    assert client.get("/api/chat/profiles/x").json()["version"] == 1  # the rejected write changed nothing


def test_routes_without_a_store_are_read_only(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", debug_api=False))  # type: ignore[call-arg]
    with TestClient(app, base_url="http://127.0.0.1") as c:
        app.state.profile_store = None  # as if app.py had not opened one
        r = c.post("/api/chat/profiles", json={"slug": "x", **DOC})
        assert (r.status_code, r.json()["code"]) == (409, "read_only_registry")
