"""The SQLite timeline store: entities and versions, the conversation index, schema upgrade and refusal."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
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
from webchat.stores.timeline import ConversationRecord, Entity, TimelineStore


def ent(entity_id: str, at: int, kind: str = "message", **props: object) -> Entity:
    return Entity(entity_id, kind, at, at, 0, dict(props))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteTimelineStore]:
    s = SQLiteTimelineStore(tmp_path / "timeline.db")
    yield s
    s.close()


def test_is_a_timeline_store(store: SQLiteTimelineStore) -> None:
    assert isinstance(store, TimelineStore)


def test_apply_round_trip_and_versions(store: SQLiteTimelineStore) -> None:
    assert store.current_version("c1") == 0
    assert store.snapshot("c1").to_dict() == {"conv_id": "c1", "version": 0, "entities": []}
    store.apply("c1", 1, [ent("u1", 1000, role="user", content="hi", nested={"a": [1, 2]})])
    store.apply("c1", 2, [ent("a1", 1001, role="assistant", content="")])
    store.apply("c1", 3, [ent("a1", 1005, role="assistant", content="hello")])
    assert store.current_version("c1") == 3
    snap = store.snapshot("c1")
    assert snap.version == 3
    assert [e.to_dict() for e in snap.entities] == [
        {
            "id": "u1",
            "kind": "message",
            "created_at_ms": 1000,
            "updated_at_ms": 1000,
            "version": 1,
            "props": {"role": "user", "content": "hi", "nested": {"a": [1, 2]}},
        },
        {
            "id": "a1",
            "kind": "message",
            "created_at_ms": 1001,  # kept from the first write
            "updated_at_ms": 1005,
            "version": 3,
            "props": {"role": "assistant", "content": "hello"},
        },
    ]
    assert store.get_entity("c1", "a1") == snap.entities[1]
    assert store.get_entity("c1", "nope") is None
    assert store.current_version("other") == 0


def test_version_never_goes_back_and_empty_apply_records_the_version(store: SQLiteTimelineStore) -> None:
    store.apply("c1", 5, [ent("x", 10, content="new")])
    store.apply("c1", 3, [ent("x", 11, content="stale")])
    assert store.current_version("c1") == 5
    entity = store.get_entity("c1", "x")
    assert entity is not None and entity.props == {"content": "new"} and entity.version == 5
    store.apply("c1", 6, [])
    assert store.current_version("c1") == 6


def test_first_seen_order_uses_created_then_insertion(store: SQLiteTimelineStore) -> None:
    # Same created_at_ms: insertion order decides; a later update does not move an entity.
    store.apply("c", 1, [ent("zeta", 100), ent("alpha", 100)])
    store.apply("c", 2, [ent("mid", 100)])
    store.apply("c", 3, [ent("early", 50)])
    store.apply("c", 4, [ent("zeta", 900, content="updated")])
    assert [e.id for e in store.snapshot("c").entities] == ["early", "zeta", "alpha", "mid"]


def test_since_version_and_limit(store: SQLiteTimelineStore) -> None:
    for seq in range(1, 6):
        store.apply("c", seq, [ent(f"e{seq}", seq)])
    store.apply("c", 6, [ent("e2", 99, content="changed")])
    snap = store.snapshot("c", since_version=3)
    assert snap.version == 6
    assert [(e.id, e.version) for e in snap.entities] == [("e2", 6), ("e4", 4), ("e5", 5)]
    assert [e.id for e in store.snapshot("c", limit=2).entities] == ["e1", "e2"]
    assert store.snapshot("c", since_version=6).entities == []


def test_conversations_are_separate(store: SQLiteTimelineStore) -> None:
    store.apply("a", 1, [ent("x", 1, v="a")])
    store.apply("b", 7, [ent("x", 2, v="b")])
    assert [e.props for e in store.snapshot("a").entities] == [{"v": "a"}]
    assert store.snapshot("b").version == 7


def test_apply_validates_input(store: SQLiteTimelineStore) -> None:
    with pytest.raises(ValueError):
        store.apply("", 1, [])
    with pytest.raises(ValueError):
        store.apply("c", 0, [])
    with pytest.raises(ValueError):
        store.apply("c", 1, [ent("", 1)])
    assert store.current_version("c") == 0


def test_conversation_upsert_and_pointer_semantics(store: SQLiteTimelineStore) -> None:
    assert store.get_conversation("c1") is None
    store.upsert_conversation(
        ConversationRecord(
            "c1", session_id="s1", runtime_key="planner", created_at_ms=100, last_activity_ms=100
        )
    )
    # An empty pointer never clears the pointer; created_at_ms is kept; activity and version only grow.
    store.upsert_conversation(
        ConversationRecord(
            "c1", session_id="", runtime_key="", created_at_ms=999, last_activity_ms=50, last_seen_version=4
        )
    )
    rec = store.get_conversation("c1")
    assert rec == ConversationRecord(
        conv_id="c1",
        session_id="s1",
        runtime_key="planner",
        created_at_ms=100,
        last_activity_ms=100,
        last_seen_version=4,
        has_timeline=True,
        status="active",
        last_error="",
    )
    store.upsert_conversation(
        ConversationRecord(
            "c1", runtime_key="default", last_activity_ms=200, status="idle", last_error="boom"
        )
    )
    rec = store.get_conversation("c1")
    assert rec is not None
    assert (rec.runtime_key, rec.last_activity_ms, rec.status, rec.last_error) == (
        "default",
        200,
        "idle",
        "boom",
    )
    store.set_pointer("c1", "gpt-4o-mini", 300)
    rec = store.get_conversation("c1")
    assert rec is not None and (rec.runtime_key, rec.last_activity_ms, rec.session_id) == (
        "gpt-4o-mini",
        300,
        "s1",
    )
    with pytest.raises(ValueError):
        store.set_pointer("c1", "  ", 400)
    # The pointer of an unknown conversation creates its index row.
    store.set_pointer("c2", "planner", 50)
    rec2 = store.get_conversation("c2")
    assert rec2 is not None and rec2.runtime_key == "planner" and rec2.created_at_ms == 50


def test_list_conversations_newest_first(store: SQLiteTimelineStore) -> None:
    for conv_id, at in (("b", 200), ("a", 200), ("c", 300), ("d", 100)):
        store.upsert_conversation(ConversationRecord(conv_id, session_id="s", last_activity_ms=at))
    assert [r.conv_id for r in store.list_conversations()] == ["c", "a", "b", "d"]
    assert [r.conv_id for r in store.list_conversations(limit=2)] == ["c", "a"]
    assert [r.conv_id for r in store.list_conversations(since_ms=200)] == ["c", "a", "b"]


def test_apply_keeps_the_index_progress(store: SQLiteTimelineStore) -> None:
    store.upsert_conversation(ConversationRecord("c", session_id="s", runtime_key="k", last_activity_ms=10))
    store.apply("c", 3, [ent("x", 500)])
    rec = store.get_conversation("c")
    assert rec is not None
    assert (rec.last_seen_version, rec.last_activity_ms, rec.runtime_key, rec.session_id) == (
        3,
        500,
        "k",
        "s",
    )
    store.apply("new", 1, [ent("x", 700)])
    created = store.get_conversation("new")
    assert created is not None and (created.session_id, created.runtime_key, created.last_seen_version) == (
        "",
        "",
        1,
    )


def test_stats_and_verify(store: SQLiteTimelineStore) -> None:
    store.apply("c", 1, [ent("u", 1), ent("t", 1, kind="tool_call")])
    store.apply("c", 2, [ent("a", 2)])
    assert [s.to_dict() for s in store.stats()] == [
        {"conv_id": "c", "kind": "message", "entities": 2, "max_entity_version": 2, "version": 2},
        {"conv_id": "c", "kind": "tool_call", "entities": 1, "max_entity_version": 1, "version": 2},
    ]
    assert store.verify() == []


def _raw(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_verify_reports_inconsistencies(tmp_path: Path) -> None:
    path = tmp_path / "timeline.db"
    SQLiteTimelineStore(path).close()
    _raw(
        path,
        "INSERT INTO timeline_versions VALUES ('c', 2)",
        "INSERT INTO timeline_entities VALUES ('c', 'ahead', 'message', 1, 1, 5, '{}')",
        "INSERT INTO timeline_entities VALUES ('c', 'bad', 'message', 1, 1, 1, 'not json')",
        "INSERT INTO timeline_entities VALUES ('orphan', 'x', 'message', 1, 1, 1, '[1]')",
    )
    store = SQLiteTimelineStore(path, readonly=True)
    try:
        problems = [(p.check, p.conv_id, p.entity_id) for p in store.verify()]
        bad = store.get_entity("c", "bad")
    finally:
        store.close()
    assert problems == [
        ("entity_version_ahead", "c", "ahead"),
        ("missing_version_row", "orphan", ""),
        ("invalid_entity_json", "c", "bad"),
        ("invalid_entity_json", "orphan", "x"),
    ]
    assert bad is not None and bad.props == {"invalid_entity_json": "not json"}


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
