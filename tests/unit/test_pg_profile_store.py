"""What only the PostgreSQL profile store has: a Database it borrows, and a schema migrated beforehand.

Its behaviour, shared with SQLite, is in tests/conformance/test_profile_store.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from webchat.runtimes.profiles import Registries
from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import migrate
from webchat.stores.postgres.profile_store import PROFILES, PostgresProfileStore, open_pg_profile_store
from webchat.stores.protocol import SchemaTooNewError, StoreError

DOC = {"runtime": {"engine": "offline"}}


@pytest.fixture
def db(pg_dsn: str) -> Iterator[Database]:
    database = Database(pg_dsn, max_size=2)
    try:
        yield database
    finally:
        database.close()


def test_closing_the_store_or_its_writer_leaves_the_database_open(db: Database) -> None:
    migrate(db, [PROFILES])
    store = PostgresProfileStore(db)
    store.create("local", "mine", DOC)
    store.close()
    writer = open_pg_profile_store(db, Registries.load())
    writer.close()
    with db.connection() as conn:
        assert conn.execute("SELECT slug, version FROM profiles").fetchall() == [("mine", 1)]
    assert PostgresProfileStore(db).load_registry().profiles["mine"].version == 1


def test_an_unmigrated_database_is_refused_and_nothing_is_attached(db: Database) -> None:
    regs = Registries.load()
    with pytest.raises(StoreError, match=r"the profiles schema is not migrated \(version 0 of 1\)"):
        open_pg_profile_store(db, regs)
    assert regs.slugs() == ["builtin"]


def test_a_newer_profiles_schema_is_refused(db: Database) -> None:
    migrate(db, [PROFILES])
    with db.connection() as conn:
        conn.execute("INSERT INTO webchat_schema_migrations VALUES ('profiles', 2, 'from the future', 0)")
    with pytest.raises(SchemaTooNewError, match=r"profiles schema is version 2, newer than this web-chat"):
        open_pg_profile_store(db, Registries.load())


def test_migrating_twice_keeps_the_one_local_registry(db: Database) -> None:
    assert [(a.component, a.to_version) for a in migrate(db, [PROFILES])] == [("profiles", 1)]
    assert migrate(db, [PROFILES]) == []
    assert PostgresProfileStore(db).registry_slugs() == ["local"]


def test_a_database_error_is_a_store_error_naming_the_database(db: Database) -> None:
    migrate(db, [PROFILES])
    with db.connection() as conn:
        conn.execute("DROP TABLE profiles")
    store = PostgresProfileStore(db)
    with pytest.raises(StoreError, match=r"profiles: relation \"profiles\" does not exist") as info:
        store.create("local", "mine", DOC)
    assert str(info.value).startswith(f"{db.label}: profiles: ")
    with pytest.raises(StoreError, match="does not exist"):
        store.load_registry()
