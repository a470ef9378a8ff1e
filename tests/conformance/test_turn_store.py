"""The turn store's contract on every backend: snapshots, upsert rules, listing (runtime-truth.md §3).

Each test runs against SQLite and against a real PostgreSQL (tests/conformance/backends.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.backends import TurnBackend, rows
from webchat.stores.protocol import Snapshot, TurnQuery, TurnRow, TurnStore
from webchat.turns.hashing import block_content_hash
from webchat.turns.model import Block, Turn

PHASE_RANK = {"pre_inference": 0, "post_inference": 1, "post_tools": 2, "final": 3}


def system() -> Block:
    return Block(kind="system", role="system", payload={"text": "You are helpful."}, id="sys")


def turn(turn_id: str, *texts: str, metadata: dict[str, Any] | None = None, with_system: bool = True) -> Turn:
    blocks = [system()] if with_system else []
    for i, text in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        blocks.append(
            Block(
                kind="user" if role == "user" else "llm_text",
                role=role,
                payload={"text": text},
                id=f"{turn_id}-{i}",
            )
        )
    return Turn(id=turn_id, blocks=blocks, metadata=dict(metadata or {}), data={"temperature": 0.2})


@pytest.fixture
def store(turn_backend: TurnBackend) -> Iterator[TurnStore]:
    s = turn_backend.open()
    try:
        yield s
    finally:
        s.close()


def summary(snaps: list[Snapshot]) -> list[tuple[str, str, str, str, int]]:
    return [(s.conv_id, s.session_id, s.turn_id, s.phase, s.created_at_ms) for s in snaps]


def block_view(snap: Snapshot) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    return [(b.id, b.kind, b.role, b.payload, b.metadata) for b in snap.turn.blocks]


# -- save / load -----------------------------------------------------------------------------------------


def test_save_list_load_round_trip(store: TurnStore, turn_backend: TurnBackend) -> None:
    pre = turn("t1", "Plan my week", metadata={"webchat.session_id@v1": "s1"})
    final = turn("t1", "Plan my week", "Sure.", metadata={"webchat.session_id@v1": "s1", "note": "done"})
    final.blocks[2].metadata = {"tokens": 3}
    store.save_snapshot("c1", "s1", pre, "pre_inference", 1000, runtime_key="planner", inference_id="inf-1")
    store.save_snapshot("c1", "s1", final, "final", 2000, runtime_key="planner", inference_id="inf-1")

    loaded = store.load_turn("c1", "s1", "t1")
    assert summary(loaded) == [("c1", "s1", "t1", "final", 2000), ("c1", "s1", "t1", "pre_inference", 1000)]
    assert block_view(loaded[0]) == [(b.id, b.kind, b.role, b.payload, b.metadata) for b in final.blocks]
    assert block_view(loaded[1]) == [(b.id, b.kind, b.role, b.payload, b.metadata) for b in pre.blocks]
    assert all(s.runtime_key == "planner" and s.inference_id == "inf-1" for s in loaded)
    assert loaded[0].turn.metadata == final.metadata
    assert loaded[0].turn.data == {"temperature": 0.2}
    assert summary(store.list_snapshots(TurnQuery(conv_id="c1"))) == summary(loaded)
    assert store.load_turn("c1", "s1", "nope") == []
    assert store.load_turn("c1", "other", "t1") == []
    latest = store.latest_snapshot("c1")
    assert latest is not None and latest.phase == "final" and len(latest.turn.blocks) == 3
    assert store.latest_snapshot("nope") is None

    store.close()
    again = turn_backend.open()
    try:
        assert summary(again.load_turn("c1", "s1", "t1")) == summary(loaded)
    finally:
        again.close()


def test_caller_may_mutate_its_turn_after_saving(store: TurnStore) -> None:
    t = turn("t1", "hello")
    store.save_snapshot("c1", "s1", t, "pre_inference", 1000)
    t.blocks.append(Block(kind="llm_text", role="assistant", payload={"text": "late"}))
    t.blocks[0].payload["text"] = "changed"
    (snap,) = store.load_turn("c1", "s1", "t1")
    assert [b.payload["text"] for b in snap.turn.blocks] == ["You are helpful.", "hello"]


@pytest.mark.parametrize(
    ("conv", "session", "turn_id", "phase"),
    [("", "s", "t", "final"), ("c", " ", "t", "final"), ("c", "s", "", "final"), ("c", "s", "t", "")],
)
def test_ids_are_required(store: TurnStore, conv: str, session: str, turn_id: str, phase: str) -> None:
    with pytest.raises(ValueError):
        store.save_snapshot(conv, session, Turn(id=turn_id, blocks=[system()]), phase, 1)
    assert rows(store, "SELECT count(*) FROM turns") == [(0,)]


# -- upsert rules ----------------------------------------------------------------------------------------


def test_created_is_min_and_updated_is_max(store: TurnStore) -> None:
    for phase, created in (
        ("post_inference", 3000),
        ("final", 5000),
        ("pre_inference", 1000),
        ("post_tools", 4000),
    ):
        store.save_snapshot("c1", "s1", turn("t1", "q"), phase, created)
    (row,) = store.runtime_history("c1")
    assert (row.turn_created_at_ms, row.updated_at_ms) == (1000, 5000)


def test_runtime_values_are_replaced_only_by_non_empty_values(store: TurnStore) -> None:
    def values() -> tuple[str, str]:
        (row,) = store.runtime_history("c1")
        return row.runtime_key, row.inference_id

    t = turn("t1", "q")
    store.save_snapshot("c1", "s1", t, "pre_inference", 1000, runtime_key="planner", inference_id="inf-1")
    assert values() == ("planner", "inf-1")
    store.save_snapshot("c1", "s1", t, "post_inference", 1100)
    assert values() == ("planner", "inf-1"), "an empty value cleared the truth"
    store.save_snapshot("c1", "s1", t, "post_tools", 1200, runtime_key="   ", inference_id="\t")
    assert values() == ("planner", "inf-1"), "a blank value cleared the truth"
    store.save_snapshot("c1", "s1", t, "final", 1300, runtime_key=" coder ")
    assert values() == ("coder", "inf-1")
    store.save_snapshot("c1", "s1", t, "final", 1400, inference_id="inf-2")
    assert values() == ("coder", "inf-2")


def test_runtime_values_fall_back_to_the_turns_own_metadata(store: TurnStore) -> None:
    meta = {
        "webchat.runtime@v1": {"runtime_key": "meta-rk", "profile_slug": "x"},
        "webchat.inference_id@v1": "meta-inf",
    }
    store.save_snapshot("c1", "s1", turn("t1", "q", metadata=meta), "final", 1000)
    store.save_snapshot("c1", "s1", turn("t2", "q", metadata=meta), "final", 2000, runtime_key="explicit")
    store.save_snapshot("c1", "s1", turn("t3", "q", metadata={"runtime": True}), "final", 3000)
    got = [(r.turn_id, r.runtime_key, r.inference_id) for r in store.runtime_history("c1")]
    assert got == [("t1", "meta-rk", "meta-inf"), ("t2", "explicit", "meta-inf"), ("t3", "", "")]


def test_newest_snapshot_wins_the_turn_metadata(store: TurnStore) -> None:
    store.save_snapshot("c1", "s1", turn("t1", "q", metadata={"v": 2}), "final", 2000)
    store.save_snapshot("c1", "s1", turn("t1", "q", metadata={"v": 1}), "pre_inference", 1000)
    snaps = store.load_turn("c1", "s1", "t1")
    assert [s.turn.metadata for s in snaps] == [{"v": 2}, {"v": 2}]  # the turn row holds one metadata


def test_snapshot_membership_is_replaced_as_a_unit(store: TurnStore) -> None:
    store.save_snapshot("c1", "s1", turn("t1", "q"), "pre_inference", 1000)
    store.save_snapshot("c1", "s1", turn("t1", "q", "a", "b"), "final", 3000)
    replacement = Turn(id="t1", blocks=[Block(kind="user", role="user", payload={"text": "only"}, id="x")])
    store.save_snapshot("c1", "s1", replacement, "final", 3000)
    snaps = store.load_turn("c1", "s1", "t1")
    assert summary(snaps) == [("c1", "s1", "t1", "final", 3000), ("c1", "s1", "t1", "pre_inference", 1000)]
    assert block_view(snaps[0]) == [("x", "user", "user", {"text": "only"}, {})]
    assert len(snaps[1].turn.blocks) == 2
    count = "SELECT count(*) FROM turn_block_membership WHERE phase = ? AND snapshot_created_at_ms = ?"
    assert rows(store, count, ("final", 3000)) == [(1,)]
    assert rows(store, count, ("pre_inference", 1000)) == [(2,)]
    # the same phase at another time is another snapshot
    store.save_snapshot("c1", "s1", turn("t1", "q", "a"), "final", 3500)
    assert rows(store, "SELECT count(DISTINCT snapshot_created_at_ms) FROM turn_block_membership") == [(3,)]


def test_block_ids_default_to_turn_id_and_ordinal(store: TurnStore) -> None:
    t = Turn(
        id="t9",
        blocks=[
            Block(kind="system", role="system", payload={"text": "s"}, id="sys"),
            Block(kind="user", role="user", payload={"text": "u"}),
            Block(kind="llm_text", role="assistant", payload={"text": "a"}, id="  "),
        ],
    )
    store.save_snapshot("c1", "s1", t, "final", 1000)
    (snap,) = store.load_turn("c1", "s1", "t9")
    assert [b.id for b in snap.turn.blocks] == ["sys", "t9#1", "t9#2"]


def test_identical_blocks_are_stored_once(store: TurnStore) -> None:
    store.save_snapshot("c1", "s1", turn("t1", "q1"), "pre_inference", 1000)
    store.save_snapshot("c1", "s1", turn("t1", "q1", "a1"), "final", 2000)
    store.save_snapshot("c1", "s1", turn("t2", "q2"), "final", 3000)
    store.save_snapshot("c2", "s9", turn("t7", "q"), "final", 4000)
    sys_block = system()
    digest = block_content_hash(sys_block.kind, sys_block.role, sys_block.payload, sys_block.metadata)
    assert rows(
        store, "SELECT content_hash, hash_algorithm, first_seen_at_ms FROM blocks WHERE block_id = 'sys'"
    ) == [(digest, "sha256-canonical-json-v1", 1000)]
    assert rows(store, "SELECT count(*) FROM turn_block_membership WHERE block_id = 'sys'") == [(4,)]
    # the history block t1-0 is shared by both snapshots of t1
    assert rows(store, "SELECT count(*) FROM blocks WHERE block_id = 't1-0'") == [(1,)]
    # the same id with other content is another version, not an overwrite
    changed = turn("t3", "q")
    changed.blocks[0] = Block(kind="system", role="system", payload={"text": "Be brief."}, id="sys")
    store.save_snapshot("c1", "s1", changed, "final", 5000)
    assert rows(store, "SELECT count(*) FROM blocks WHERE block_id = 'sys'") == [(2,)]
    assert rows(store, "SELECT count(*) FROM blocks") == [(7,)]  # sys x2, t1-0, t1-1, t2-0, t7-0, t3-0
    (old,) = store.load_turn("c1", "s1", "t2")
    assert old.turn.blocks[0].payload == {"text": "You are helpful."}


# -- listing ---------------------------------------------------------------------------------------------

# (conv, session, turn, phase, created, runtime_key, inference_id)
DATA = [
    ("c1", "s1", "t1", "pre_inference", 1000, "planner", "inf-1"),
    ("c1", "s1", "t1", "final", 1500, "planner", "inf-1"),
    ("c1", "s1", "t2", "pre_inference", 2000, "coder", "inf-2"),
    ("c1", "s1", "t2", "post_inference", 2100, "coder", "inf-2"),
    ("c1", "s1", "t2", "post_tools", 2200, "coder", "inf-2"),
    ("c1", "s1", "t2", "final", 2300, "coder", "inf-2"),
    ("c1", "s2", "t3", "final", 3000, "planner", "inf-3"),
    # a tie on the timestamp: phase order decides (final first), then the turn id
    ("c1", "s2", "t4", "pre_inference", 4000, "", ""),
    ("c1", "s2", "t5", "final", 4000, "writer", "inf-5"),
    ("c1", "s2", "t6", "final", 4000, "writer", "inf-6"),
    ("c2", "s1", "t1", "final", 5000, "planner", "inf-9"),
]


def ordered(items: list[tuple[Any, ...]]) -> list[tuple[str, str, str, str, int]]:
    """Newest first; ties by phase (final first), then turn, session and conversation ids, descending."""
    keyed = sorted(items, key=lambda d: (d[4], PHASE_RANK[d[3]], d[2], d[1], d[0]), reverse=True)
    return [d[:5] for d in keyed]


@pytest.fixture
def listed(store: TurnStore) -> TurnStore:
    for conv, session, turn_id, phase, created, rk, inf in DATA:
        store.save_snapshot(
            conv, session, turn(turn_id, f"q-{turn_id}"), phase, created, runtime_key=rk, inference_id=inf
        )
    return store


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        (TurnQuery(conv_id="c1"), lambda d: d[0] == "c1"),
        (TurnQuery(conv_id="c1", phase="final"), lambda d: d[0] == "c1" and d[3] == "final"),
        (TurnQuery(conv_id="c1", runtime_key="planner"), lambda d: d[0] == "c1" and d[5] == "planner"),
        (TurnQuery(conv_id="c1", inference_id="inf-2"), lambda d: d[0] == "c1" and d[6] == "inf-2"),
        (TurnQuery(conv_id="c1", since_ms=2200), lambda d: d[0] == "c1" and d[4] >= 2200),
        (TurnQuery(conv_id="c1", session_id="s2"), lambda d: d[0] == "c1" and d[1] == "s2"),
        (TurnQuery(session_id="s1"), lambda d: d[1] == "s1"),
        (TurnQuery(conv_id="c1", turn_id="t2"), lambda d: d[0] == "c1" and d[2] == "t2"),
        (
            TurnQuery(session_id="s1", runtime_key="planner", phase="final"),
            lambda d: d[1] == "s1" and d[5] == "planner" and d[3] == "final",
        ),
        (TurnQuery(conv_id="c1", runtime_key="nobody"), lambda d: False),
    ],
)
def test_list_filters_and_order(listed: TurnStore, query: TurnQuery, keep: Any) -> None:
    expected = ordered([d for d in DATA if keep(d)])
    got = listed.list_snapshots(query)
    assert summary(got) == expected
    assert summary(listed.list_snapshots(query)) == expected  # stable across calls
    for snap in got:
        (want,) = [
            d
            for d in DATA
            if d[:5] == (snap.conv_id, snap.session_id, snap.turn_id, snap.phase, snap.created_at_ms)
        ]
        # runtime values on a snapshot are its turn's (last non-empty value saved)
        row = [d for d in DATA if d[:3] == want[:3] and d[5]]
        assert snap.runtime_key == (row[-1][5] if row else "")
        assert [b.payload.get("text") for b in snap.turn.blocks] == ["You are helpful.", f"q-{snap.turn_id}"]


def test_list_limit_takes_the_newest(listed: TurnStore) -> None:
    everything = ordered([d for d in DATA if d[0] == "c1"])
    for limit in (1, 2, 5, 100):
        assert summary(listed.list_snapshots(TurnQuery(conv_id="c1", limit=limit))) == everything[:limit]


def test_list_requires_a_conversation_or_session(listed: TurnStore) -> None:
    with pytest.raises(ValueError):
        listed.list_snapshots(TurnQuery())
    with pytest.raises(ValueError):
        listed.list_snapshots(TurnQuery(phase="final"))


def test_runtime_history_order(listed: TurnStore) -> None:
    history = listed.runtime_history("c1")
    got = [(r.turn_id, r.updated_at_ms, r.runtime_key, r.inference_id) for r in history]
    # updated_at_ms ASC, then turn_id ASC (t4, t5, t6 tie at 4000)
    assert got == [
        ("t1", 1500, "planner", "inf-1"),
        ("t2", 2300, "coder", "inf-2"),
        ("t3", 3000, "planner", "inf-3"),
        ("t4", 4000, "", ""),
        ("t5", 4000, "writer", "inf-5"),
        ("t6", 4000, "writer", "inf-6"),
    ]
    assert [r.turn_id for r in listed.runtime_history("c2")] == ["t1"]
    assert listed.runtime_history("nope") == []


# -- edges pinned for mutation testing -------------------------------------------------------------------


def test_turn_row(store: TurnStore) -> None:
    store.save_snapshot("c", "s", turn("t1", "hi"), "pre_inference", 10, runtime_key="planner")
    store.save_snapshot("c", "s", turn("t1", "hi"), "final", 30, inference_id="inf-9")
    assert store.turn_row("c", "s", "t1") == TurnRow("c", "s", "t1", "planner", "inf-9", 10, 30)
    assert store.turn_row("c", "s", "t2") is None
    assert store.turn_row("c", "other", "t1") is None


def test_listing_requires_a_filter_and_defaults_to_100(store: TurnStore) -> None:
    with pytest.raises(ValueError, match=r"^conv_id or session_id is required$"):
        store.list_snapshots(TurnQuery())
    for i in range(101):
        store.save_snapshot("c", "s", turn(f"t{i:03d}", "hi", with_system=False), "final", 1000 + i)
    assert len(store.list_snapshots(TurnQuery(conv_id="c"))) == 100
    assert len(store.list_snapshots(TurnQuery(conv_id="c", limit=0))) == 100
    assert len(store.list_snapshots(TurnQuery(conv_id="c", limit=101))) == 101
    latest = store.latest_snapshot("c")
    assert latest is not None and latest.turn.id == "t100"


def test_same_ids_in_two_conversations_stay_two_snapshots(store: TurnStore) -> None:
    for conv in ("c1", "c2"):
        store.save_snapshot(conv, "s", turn("t1", f"from {conv}"), "final", 50)
    snaps = store.list_snapshots(TurnQuery(session_id="s"))
    assert [(s.conv_id, s.turn.id, s.turn.blocks[1].payload["text"]) for s in snaps] == [
        ("c2", "t1", "from c2"),
        ("c1", "t1", "from c1"),
    ]


def test_error_messages_name_the_problem(store: TurnStore) -> None:
    with pytest.raises(ValueError, match=r"^session_id must be a non-empty string$"):
        store.save_snapshot("c", " ", turn("t1", "hi"), "final", 1)
