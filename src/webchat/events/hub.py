"""One hub per live conversation: assigns ``seq``, fans the frame out, and writes the projection behind.

For every published event, synchronously on the event loop (so seq order == delivery order, whatever the
number of concurrent publishers):

1. the next ``seq``. Seqs are reserved durably in blocks before any frame carries one
   (:meth:`TimelineStore.reserve_seq`), and a hub starts above both the written version and the
   reservation, so no seq is ever handed out twice: not after a crash, not when a write failed;
2. the event is kept in a bounded ring buffer (the debug API reads it) and offered to every subscriber;
3. it is queued for the hub's writer, which projects queued events into entities and writes them with
   ``store.apply_batch`` in a worker thread, one transaction per batch, in seq order (the version is
   written even when no entity changes, so a restart never reuses a ``seq`` of a written event).

Delivery does not wait for the write: a token reaches the socket without a database round-trip in
between. Hydration stays consistent with the client contract (open the socket, buffer, fetch the
snapshot, replay buffered frames with ``seq`` above its version), and ``/api/timeline`` flushes a live
hub before reading, so a snapshot never lags a frame already delivered. A subscriber whose queue is
full is dropped (closed with a reason); it never blocks the publisher or the other subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

from webchat.events.envelope import Event, now_ms
from webchat.events.projector import project
from webchat.stores.offload import write_call
from webchat.stores.timeline import Entity, TimelineStore

log = logging.getLogger("webchat.events")

DEFAULT_BUFFER_SIZE = 1000
DEFAULT_MAX_QUEUE = 1000
# Entities the projector may update next (the streaming message, running tools) stay in memory;
# older ones are read back from the store when an event touches them again.
ENTITY_CACHE_SIZE = 256
# At most about this many delivered events may wait for their write: a publisher that finds more
# waits for the writer (backpressure).
MAX_UNWRITTEN = 256
# How many seqs one reservation write covers: one extra small write per this many frames, and at most
# this many numbers skipped when a process stops.
SEQ_RESERVATION_BLOCK = 256


class SubscriptionClosed(Exception):
    """Raised by :meth:`Subscription.get` once the subscription is closed; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    """A subscriber's bounded queue of events. Iterate it, or ``await get()``.

    Closing (by :meth:`ConversationHub.unsubscribe`, by the hub dropping a slow subscriber, or by the
    hub closing) discards what is still queued: a dropped client re-hydrates rather than catching up.
    """

    def __init__(self, conv_id: str, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.conv_id = conv_id
        self.max_queue = max_queue
        self._items: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._reason = ""

    @property
    def closed(self) -> bool:
        return bool(self._reason)

    @property
    def reason(self) -> str:
        """Why the subscription was closed; empty while it is open."""
        return self._reason

    @property
    def pending(self) -> int:
        return len(self._items)

    def offer(self, event: Event) -> bool:
        """Queue an event without waiting; False when the subscription is closed or its queue is full."""
        if self._reason or len(self._items) >= self.max_queue:
            return False
        self._items.append(event)
        self._ready.set()
        return True

    def close(self, reason: str = "closed") -> None:
        if self._reason:
            return
        self._reason = reason or "closed"
        self._items.clear()
        self._ready.set()

    async def get(self) -> Event:
        while True:
            if self._reason:
                raise SubscriptionClosed(self._reason)
            if self._items:
                return self._items.popleft()
            self._ready.clear()
            await self._ready.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None


class ConversationHub:
    """Sequencing, persistence and fan-out of one conversation's events."""

    def __init__(
        self,
        conv_id: str,
        store: TimelineStore,
        *,
        version: int | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        clock: Callable[[], int] = now_ms,
        reservation_block: int = SEQ_RESERVATION_BLOCK,
        written: int | None = None,
    ) -> None:
        """``version`` is where the hub's seq starts: the highest seq written or reserved for the
        conversation (read from the store when None)."""
        self.conv_id = conv_id
        self._store = store
        self._version = seq_floor(store, conv_id) if version is None else version
        self._reserved = self._version
        self._reservation_block = max(1, reservation_block)
        self._reserving = asyncio.Lock()
        self._written_ok = True
        self._clock = clock
        self._ring: deque[Event] = deque(maxlen=buffer_size)
        # The first seq this hub hands out, and the stored version it started from: a client that saw the
        # stored stream up to there missed nothing this hub does not hold (seqs in between were never used).
        self._first_seq = self._version + 1
        self._written_at_start = self._version if written is None else min(written, self._version)
        self._subscribers: list[Subscription] = []
        self._entities: OrderedDict[str, Entity] = OrderedDict()
        self._pending: list[Event] = []
        self._writer: asyncio.Future[None] | None = None
        self._persisted_version = self._version
        self._last_activity_ms = clock()
        self._closed = False

    # -- state --------------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The last assigned ``seq`` (the conversation's timeline version); 0 before any event."""
        return self._version

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def buffered_events(self) -> int:
        return len(self._ring)

    @property
    def last_activity_ms(self) -> int:
        return self._last_activity_ms

    # -- publishing ---------------------------------------------------------------------------------

    async def publish(
        self, type: str, id: str, data: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> Event:
        """Sequence and deliver one event now; its projection is written behind, in seq order.

        Nothing here awaits I/O, so concurrent publishers cannot interleave between taking a ``seq`` and
        delivering it: seq order == delivery order == write order.
        """
        if self._closed:
            raise RuntimeError(f"hub of conversation {self.conv_id} is closed")
        if self._version >= self._reserved:
            # The reservation is written first. A publish that has started completes even if its caller
            # is cancelled during that write (as it would without the wait): no event goes missing.
            async def reserve_then_deliver() -> Event:
                await self._reserve()
                return self._deliver(type, id, data, metadata)

            event = await asyncio.shield(asyncio.ensure_future(reserve_then_deliver()))
        else:
            event = self._deliver(type, id, data, metadata)
        if self._version - self._persisted_version >= MAX_UNWRITTEN:
            await self.flush()
        else:
            # Let subscribers' senders run between events, as a publisher streaming tokens would.
            await asyncio.sleep(0)
        return event

    def _deliver(self, type: str, id: str, data: dict[str, Any], metadata: dict[str, Any] | None) -> Event:
        """Take the next seq, fan the event out and queue its write: no await between these."""
        if self._closed:
            raise RuntimeError(f"hub of conversation {self.conv_id} is closed")
        if self._version >= self._reserved:
            raise RuntimeError(f"conversation {self.conv_id}: seq {self._version + 1} is not reserved")
        event = Event(
            type=type,
            id=id,
            seq=self._version + 1,
            data=dict(data),
            metadata=None if metadata is None else dict(metadata),
            ts_ms=self._clock(),
        )
        self._version = event.seq
        self._last_activity_ms = event.ts_ms
        self._ring.append(event)
        self._fan_out(event)
        self._pending.append(event)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_pending())
        return event

    async def _reserve(self) -> None:
        """Durably reserve the next block of seqs; a failure here fails the publish (nothing is sent)."""
        async with self._reserving:
            if self._version < self._reserved:
                return  # another publisher reserved while this one waited
            upto = self._version + self._reservation_block
            await write_call(self._store, self._store.reserve_seq, self.conv_id, upto)
            self._reserved = upto

    @property
    def fully_written(self) -> bool:
        """Every event published so far is written, and no write ever failed."""
        return self._written_ok and self._persisted_version == self._version and not self._pending

    async def flush(self) -> None:
        """Wait until every event published so far is written to the timeline store."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    @property
    def persisted_version(self) -> int:
        return self._persisted_version

    async def _write_pending(self) -> None:
        # Events published while a batch is being written form the next batch (one transaction each).
        while self._pending:
            batch = list(self._pending)
            self._pending.clear()
            try:
                await write_call(self._store, self._persist, batch)
                self._persisted_version = batch[-1].seq
            except Exception:
                # The live stream goes on; the next successful write carries the version forward.
                # The conversation is never marked cleanly closed after this (fully_written).
                self._written_ok = False
                log.exception(
                    "conversation %s: could not persist events seq=%d..%d",
                    self.conv_id,
                    batch[0].seq,
                    batch[-1].seq,
                )

    def _persist(self, events: list[Event]) -> None:
        """Project and write a batch of events (in a worker thread; batches never overlap)."""
        items = []
        for event in events:
            entities = project(event, self._entity)
            for entity in entities:
                self._entities[entity.id] = entity
                self._entities.move_to_end(entity.id)
            items.append((event.seq, entities))
        while len(self._entities) > ENTITY_CACHE_SIZE:
            self._entities.popitem(last=False)
        self._store.apply_batch(self.conv_id, items)

    def _entity(self, entity_id: str) -> Entity | None:
        entity = self._entities.get(entity_id)
        if entity is None:
            entity = self._store.get_entity(self.conv_id, entity_id)
        return entity

    def _fan_out(self, event: Event) -> None:
        dropped = [sub for sub in self._subscribers if not sub.offer(event)]
        for sub in dropped:
            log.warning("conversation %s: dropping a slow subscriber at seq=%d", self.conv_id, event.seq)
            self._remove(sub, f"slow consumer: more than {sub.max_queue} frames queued")

    # -- subscribers --------------------------------------------------------------------------------

    def subscribe(self, max_queue: int = DEFAULT_MAX_QUEUE) -> Subscription:
        """A new subscription receiving every event published from now on."""
        sub = Subscription(self.conv_id, max_queue)
        if self._closed:
            sub.close("conversation closed")
        else:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription, reason: str = "unsubscribed") -> None:
        self._remove(sub, reason)

    def _remove(self, sub: Subscription, reason: str) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
        sub.close(reason)

    def close(self, reason: str = "conversation closed") -> None:
        """Close every subscription; later publishes are refused."""
        self._closed = True
        for sub in list(self._subscribers):
            self._remove(sub, reason)

    # -- debug --------------------------------------------------------------------------------------

    def held_since(self, since_seq: int) -> list[Event] | None:
        """Every event with ``seq > since_seq``, oldest first, when the ring buffer still holds all of them;
        None when some of them are no longer held (the client must rehydrate from the timeline)."""
        if since_seq >= self._version:
            return []
        held = [e for e in self._ring if e.seq > since_seq]
        if not held:
            # Only seqs a restart skipped lie above since_seq: nothing was missed.
            nothing_new = self._version < self._first_seq
            return [] if nothing_new and since_seq >= self._written_at_start else None
        if held[0].seq == since_seq + 1:
            return held
        # Seqs a restart skipped (reserved, never used) are not missing frames.
        if held[0].seq == self._first_seq and since_seq >= self._written_at_start:
            return held
        return None

    def recent(self, since_seq: int = 0, type: str | None = None, limit: int = 100) -> list[Event]:
        """The newest ``limit`` buffered events with ``seq > since_seq`` (and of ``type``), oldest first."""
        if limit <= 0:
            return []
        matching = [e for e in self._ring if e.seq > since_seq and (type is None or e.type == type)]
        return matching[-limit:]


def seq_floor(store: TimelineStore, conv_id: str) -> int:
    """The highest seq that may have been handed out for the conversation (written or reserved)."""
    return max(store.current_version(conv_id), store.reserved_seq(conv_id))


class HubRegistry:
    """The hubs of the live conversations of one process."""

    def __init__(self, store: TimelineStore, *, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        self._store = store
        self._buffer_size = buffer_size
        self._hubs: dict[str, ConversationHub] = {}

    async def get_or_create(self, conv_id: str) -> ConversationHub:
        """The conversation's hub, starting above every seq written or reserved before."""
        hub = self._hubs.get(conv_id)
        if hub is not None:
            return hub
        written = await asyncio.to_thread(self._store.current_version, conv_id)
        version = max(written, await asyncio.to_thread(self._store.reserved_seq, conv_id))
        # Another caller may have created it while the version was read.
        hub = self._hubs.get(conv_id)
        if hub is None:
            hub = ConversationHub(
                conv_id, self._store, version=version, buffer_size=self._buffer_size, written=written
            )
            self._hubs[conv_id] = hub
        return hub

    def get(self, conv_id: str) -> ConversationHub | None:
        return self._hubs.get(conv_id)

    async def flush_all(self) -> None:
        for hub in list(self._hubs.values()):
            await hub.flush()

    def remove(self, conv_id: str, reason: str = "conversation closed") -> None:
        """Forget a conversation's hub and close its subscriptions."""
        hub = self._hubs.pop(conv_id, None)
        if hub is not None:
            hub.close(reason)

    def items(self) -> Iterator[tuple[str, ConversationHub]]:
        return iter(list(self._hubs.items()))

    def __len__(self) -> int:
        return len(self._hubs)
