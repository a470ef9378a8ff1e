"""The per-conversation hub: sequencing across restarts, persistence before delivery, fan-out, drops."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from webchat.events.envelope import Event
from webchat.events.hub import ConversationHub, HubRegistry, Subscription, SubscriptionClosed
from webchat.stores.protocol import StoreError
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.timeline import Entity

META = {"runtime_key": "default", "inference_id": "i1", "turn_id": "t1"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteTimelineStore]:
    s = SQLiteTimelineStore(tmp_path / "timeline.db")
    yield s
    s.close()


async def take(sub: Subscription, n: int) -> list[Event]:
    return [await asyncio.wait_for(sub.get(), 5) for _ in range(n)]


def test_seq_increases_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "timeline.db"

    async def session(after: int) -> int:
        store = SQLiteTimelineStore(path)
        try:
            hub = await HubRegistry(store).get_or_create("c")
            first = await hub.publish("chat.message", "u", {"content": "hi"}, META)
            second = await hub.publish("chat.turn_done", "t1", {})  # no entity, the version still moves
            assert after < first.seq and second.seq == first.seq + 1
            await hub.flush()
            assert store.current_version("c") == second.seq
            # The seqs a client saw are reserved on disk before any frame carried them.
            assert store.reserved_seq("c") >= second.seq
            return second.seq
        finally:
            store.close()

    last = asyncio.run(session(0))
    assert last == 2
    again = asyncio.run(session(last))
    assert asyncio.run(session(again)) > again


def test_no_seq_is_reused_when_nothing_was_written(tmp_path: Path) -> None:
    """A process that delivered frames but wrote none of them (a crash, a full disk) never lets the next
    process hand the same seqs out again."""
    path = tmp_path / "timeline.db"
    SQLiteTimelineStore(path).close()
    failing = FailingStore(path)

    async def crashed() -> list[int]:
        hub = await HubRegistry(failing).get_or_create("c")
        return [(await hub.publish("llm.delta", "a", {"delta": "x"}, META)).seq for _ in range(40)]

    try:
        seen = asyncio.run(crashed())
    finally:
        failing.close()
    assert seen == list(range(1, 41))
    store = SQLiteTimelineStore(path)
    try:
        assert store.current_version("c") == 0  # not one event was written

        async def restarted() -> int:
            hub = await HubRegistry(store).get_or_create("c")
            return (await hub.publish("chat.message", "u", {"content": "hi"}, META)).seq

        assert asyncio.run(restarted()) > max(seen)
    finally:
        store.close()


def test_a_failed_reservation_fails_the_publish_and_sends_nothing(tmp_path: Path) -> None:
    class NoReservations(SQLiteTimelineStore):
        def reserve_seq(self, conv_id: str, upto: int) -> None:
            raise StoreError("disk full")

    store = NoReservations(tmp_path / "timeline.db")

    async def main() -> None:
        hub = ConversationHub("c", store)
        sub = hub.subscribe()
        with pytest.raises(StoreError):
            await hub.publish("llm.start", "a", {}, META)
        assert sub.pending == 0 and hub.version == 0

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_delivery_does_not_wait_for_the_store_and_flush_catches_up(store: SQLiteTimelineStore) -> None:
    async def main() -> None:
        hub = ConversationHub("c", store)
        sub = hub.subscribe()
        await hub.publish("llm.start", "a", {}, META)
        for i in range(1, 20):
            await hub.publish("llm.delta", "a", {"cumulative": "x" * i}, META)
        await hub.publish("llm.final", "a", {"text": "done"}, META)
        delivered = await take(sub, 21)
        assert [e.seq for e in delivered] == list(range(1, 22))
        await hub.flush()
        assert hub.persisted_version == 21
        snap = store.snapshot("c")
        entity = store.get_entity("c", "a")
        assert snap.version == 21 and entity is not None and entity.props["content"] == "done"
        assert entity.version == 21

    asyncio.run(main())


def test_concurrent_publishers_keep_one_order(store: SQLiteTimelineStore) -> None:
    async def main() -> None:
        hub = ConversationHub("c", store)
        sub = hub.subscribe()

        async def producer(name: str) -> list[Event]:
            out = []
            for i in range(15):
                out.append(
                    await hub.publish("timeline.upsert", f"{name}{i}", {"entity": {"kind": "n", "props": {}}})
                )
            return out

        results = await asyncio.gather(*(producer(p) for p in "abcd"))
        delivered = await take(sub, 60)
        assert [e.seq for e in delivered] == list(range(1, 61))
        published = sorted(itertools.chain.from_iterable(results), key=lambda e: e.seq)
        assert [e.id for e in delivered] == [e.id for e in published]
        await hub.flush()
        stored = {e.id: e.version for e in store.snapshot("c").entities}
        assert all(stored[e.id] == e.seq for e in delivered)
        assert store.current_version("c") == 60

    asyncio.run(main())


def test_fan_out_to_every_subscriber(store: SQLiteTimelineStore) -> None:
    async def main() -> None:
        hub = ConversationHub("c", store)
        subs = [hub.subscribe() for _ in range(3)]
        assert hub.subscriber_count == 3
        events = [await hub.publish("llm.delta", "a", {"cumulative": str(i)}, META) for i in range(5)]
        for sub in subs:
            got = await take(sub, 5)
            assert got == events
            assert got[0].frame_json == events[0].frame_json
        hub.unsubscribe(subs[0])
        assert subs[0].closed and subs[0].reason == "unsubscribed"
        await hub.publish("llm.final", "a", {"text": "z"}, META)
        assert subs[0].pending == 0 and subs[1].pending == 1 and hub.subscriber_count == 2

    asyncio.run(main())


def test_slow_subscriber_is_dropped_fast_one_gets_everything(store: SQLiteTimelineStore) -> None:
    async def main() -> None:
        hub = ConversationHub("c", store)
        slow = hub.subscribe(max_queue=5)
        fast = hub.subscribe(max_queue=5)
        received: list[int] = []

        async def reader() -> None:
            async for event in fast:
                received.append(event.seq)

        task = asyncio.create_task(reader())
        for i in range(40):
            await hub.publish("llm.delta", "a", {"cumulative": str(i)}, META)
        await asyncio.sleep(0)
        assert received == list(range(1, 41))
        assert slow.closed and "slow consumer" in slow.reason
        assert hub.subscriber_count == 1
        with pytest.raises(SubscriptionClosed) as info:
            await slow.get()
        assert info.value.reason == slow.reason
        hub.close()
        await asyncio.wait_for(task, 5)  # the iterator ends when its subscription closes
        assert fast.reason == "conversation closed"
        with pytest.raises(RuntimeError):
            await hub.publish("llm.delta", "a", {}, META)

    asyncio.run(main())


def test_ring_buffer_and_filters(store: SQLiteTimelineStore) -> None:
    async def main() -> None:
        hub = ConversationHub("c", store, buffer_size=10)
        for i in range(15):
            await hub.publish("llm.delta" if i % 2 else "chat.turn_done", f"e{i}", {})
        assert hub.buffered_events == 10
        assert [e.seq for e in hub.recent()] == list(range(6, 16))
        assert [e.seq for e in hub.recent(since_seq=12)] == [13, 14, 15]
        assert [e.seq for e in hub.recent(type="llm.delta")] == [6, 8, 10, 12, 14]
        assert [e.seq for e in hub.recent(type="llm.delta", limit=2)] == [12, 14]
        assert hub.recent(limit=0) == []
        assert hub.last_activity_ms == hub.recent()[-1].ts_ms

    asyncio.run(main())


def test_frames_carry_the_envelope(store: SQLiteTimelineStore) -> None:
    async def main() -> None:
        hub = ConversationHub("c", store)
        event = await hub.publish("llm.delta", "a", {"cumulative": "hé"}, META)
        assert event.frame() == {
            "sem": True,
            "event": {
                "type": "llm.delta",
                "id": "a",
                "seq": 1,
                "data": {"cumulative": "hé"},
                "metadata": META,
            },
        }
        bare = await hub.publish("chat.turn_done", "t1", {})
        assert "metadata" not in bare.frame()["event"]
        assert Event.from_frame(bare.frame()).seq == 2

    asyncio.run(main())


def test_registry(store: SQLiteTimelineStore) -> None:
    async def main() -> None:
        store.apply("c", 41, [])
        registry = HubRegistry(store)
        hubs = await asyncio.gather(*(registry.get_or_create("c") for _ in range(3)))
        assert hubs[0] is hubs[1] is hubs[2] and registry.get("c") is hubs[0]
        assert hubs[0].version == 41
        sub = hubs[0].subscribe()
        assert [cid for cid, _ in registry.items()] == ["c"] and len(registry) == 1
        registry.remove("c")
        assert registry.get("c") is None and sub.closed
        registry.remove("c")  # unknown: nothing happens

    asyncio.run(main())


def test_publish_completes_when_the_caller_is_cancelled(store: SQLiteTimelineStore) -> None:
    async def main() -> None:
        hub = ConversationHub("c", store)
        sub = hub.subscribe()
        task = asyncio.create_task(hub.publish("llm.start", "a", {}, META))
        await asyncio.sleep(0)
        task.cancel()
        event = await asyncio.wait_for(sub.get(), 5)
        await hub.flush()
        assert event.seq == 1 and store.current_version("c") == 1
        nxt = await hub.publish("llm.final", "a", {"text": "x"}, META)
        assert nxt.seq == 2

    asyncio.run(main())


class FailingStore(SQLiteTimelineStore):
    """A store whose writes fail: the live stream must go on."""

    calls = 0

    def apply_batch(self, conv_id: str, batch: list[tuple[int, list[Entity]]]) -> None:
        self.calls += 1
        raise StoreError("disk full")


def test_a_failed_write_still_delivers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "timeline.db"
    good = SQLiteTimelineStore(path)
    good.apply("c", 7, [])
    good.close()
    store = FailingStore(path)

    async def main() -> None:
        hub = ConversationHub("c", store)
        sub = hub.subscribe()
        event = await hub.publish("llm.error", "a", {"error": "boom", "code": "x"}, META)
        assert event.seq == 8 and (await sub.get()) == event
        await hub.flush()
        assert store.calls == 1
        assert not hub.fully_written  # so the conversation is never marked cleanly closed
        assert (await hub.publish("chat.turn_done", "t", {})).seq == 9

    try:
        asyncio.run(main())
    finally:
        store.close()
    assert "could not persist events seq=8..8" in caplog.text


def test_a_hub_starts_above_written_and_reserved_seqs_and_backpressure_bounds_unwritten(
    store: SQLiteTimelineStore,
) -> None:
    from webchat.events.hub import MAX_UNWRITTEN

    async def main() -> None:
        store.apply("c", 10, [])
        assert (await HubRegistry(store).get_or_create("c")).version == 10
        store.reserve_seq("c", 700)
        store.reserve_seq("c", 650)  # reservations only grow
        assert (await HubRegistry(store).get_or_create("c")).version == 700
        clean = await HubRegistry(store).get_or_create("d")
        assert clean.version == 0
        # However fast a publisher goes, no more than about MAX_UNWRITTEN events wait for their write.
        for i in range(3 * MAX_UNWRITTEN):
            await clean.publish("llm.delta", "a", {"cumulative": str(i)}, META)
            assert clean.version - clean.persisted_version <= MAX_UNWRITTEN
        await clean.flush()
        assert store.current_version("d") == 3 * MAX_UNWRITTEN

    asyncio.run(main())


def test_held_since_replays_only_a_complete_tail(tmp_path: Path) -> None:
    path = tmp_path / "timeline.db"
    store = SQLiteTimelineStore(path)
    store.apply("c", 14, [])  # the stored stream ends at 14 ...
    store.reserve_seq("c", 256)  # ... and the process that wrote it had reserved up to 256

    async def main() -> None:
        hub = await HubRegistry(store, buffer_size=5).get_or_create("c")
        # Nothing published yet: a client that saw 14 missed nothing; one that saw 10 must rehydrate.
        assert hub.held_since(14) == [] and hub.held_since(300) == []
        assert hub.held_since(10) is None
        for _ in range(3):
            await hub.publish("llm.delta", "a", {"delta": "x"}, META)
        assert [e.seq for e in hub.held_since(14) or []] == [257, 258, 259]
        assert [e.seq for e in hub.held_since(257) or []] == [258, 259]
        assert hub.held_since(10) is None  # 11..14 are stored, not held: rehydrate
        for _ in range(4):
            await hub.publish("llm.delta", "a", {"delta": "x"}, META)
        # The ring keeps 5 frames (259..263): 257 and 258 are gone.
        assert hub.held_since(14) is None
        assert [e.seq for e in hub.held_since(258) or []] == [259, 260, 261, 262, 263]
        await hub.flush()

    try:
        asyncio.run(main())
    finally:
        store.close()
