"""The TimelineStore contract, on SQLite and PostgreSQL alike: entities and versions, seq reservations, the
conversation index and its pointer, inspection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.backends import BACKENDS, open_stores, raw
from webchat.stores.timeline import ConversationRecord, Entity, TimelineProblem, TimelineStore


def ent(entity_id: str, at: int, kind: str = "message", **props: object) -> Entity:
    return Entity(entity_id, kind, at, at, 0, dict(props))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TimelineStore]:
    with open_stores(request.param, tmp_path, request) as stores:
        yield stores.timeline


def test_is_a_timeline_store(store: TimelineStore) -> None:
    assert isinstance(store, TimelineStore)


def test_apply_round_trip_and_versions(store: TimelineStore) -> None:
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


def test_entity_json_is_stored_as_the_same_compact_text(store: TimelineStore) -> None:
    store.apply("c", 1, [ent("m", 5, content="héllo \u2603", n=1.5, ok=True, none=None)])
    assert raw(store, "SELECT entity_json FROM timeline_entities WHERE conv_id = ?", ("c",)) == [
        ('{"content":"héllo \u2603","n":1.5,"ok":true,"none":null}',)
    ]


def test_version_never_goes_back_and_empty_apply_records_the_version(store: TimelineStore) -> None:
    store.apply("c1", 5, [ent("x", 10, content="new")])
    store.apply("c1", 3, [ent("x", 11, content="stale")])
    assert store.current_version("c1") == 5
    entity = store.get_entity("c1", "x")
    assert entity is not None and entity.props == {"content": "new"} and entity.version == 5
    store.apply("c1", 6, [])
    assert store.current_version("c1") == 6


def test_first_seen_order_uses_created_then_insertion(store: TimelineStore) -> None:
    # Same created_at_ms: insertion order decides; a later update does not move an entity.
    store.apply("c", 1, [ent("zeta", 100), ent("alpha", 100)])
    store.apply("c", 2, [ent("mid", 100)])
    store.apply("c", 3, [ent("early", 50)])
    store.apply("c", 4, [ent("zeta", 900, content="updated")])
    assert [e.id for e in store.snapshot("c").entities] == ["early", "zeta", "alpha", "mid"]


def test_since_version_and_limit(store: TimelineStore) -> None:
    for seq in range(1, 6):
        store.apply("c", seq, [ent(f"e{seq}", seq)])
    store.apply("c", 6, [ent("e2", 99, content="changed")])
    snap = store.snapshot("c", since_version=3)
    assert snap.version == 6
    assert [(e.id, e.version) for e in snap.entities] == [("e2", 6), ("e4", 4), ("e5", 5)]
    assert [e.id for e in store.snapshot("c", limit=2).entities] == ["e1", "e2"]
    assert store.snapshot("c", limit=0).entities == []
    assert store.snapshot("c", since_version=6).entities == []


def test_apply_batch_writes_each_entity_once_in_its_last_state(store: TimelineStore) -> None:
    store.apply_batch("c", [])
    assert store.current_version("c") == 0 and store.get_conversation("c") is None
    store.apply_batch(
        "c",
        [
            (1, [ent("u", 10, role="user")]),
            (2, [ent("a", 11, content="he")]),
            (3, [Entity("a", "message", 99, 12, 0, {"content": "hello"})]),
        ],
    )
    assert store.current_version("c") == 3
    assert [e.to_dict() for e in store.snapshot("c").entities] == [
        {"id": "u", "kind": "message", "created_at_ms": 10, "updated_at_ms": 10, "version": 1,
         "props": {"role": "user"}},
        # the last event's state; created_at_ms is that event's too, since the batch writes the entity once
        {"id": "a", "kind": "message", "created_at_ms": 99, "updated_at_ms": 12, "version": 3,
         "props": {"content": "hello"}},
    ]  # fmt: skip
    rec = store.get_conversation("c")
    assert rec is not None and (rec.last_seen_version, rec.last_activity_ms) == (3, 12)
    with pytest.raises(ValueError, match="seq must be positive"):
        store.apply_batch("c", [(4, []), (0, [])])
    assert store.current_version("c") == 3


def test_conversations_are_separate(store: TimelineStore) -> None:
    store.apply("a", 1, [ent("x", 1, v="a")])
    store.apply("b", 7, [ent("x", 2, v="b")])
    assert [e.props for e in store.snapshot("a").entities] == [{"v": "a"}]
    assert store.snapshot("b").version == 7


def test_apply_validates_input(store: TimelineStore) -> None:
    with pytest.raises(ValueError, match="conv_id must be a non-empty string"):
        store.apply("", 1, [])
    with pytest.raises(ValueError, match="seq must be positive"):
        store.apply("c", 0, [])
    with pytest.raises(ValueError, match="entity id must be a non-empty string"):
        store.apply("c", 1, [ent("", 1)])
    with pytest.raises(ValueError, match="entity kind must be a non-empty string"):
        store.apply("c", 1, [ent("x", 1, kind=" ")])
    assert store.current_version("c") == 0


def test_seq_reservations_only_grow_and_settle_down_to_what_was_delivered(store: TimelineStore) -> None:
    assert store.reserved_seq("c") == 0
    store.reserve_seq("c", 256)
    store.reserve_seq("c", 100)  # reservations only grow
    assert store.reserved_seq("c") == 256
    store.apply("c", 40, [ent("x", 1)])
    store.settle_seq("c", 30)  # never below the written version
    assert store.reserved_seq("c") == 40
    store.reserve_seq("c", 512)
    store.settle_seq("c", 70)
    assert store.reserved_seq("c") == 70
    store.settle_seq("unknown", 5)  # nothing reserved: nothing to give back
    assert store.reserved_seq("unknown") == 0
    assert store.reserved_seq("other") == 0
    with pytest.raises(ValueError, match="conv_id must be a non-empty string"):
        store.reserve_seq(" ", 3)


def test_conversation_upsert_and_pointer_semantics(store: TimelineStore) -> None:
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
    assert store.get_conversation("c1") == ConversationRecord(
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
    with pytest.raises(ValueError, match="runtime_key must be a non-empty string"):
        store.set_pointer("c1", "  ", 400)
    # The pointer of an unknown conversation creates its index row.
    store.set_pointer("c2", "planner", 50)
    assert store.get_conversation("c2") == ConversationRecord(
        "c2", "", "planner", 50, 50, 0, True, "active", ""
    )


def test_owner_and_has_timeline_are_kept_from_the_first_write(store: TimelineStore) -> None:
    store.upsert_conversation(
        ConversationRecord("c", session_id="s", created_at_ms=7, last_activity_ms=7, owner_id="alice")
    )
    store.upsert_conversation(
        ConversationRecord("c", last_activity_ms=8, has_timeline=False, owner_id="mallory")
    )
    assert store.get_conversation("c") == ConversationRecord(
        "c", "s", "", 7, 8, 0, True, "active", "", "alice"
    )
    store.upsert_conversation(ConversationRecord("d", session_id="s", last_activity_ms=9, has_timeline=False))
    assert store.get_conversation("d") == ConversationRecord("d", "s", "", 9, 9, 0, False, "active", "", "")
    store.upsert_conversation(ConversationRecord("d", last_activity_ms=9, has_timeline=True))
    rec = store.get_conversation("d")
    assert rec is not None and rec.has_timeline is True
    with pytest.raises(ValueError, match="conv_id must be a non-empty string"):
        store.upsert_conversation(ConversationRecord(""))


def test_list_conversations_newest_first(store: TimelineStore) -> None:
    for conv_id, at in (("b", 200), ("a", 200), ("c", 300), ("d", 100)):
        store.upsert_conversation(ConversationRecord(conv_id, session_id="s", last_activity_ms=at))
    assert [r.conv_id for r in store.list_conversations()] == ["c", "a", "b", "d"]
    assert [r.conv_id for r in store.list_conversations(limit=2)] == ["c", "a"]
    assert [r.conv_id for r in store.list_conversations(since_ms=200)] == ["c", "a", "b"]
    assert store.list_conversations(limit=0) == []


def test_list_conversations_ties_sort_byte_wise(store: TimelineStore) -> None:
    for conv_id in ("é", "b", "B", "a", "_"):
        store.upsert_conversation(ConversationRecord(conv_id, session_id="s", last_activity_ms=5))
    assert [r.conv_id for r in store.list_conversations()] == ["B", "_", "a", "b", "é"]


def test_list_conversations_of_one_owner(store: TimelineStore) -> None:
    for conv_id, owner, at in (("c1", "alice", 10), ("c2", "bob", 20), ("c3", "alice", 30), ("c4", "", 40)):
        store.upsert_conversation(
            ConversationRecord(conv_id, session_id="s", last_activity_ms=at, owner_id=owner)
        )
    assert [r.conv_id for r in store.list_conversations(owner_id="alice")] == ["c3", "c1"]
    assert [r.conv_id for r in store.list_conversations(owner_id="")] == ["c4"]
    assert [r.conv_id for r in store.list_conversations(owner_id="alice", since_ms=20)] == ["c3"]
    assert store.list_conversations(owner_id="nobody") == []


def test_apply_keeps_the_index_progress(store: TimelineStore) -> None:
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
    assert store.get_conversation("new") == ConversationRecord("new", "", "", 700, 700, 1, True, "active", "")


def test_stats_and_verify(store: TimelineStore) -> None:
    store.apply("c", 1, [ent("u", 1), ent("t", 1, kind="tool_call")])
    store.apply("c", 2, [ent("a", 2)])
    assert [s.to_dict() for s in store.stats()] == [
        {"conv_id": "c", "kind": "message", "entities": 2, "max_entity_version": 2, "version": 2},
        {"conv_id": "c", "kind": "tool_call", "entities": 1, "max_entity_version": 1, "version": 2},
    ]
    assert store.verify() == []


def test_verify_reports_inconsistencies(store: TimelineStore) -> None:
    insert = (
        "INSERT INTO timeline_entities "
        "(conv_id, entity_id, kind, created_at_ms, updated_at_ms, version, entity_json) "
        "VALUES (?, ?, 'message', 1, 1, ?, ?)"
    )
    raw(store, "INSERT INTO timeline_versions (conv_id, version) VALUES ('c', 2)")
    raw(store, insert, ("c", "ahead", 5, "{}"))
    raw(store, insert, ("c", "bad", 1, "not json"))
    raw(store, insert, ("orphan", "x", 1, "[1]"))
    assert store.verify() == [
        TimelineProblem("entity_version_ahead", "c", "ahead", "entity version 5 > conversation version 2"),
        TimelineProblem("missing_version_row", "orphan", "", "1 entities but no version row"),
        TimelineProblem("invalid_entity_json", "c", "bad", "not a JSON object: 'not json'"),
        TimelineProblem("invalid_entity_json", "orphan", "x", "not a JSON object: '[1]'"),
    ]
    bad = store.get_entity("c", "bad")
    assert bad is not None and bad.props == {"invalid_entity_json": "not json"}
    assert [(s.conv_id, s.entities, s.version) for s in store.stats()] == [("c", 2, 2), ("orphan", 1, 0)]


def test_concurrent_applies_and_reservations_keep_the_highest(store: TimelineStore) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        start.wait()
        try:
            for seq in range(n, 41, 4):
                store.apply("c", seq, [ent("shared", seq, last=seq), ent(f"own{n}", n)])
                store.reserve_seq("c", seq + 100)
                store.upsert_conversation(
                    ConversationRecord("c", last_activity_ms=seq, last_seen_version=seq)
                )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.current_version("c") == 40
    assert store.reserved_seq("c") == 140
    shared = store.get_entity("c", "shared")
    assert shared is not None and (shared.version, shared.props) == (40, {"last": 40})
    rec = store.get_conversation("c")
    assert rec is not None and (rec.last_seen_version, rec.last_activity_ms) == (40, 40)
    assert sorted(e.id for e in store.snapshot("c").entities) == ["own1", "own2", "own3", "own4", "shared"]
