"""One conformance suite for the writable profile store, run against SQLite and PostgreSQL alike.

Each test gets a :class:`Backend`: a store on fresh data, a way to open another store on the same data (as
another process or instance would), a way to open a writer bound to registries, and raw SQL on the
database for setting up and checking rows. SQLite-only behaviour (the file, its schema version) is tested
in tests/unit/test_sqlite_registry.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from webchat.runtimes.profile_store import ProfileStore, stored_document
from webchat.runtimes.profiles import Profile, ProfileError, Registries, load_registries
from webchat.runtimes.resolve import UnknownProfile, lookup_profile, resolve_runtime
from webchat.runtimes.sqlite_registry import (
    DOCUMENT_KEYS,
    WRITABLE_REGISTRY_SLUG,
    InvalidProfile,
    KeyEnvNotAllowed,
    ProfileExists,
    ProfileNotFound,
    ProfileWriter,
    ReadOnlyRegistry,
    SQLiteProfileStore,
    VersionConflict,
    open_profile_store,
)
from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import VERSIONS_TABLE, migrate
from webchat.stores.postgres.profile_store import PROFILES, PostgresProfileStore, open_pg_profile_store

DOC: dict[str, Any] = {
    "display_name": "Mine",
    "description": "a stored profile",
    "runtime": {"engine": "offline", "system_prompt": "Be brief.", "options": {"token_delay_ms": 0}},
}
# Rounds of each race: every round is a fresh slug raced by two threads.
RACE_ROUNDS = 8


@dataclass
class Backend:
    name: str
    store: ProfileStore
    reopen: Callable[[], ProfileStore]
    open_writer: Callable[[Registries], ProfileWriter]
    sql: Callable[[str], list[tuple[Any, ...]]]
    closers: list[Callable[[], None]] = field(default_factory=list)


def _sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "profiles.db"
    closers: list[Callable[[], None]] = []

    def reopen() -> ProfileStore:
        store = SQLiteProfileStore(path)
        closers.append(store.close)
        return store

    def open_writer(registries: Registries) -> ProfileWriter:
        writer = open_profile_store(path, registries)
        closers.append(writer.close)
        return writer

    def sql(statement: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute(statement).fetchall()
            conn.commit()
        finally:
            conn.close()
        return rows

    return Backend("sqlite", reopen(), reopen, open_writer, sql, closers)


def _postgres_backend(dsn: str) -> Backend:
    closers: list[Callable[[], None]] = []

    def database() -> Database:
        db = Database(dsn, max_size=2)
        closers.append(db.close)
        return db

    first = database()
    migrate(first, [PROFILES])

    def reopen() -> ProfileStore:
        return PostgresProfileStore(database())  # its own pool, as another instance would have

    def open_writer(registries: Registries) -> ProfileWriter:
        return open_pg_profile_store(database(), registries)

    def sql(statement: str) -> list[tuple[Any, ...]]:
        with first.connection() as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description is not None else []

    return Backend("postgresql", PostgresProfileStore(first), reopen, open_writer, sql, closers)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = _sqlite_backend(tmp_path)
    else:
        b = _postgres_backend(request.getfixturevalue("pg_dsn"))
    try:
        yield b
    finally:
        for close in reversed(b.closers):
            close()


def _count(backend: Backend) -> int:
    return int(backend.sql("SELECT count(*) FROM profiles")[0][0])


# --- the store ----------------------------------------------------------------------------------------


def test_create_load_and_reopen(backend: Backend) -> None:
    profile = backend.store.create("local", "mine", DOC)
    assert profile.version == 1
    assert profile.runtime.system_prompt == "Be brief."
    other = backend.reopen()  # opening again (another process) changes nothing
    reg = other.load_registry()
    assert reg.slug == WRITABLE_REGISTRY_SLUG and not reg.read_only
    assert reg.profiles == {"mine": profile}
    assert other.registry_slugs() == ["local"]


def test_stored_row_is_the_document_without_slug_and_version(backend: Backend) -> None:
    profile = backend.store.create("local", "mine", DOC)
    [(registry, slug, text, version, deleted)] = backend.sql(
        "SELECT registry_slug, slug, document_json, version, deleted_at_ms FROM profiles"
    )
    assert (registry, slug, version, deleted) == ("local", "mine", 1, None)
    assert json.loads(text) == stored_document(profile)
    assert sorted(json.loads(text)) == sorted(DOCUMENT_KEYS)
    assert text == json.dumps(stored_document(profile), sort_keys=True, separators=(",", ":"))


def test_create_twice_conflicts(backend: Backend) -> None:
    backend.store.create("local", "mine", DOC)
    with pytest.raises(ProfileExists, match=r"^profile 'mine' already exists in registry 'local'$"):
        backend.store.create("local", "mine", {**DOC, "description": "another"})
    assert backend.store.load_registry().profiles["mine"].description == "a stored profile"


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({**DOC, "runtime": {"engine": "offline", "options": {"api_key": "sk-123"}}}, "looks like a secret"),
        ({**DOC, "runtime": {"engine": "nope"}}, "unknown engine"),
        ({**DOC, "runtime": {"engine": "offline", "tools": ["no-such-tool"]}}, "unknown tool"),
        ({**DOC, "colour": "red"}, "unknown key"),
        ({**DOC, "runtime": {"engine": "openai", "base_url": "https://u:p@example.com"}}, "credentials"),
        ({**DOC, "runtime": {"engine": "openai", "api_key_env": "sk-live-xyz"}}, "NAME of an environment"),
        ({**DOC, "description": "nul \x00 inside"}, "NUL"),
    ],
)
def test_invalid_documents_are_refused_and_nothing_is_stored(
    backend: Backend, doc: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidProfile, match=needle) as info:
        backend.store.create("local", "bad", doc)
    assert "sk-123" not in str(info.value) and "sk-live" not in str(info.value)
    assert backend.store.load_registry().profiles == {}
    assert _count(backend) == 0


def test_a_key_variable_off_the_allow_list_is_refused(backend: Backend) -> None:
    doc = {**DOC, "runtime": {"engine": "openai", "model": "m", "api_key_env": "MY_OWN_KEY"}}
    with pytest.raises(KeyEnvNotAllowed) as info:
        backend.store.create("local", "keyed", doc)
    assert info.value.status == 400 and info.value.code == "api_key_env_not_allowed"
    assert "MY_OWN_KEY" in info.value.message
    backend.store.create("local", "keyed", {**DOC, "runtime": {"engine": "openai", "model": "m"}})
    with pytest.raises(KeyEnvNotAllowed):
        backend.store.update("local", "keyed", {"runtime": {"api_key_env": "MY_OWN_KEY"}}, 1)
    assert backend.store.load_registry().profiles["keyed"].version == 1


def test_update_checks_version_and_merges(backend: Backend) -> None:
    store = backend.store
    store.create("local", "mine", DOC)
    with pytest.raises(VersionConflict, match=r"^profile 'mine' is at version 1, not 2$"):
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
    with pytest.raises(
        InvalidProfile,
        match=r"^cannot change slug \(changeable: display_name, description, runtime, policy\)$",
    ):
        store.update("local", "mine", {"slug": "other"}, expected_version=2)
    with pytest.raises(InvalidProfile, match="unknown engine"):
        store.update("local", "mine", {"runtime": {"engine": "zzz"}}, expected_version=2)
    assert store.load_registry().get("mine") == updated
    with pytest.raises(ProfileNotFound, match=r"^unknown profile: 'ghost' in registry 'local'$"):
        store.update("local", "ghost", {}, expected_version=1)
    with pytest.raises(ProfileNotFound):
        store.update("elsewhere", "mine", {}, expected_version=2)


def test_update_keeps_created_and_moves_updated(backend: Backend) -> None:
    backend.store.create("local", "mine", DOC)
    [(created, updated)] = backend.sql("SELECT created_at_ms, updated_at_ms FROM profiles")
    assert created == updated
    backend.store.update("local", "mine", {"description": "x"}, expected_version=1)
    [(created_after, updated_after)] = backend.sql("SELECT created_at_ms, updated_at_ms FROM profiles")
    assert created_after == created and updated_after >= updated


def test_delete_keeps_versions_moving(backend: Backend) -> None:
    store = backend.store
    store.create("local", "mine", DOC)
    with pytest.raises(VersionConflict, match=r"^profile 'mine' is at version 1, not 7$"):
        store.delete("local", "mine", expected_version=7)
    store.delete("local", "mine", expected_version=1)
    assert store.load_registry().profiles == {}
    [(version, deleted)] = backend.sql("SELECT version, deleted_at_ms FROM profiles")
    assert version == 1 and deleted is not None  # a tombstone
    with pytest.raises(ProfileNotFound):
        store.delete("local", "mine", expected_version=1)
    with pytest.raises(ProfileNotFound):
        store.update("local", "mine", {"description": "x"}, expected_version=1)
    again = store.create("local", "mine", DOC)
    assert again.version == 2  # a stale expected_version=1 cannot touch the new profile
    with pytest.raises(VersionConflict):
        store.update("local", "mine", {"description": "x"}, expected_version=1)
    assert backend.sql("SELECT version, deleted_at_ms FROM profiles") == [(2, None)]


def test_unknown_registry_is_read_only(backend: Backend) -> None:
    with pytest.raises(ReadOnlyRegistry, match=r"^registry 'builtin' is not a writable registry$"):
        backend.store.create("builtin", "mine", DOC)
    assert _count(backend) == 0


def test_invalid_stored_row_fails_loading(backend: Backend) -> None:
    backend.store.create("local", "mine", DOC)
    backend.sql('UPDATE profiles SET document_json = \'{"runtime": {"engine": "zzz"}}\'')
    with pytest.raises(ProfileError, match="stored profile 'mine' is invalid") as info:
        backend.store.load_registry()
    assert str(info.value).startswith(f"{backend.store.label}: stored profile 'mine' is invalid: ")


def test_a_stored_nul_still_loads(backend: Backend) -> None:
    backend.store.create("local", "mine", DOC)
    backend.sql(
        "UPDATE profiles SET document_json ="
        ' \'{"description": "a\\u0000b", "runtime": {"engine": "offline"}}\''
    )
    assert backend.store.load_registry().profiles["mine"].description == "a\x00b"


# --- racing writers -----------------------------------------------------------------------------------


def _race(backend: Backend, calls: list[Callable[[ProfileStore], Any]]) -> list[Any]:
    """Run each call on its own store and thread, released together; results (or exceptions) in order."""
    stores = [backend.reopen() for _ in calls]
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return calls[i](stores[i])
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, range(len(calls))))


def test_of_two_racing_updates_exactly_one_wins(backend: Backend) -> None:
    for n in range(RACE_ROUNDS):
        slug = f"race-{n}"
        backend.store.create("local", slug, DOC)
        results = _race(
            backend,
            [
                lambda st, s=slug: st.update("local", s, {"description": "a"}, 1),
                lambda st, s=slug: st.update("local", s, {"description": "b"}, 1),
            ],
        )
        winners = [r for r in results if isinstance(r, Profile)]
        assert len(winners) == 1 and winners[0].version == 2
        [loser] = [r for r in results if not isinstance(r, Profile)]
        assert isinstance(loser, VersionConflict)
        assert loser.message == f"profile {slug!r} is at version 2, not 1"
        assert backend.store.load_registry().profiles[slug] == winners[0]


def test_of_two_racing_creates_exactly_one_wins(backend: Backend) -> None:
    for n in range(RACE_ROUNDS):
        slug = f"race-{n}"
        if n % 2:  # odd rounds race over a tombstone
            backend.store.create("local", slug, DOC)
            backend.store.delete("local", slug, 1)
        results = _race(
            backend,
            [
                lambda st, s=slug: st.create("local", s, {**DOC, "description": "a"}),
                lambda st, s=slug: st.create("local", s, {**DOC, "description": "b"}),
            ],
        )
        winners = [r for r in results if isinstance(r, Profile)]
        assert len(winners) == 1 and winners[0].version == 1 + n % 2
        [loser] = [r for r in results if not isinstance(r, Profile)]
        assert isinstance(loser, ProfileExists)
        assert backend.store.load_registry().profiles[slug] == winners[0]
    assert _count(backend) == RACE_ROUNDS


def test_of_two_racing_deletes_exactly_one_wins(backend: Backend) -> None:
    for n in range(RACE_ROUNDS):
        slug = f"race-{n}"
        backend.store.create("local", slug, DOC)
        results = _race(
            backend,
            [lambda st, s=slug: st.delete("local", s, 1), lambda st, s=slug: st.delete("local", s, 1)],
        )
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "ProfileNotFound"]
    assert backend.store.load_registry().profiles == {}
    assert backend.sql("SELECT count(*) FROM profiles WHERE deleted_at_ms IS NOT NULL") == [(RACE_ROUNDS,)]


# --- place among the registries -------------------------------------------------------------------------


def _yaml(tmp_path: Path, name: str, slug: str, profiles: str) -> Path:
    path = tmp_path / name
    path.write_text(f"slug: {slug}\nprofiles:\n{profiles}", encoding="utf-8")
    return path


def test_writable_registry_sits_between_builtin_and_files(backend: Backend, tmp_path: Path) -> None:
    shared = "  shared:\n    runtime: {engine: offline, system_prompt: from yaml}\n"
    regs = load_registries([_yaml(tmp_path, "a.yaml", "team", shared)])
    backend.store.create("local", "shared", {"runtime": {"engine": "offline", "system_prompt": "from db"}})
    backend.store.create("local", "only-here", DOC)
    backend.open_writer(regs)
    assert regs.slugs() == ["builtin", "local", "team"]
    assert regs.default_registry == "team"
    assert resolve_runtime(regs, profile="shared").system_prompt == "from yaml"  # files win
    assert resolve_runtime(regs, profile="only-here").registry_slug == "local"
    assert resolve_runtime(regs, profile="shared", registry="local").system_prompt == "from db"


def test_yaml_registry_with_the_same_slug_hides_the_writable_one(backend: Backend, tmp_path: Path) -> None:
    regs = load_registries([_yaml(tmp_path, "l.yaml", "local", "  x:\n    runtime: {engine: offline}\n")])
    writer = backend.open_writer(regs)
    reg = regs.get("local")
    assert reg is not None and reg.read_only
    assert writer.writable_slugs() == []
    with pytest.raises(ReadOnlyRegistry):
        asyncio.run(writer.create("local", {"slug": "y", **DOC}))
    assert _count(backend) == 0


def test_empty_writable_registry_is_not_default_and_has_no_default_profile(backend: Backend) -> None:
    regs = Registries.load()
    writer = backend.open_writer(regs)
    assert writer.writable_slugs() == ["local"] and writer.default_writable() == "local"
    assert regs.default_registry == "builtin"
    assert resolve_runtime(regs).registry_slug == "builtin"
    with pytest.raises(UnknownProfile):
        lookup_profile(regs, profile=None, registry="local")


def test_a_stored_profile_that_no_longer_validates_attaches_nothing(backend: Backend) -> None:
    backend.store.create("local", "mine", DOC)
    backend.sql('UPDATE profiles SET document_json = \'{"runtime": {"engine": "zzz"}}\'')
    regs = Registries.load()
    with pytest.raises(ProfileError, match="stored profile 'mine' is invalid"):
        backend.open_writer(regs)
    assert regs.slugs() == ["builtin"]


def test_writer_updates_memory_immediately(backend: Backend) -> None:
    regs = Registries.load()
    writer = backend.open_writer(regs)

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

    asyncio.run(scenario())


def test_a_second_writer_sees_the_first_ones_writes_only_when_opened_again(backend: Backend) -> None:
    regs_a, regs_b = Registries.load(), Registries.load()
    writer_a, writer_b = backend.open_writer(regs_a), backend.open_writer(regs_b)
    asyncio.run(writer_a.create("local", {"slug": "mine", **DOC}))
    assert regs_b.get("local").profiles == {}  # type: ignore[union-attr]
    with pytest.raises(ProfileExists):  # the database still decides
        asyncio.run(writer_b.create("local", {"slug": "mine", **DOC}))
    updated = asyncio.run(writer_a.update("local", "mine", {"description": "x"}, 1))
    regs_c = Registries.load()
    backend.open_writer(regs_c)
    assert regs_c.get("local").profiles == {"mine": updated}  # type: ignore[union-attr]


# --- the schemas ----------------------------------------------------------------------------------------


def _sqlite_schema(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
        ]
        # NOT NULL or part of the primary key (SQLite lets a TEXT key be NULL; PostgreSQL never does).
        columns = {
            t: [(r[1], bool(r[3] or r[5])) for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables
        }
        keys = {
            t: [r[1] for r in sorted(conn.execute(f"PRAGMA table_info({t})"), key=lambda r: r[5]) if r[5]]
            for t in tables
        }
        indexes = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        ]
        foreign = [
            (t, r[3], r[2], r[4], r[6]) for t in tables for r in conn.execute(f"PRAGMA foreign_key_list({t})")
        ]
    finally:
        conn.close()
    return {"tables": tables, "columns": columns, "keys": keys, "indexes": indexes, "foreign": foreign}


def _postgres_schema(db: Database) -> dict[str, Any]:
    with db.connection() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_name <> %s ORDER BY 1",
                (VERSIONS_TABLE,),
            )
        ]
        columns: dict[str, list[tuple[str, bool]]] = {}
        types: dict[str, dict[str, str]] = {}
        for t in tables:
            rows = conn.execute(
                "SELECT column_name, is_nullable, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                (t,),
            ).fetchall()
            columns[t] = [(name, nullable == "NO") for name, nullable, _ in rows]
            types[t] = {name: data_type for name, _, data_type in rows}
        keys = {
            t: [
                r[0]
                for r in conn.execute(
                    "SELECT k.column_name FROM information_schema.table_constraints c"
                    " JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name"
                    " AND k.table_name = c.table_name"
                    " WHERE c.table_name = %s AND c.constraint_type = 'PRIMARY KEY'"
                    " ORDER BY k.ordinal_position",
                    (t,),
                )
            ]
            for t in tables
        }
        # Indexes that back a constraint (the primary keys) are the keys above; the rest have names.
        indexes = [
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename <> %s"
                " AND indexname NOT IN (SELECT conname FROM pg_constraint) ORDER BY 1",
                (VERSIONS_TABLE,),
            )
        ]
        key_indexes = conn.execute(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename <> %s"
            " ORDER BY 1",
            (VERSIONS_TABLE,),
        ).fetchall()
        foreign = conn.execute(
            "SELECT k.table_name, k.column_name, u.table_name, u.column_name, r.delete_rule"
            " FROM information_schema.referential_constraints r"
            " JOIN information_schema.key_column_usage k ON k.constraint_name = r.constraint_name"
            " JOIN information_schema.constraint_column_usage u ON u.constraint_name = r.constraint_name"
        ).fetchall()
    return {
        "tables": tables,
        "columns": columns,
        "keys": keys,
        "indexes": indexes,
        "foreign": [tuple(r) for r in foreign],
        "types": types,
        "key_indexes": key_indexes,
    }


def test_postgres_schema_has_the_names_of_profiles_db(tmp_path: Path, pg_dsn: str) -> None:
    SQLiteProfileStore(tmp_path / "profiles.db").close()
    db = Database(pg_dsn, max_size=1)
    try:
        migrate(db, [PROFILES])
        pg = _postgres_schema(db)
        with db.connection() as conn:
            seeded = conn.execute("SELECT slug FROM profile_registries").fetchall()
    finally:
        db.close()
    lite = _sqlite_schema(tmp_path / "profiles.db")
    assert lite["tables"] == pg["tables"] == ["profile_registries", "profiles"]
    assert lite["columns"] == pg["columns"]
    assert pg["columns"]["profiles"] == [
        ("registry_slug", True),
        ("slug", True),
        ("document_json", True),
        ("version", True),
        ("created_at_ms", True),
        ("updated_at_ms", True),
        ("deleted_at_ms", False),
    ]
    assert (
        lite["keys"] == pg["keys"] == {"profile_registries": ["slug"], "profiles": ["registry_slug", "slug"]}
    )
    assert lite["indexes"] == pg["indexes"] == []  # no index beyond the primary keys
    assert pg["key_indexes"] == [
        ("profile_registries", "profile_registries_pkey"),
        ("profiles", "profiles_pkey"),
    ]
    assert lite["foreign"] == [("profiles", "registry_slug", "profile_registries", "slug", "CASCADE")]
    assert pg["foreign"] == lite["foreign"]
    assert pg["types"] == {
        "profile_registries": {"slug": "text", "created_at_ms": "bigint"},
        "profiles": {
            "registry_slug": "text",
            "slug": "text",
            "document_json": "text",
            "version": "integer",
            "created_at_ms": "bigint",
            "updated_at_ms": "bigint",
            "deleted_at_ms": "bigint",
        },
    }
    assert seeded == [(WRITABLE_REGISTRY_SLUG,)]
