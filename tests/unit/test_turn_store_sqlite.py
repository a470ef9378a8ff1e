"""What only the SQLite turn store has: its statement count, the legacy fill-only save, file errors.

The contract every backend shares is tested in tests/conformance/test_turn_store.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.test_turn_store import turn
from webchat.stores.protocol import StoreError, TurnQuery
from webchat.stores.sqlite.turn_store import SQLiteTurnStore, save_snapshot_tx
from webchat.stores.turn_rows import block_rows, loads
from webchat.stores.turns import open_turn_store
from webchat.turns.hashing import block_content_hash
from webchat.turns.model import Block, Turn


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteTurnStore]:
    s = open_turn_store(tmp_path / "turns.db")
    assert isinstance(s, SQLiteTurnStore)
    try:
        yield s
    finally:
        s.close()


def rows(store: SQLiteTurnStore, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"{store.path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


def count_statements(store: SQLiteTurnStore, action: Any) -> int:
    conn = store._readers.get()  # the read connection of this thread
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    return len(seen)


def test_listing_is_not_one_query_per_snapshot(store: SQLiteTurnStore) -> None:
    for i in range(3):
        store.save_snapshot("c1", "s1", turn(f"t{i}", "q", "a"), "final", 1000 + i)
    few = count_statements(store, lambda: store.list_snapshots(TurnQuery(conv_id="c1")))
    for i in range(3, 60):
        store.save_snapshot("c1", "s1", turn(f"t{i}", "q", "a"), "final", 1000 + i)
        store.save_snapshot("c1", "s1", turn(f"t{i}", "q"), "pre_inference", 500 + i)
    assert len(store.list_snapshots(TurnQuery(conv_id="c1", limit=500))) == 3 + 57 * 2
    many = count_statements(store, lambda: store.list_snapshots(TurnQuery(conv_id="c1", limit=500)))
    assert few == many <= 2
    assert count_statements(store, lambda: store.load_turn("c1", "s1", "t5")) <= 2
    assert count_statements(store, lambda: store.latest_snapshot("c1")) <= 2


def test_fill_only_save_never_replaces_a_recorded_value(store: SQLiteTurnStore) -> None:
    """The legacy conversion's upsert: it fills empty values and leaves recorded ones alone."""
    store.save_snapshot("c", "s", turn("t1", "hi"), "pre_inference", 10, runtime_key="planner")
    store._writer.run(
        lambda conn: save_snapshot_tx(
            conn, "c", "s", turn("t1", "hi"), "final", 20, "fast", "inf-1", fill_only=True
        )
    )
    assert rows(store, "SELECT runtime_key, inference_id, turn_created_at_ms, updated_at_ms FROM turns") == [
        ("planner", "inf-1", 10, 20)
    ]
    # The normal save does replace with a non-empty value.
    store.save_snapshot("c", "s", turn("t1", "hi"), "final", 30, runtime_key="fast")
    assert rows(store, "SELECT runtime_key, inference_id FROM turns") == [("fast", "inf-1")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (None, {}),
        ("", {}),
        ("{}", {}),
        ('{"a": 1}', {"a": 1}),
        ("not json", {"_invalid_json": "not json"}),
        ("[1, 2]", {"_value": [1, 2]}),
        ("3", {"_value": 3}),
    ],
)
def test_stored_json_columns_always_load_as_objects(text: str | None, value: dict[str, Any]) -> None:
    assert loads(text) == value


def test_absent_payload_and_metadata_are_stored_as_empty_objects() -> None:
    bare = Turn(id="t1", blocks=[Block(kind="user", role="user", payload=None, metadata=None)])  # type: ignore[arg-type]
    (row,), keys = block_rows(bare, 7)
    assert row[0] == "t1#0" and row[5:] == ("{}", "{}", 7)
    assert keys == [("t1#0", block_content_hash("user", "user", {}, {}))]


def test_error_messages_name_the_problem(store: SQLiteTurnStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^session_id must be a non-empty string$"):
        store.save_snapshot("c", " ", turn("t1", "hi"), "final", 1)
    with pytest.raises(StoreError, match=r"nope\.db: no such store$"):
        SQLiteTurnStore(tmp_path / "nope.db")
