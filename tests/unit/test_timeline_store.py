"""What only the SQLite timeline store does: its file, read-only opening, upgrading older files, refusing
newer ones. The protocol itself is tested on every backend in tests/conformance/test_timeline_store.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from webchat.stores.protocol import SchemaTooNewError, StoreError
from webchat.stores.sqlite.timeline_store import (
    COMPONENT,
    INDEXES,
    SCHEMA_VERSION,
    SQLiteTimelineStore,
    decode_props,
    upgrade_schema,
)
from webchat.stores.sqlite.turn_schema import columns, index_names, table_exists
from webchat.stores.timeline import ConversationRecord, Entity


def ent(entity_id: str, at: int, kind: str = "message", **props: object) -> Entity:
    return Entity(entity_id, kind, at, at, 0, dict(props))


def _raw(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_schema_version_recorded_and_newer_refused(tmp_path: Path) -> None:
    path = tmp_path / "timeline.db"
    SQLiteTimelineStore(path).close()
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT component, version FROM webchat_schema_migrations").fetchall()
    conn.close()
    assert rows == [(COMPONENT, SCHEMA_VERSION)]
    _raw(
        path,
        f"INSERT INTO webchat_schema_migrations VALUES ('{COMPONENT}', {SCHEMA_VERSION + 1}, 'future', 0)",
    )
    with pytest.raises(SchemaTooNewError, match="newer"):
        SQLiteTimelineStore(path)
    with pytest.raises(SchemaTooNewError):
        SQLiteTimelineStore(path, readonly=True)


def test_readonly_requires_the_file_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(StoreError):
        SQLiteTimelineStore(path, readonly=True)
    assert not path.exists()
    SQLiteTimelineStore(path).close()
    store = SQLiteTimelineStore(path, readonly=True)
    try:
        with pytest.raises(StoreError, match="read-only"):
            store.apply("c", 1, [])
    finally:
        store.close()


# An older layout: the entity tables of an early reference release, without the conversation index,
# with entity documents as the reference wrote them (the whole entity as protojson).
OLD_LAYOUT = (
    "CREATE TABLE timeline_versions (conv_id TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE TABLE timeline_entities (conv_id TEXT NOT NULL, entity_id TEXT NOT NULL, kind TEXT NOT NULL, "
    "version INTEGER NOT NULL, entity_json TEXT NOT NULL, PRIMARY KEY (conv_id, entity_id))",
    "INSERT INTO timeline_versions VALUES ('c', 2)",
    "INSERT INTO timeline_entities VALUES ('c', 'm1', 'message', 1, "
    '\'{"id":"m1","kind":"message","createdAtMs":"5","props":{"role":"user","content":"hi"}}\')',
    "INSERT INTO timeline_entities VALUES ('c', 'm2', 'message', 2, "
    '\'{"id":"m2","kind":"message","message":{"role":"assistant","content":"yo","streaming":false}}\')',
)


def test_readonly_reads_an_old_file_without_changing_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _raw(path, *OLD_LAYOUT)
    before = path.read_bytes()
    store = SQLiteTimelineStore(path, readonly=True)
    try:
        snap = store.snapshot("c")
        assert snap.version == 2
        assert [(e.id, e.created_at_ms, e.props) for e in snap.entities] == [
            ("m1", 0, {"role": "user", "content": "hi"}),
            ("m2", 0, {"role": "assistant", "content": "yo", "streaming": False}),
        ]
        assert store.list_conversations() == []
        assert store.get_conversation("c") is None
        assert [s.entities for s in store.stats()] == [2]
        assert store.verify() == []
    finally:
        store.close()
    assert path.read_bytes() == before


def test_upgrade_of_an_older_file_is_additive_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _raw(
        path,
        *OLD_LAYOUT,
        # a table web-chat does not know: the upgrade never drops anything
        "CREATE TABLE legacy_keep (x INTEGER)",
    )
    conn = sqlite3.connect(path)
    planned = upgrade_schema(conn, dry_run=True)
    conn.close()
    assert "create table timeline_conversations" in planned
    assert "add column timeline_entities.created_at_ms" in planned

    store = SQLiteTimelineStore(path)
    try:
        snap = store.snapshot("c")
        assert snap.version == 2 and [e.id for e in snap.entities] == ["m1", "m2"]
        store.apply("c", 3, [ent("m3", 10, role="user", content="again")])
        store.upsert_conversation(ConversationRecord("c", session_id="s", runtime_key="default"))
        rec = store.get_conversation("c")
        assert rec is not None and rec.runtime_key == "default" and rec.last_seen_version == 3
    finally:
        store.close()

    conn = sqlite3.connect(path)
    try:
        assert table_exists(conn, "legacy_keep")
        assert {"created_at_ms", "updated_at_ms"} <= set(columns(conn, "timeline_entities"))
        assert set(INDEXES) <= set(index_names(conn))
        conn.execute("BEGIN IMMEDIATE")
        assert upgrade_schema(conn) == []
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_upgrade_adds_missing_index_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _raw(
        path,
        "CREATE TABLE timeline_conversations (conv_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, "
        "created_at_ms INTEGER NOT NULL, last_activity_ms INTEGER NOT NULL)",
        "INSERT INTO timeline_conversations VALUES ('c', 's', 1, 2)",
    )
    readonly = SQLiteTimelineStore(path, readonly=True)
    try:
        assert readonly.get_conversation("c") == ConversationRecord("c", "s", "", 1, 2, 0, True, "active", "")
    finally:
        readonly.close()
    store = SQLiteTimelineStore(path)
    try:
        store.set_pointer("c", "planner", 5)
        assert store.get_conversation("c") == ConversationRecord(
            "c", "s", "planner", 1, 5, 0, True, "active", ""
        )
    finally:
        store.close()


def test_decode_props_keeps_plain_props() -> None:
    assert decode_props(json.dumps({"role": "user"}), "m", "message") == {"role": "user"}
    # Only a document naming this entity is read as a whole-entity document.
    assert decode_props(json.dumps({"id": "other", "kind": "message", "x": 1}), "m", "message") == {
        "id": "other",
        "kind": "message",
        "x": 1,
    }
