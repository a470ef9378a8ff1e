"""The conversation service: live conversations, their FIFO queues, idempotency, eviction, recovery.

One inference per conversation at a time. A prompt that arrives while one runs is queued with the
runtime its own request resolved. The conversation pointer (the conversation index ``runtime_key``)
moves when a request resolves a runtime; it is never read to label a turn.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from webchat.conversations.runner import PendingTurn, now_ms, run_turn
from webchat.events.hub import ConversationHub, HubRegistry
from webchat.runtimes.engine import build_engine
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.stores.protocol import TurnStore
from webchat.stores.timeline import ConversationRecord, TimelineStore
from webchat.turns.model import Block

log = logging.getLogger("webchat.conversations")

IDEMPOTENCY_CAPACITY = 10_000
# Conversation index status written once a conversation's events are all written and it leaves memory.
CLOSED = "closed"


class ConversationNotFound(Exception):
    pass


@dataclass
class Conversation:
    conv_id: str
    session_id: str
    hub: ConversationHub
    pointer: str
    history: list[Block] = field(default_factory=list)
    queue: deque[PendingTurn] = field(default_factory=deque)
    running: PendingTurn | None = None
    worker: asyncio.Task[None] | None = None
    last_activity_ms: int = field(default_factory=now_ms)
    created_at_ms: int = field(default_factory=now_ms)
    restored: bool = False

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.queue)


class ConversationService:
    def __init__(
        self,
        turns: TurnStore,
        timeline: TimelineStore,
        *,
        idle_evict_s: float = 900.0,
        max_tool_iterations: int = 5,
    ) -> None:
        self.turns = turns
        self.timeline = timeline
        self.hubs = HubRegistry(timeline)
        self.idle_evict_s = idle_evict_s
        self.max_tool_iterations = max_tool_iterations
        self._live: dict[str, Conversation] = {}
        self._open_lock = asyncio.Lock()
        self._idempotent: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self._closing = False

    # -- lookup and recovery ------------------------------------------------------------------------

    def live(self, conv_id: str) -> Conversation | None:
        return self._live.get(conv_id)

    def live_items(self) -> list[Conversation]:
        return list(self._live.values())

    async def open(self, conv_id: str, *, create: bool) -> Conversation:
        """The live conversation, restored from the stores after a restart or eviction if needed."""
        conv = self._live.get(conv_id)
        if conv is not None:
            return conv
        async with self._open_lock:
            conv = self._live.get(conv_id)
            if conv is not None:
                return conv
            record = await asyncio.to_thread(self.timeline.get_conversation, conv_id)
            snapshot = await asyncio.to_thread(self.turns.latest_snapshot, conv_id)
            if record is None and snapshot is None and not create:
                raise ConversationNotFound(conv_id)
            session_id = (record.session_id if record else "") or (snapshot.session_id if snapshot else "")
            history = [b for b in snapshot.turn.blocks if b.kind != "system"] if snapshot else []
            # A conversation not marked closed was last used by a process that stopped uncleanly.
            unclean = record is not None and record.status != CLOSED
            hub = await self.hubs.get_or_create(conv_id, after_unclean_stop=unclean)
            conv = Conversation(
                conv_id=conv_id,
                session_id=session_id or str(uuid.uuid4()),
                hub=hub,
                pointer=record.runtime_key if record else "",
                history=history,
                restored=record is not None or snapshot is not None,
            )
            if record is not None:
                conv.created_at_ms = record.created_at_ms
            self._live[conv_id] = conv
            return conv

    async def pointer(self, conv_id: str) -> str:
        """The conversation's pointer: the runtime key its latest request resolved ('' when none)."""
        conv = self._live.get(conv_id)
        if conv is not None:
            return conv.pointer
        record = await asyncio.to_thread(self.timeline.get_conversation, conv_id)
        return record.runtime_key if record else ""

    # -- chat ---------------------------------------------------------------------------------------

    async def submit(
        self, conv_id: str | None, prompt: str, runtime: ResolvedRuntime, idempotency_key: str
    ) -> tuple[int, dict[str, Any]]:
        """Start or queue a prompt. Returns ``(http_status, body)``; replays return the stored response."""
        stored = self._idempotent.get(idempotency_key)
        if stored is not None:
            return stored
        inflight = self._inflight.get(idempotency_key)
        if inflight is not None:
            return await asyncio.shield(inflight)
        fut: asyncio.Future[tuple[int, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._inflight[idempotency_key] = fut
        try:
            result = await self._submit(conv_id or str(uuid.uuid4()), prompt, runtime, idempotency_key)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: a concurrent replay re-raises it, nobody else must
            raise
        finally:
            self._inflight.pop(idempotency_key, None)
        fut.set_result(result)
        self._idempotent[idempotency_key] = result
        while len(self._idempotent) > IDEMPOTENCY_CAPACITY:
            self._idempotent.popitem(last=False)
        return result

    async def _submit(
        self, conv_id: str, prompt: str, runtime: ResolvedRuntime, idempotency_key: str
    ) -> tuple[int, dict[str, Any]]:
        if self._closing:
            raise RuntimeError("server is shutting down")
        conv = await self.open(conv_id, create=True)
        at = now_ms()
        conv.last_activity_ms = at
        # The pointer moves now: it says which runtime the *next* prompt uses, nothing about past turns.
        conv.pointer = runtime.runtime_key
        await asyncio.to_thread(
            self.timeline.upsert_conversation,
            ConversationRecord(
                conv_id=conv.conv_id,
                session_id=conv.session_id,
                runtime_key=runtime.runtime_key,
                created_at_ms=conv.created_at_ms,
                last_activity_ms=at,
                last_seen_version=conv.hub.version,
                has_timeline=True,
                status="active",
                last_error="",
            ),
        )
        turn_id = str(uuid.uuid4())
        pending = PendingTurn(
            conv_id=conv.conv_id,
            session_id=conv.session_id,
            turn_id=turn_id,
            prompt=prompt,
            runtime=runtime,
            idempotency_key=idempotency_key,
            prompt_event_id=f"{turn_id}:user",
        )
        start_now = not conv.busy
        pending.queued = not start_now
        if start_now:
            pending.inference_id = str(uuid.uuid4())
        conv.queue.append(pending)
        queue_position = len(conv.queue)
        await conv.hub.publish(
            "chat.message",
            pending.prompt_event_id,
            {"id": pending.prompt_event_id, "content": prompt, "turn_id": turn_id, "queued": not start_now},
            {"runtime_key": runtime.runtime_key, "turn_id": turn_id},
        )
        if conv.worker is None or conv.worker.done():
            conv.worker = asyncio.create_task(self._drain(conv), name=f"conversation-{conv.conv_id}")
        common = {
            "conv_id": conv.conv_id,
            "session_id": conv.session_id,
            "runtime_key": runtime.runtime_key,
            "idempotency_key": idempotency_key,
        }
        if start_now:
            return 200, {
                "status": "started",
                **common,
                "turn_id": turn_id,
                "inference_id": pending.inference_id,
                "runtime_fingerprint": runtime.fingerprint,
            }
        return 202, {
            "status": "queued",
            **common,
            "turn_id": turn_id,
            "queue_position": queue_position,
            "queue_depth": len(conv.queue),
        }

    async def _drain(self, conv: Conversation) -> None:
        while True:
            await self._run_queue(conv)
            await asyncio.to_thread(self.timeline.upsert_conversation, self._idle_record(conv))
            # A prompt accepted during that write found this worker still running: run it too.
            if not conv.queue:
                return

    def _idle_record(self, conv: Conversation, status: str = "idle") -> ConversationRecord:
        return ConversationRecord(
            conv_id=conv.conv_id,
            session_id=conv.session_id,
            runtime_key="",  # empty keeps the pointer as it is
            created_at_ms=conv.created_at_ms,
            last_activity_ms=conv.last_activity_ms,
            last_seen_version=conv.hub.version,
            has_timeline=True,
            status=status,
            last_error="",
        )

    async def _run_queue(self, conv: Conversation) -> None:
        while conv.queue:
            pending = conv.queue.popleft()
            conv.running = pending
            conv.last_activity_ms = now_ms()
            try:
                if pending.queued:
                    # The prompt's timeline entity stops saying "queued" once its turn starts.
                    await conv.hub.publish(
                        "chat.message",
                        pending.prompt_event_id,
                        {
                            "id": pending.prompt_event_id,
                            "content": pending.prompt,
                            "turn_id": pending.turn_id,
                            "queued": False,
                        },
                        {"runtime_key": pending.runtime.runtime_key, "turn_id": pending.turn_id},
                    )
                outcome = await run_turn(
                    pending,
                    conv.history,
                    build_engine,
                    self.turns,
                    conv.hub.publish,
                    max_tool_iterations=int(
                        pending.runtime.options.get("max_tool_iterations", self.max_tool_iterations)
                    ),
                )
                conv.history = [b for b in outcome.turn.blocks if b.kind != "system"]
            except asyncio.CancelledError:
                conv.running = None
                raise
            except Exception:
                log.exception(
                    "turn %s of conversation %s failed outside the runner", pending.turn_id, conv.conv_id
                )
            finally:
                conv.running = None
                conv.last_activity_ms = now_ms()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def evict_idle(self, now: int | None = None) -> list[str]:
        """Drop idle conversations from memory (their state lives on in the stores)."""
        now = now if now is not None else now_ms()
        evicted = []
        for conv in list(self._live.values()):
            if conv.busy or conv.hub.subscriber_count:
                continue
            if now - conv.last_activity_ms >= self.idle_evict_s * 1000:
                await conv.hub.flush()
                if conv.busy or conv.hub.subscriber_count:
                    continue  # became active while its writes were flushed
                await self._mark_closed(conv)
                self._live.pop(conv.conv_id, None)
                self.hubs.remove(conv.conv_id)
                evicted.append(conv.conv_id)
        return evicted

    async def shutdown(self, grace_s: float) -> None:
        """Let running turns finish within the grace period; the rest are persisted as interrupted."""
        self._closing = True
        # Prompts still waiting will not run in this process: say so on their timeline (they never
        # started an inference, so there is no turn to record), and let only running turns finish.
        for conv in list(self._live.values()):
            while conv.queue:
                pending = conv.queue.popleft()
                await conv.hub.publish(
                    "llm.error",
                    f"{pending.turn_id}:assistant",
                    {
                        "id": f"{pending.turn_id}:assistant",
                        "error": "the server stopped before this queued prompt ran; send it again",
                        "code": "not_run",
                    },
                    {
                        "runtime_key": pending.runtime.runtime_key,
                        "turn_id": pending.turn_id,
                        "inference_id": "",
                    },
                )
        workers = [c.worker for c in self._live.values() if c.worker and not c.worker.done()]
        if workers:
            _, still = await asyncio.wait(workers, timeout=grace_s)
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        await self.hubs.flush_all()
        for conv in list(self._live.values()):
            await self._mark_closed(conv)

    async def _mark_closed(self, conv: Conversation) -> None:
        """Record that every event of the conversation is written (only for indexed conversations)."""
        if conv.hub.version == 0 and not conv.restored:
            return  # a socket was opened, nothing was ever said: keep it out of the index
        await asyncio.to_thread(self.timeline.upsert_conversation, self._idle_record(conv, CLOSED))
