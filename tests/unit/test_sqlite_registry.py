"""The SQLite (writable) profile registry: the store, its place among the registries, and the HTTP routes
exercised in-process (the app is built here and the store attached by hand, as app.py's lifespan does)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from webchat.runtimes.profiles import ProfileError, Registries, load_registries
from webchat.runtimes.resolve import UnknownProfile, lookup_profile, resolve_runtime
from webchat.runtimes.sqlite_registry import (
    WRITABLE_REGISTRY_SLUG,
    InvalidProfile,
    ProfileExists,
    ProfileNotFound,
    ProfileWriter,
    ReadOnlyRegistry,
    SQLiteProfileStore,
    VersionConflict,
    merge_patch,
    open_profile_store,
)
from webchat.server.app import create_app
from webchat.server.settings import Settings

DOC: dict[str, Any] = {
    "display_name": "Mine",
    "description": "a stored profile",
    "runtime": {"engine": "offline", "system_prompt": "Be brief.", "options": {"token_delay_ms": 0}},
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteProfileStore]:
    st = SQLiteProfileStore(tmp_path / "profiles.db")
    try:
        yield st
    finally:
        st.close()


# --- store --------------------------------------------------------------------------------------------


def test_create_load_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    st = SQLiteProfileStore(path)
    profile = st.create("local", "mine", DOC)
    assert profile.version == 1
    assert profile.runtime.system_prompt == "Be brief."
    st.close()
    st = SQLiteProfileStore(path)  # migrations are idempotent
    try:
        reg = st.load_registry()
        assert reg.slug == WRITABLE_REGISTRY_SLUG and not reg.read_only
        assert reg.get("mine") == profile
        assert st.registry_slugs() == ["local"]
    finally:
        st.close()


def test_create_twice_conflicts(store: SQLiteProfileStore) -> None:
    store.create("local", "mine", DOC)
    with pytest.raises(ProfileExists):
        store.create("local", "mine", DOC)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({**DOC, "runtime": {"engine": "offline", "options": {"api_key": "sk-123"}}}, "looks like a secret"),
        ({**DOC, "runtime": {"engine": "nope"}}, "unknown engine"),
        ({**DOC, "runtime": {"engine": "offline", "tools": ["no-such-tool"]}}, "unknown tool"),
        ({**DOC, "colour": "red"}, "unknown key"),
        ({**DOC, "runtime": {"engine": "openai", "base_url": "https://u:p@example.com"}}, "credentials"),
        ({**DOC, "runtime": {"engine": "openai", "api_key_env": "sk-live-xyz"}}, "NAME of an environment"),
    ],
)
def test_invalid_documents_are_refused_and_nothing_is_stored(
    store: SQLiteProfileStore, doc: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidProfile, match=needle) as info:
        store.create("local", "bad", doc)
    assert "sk-123" not in str(info.value) and "sk-live" not in str(info.value)
    assert store.load_registry().profiles == {}
    raw = sqlite3.connect(store.path).execute("SELECT count(*) FROM profiles").fetchone()[0]
    assert raw == 0


def test_update_checks_version_and_merges(store: SQLiteProfileStore) -> None:
    store.create("local", "mine", DOC)
    with pytest.raises(VersionConflict):
        store.update("local", "mine", {"description": "x"}, expected_version=2)
    updated = store.update(
        "local", "mine", {"runtime": {"options": {"style": "terse"}}, "description": None}, expected_version=1
    )
    assert updated.version == 2
    assert updated.runtime.options == {"token_delay_ms": 0, "style": "terse"}
    assert updated.runtime.system_prompt == "Be brief."
    assert updated.description == ""
    assert store.load_registry().get("mine") == updated
    with pytest.raises(InvalidProfile):
        store.update("local", "mine", {"runtime": {"options": {"password": "x"}}}, expected_version=2)
    with pytest.raises(InvalidProfile, match="cannot change"):
        store.update("local", "mine", {"slug": "other"}, expected_version=2)
    assert store.load_registry().get("mine") == updated
    with pytest.raises(ProfileNotFound):
        store.update("local", "ghost", {}, expected_version=1)


def test_delete_keeps_versions_moving(store: SQLiteProfileStore) -> None:
    store.create("local", "mine", DOC)
    with pytest.raises(VersionConflict):
        store.delete("local", "mine", expected_version=7)
    store.delete("local", "mine", expected_version=1)
    assert store.load_registry().profiles == {}
    with pytest.raises(ProfileNotFound):
        store.delete("local", "mine", expected_version=1)
    again = store.create("local", "mine", DOC)
    assert again.version == 2  # a stale expected_version=1 cannot touch the new profile
    with pytest.raises(VersionConflict):
        store.update("local", "mine", {"description": "x"}, expected_version=1)


def test_unknown_registry_is_read_only(store: SQLiteProfileStore) -> None:
    with pytest.raises(ReadOnlyRegistry):
        store.create("builtin", "mine", DOC)


def test_invalid_stored_row_fails_loading(store: SQLiteProfileStore) -> None:
    store.create("local", "mine", DOC)
    conn = sqlite3.connect(store.path)
    conn.execute('UPDATE profiles SET document_json = \'{"runtime": {"engine": "zzz"}}\'')
    conn.commit()
    conn.close()
    with pytest.raises(ProfileError, match="stored profile 'mine' is invalid"):
        store.load_registry()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(Exception, match="schema version 99"):
        SQLiteProfileStore(path)


def test_merge_patch() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1,
        "b": {"d": 3, "e": 4},
        "f": [1],
    }


# --- place among the registries -------------------------------------------------------------------------


def _yaml(tmp_path: Path, name: str, slug: str, profiles: str) -> Path:
    path = tmp_path / name
    path.write_text(f"slug: {slug}\nprofiles:\n{profiles}", encoding="utf-8")
    return path


def test_sqlite_registry_sits_between_builtin_and_files(tmp_path: Path) -> None:
    shared = "  shared:\n    runtime: {engine: offline, system_prompt: from yaml}\n"
    regs = load_registries([_yaml(tmp_path, "a.yaml", "team", shared)])
    st = SQLiteProfileStore(tmp_path / "profiles.db")
    st.create("local", "shared", {"runtime": {"engine": "offline", "system_prompt": "from sqlite"}})
    st.create("local", "only-here", DOC)
    st.close()
    writer = open_profile_store(tmp_path / "profiles.db", regs)
    try:
        assert regs.slugs() == ["builtin", "local", "team"]
        assert regs.default_registry == "team"
        assert resolve_runtime(regs, profile="shared").system_prompt == "from yaml"  # files win
        assert resolve_runtime(regs, profile="only-here").registry_slug == "local"
        assert resolve_runtime(regs, profile="shared", registry="local").system_prompt == "from sqlite"
    finally:
        writer.close()


def test_yaml_registry_with_the_same_slug_hides_sqlite(tmp_path: Path) -> None:
    regs = load_registries([_yaml(tmp_path, "l.yaml", "local", "  x:\n    runtime: {engine: offline}\n")])
    writer = open_profile_store(tmp_path / "profiles.db", regs)
    try:
        assert regs.get("local") is not None and regs.get("local").read_only  # type: ignore[union-attr]
        with pytest.raises(ReadOnlyRegistry):
            asyncio.run(writer.create("local", {"slug": "y", **DOC}))
    finally:
        writer.close()


def test_empty_writable_registry_is_not_default_and_has_no_default_profile(tmp_path: Path) -> None:
    regs = Registries.load()
    writer = open_profile_store(tmp_path / "profiles.db", regs)
    try:
        assert regs.default_registry == "builtin"
        assert resolve_runtime(regs).registry_slug == "builtin"
        with pytest.raises(UnknownProfile):
            lookup_profile(regs, profile=None, registry="local")
    finally:
        writer.close()


def test_writer_updates_memory_immediately(tmp_path: Path) -> None:
    regs = Registries.load()
    writer: ProfileWriter = open_profile_store(tmp_path / "profiles.db", regs)

    async def scenario() -> None:
        created = await writer.create("local", {"slug": "Mine", "version": 9, "is_default": True, **DOC})
        assert created.slug == "mine" and created.version == 1
        assert resolve_runtime(regs, profile="mine").registry_slug == "local"
        results = await asyncio.gather(
            writer.update("local", "mine", {"description": "a"}, 1),
            writer.update("local", "mine", {"description": "b"}, 1),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["Profile", "VersionConflict"]
        assert resolve_runtime(regs, profile="mine").profile_version == 2
        await writer.delete("local", "mine", 2)
        with pytest.raises(UnknownProfile):
            resolve_runtime(regs, profile="mine")

    try:
        asyncio.run(scenario())
    finally:
        writer.close()


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
