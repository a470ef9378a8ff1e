"""PostgreSQL schema migrations on a real server: ordered steps, one transaction, one advisory lock."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.pg_server import free_port
from webchat.stores.postgres.database import Database, redacted
from webchat.stores.postgres.migrations import (
    Component,
    Step,
    migrate,
    recorded_versions,
    require_current,
)
from webchat.stores.protocol import SchemaTooNewError, StoreError

NOTES = Component(
    "notes",
    (
        Step("notes table", ("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)",)),
        Step("notes index", ("CREATE INDEX notes_by_body ON notes (body)",)),
    ),
)
TAGS = Component("tags", (Step("tags table", ("CREATE TABLE tags (name TEXT PRIMARY KEY)",)),))


@pytest.fixture
def db(pg_dsn: str):
    database = Database(pg_dsn, max_size=4)
    try:
        yield database
    finally:
        database.close()


def tables(db: Database) -> set[str]:
    with db.connection() as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_migrate_applies_every_step_once_and_records_each(db: Database) -> None:
    applied = migrate(db, [NOTES, TAGS])
    assert [(a.component, a.from_version, a.to_version, a.steps) for a in applied] == [
        ("notes", 0, 2, ("notes table", "notes index")),
        ("tags", 0, 1, ("tags table",)),
    ]
    assert {"notes", "tags", "webchat_schema_migrations"} <= tables(db)
    with db.connection() as conn:
        assert recorded_versions(conn) == {"notes": 2, "tags": 1}
        rows = conn.execute(
            "SELECT component, version, name FROM webchat_schema_migrations ORDER BY component, version"
        ).fetchall()
        index = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'notes'").fetchall()
    assert rows == [("notes", 1, "notes table"), ("notes", 2, "notes index"), ("tags", 1, "tags table")]
    assert ("notes_by_body",) in index
    assert migrate(db, [NOTES, TAGS]) == []


def test_a_later_step_runs_alone_on_an_older_database(db: Database) -> None:
    migrate(db, [Component("notes", NOTES.steps[:1])])
    applied = migrate(db, [NOTES])
    assert [(a.from_version, a.to_version, a.steps) for a in applied] == [(1, 2, ("notes index",))]


def test_a_newer_schema_is_refused_before_anything_runs(db: Database) -> None:
    migrate(db, [NOTES])
    with db.connection() as conn:
        conn.execute("INSERT INTO webchat_schema_migrations VALUES ('notes', 3, 'from the future', 0)")
    with pytest.raises(
        SchemaTooNewError, match=r"notes schema is version 3, newer than this web-chat knows \(2\)"
    ):
        migrate(db, [TAGS, NOTES])
    assert "tags" not in tables(db)  # TAGS comes first in the list, yet nothing ran
    with pytest.raises(SchemaTooNewError):
        require_current(db, [NOTES])


def test_a_failing_step_leaves_nothing_half_applied(db: Database) -> None:
    broken = Component(
        "notes",
        (*NOTES.steps, Step("bad", ("CREATE TABLE extra (x INT)", "CREATE INDEX ON no_such_table (x)"))),
    )
    with pytest.raises(StoreError, match='migration failed: relation "no_such_table" does not exist'):
        migrate(db, [TAGS, broken])
    assert tables(db) == set()  # the versions table too: it was created in the same transaction
    with db.connection() as conn:
        assert recorded_versions(conn) == {}


def test_instances_migrating_together_serialize_on_the_advisory_lock(db: Database) -> None:
    errors: list[BaseException] = []
    results = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(db, [NOTES, TAGS]))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Exactly one of them did the work; the others found it done.
    assert sorted(len(r) for r in results) == [0, 0, 0, 2]
    with db.connection() as conn:
        count = conn.execute("SELECT COUNT(*) FROM webchat_schema_migrations").fetchone()
    assert count == (3,)


def test_require_current_names_the_command_that_fixes_an_old_schema(db: Database) -> None:
    with pytest.raises(
        StoreError, match=r"notes schema is not migrated \(version 0 of 2\); run `web-chat db migrate"
    ):
        require_current(db, [NOTES])
    migrate(db, [NOTES])
    require_current(db, [NOTES])


def test_an_unreachable_server_is_one_error_without_the_password() -> None:
    dsn = f"postgresql://someone:s3cret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreError) as info:
        Database(dsn)
    message = str(info.value)
    assert message.startswith(
        f"postgresql://someone:***@127.0.0.1:{dsn.rsplit(':', 1)[1].split('/')[0]}/nothing: cannot connect: "
    )
    assert "s3cret" not in message


def test_a_missing_database_is_named(pg_dsn: str) -> None:
    with pytest.raises(StoreError, match=r'cannot connect: .*database "no_such_db" does not exist'):
        Database(pg_dsn.rsplit("/", 1)[0] + "/no_such_db")


@pytest.mark.parametrize("dsn", ["sqlite:///x.db", "/var/lib/web-chat/turns.db", ""])
def test_only_postgresql_urls_are_taken(dsn: str) -> None:
    with pytest.raises(StoreError, match="not a PostgreSQL URL"):
        Database(dsn)


def test_redacted_hides_only_the_password() -> None:
    assert redacted("postgresql://u:pw@db.example:5433/chat?sslmode=require") == (
        "postgresql://u:***@db.example:5433/chat?sslmode=require"
    )
    assert redacted("postgresql://u@db/chat") == "postgresql://u@db/chat"
    assert redacted("postgres://u:p@[::1]:5432/x") == "postgres://u:***@[::1]:5432/x"


def test_connections_are_bounded_by_the_pool(pg_dsn: str) -> None:
    database = Database(pg_dsn, max_size=2, timeout_s=0.3)
    try:
        full = r"no free database connection after 0.3 s \(pool of 2\)"
        with database.connection(), database.connection():
            third = database.connection()
            with pytest.raises(StoreError, match=full):
                third.__enter__()
        with database.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        database.close()


def test_a_statement_timeout_is_set_on_every_connection(db: Database) -> None:
    with db.connection() as conn:
        value = conn.execute("SHOW statement_timeout").fetchone()
    assert value == ("1min",)
    assert isinstance(conn, psycopg.Connection)
