"""The PostgreSQL timeline and prompt tables are SQLite's timeline.db tables: same tables, columns (type
family, nullability, default), primary keys and indexes (name, uniqueness, columns, order)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import migrate
from webchat.stores.postgres.prompt_store import COMPONENTS
from webchat.stores.sqlite.timeline_store import TABLES_DDL, SQLiteTimelineStore

# Shared by both; SQLite's own migration bookkeeping (webchat_migration_state) has no PostgreSQL twin.
TABLES = (*TABLES_DDL, "webchat_schema_migrations")
# SQLite's implicit rowid is an explicit column on PostgreSQL (the first-seen tie-break, see the store).
ROWID = ("timeline_entities", "rowid")
Column = tuple[str, bool, str]  # (type family, not null, default)
Index = tuple[str, bool, tuple[tuple[str, bool], ...]]  # (table, unique, ((column, descending), ...))


@pytest.fixture
def sqlite_conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    SQLiteTimelineStore(tmp_path / "timeline.db").close()
    conn = sqlite3.connect(tmp_path / "timeline.db")
    yield conn
    conn.close()


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Any]:
    db = Database(pg_dsn, max_size=1)
    try:
        migrate(db, COMPONENTS)
        with db.connection() as conn:
            yield conn
    finally:
        db.close()


def _default(text: str | None) -> str:
    return "" if text is None else text.split("::", 1)[0]


def sqlite_columns(conn: sqlite3.Connection) -> dict[tuple[str, str], Column]:
    found = {}
    for table in TABLES:
        for _, name, sql_type, notnull, default, pk in conn.execute(f"PRAGMA table_info({table})"):
            found[(table, name)] = (sql_type.lower(), bool(notnull or pk), _default(default))
    return found


def pg_columns(conn: Any) -> dict[tuple[str, str], Column]:
    rows = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public'"
    )
    family = {"bigint": "integer", "integer": "integer", "text": "text"}
    return {
        (table, name): (family[data_type], nullable == "NO", _default(default))
        for table, name, data_type, nullable, default in rows
    }


def sqlite_indexes(conn: sqlite3.Connection) -> dict[str, Index]:
    found = {}
    for table in TABLES:
        for _, name, unique, origin, _ in conn.execute(f"PRAGMA index_list({table})"):
            cols = tuple(
                (col, bool(desc))
                for _, _, col, desc, _, key in conn.execute(f"PRAGMA index_xinfo({name})")
                if key
            )
            found[f"primary key {table}" if origin == "pk" else name] = (table, bool(unique), cols)
    return found


def pg_indexes(conn: Any) -> dict[str, Index]:
    rows = conn.execute(
        """
SELECT i.relname, t.relname, ix.indisunique, ix.indisprimary, a.attname, (ix.indoption[k.ord - 1] & 1) = 1
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE n.nspname = 'public'
ORDER BY i.relname, k.ord
"""
    )
    found: dict[str, Index] = {}
    for name, table, unique, primary, column, desc in rows:
        key = f"primary key {table}" if primary else name
        _, _, cols = found.get(key, (table, unique, ()))
        found[key] = (table, unique, (*cols, (column, desc)))
    return found


def test_tables_and_columns_are_the_same(sqlite_conn: sqlite3.Connection, pg: Any) -> None:
    tables = {r[0] for r in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == set(TABLES)
    expected = sqlite_columns(sqlite_conn)
    actual = pg_columns(pg)
    assert actual.pop(ROWID) == ("integer", True, "")
    assert actual == expected
    assert len(expected) == 44  # 2 + 7 + 10 + 2 + 19 + 4


def test_indexes_are_the_same(sqlite_conn: sqlite3.Connection, pg: Any) -> None:
    expected = sqlite_indexes(sqlite_conn)
    actual = pg_indexes(pg)
    # SQLite's index ends with the implicit rowid; PostgreSQL's names it.
    table, unique, cols = actual["timeline_entities_by_created"]
    assert cols[-1] == ("rowid", False)
    actual["timeline_entities_by_created"] = (table, unique, cols[:-1])
    assert actual == expected
    assert sorted(name for name in expected if not name.startswith("primary key")) == [
        "timeline_conversations_by_last_activity",
        "timeline_conversations_by_owner",
        "timeline_conversations_by_session",
        "timeline_entities_by_created",
        "timeline_entities_by_version",
        "webchat_prompts_by_accept_seq",
        "webchat_prompts_by_idempotency_key",
        "webchat_prompts_by_status",
        "webchat_prompts_by_turn",
    ]


def test_identifiers_sort_byte_wise_as_in_sqlite(pg: Any) -> None:
    rows = pg.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND collation_name = 'C' ORDER BY table_name, column_name"
    ).fetchall()
    assert rows == [
        ("timeline_conversations", "conv_id"),
        ("timeline_conversations", "owner_id"),
        ("timeline_conversations", "session_id"),
        ("timeline_entities", "conv_id"),
        ("timeline_entities", "entity_id"),
        ("timeline_entities", "kind"),
        ("timeline_seq_reservations", "conv_id"),
        ("timeline_versions", "conv_id"),
        ("webchat_prompts", "conv_id"),
        ("webchat_prompts", "idempotency_key"),
        ("webchat_prompts", "status"),
        ("webchat_prompts", "turn_id"),
        ("webchat_prompts", "user_id"),
    ]
