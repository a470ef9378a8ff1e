"""What only the PostgreSQL turn store has to prove: the same schema as turns.db, concurrent writers,
migration on open. The shared contract is in tests/conformance/test_turn_store.py."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from tests.conformance.test_turn_store import turn
from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import recorded_versions
from webchat.stores.postgres.turn_store import COMPONENT, PostgresTurnStore
from webchat.stores.protocol import StoreError, TurnQuery
from webchat.stores.sqlite.turn_schema import SCHEMA_VERSION
from webchat.stores.turns import open_turn_store


def sqlite_schema(path: Path) -> dict[str, list[str]]:
    with closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
        out["indexes"] = sorted(
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        )
    return out


def pg_schema(dsn: str) -> dict[str, list[str]]:
    with psycopg.connect(dsn) as conn:
        cols = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey'"
        ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in cols:
        out.setdefault(table, []).append(column)
    out["indexes"] = sorted(r[0] for r in indexes)
    return out


def test_the_schema_has_the_tables_columns_and_index_names_of_turns_db(pg_dsn: str, tmp_path: Path) -> None:
    open_turn_store(tmp_path / "turns.db").close()
    open_turn_store(pg_dsn).close()
    sqlite_side = sqlite_schema(tmp_path / "turns.db")
    pg_side = pg_schema(pg_dsn)
    # turns.db also keeps the bookkeeping of its in-place upgrades of legacy layouts; PostgreSQL has none.
    assert set(sqlite_side) - set(pg_side) == {"webchat_legacy_unparseable", "webchat_migration_state"}
    assert pg_side == {name: cols for name, cols in sqlite_side.items() if name in pg_side}
    assert "turns_by_conv_runtime_updated" in pg_side["indexes"]


def test_opening_migrates_to_the_version_sqlite_records(pg_dsn: str) -> None:
    open_turn_store(pg_dsn).close()
    with psycopg.connect(pg_dsn) as conn:
        assert recorded_versions(conn) == {"turns": SCHEMA_VERSION}
    assert COMPONENT.version == SCHEMA_VERSION


def test_opening_without_create_refuses_an_unmigrated_database(pg_dsn: str) -> None:
    with pytest.raises(StoreError, match=r"turns schema is not migrated \(version 0 of 3\)"):
        open_turn_store(pg_dsn, create=False)
    open_turn_store(pg_dsn).close()
    open_turn_store(pg_dsn, create=False).close()


def test_concurrent_saves_sharing_blocks_all_land(pg_dsn: str) -> None:
    """Four writers save turns whose history blocks overlap (as instances sharing a database would)."""
    open_turn_store(pg_dsn).close()
    db = Database(pg_dsn, max_size=8)
    store = PostgresTurnStore(db, owns_database=True)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(n: int) -> None:
        start.wait()
        try:
            for i in range(25):
                # The same block ids (the shared "sys" block and t-i history) from every writer.
                t = turn(f"t{i}", "q", "a")
                store.save_snapshot(f"c{n}", "s", t, "final", 1000 + i, runtime_key=f"rk{n}")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        for n in range(4):
            history = store.runtime_history(f"c{n}")
            assert [(r.turn_id, r.runtime_key) for r in history] == [(f"t{i}", f"rk{n}") for i in range(25)]
            assert len(store.list_snapshots(TurnQuery(conv_id=f"c{n}", limit=100))) == 25
    finally:
        store.close()


def test_text_postgresql_cannot_hold_is_one_store_error(pg_dsn: str) -> None:
    store = open_turn_store(pg_dsn)
    try:
        with pytest.raises(StoreError, match=r"cannot save turn t1: .*NUL"):
            store.save_snapshot("c\x00", "s", turn("t1", "q"), "final", 1)
        store.save_snapshot("c", "s", turn("t1", "q\x00"), "final", 1)  # JSON escapes it: stored as text
        (snap,) = store.list_snapshots(TurnQuery(conv_id="c"))
        assert snap.turn.blocks[1].payload == {"text": "q\x00"}
    finally:
        store.close()


def test_the_database_of_an_opened_store_is_closed_with_it(pg_dsn: str) -> None:
    store = open_turn_store(pg_dsn)
    assert isinstance(store, PostgresTurnStore)
    store.close()
    assert store.db.pool.closed
