"""The debug API in process (http-api.md "Debug API"): bearer token, runtime history from turn rows only,
conversation items (source, ordering) and per-turn truth, over real SQLite stores in a tmp dir."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from webchat.server.app import create_app
from webchat.server.debug import runtime_segments
from webchat.server.settings import Settings
from webchat.stores.protocol import TurnRow
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.timeline import ConversationRecord
from webchat.stores.turns import open_turn_store
from webchat.turns.model import Block, Turn

T0 = 1_700_000_000_000
TOKEN = "debug-token-0123456789"
SESSION = "s-1"
# Its pointer says "planner" while its first two turns have no recorded runtime: anything that derives
# a turn's runtime from the pointer shows up as "planner" where "" is the truth.
CONV = "c-pointer-planner"


def _turn(turn_id: str, text: str) -> Turn:
    return Turn(turn_id, [Block("user", "user", {"text": text}, id=f"{turn_id}#user")])


def seed(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    turns = open_turn_store(data_dir / "turns.db")
    try:
        # (turn, runtime_key, inference_id, at): two unknown, one fast, one planner, one unknown again.
        for turn_id, runtime_key, inference_id, at in (
            ("t1", "", "", T0 + 10),
            ("t2", "", "", T0 + 20),
            ("t3", "fast", "inf-3", T0 + 30),
            ("t4", "planner", "inf-4", T0 + 40),
            ("t5", "", "inf-5", T0 + 50),
        ):
            turns.save_snapshot(
                CONV,
                SESSION,
                _turn(turn_id, f"prompt {turn_id}"),
                "final",
                at,
                runtime_key=runtime_key,
                inference_id=inference_id,
            )
        # A conversation known only from its turns (stored before the conversation index existed).
        turns.save_snapshot(
            "c-live-only", "s-live-only", _turn("t9", "prompt t9"), "final", T0 + 5, runtime_key="fast"
        )
    finally:
        turns.close()
    timeline = SQLiteTimelineStore(data_dir / "timeline.db")
    try:
        # Written in an order that is neither activity order nor id order.
        for conv_id, pointer, activity in (
            ("c-middle", "fast", T0 + 500),
            (CONV, "planner", T0 + 100),
            ("c-newest", "default", T0 + 900),
            ("c-oldest", "fast", T0 + 50),
        ):
            timeline.upsert_conversation(
                ConversationRecord(
                    conv_id=conv_id,
                    session_id=SESSION,
                    runtime_key=pointer,
                    created_at_ms=T0,
                    last_activity_ms=activity,
                    last_seen_version=0,
                )
            )
    finally:
        timeline.close()


def make_client(data_dir: Path, **settings: Any) -> TestClient:
    app = create_app(Settings(data_dir=data_dir, host="127.0.0.1", debug_api=True, **settings))
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    seed(tmp_path / "data")
    with make_client(tmp_path / "data") as c:
        yield c


def assert_error(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code, resp.json()
    assert set(resp.json()) == {"error", "code"} and resp.json()["error"]


# -- bearer token ----------------------------------------------------------------------------------------


DEBUG_PATHS = (
    "/api/debug/conversations",
    f"/api/debug/conversations/{CONV}",
    f"/api/debug/conversations/{CONV}/runtime-history",
    f"/api/debug/turns?conv_id={CONV}",
    f"/api/debug/turn/{CONV}/{SESSION}/t3",
    f"/api/debug/timeline?conv_id={CONV}",
)


@pytest.mark.parametrize("path", DEBUG_PATHS)
def test_token_protected_debug_api_refuses_without_the_right_bearer(tmp_path: Path, path: str) -> None:
    seed(tmp_path / "data")
    with make_client(tmp_path / "data", debug_token=TOKEN) as c:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": TOKEN},  # the scheme is part of the check
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"bearer{TOKEN}"},
        ):
            resp = c.get(path, headers=headers)
            assert_error(resp, 401, "unauthorized")
            assert resp.json()["error"] == "the debug API requires a bearer token"
        assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        # The rest of the server does not need the debug token.
        assert c.get("/healthz").status_code == 200


def test_without_a_token_the_loopback_debug_api_is_open(client: TestClient) -> None:
    assert client.get("/api/debug/conversations").status_code == 200


def test_debug_api_absent_when_not_mounted(tmp_path: Path) -> None:
    seed(tmp_path / "data")
    app = create_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", debug_api=False))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert_error(c.get(f"/api/debug/turns?conv_id={CONV}"), 404, "not_found")


# -- runtime history: turn rows only ---------------------------------------------------------------------


def test_runtime_history_never_fills_unknown_turns_from_the_pointer(client: TestClient) -> None:
    doc = client.get(f"/api/debug/conversations/{CONV}/runtime-history").json()
    assert doc == {
        "conv_id": CONV,
        "resolved_runtime_key": "planner",
        "segments": [
            {
                "runtime_key": "",
                "first_turn_id": "t1",
                "last_turn_id": "t2",
                "turns": 2,
                "from_ms": T0 + 10,
                "to_ms": T0 + 20,
            },
            {
                "runtime_key": "fast",
                "first_turn_id": "t3",
                "last_turn_id": "t3",
                "turns": 1,
                "from_ms": T0 + 30,
                "to_ms": T0 + 30,
            },
            {
                "runtime_key": "planner",
                "first_turn_id": "t4",
                "last_turn_id": "t4",
                "turns": 1,
                "from_ms": T0 + 40,
                "to_ms": T0 + 40,
            },
            {
                "runtime_key": "",
                "first_turn_id": "t5",
                "last_turn_id": "t5",
                "turns": 1,
                "from_ms": T0 + 50,
                "to_ms": T0 + 50,
            },
        ],
        "unknown_turns": 3,
    }


def test_turn_payloads_carry_the_stored_truth_not_the_pointer(client: TestClient) -> None:
    items = client.get("/api/debug/turns", params={"conv_id": CONV}).json()["items"]
    assert [(i["turn_id"], i["runtime_key"], i["inference_id"]) for i in items] == [
        ("t5", "", "inf-5"),
        ("t4", "planner", "inf-4"),
        ("t3", "fast", "inf-3"),
        ("t2", "", ""),
        ("t1", "", ""),
    ]
    one = client.get(f"/api/debug/turn/{CONV}/{SESSION}/t1").json()
    assert (one["runtime_key"], one["inference_id"]) == ("", "")
    assert [(i["phase"], i["runtime_key"], i["inference_id"]) for i in one["items"]] == [("final", "", "")]
    only_fast = client.get("/api/debug/turns", params={"conv_id": CONV, "runtime_key": "fast"}).json()
    assert [i["turn_id"] for i in only_fast["items"]] == ["t3"]


def test_runtime_history_of_an_unknown_conversation_is_404(client: TestClient) -> None:
    assert_error(client.get("/api/debug/conversations/nope/runtime-history"), 404, "unknown_conversation")


def _row(turn_id: str, runtime_key: str, updated: int) -> TurnRow:
    return TurnRow(CONV, SESSION, turn_id, runtime_key, "", updated - 1, updated)


def test_runtime_segments_group_consecutive_turns_only() -> None:
    rows = [_row("a", "x", 1), _row("b", "x", 2), _row("c", "y", 3), _row("d", "x", 4), _row("e", "x", 5)]
    assert runtime_segments(rows) == [
        {"runtime_key": "x", "first_turn_id": "a", "last_turn_id": "b", "turns": 2, "from_ms": 1, "to_ms": 2},
        {"runtime_key": "y", "first_turn_id": "c", "last_turn_id": "c", "turns": 1, "from_ms": 3, "to_ms": 3},
        {"runtime_key": "x", "first_turn_id": "d", "last_turn_id": "e", "turns": 2, "from_ms": 4, "to_ms": 5},
    ]
    assert runtime_segments([]) == []


# -- conversation items ----------------------------------------------------------------------------------


def test_conversations_newest_activity_first_with_their_source(client: TestClient) -> None:
    with (
        client.websocket_connect("ws://127.0.0.1/ws?conv_id=c-live-only") as live_ws,
        client.websocket_connect("ws://127.0.0.1/ws?conv_id=c-oldest") as merged_ws,
    ):
        assert live_ws.receive_json()["event"]["type"] == "ws.hello"
        assert merged_ws.receive_json()["event"]["type"] == "ws.hello"
        items = client.get("/api/debug/conversations").json()["items"]
        by_id = {i["conv_id"]: i for i in items}
        assert by_id["c-live-only"]["source"] == "live"
        assert by_id["c-oldest"]["source"] == "merged"
        assert by_id["c-middle"]["source"] == "persisted"
        assert by_id["c-live-only"]["active_sockets"] == 1 and by_id["c-middle"]["active_sockets"] == 0
        assert by_id["c-oldest"]["resolved_runtime_key"] == "fast"
        assert by_id["c-live-only"]["resolved_runtime_key"] == ""
        # A live-only conversation has the session of its turns; a merged one is as recent as its live side.
        assert by_id["c-live-only"]["session_id"] == "s-live-only"
        assert by_id["c-oldest"]["last_activity_ms"] > T0 + 900
        activity = [i["last_activity_ms"] for i in items]
        assert activity == sorted(activity, reverse=True)
        # The persisted ones, by their recorded activity.
        persisted = [i["conv_id"] for i in items if i["source"] == "persisted"]
        assert persisted == ["c-newest", "c-middle", CONV]
        assert {i["conv_id"] for i in items} == {"c-live-only", "c-oldest", "c-newest", "c-middle", CONV}

        one = client.get("/api/debug/conversations/c-live-only").json()
        assert one["source"] == "live" and one["active_request_key"] == ""
        assert client.get("/api/debug/conversations/c-middle").json()["source"] == "persisted"


def test_live_pointer_wins_over_the_persisted_one(tmp_path: Path) -> None:
    seed(tmp_path / "data")
    with make_client(tmp_path / "data") as c, c.websocket_connect("ws://127.0.0.1/ws?conv_id=c-middle") as ws:
        assert ws.receive_json()["event"]["data"]["runtime_key"] == "fast"
        # Another writer moves the persisted pointer (and activity) behind the live conversation's back.
        timeline = SQLiteTimelineStore(tmp_path / "data" / "timeline.db")
        try:
            record = timeline.get_conversation("c-middle")
            assert record is not None
            timeline.upsert_conversation(
                dataclasses.replace(record, runtime_key="planner", last_activity_ms=T0 + 10**12)
            )
        finally:
            timeline.close()
        doc = c.get("/api/debug/conversations/c-middle").json()
        assert doc["source"] == "merged" and doc["resolved_runtime_key"] == "fast"
        assert doc["last_activity_ms"] == T0 + 10**12
        history = c.get("/api/debug/conversations/c-middle/runtime-history").json()
        assert history["resolved_runtime_key"] == "fast" and history["segments"] == []


def test_persisted_item_with_no_recorded_activity(tmp_path: Path) -> None:
    timeline = SQLiteTimelineStore(tmp_path / "data" / "timeline.db")
    try:
        timeline.upsert_conversation(
            ConversationRecord(
                conv_id="c-zero", session_id="", runtime_key="", created_at_ms=0, last_activity_ms=0
            )
        )
    finally:
        timeline.close()
    with make_client(tmp_path / "data") as c:
        doc = c.get("/api/debug/conversations/c-zero").json()
        assert (doc["last_activity_ms"], doc["session_id"], doc["resolved_runtime_key"]) == (0, "", "")


def test_turn_items_carry_their_payload(client: TestClient) -> None:
    (item,) = client.get("/api/debug/turns", params={"conv_id": CONV, "runtime_key": "fast"}).json()["items"]
    assert set(item) == {
        "conv_id",
        "session_id",
        "turn_id",
        "phase",
        "runtime_key",
        "inference_id",
        "created_at_ms",
        "payload",
    }
    assert "prompt t3" in item["payload"] and item["payload"].startswith("id: t3")


def test_persisted_conversation_item(client: TestClient) -> None:
    doc = client.get(f"/api/debug/conversations/{CONV}").json()
    assert doc == {
        "conv_id": CONV,
        "session_id": SESSION,
        "resolved_runtime_key": "planner",
        "active_sockets": 0,
        "stream_running": False,
        "queue_depth": 0,
        "buffered_events": 0,
        "last_activity_ms": T0 + 100,
        "source": "persisted",
        "active_request_key": "",
    }
    assert_error(client.get("/api/debug/conversations/nope"), 404, "unknown_conversation")


SLOW = """\
slug: slowpoke
profiles:
  slow:
    runtime: {engine: offline, options: {token_delay_ms: 2000}}
"""


def test_a_running_conversation_as_the_debug_api_sees_it(tmp_path: Path) -> None:
    profiles = tmp_path / "slow.yaml"
    profiles.write_text(SLOW, encoding="utf-8")
    with make_client(tmp_path / "data", profiles=[profiles], shutdown_grace_s=0) as c:
        first = c.post(
            "/chat", json={"prompt": "one two three", "profile": "slow", "idempotency_key": "run-1"}
        ).json()
        conv = first["conv_id"]
        queued = c.post("/chat", json={"prompt": "next", "conv_id": conv, "profile": "fast"})
        assert queued.status_code == 202
        doc = c.get(f"/api/debug/conversations/{conv}").json()
        assert doc["stream_running"] is True and doc["active_request_key"] == "run-1"
        assert doc["queue_depth"] == 1 and doc["buffered_events"] > 0
        assert doc["source"] == "merged" and doc["session_id"] == first["session_id"]
        assert doc["resolved_runtime_key"] == "fast" and doc["last_activity_ms"] > T0
        (item,) = c.get("/api/debug/conversations").json()["items"]
        assert {k: v for k, v in item.items()} == {k: v for k, v in doc.items() if k != "active_request_key"}
