"""What only the PostgreSQL auth store has: a Database it borrows, a migration, database errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from webchat.auth.base import SCHEMA_NAME
from webchat.auth.passwords import make_hasher
from webchat.auth.pg_store import AUTH_COMPONENT, PostgresAuthStore
from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import migrate
from webchat.stores.protocol import StoreError

FAST = make_hasher(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def db(pg_dsn: str) -> Iterator[Database]:
    database = Database(pg_dsn, max_size=2)
    try:
        yield database
    finally:
        database.close()


def test_the_auth_component_migrates_once(db: Database) -> None:
    applied = migrate(db, [AUTH_COMPONENT])
    assert [(a.component, a.from_version, a.to_version, a.steps) for a in applied] == [
        ("auth", 0, 1, (SCHEMA_NAME,))
    ]
    assert migrate(db, [AUTH_COMPONENT]) == []


def test_closing_the_store_leaves_the_database_open(db: Database) -> None:
    migrate(db, [AUTH_COMPONENT])
    store = PostgresAuthStore(db, hasher=FAST)
    alice = store.add_user("alice", "correct horse battery")
    store.close()
    with pytest.raises(StoreError, match=r"^auth store is closed$"):
        store.get_user("alice")
    with db.connection() as conn:
        assert conn.execute("SELECT username FROM auth_users").fetchall() == [("alice",)]
    other = PostgresAuthStore(db, hasher=FAST)
    assert other.get_user("ALICE") == alice
    other.close()


def test_an_unmigrated_database_is_a_store_error_naming_it(db: Database) -> None:
    store = PostgresAuthStore(db, hasher=FAST)
    with pytest.raises(StoreError) as info:
        store.list_users()
    assert str(info.value) == f'{db.label}: cannot read auth store: relation "auth_users" does not exist'
    with pytest.raises(StoreError) as info:
        store.purge_sessions(idle_timeout_ms=1)
    assert str(info.value) == f'{db.label}: cannot write auth store: relation "auth_sessions" does not exist'
    store.close()
