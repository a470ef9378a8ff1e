"""The client contract of http-api.md: open the socket, buffer, fetch the snapshot, apply, replay frames
with ``seq`` above the snapshot version. The result must equal the live state, wherever the snapshot
falls in the stream."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from webchat.events.envelope import Event
from webchat.events.hub import ConversationHub
from webchat.events.projector import project
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.timeline import Entity

META = {"runtime_key": "planner", "inference_id": "inf", "turn_id": "t1"}


def script() -> list[tuple[str, str, dict[str, Any], dict[str, Any] | None]]:
    events: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = [
        ("chat.message", "t1:user", {"content": "plan a trip"}, {"runtime_key": "planner", "turn_id": "t1"}),
        ("llm.start", "t1:a", {}, dict(META, model="m")),
    ]
    text = ""
    for word in ["Sure", ",", " let", " me", " look"]:
        text += word
        events.append(("llm.delta", "t1:a", {"delta": word, "cumulative": text}, META))
    events += [
        ("llm.final", "t1:a", {"text": text}, dict(META, usage={"output_tokens": 5})),
        ("tool.start", "t1:tool:1", {"name": "search", "input": {"q": "trip"}}, META),
        ("tool.result", "t1:tool:1", {"result": ["a", "b"]}, META),
        ("tool.done", "t1:tool:1", {}, META),
        ("llm.start", "t1:a:1", {}, META),
        ("llm.delta", "t1:a:1", {"cumulative": "Found two."}, META),
        ("llm.final", "t1:a:1", {"text": "Found two."}, META),
        ("chat.turn_done", "t1", {}, None),
    ]
    return events


def view(entities: list[Entity] | dict[str, Entity]) -> list[tuple[str, str, int, dict[str, Any]]]:
    items = entities.values() if isinstance(entities, dict) else entities
    return [(e.id, e.kind, e.version, e.props) for e in items]


@pytest.mark.parametrize("snapshot_after", [0, 1, 4, 9, 16])
def test_snapshot_plus_replay_reproduces_the_live_state(tmp_path: Path, snapshot_after: int) -> None:
    store = SQLiteTimelineStore(tmp_path / "timeline.db")
    clock = itertools.count(1_000)

    async def main() -> None:
        hub = ConversationHub("c", store, clock=lambda: next(clock))
        events = script()
        # Some history exists before the client connects.
        for type, id, data, meta in events[:2]:
            await hub.publish(type, id, data, meta)
        sub = hub.subscribe()  # 1. open the socket; frames are buffered from here on
        buffered: list[dict[str, Any]] = []
        snapshot = None
        for i, (type, id, data, meta) in enumerate(events[2:]):
            if i == snapshot_after:
                await hub.flush()  # what /api/timeline does for a live conversation
                snapshot = store.snapshot("c")  # 2. fetch the snapshot while the stream goes on
            await hub.publish(type, id, data, meta)
            buffered.append(json.loads((await sub.get()).frame_json))
        await hub.flush()
        if snapshot is None:
            snapshot = store.snapshot("c")

        # 3. apply the snapshot, 4. replay buffered frames above its version.
        client: dict[str, Entity] = {e.id: e for e in snapshot.entities}
        for frame in buffered:
            event = Event.from_frame(frame)
            if event.seq <= snapshot.version:
                continue
            for entity in project(event, client.get):
                client[entity.id] = entity

        live = store.snapshot("c")
        assert live.version == len(events)
        assert view(client) == view(live.entities)
        assert live.entities[1].props["content"] == "Sure, let me look"

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_since_version_catches_up_an_existing_client(tmp_path: Path) -> None:
    store = SQLiteTimelineStore(tmp_path / "timeline.db")

    async def main() -> None:
        hub = ConversationHub("c", store)
        events = script()
        for type, id, data, meta in events[:6]:
            await hub.publish(type, id, data, meta)
        # The hub writes the timeline behind its frames: flush as /api/timeline does for a live
        # conversation, or the snapshot races the writer (this failed under load).
        await hub.flush()
        first = store.snapshot("c")
        client = {e.id: e for e in first.entities}
        for type, id, data, meta in events[6:]:
            await hub.publish(type, id, data, meta)
        await hub.flush()
        delta = store.snapshot("c", since_version=first.version)
        assert all(e.version > first.version for e in delta.entities)
        for e in delta.entities:
            client[e.id] = e
        assert view(client) == view(store.snapshot("c").entities)

    try:
        asyncio.run(main())
    finally:
        store.close()
