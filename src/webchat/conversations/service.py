"""The conversation service: live conversations, their durable FIFO queues, idempotency, recovery.

One inference per conversation at a time. Every prompt is a row of the prompt store, committed before
the client hears 200/202 (scale-out.md §1); its status follows the turn:
``queued → running → done | failed | cancelled | not_run``. A prompt that arrives while another runs is
queued with the runtime its own request resolved, and that runtime is stored with it, so it runs on that
runtime even after a restart. The conversation pointer (the conversation index ``runtime_key``) moves in
the same transaction that accepts the prompt; it is never read to label a turn.

After a crash, :meth:`ConversationService.recover` records the prompt that was running as a failed turn
(code ``interrupted``, with what was streamed), closes its timeline entities, and runs the queued prompts
in the order they were accepted. Nothing runs twice: a prompt is marked ``running`` before its inference
starts, and a ``running`` prompt found at start-up is never run again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from webchat.conversations.runner import PendingTurn, now_ms, run_turn
from webchat.events.hub import ConversationHub, HubRegistry
from webchat.runtimes.engine import Engine, build_engine
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.stores.offload import write_call
from webchat.stores.prompts import (
    CANCELLED,
    DONE,
    FAILED,
    NOT_RUN,
    QUEUED,
    RUNNING,
    IdempotencyKeyReused,
    NewPrompt,
    PromptRecord,
    PromptStore,
    Settle,
)
from webchat.stores.protocol import Snapshot, TurnStore
from webchat.stores.timeline import ConversationRecord, TimelineStore
from webchat.turns import keys
from webchat.turns.model import Block, Turn

log = logging.getLogger("webchat.conversations")

# Conversation index status written once a conversation's events are all written and it leaves memory.
CLOSED = "closed"
INTERRUPTED = "interrupted"
INTERRUPTED_MESSAGE = "the server stopped while this turn was running"


def may_use(owner_id: str | None, user_id: str, admin: bool) -> bool:
    """Whether a user may read or steer the conversation with this owner (None: it does not exist) —
    security.md's access matrix: admins every conversation, a user their own."""
    return owner_id is not None and (admin or owner_id == user_id)


class ConversationNotFound(Exception):
    pass


class ServiceClosing(Exception):
    """The server is stopping and accepts no new prompt."""


class QueueFull(Exception):
    """The conversation already has ``max_queue`` prompts waiting."""


class TooManyConversations(Exception):
    """The user already has ``max_conversations_per_user`` conversations live."""


class TooManyPrompts(Exception):
    """The user already has ``max_prompts_per_user`` prompts waiting or running."""


@dataclass
class Conversation:
    conv_id: str
    session_id: str
    hub: ConversationHub
    pointer: str
    history: list[Block] = field(default_factory=list)
    queue: deque[PendingTurn] = field(default_factory=deque)
    running: PendingTurn | None = None
    # The running turn's outcome is decided (its last frame is out) and only its prompt row is being
    # closed: a prompt accepted now starts next, it does not wait in the queue.
    settling: Settle | None = None
    worker: asyncio.Task[None] | None = None
    last_activity_ms: int = field(default_factory=now_ms)
    created_at_ms: int = field(default_factory=now_ms)
    restored: bool = False
    # Whose conversation it is: the user id its first accepted prompt was sent by ('' for conversations
    # from before users, or from local mode). None: nothing was ever accepted, so it does not exist yet.
    owner_id: str | None = None
    # Held while a prompt is accepted: "start now or queue" and the durable append are one decision.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.queue)

    @property
    def starts_next(self) -> bool:
        """A prompt accepted now is the next to run: nothing waits, and nothing runs or its answer is out."""
        return not self.queue and (self.running is None or self.settling is not None)


class FairSlots:
    """At most ``limit`` turns run at once; waiting turns get a slot in the order their prompts were
    accepted, across conversations, so no conversation starves under load."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._running = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tie = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def acquire(self, order: int) -> None:
        if self._running < self.limit and not self._waiting:
            self._running += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tie += 1
        heapq.heappush(self._waiting, (order, self._tie, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was granted as the waiter was cancelled: pass it on
            else:
                self._waiting = [w for w in self._waiting if w[2] is not fut]
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)
                return  # the slot passes straight to the earliest waiter
        self._running -= 1


def history_of(turn: Turn) -> list[Block]:
    """The blocks a later turn is given as history: everything but the system prompt."""
    return [b for b in turn.blocks if b.kind != "system"]


def newest(snapshots: list[Snapshot]) -> Snapshot | None:
    """A turn's latest snapshot (its phases are written with strictly increasing timestamps)."""
    return max(snapshots, key=lambda s: s.created_at_ms, default=None)


class ConversationService:
    def __init__(
        self,
        turns: TurnStore,
        timeline: TimelineStore,
        prompts: PromptStore,
        *,
        idle_evict_s: float = 900.0,
        max_tool_iterations: int = 5,
        max_running: int = 64,
        max_queue: int = 32,
        max_conversations_per_user: int = 500,
        max_prompts_per_user: int = 256,
        engine_factory: Callable[[ResolvedRuntime], Engine] = build_engine,
    ) -> None:
        self.turns = turns
        self.timeline = timeline
        self.prompts = prompts
        self.hubs = HubRegistry(timeline)
        self.idle_evict_s = idle_evict_s
        self.max_tool_iterations = max_tool_iterations
        self.slots = FairSlots(max_running)
        self.max_queue = max_queue
        self.max_conversations_per_user = max_conversations_per_user
        self.max_prompts_per_user = max_prompts_per_user
        # Prompts of a user being accepted right now (between the cap check and joining a queue).
        self._accepting: dict[str, int] = {}
        self._engine_factory = engine_factory
        self._live: dict[str, Conversation] = {}
        self._open_lock = asyncio.Lock()
        self._closing = False

    # -- lookup -------------------------------------------------------------------------------------

    def live(self, conv_id: str) -> Conversation | None:
        return self._live.get(conv_id)

    def live_items(self) -> list[Conversation]:
        return list(self._live.values())

    async def owner_of(self, conv_id: str) -> str | None:
        """The owner of a conversation, None when it does not exist (nothing was ever accepted in it)."""
        conv = self._live.get(conv_id)
        if conv is not None and conv.owner_id is not None:
            return conv.owner_id
        record = await asyncio.to_thread(self.timeline.get_conversation, conv_id)
        if record is not None:
            return record.owner_id
        if conv is not None:
            return "" if conv.restored else None
        # Turns from before the conversation index: a conversation, the first admin's.
        found = await asyncio.to_thread(self.turns.latest_snapshot, conv_id)
        return "" if found is not None else None

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
            history, session_id = await asyncio.to_thread(self._history, conv_id)
            if record is None and session_id is None and not create:
                raise ConversationNotFound(conv_id)
            hub = await self.hubs.get_or_create(conv_id)
            conv = Conversation(
                conv_id=conv_id,
                session_id=(record.session_id if record else "") or session_id or str(uuid.uuid4()),
                hub=hub,
                pointer=record.runtime_key if record else "",
                history=history,
                restored=record is not None or session_id is not None,
            )
            if record is not None:
                conv.created_at_ms = record.created_at_ms
                conv.owner_id = record.owner_id
            elif conv.restored:
                conv.owner_id = ""  # turns from before the conversation index: the first admin's
            self._live[conv_id] = conv
            return conv

    def _history(self, conv_id: str) -> tuple[list[Block], str | None]:
        """The history the next turn is given, and the conversation's session (None: no turn stored).

        It is the latest snapshot of the turn of the conversation's last finished prompt, by queue
        position: the full ordered history, whatever timestamps the turns of neighbouring prompts carry.
        Conversations from before the prompt queue fall back to the newest snapshot.
        """
        last = self.prompts.last_finished(conv_id)
        if last is not None:
            found = newest(self.turns.load_turn(conv_id, last.session_id, last.turn_id))
            if found is not None:
                return history_of(found.turn), found.session_id
        snapshot = self.turns.latest_snapshot(conv_id)
        if snapshot is None:
            return [], None
        return history_of(snapshot.turn), snapshot.session_id

    async def pointer(self, conv_id: str) -> str:
        """The conversation's pointer: the runtime key its latest request resolved ('' when none)."""
        conv = self._live.get(conv_id)
        if conv is not None:
            return conv.pointer
        record = await asyncio.to_thread(self.timeline.get_conversation, conv_id)
        return record.runtime_key if record else ""

    # -- chat ---------------------------------------------------------------------------------------

    async def submit(
        self,
        conv_id: str | None,
        prompt: str,
        runtime: ResolvedRuntime,
        idempotency_key: str,
        *,
        user_id: str = "",
        admin: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Start or queue a prompt; it is durable before this returns. Returns ``(http_status, body)``.

        A known idempotency key returns the stored response and starts nothing (also after a restart);
        a key used before for another conversation or other text raises :class:`IdempotencyKeyReused`.
        A conversation of another user (unless ``admin``) raises :class:`ConversationNotFound`, exactly as
        an unknown one would; a conversation nobody has used yet becomes ``user_id``'s.
        """
        if self._closing:
            raise ServiceClosing("the server is shutting down")
        if conv_id is None:
            # A retry of a request that created its conversation must not create another one. With a
            # conv_id, the accepting transaction itself finds a known key (one read fewer per prompt).
            known = await asyncio.to_thread(self.prompts.find_key, user_id, idempotency_key)
            if known is not None:
                return self._replay(known, conv_id, prompt)
        # The per-user bounds keep users of one server from crowding each other out (in local mode they
        # bound the one local user, '').
        if conv_id is None or conv_id not in self._live:
            owned = sum(1 for c in self._live.values() if c.owner_id == user_id)
            if owned >= self.max_conversations_per_user:
                raise TooManyConversations(
                    f"{self.max_conversations_per_user} conversations of yours are already open; "
                    "try again when one has been idle for a while"
                )
        if self.prompts_in_flight(user_id) >= self.max_prompts_per_user:
            # Checked again, exactly, while accepting; this one opens no conversation for a refusal.
            return await self._over_prompt_cap(user_id, idempotency_key, conv_id, prompt)
        conv = await self.open(conv_id or str(uuid.uuid4()), create=True)
        async with conv.lock:
            if self._closing:
                raise ServiceClosing("the server is shutting down")
            if conv.owner_id is not None and not may_use(conv.owner_id, user_id, admin):
                raise ConversationNotFound(conv.conv_id)
            return await self._accept(conv, conv_id is not None, prompt, runtime, idempotency_key, user_id)

    def prompts_in_flight(self, user_id: str) -> int:
        """The user's prompts that wait or run in live conversations, or are being accepted."""
        n = self._accepting.get(user_id, 0)
        for conv in self._live.values():
            if conv.owner_id == user_id:
                n += len(conv.queue) + int(conv.running is not None and conv.settling is None)
        return n

    async def _over_prompt_cap(
        self, user_id: str, idempotency_key: str, conv_id: str | None, prompt: str
    ) -> tuple[int, dict[str, Any]]:
        return await self._replay_or_refuse(
            user_id,
            idempotency_key,
            conv_id,
            prompt,
            TooManyPrompts(
                f"{self.max_prompts_per_user} prompts of yours are already waiting or running; "
                "send this one when one of them has finished"
            ),
        )

    async def _replay_or_refuse(
        self, user_id: str, idempotency_key: str, conv_id: str | None, prompt: str, refusal: Exception
    ) -> tuple[int, dict[str, Any]]:
        """Over a bound: a retry of a prompt already accepted still gets its stored answer, anything
        else is refused with ``refusal``."""
        known = await asyncio.to_thread(self.prompts.find_key, user_id, idempotency_key)
        if known is not None:
            return self._replay(known, conv_id, prompt)
        raise refusal

    @staticmethod
    def _replay(known: PromptRecord, conv_id: str | None, prompt: str) -> tuple[int, dict[str, Any]]:
        if conv_id is not None and conv_id != known.conv_id:
            raise IdempotencyKeyReused(
                f"idempotency key {known.idempotency_key!r} was already used for another conversation"
            )
        if prompt != known.prompt:
            raise IdempotencyKeyReused(
                f"idempotency key {known.idempotency_key!r} was already used for another prompt"
            )
        return known.response_status, known.response

    async def _accept(
        self,
        conv: Conversation,
        conv_id_given: bool,
        prompt: str,
        runtime: ResolvedRuntime,
        idempotency_key: str,
        user_id: str,
    ) -> tuple[int, dict[str, Any]]:
        if self.prompts_in_flight(user_id) >= self.max_prompts_per_user:
            return await self._over_prompt_cap(
                user_id, idempotency_key, conv.conv_id if conv_id_given else None, prompt
            )
        at = now_ms()
        turn_id = str(uuid.uuid4())
        start_now = conv.starts_next
        inference_id = str(uuid.uuid4()) if start_now else ""
        common: dict[str, Any] = {
            "conv_id": conv.conv_id,
            "session_id": conv.session_id,
            "runtime_key": runtime.runtime_key,
            "idempotency_key": idempotency_key,
            "turn_id": turn_id,
        }
        if start_now:
            status, body = (
                200,
                {
                    "status": "started",
                    **common,
                    "inference_id": inference_id,
                    "runtime_fingerprint": runtime.fingerprint,
                },
            )
        else:
            # Waiting prompts only: one accepted to start now may not have left the queue yet.
            depth = sum(1 for p in conv.queue if p.queued) + 1
            if depth > self.max_queue:
                return await self._replay_or_refuse(
                    user_id,
                    idempotency_key,
                    conv.conv_id if conv_id_given else None,
                    prompt,
                    QueueFull(
                        f"conversation {conv.conv_id} already has {self.max_queue} prompts waiting; "
                        "send this one when one of them has run"
                    ),
                )
            status = 202
            body = {"status": "queued", **common, "queue_position": depth, "queue_depth": depth}
        new = NewPrompt(
            conv_id=conv.conv_id,
            turn_id=turn_id,
            session_id=conv.session_id,
            prompt=prompt,
            runtime_key=runtime.runtime_key,
            runtime_fingerprint=runtime.fingerprint,
            runtime=runtime.document(),
            idempotency_key=idempotency_key,
            response_status=status,
            response=body,
            accepted_at_ms=at,
            user_id=user_id,
            conv_id_given=conv_id_given,
            # A prompt that starts now is written as running at once: one write less before its first
            # token, and a crash from here on records it as interrupted, as the client was told it started.
            inference_id=inference_id,
            settles=conv.settling if start_now else None,
        )
        # The pointer moves with the accepted prompt: it says which runtime the *next* prompt uses.
        index_row = ConversationRecord(
            conv_id=conv.conv_id,
            session_id=conv.session_id,
            runtime_key=runtime.runtime_key,
            created_at_ms=conv.created_at_ms,
            last_activity_ms=at,
            last_seen_version=conv.hub.version,
            has_timeline=True,
            status="active",
            last_error="",
            owner_id=user_id if conv.owner_id is None else conv.owner_id,
        )
        # Counted from the check above until the prompt joins the queue (no await in between after this
        # write), so that concurrent requests of one user cannot all pass the check.
        self._accepting[user_id] = self._accepting.get(user_id, 0) + 1
        try:
            record, replayed = await write_call(self.prompts, self.prompts.accept, new, index_row)
        finally:
            left = self._accepting[user_id] - 1
            if left:
                self._accepting[user_id] = left
            else:
                del self._accepting[user_id]
        if replayed:  # a concurrent request with the same key got there first
            return self._replay(record, conv.conv_id if conv_id_given else None, prompt)
        if conv.owner_id is None:
            conv.owner_id = user_id
        conv.pointer = runtime.runtime_key
        conv.last_activity_ms = at
        pending = PendingTurn(
            conv_id=conv.conv_id,
            session_id=conv.session_id,
            turn_id=turn_id,
            prompt=prompt,
            runtime=runtime,
            idempotency_key=idempotency_key,
            prompt_event_id=f"{turn_id}:user",
            inference_id=inference_id,
            queued=not start_now,
            position=record.position,
            accept_seq=record.accept_seq,
            marked_running=start_now,
        )
        conv.queue.append(pending)
        await conv.hub.publish(
            "chat.message",
            pending.prompt_event_id,
            {"id": pending.prompt_event_id, "content": prompt, "turn_id": turn_id, "queued": not start_now},
            {"runtime_key": runtime.runtime_key, "turn_id": turn_id},
        )
        self._ensure_worker(conv)
        return status, body

    def _ensure_worker(self, conv: Conversation) -> None:
        if conv.worker is None or conv.worker.done():
            conv.worker = asyncio.create_task(self._drain(conv), name=f"conversation-{conv.conv_id}")

    async def _drain(self, conv: Conversation) -> None:
        while True:
            while conv.queue:
                pending = conv.queue.popleft()
                conv.running = pending
                conv.settling = None
                conv.last_activity_ms = now_ms()
                try:
                    await self._run(conv, pending)
                finally:
                    conv.running = None
                    conv.last_activity_ms = now_ms()
            await write_call(self.timeline, self.timeline.upsert_conversation, self._idle_record(conv))
            # A prompt accepted during that write found this worker still running: run it too.
            if not conv.queue:
                return

    async def _run(self, conv: Conversation, pending: PendingTurn) -> None:
        pending.inference_id = pending.inference_id or str(uuid.uuid4())
        await self.slots.acquire(pending.accept_seq)
        try:
            try:
                if not pending.marked_running:
                    await write_call(
                        self.prompts,
                        self.prompts.mark_running,
                        conv.conv_id,
                        pending.turn_id,
                        pending.inference_id,
                        now_ms(),
                    )
                    pending.marked_running = True
            except Exception as exc:
                log.exception("prompt %s of conversation %s could not start", pending.turn_id, conv.conv_id)
                await self._publish_error(
                    conv,
                    pending.turn_id,
                    pending.runtime.runtime_key,
                    pending.inference_id,
                    f"the prompt could not start: {exc}",
                    "store_error",
                )
                return
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
            status, code = FAILED, "internal_error"
            try:
                outcome = await run_turn(
                    pending,
                    conv.history,
                    self._engine_factory,
                    self.turns,
                    conv.hub.publish,
                    max_tool_iterations=int(
                        pending.runtime.options.get("max_tool_iterations", self.max_tool_iterations)
                    ),
                )
                conv.history = history_of(outcome.turn)
                status = DONE if outcome.ok else (CANCELLED if outcome.code == "cancelled" else FAILED)
                code = outcome.code
            except asyncio.CancelledError:
                status = CANCELLED if pending.cancel_code == "cancelled" else FAILED
                code = pending.cancel_code
                raise
            except Exception:
                log.exception(
                    "turn %s of conversation %s failed outside the runner", pending.turn_id, conv.conv_id
                )
            finally:
                conv.settling = Settle(pending.turn_id, status, code, now_ms())
                await asyncio.shield(self._finish(conv, pending, status, code))
        finally:
            self.slots.release()

    async def _finish(self, conv: Conversation, pending: PendingTurn, status: str, code: str) -> None:
        try:
            await write_call(
                self.prompts, self.prompts.finish, conv.conv_id, pending.turn_id, status, code, now_ms()
            )
        except Exception:
            log.exception(
                "prompt %s of conversation %s: could not record its end", pending.turn_id, conv.conv_id
            )

    @staticmethod
    async def _publish_error(
        conv: Conversation, turn_id: str, runtime_key: str, inference_id: str, message: str, code: str
    ) -> None:
        """An ``llm.error`` frame for a prompt whose turn never ran (its answer entity says why)."""
        message_id = f"{turn_id}:assistant"
        await conv.hub.publish(
            "llm.error",
            message_id,
            {"id": message_id, "error": message, "code": code},
            {"runtime_key": runtime_key, "turn_id": turn_id, "inference_id": inference_id},
        )

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
            owner_id=conv.owner_id or "",
        )

    # -- recovery -----------------------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """After a start: record the prompts that were running as interrupted turns (or as done, when the
        turn had finished and only its prompt row was not updated), then queue the prompts still waiting,
        in the order they were accepted. Returns counts for the log."""
        interrupted = completed = not_run = queued = 0
        for rec in await asyncio.to_thread(self.prompts.by_status, RUNNING):
            conv = await self.open(rec.conv_id, create=True)
            if await self._record_interrupted(conv, rec):
                interrupted += 1
            else:
                completed += 1
        for rec in await asyncio.to_thread(self.prompts.by_status, QUEUED):
            conv = await self.open(rec.conv_id, create=True)
            try:
                runtime = ResolvedRuntime.from_document(rec.runtime)
            except ValueError as exc:
                await self._not_run(conv, rec, f"its stored runtime cannot be used: {exc}")
                not_run += 1
                continue
            conv.queue.append(
                PendingTurn(
                    conv_id=rec.conv_id,
                    session_id=rec.session_id or conv.session_id,
                    turn_id=rec.turn_id,
                    prompt=rec.prompt,
                    runtime=runtime,
                    idempotency_key=rec.idempotency_key,
                    prompt_event_id=f"{rec.turn_id}:user",
                    inference_id=rec.inference_id,
                    queued=True,
                    position=rec.position,
                    accept_seq=rec.accept_seq,
                )
            )
            queued += 1
        for conv in self._live.values():
            if conv.queue:
                self._ensure_worker(conv)
        return {"interrupted": interrupted, "completed": completed, "queued": queued, "not_run": not_run}

    async def _not_run(self, conv: Conversation, rec: PromptRecord, why: str) -> None:
        await self._publish_error(
            conv, rec.turn_id, rec.runtime_key, "", f"this queued prompt was not run: {why}", NOT_RUN
        )
        await write_call(
            self.prompts, self.prompts.finish, rec.conv_id, rec.turn_id, NOT_RUN, NOT_RUN, now_ms()
        )

    async def _record_interrupted(self, conv: Conversation, rec: PromptRecord) -> bool:
        """The running prompt of a process that died: a failed turn, code ``interrupted``, keeping what
        was streamed; its timeline entities are closed. Returns False when the turn had in fact finished
        (its ``final`` snapshot is stored; the process died before the prompt row said so): the prompt is
        then recorded as done, and its answer closes the timeline message."""
        session_id = rec.session_id or conv.session_id
        snapshots = await asyncio.to_thread(self.turns.load_turn, rec.conv_id, session_id, rec.turn_id)
        latest = newest(snapshots)
        entities = [
            e
            for e in (await asyncio.to_thread(self.timeline.snapshot, rec.conv_id)).entities
            if e.props.get("turn_id") == rec.turn_id
        ]
        streaming = [e for e in entities if e.kind == "message" and e.props.get("role") == "assistant"]
        open_message = next((e for e in reversed(streaming) if e.props.get("streaming")), None)
        final = next((sn for sn in snapshots if sn.phase == "final"), None)
        if final is not None:
            await self._record_finished(conv, rec, final, open_message)
            return False
        partial = str(open_message.props.get("content", "")) if open_message else ""
        runtime_meta = rec.runtime
        if latest is not None:
            turn = latest.turn.copy()
        else:
            blocks: list[Block] = []
            if runtime_meta.get("system_prompt"):
                blocks.append(
                    Block(
                        kind="system",
                        role="system",
                        payload={"text": runtime_meta["system_prompt"]},
                        id=f"system:{runtime_meta.get('registry_slug', '')}/{rec.runtime_key}",
                    )
                )
            blocks.extend(conv.history)
            blocks.append(
                Block(kind="user", role="user", payload={"text": rec.prompt}, id=f"{rec.turn_id}#user")
            )
            turn = Turn(
                id=rec.turn_id,
                blocks=blocks,
                metadata={
                    keys.SESSION_ID: session_id,
                    keys.INFERENCE_ID: rec.inference_id,
                    keys.RUNTIME: {
                        "runtime_key": rec.runtime_key,
                        "profile_slug": runtime_meta.get("profile_slug", rec.runtime_key),
                        "registry_slug": runtime_meta.get("registry_slug", ""),
                        "profile_version": runtime_meta.get("profile_version", 0),
                        "runtime_fingerprint": rec.runtime_fingerprint,
                    },
                },
            )
        if partial:
            turn.blocks.append(
                Block(
                    kind="llm_text",
                    role="assistant",
                    payload={"text": partial},
                    metadata={"partial": True},
                    id=f"{rec.turn_id}#{len(turn.blocks)}",
                )
            )
        error = {"code": INTERRUPTED, "message": INTERRUPTED_MESSAGE}
        inference = dict(turn.metadata.get(keys.INFERENCE) or {})
        inference.setdefault("provider", runtime_meta.get("engine", ""))
        inference.setdefault("request_model", runtime_meta.get("model", "") or runtime_meta.get("engine", ""))
        inference["error"] = {"class": "ServerStopped", **error}
        turn.metadata[keys.INFERENCE] = inference
        turn.metadata[keys.ERROR] = error
        at = max(now_ms(), (latest.created_at_ms + 1) if latest else 0)
        try:
            await write_call(
                self.turns,
                self.turns.save_snapshot,
                rec.conv_id,
                session_id,
                turn,
                "post_inference",
                at,
                runtime_key=rec.runtime_key,
                inference_id=rec.inference_id,
            )
        except Exception:
            log.exception("could not record interrupted turn %s of %s", rec.turn_id, rec.conv_id)
        conv.history = history_of(turn)
        meta = {"runtime_key": rec.runtime_key, "inference_id": rec.inference_id, "turn_id": rec.turn_id}
        for entity in entities:
            if entity.kind == "tool_call" and entity.props.get("status") == "running":
                await conv.hub.publish(
                    "tool.result",
                    entity.id,
                    {"id": entity.id, "result": "", "error": INTERRUPTED_MESSAGE},
                    meta,
                )
        message_id = open_message.id if open_message else f"{rec.turn_id}:assistant"
        await conv.hub.publish(
            "llm.error",
            message_id,
            {"id": message_id, "error": INTERRUPTED_MESSAGE, "code": INTERRUPTED},
            dict(meta, inference=inference),
        )
        await write_call(
            self.prompts, self.prompts.finish, rec.conv_id, rec.turn_id, FAILED, INTERRUPTED, now_ms()
        )
        return True

    async def _record_finished(
        self, conv: Conversation, rec: PromptRecord, final: Snapshot, open_message: Any
    ) -> None:
        conv.history = history_of(final.turn)
        if open_message is not None:
            # The final snapshot is written before llm.final is sent: the client may not have heard it.
            answers = [b for b in final.turn.blocks if b.kind == "llm_text" and b.role == "assistant"]
            text = str(answers[-1].payload.get("text", "")) if answers else ""
            meta: dict[str, Any] = {
                "runtime_key": rec.runtime_key,
                "inference_id": rec.inference_id,
                "turn_id": rec.turn_id,
            }
            inference = final.turn.metadata.get(keys.INFERENCE)
            if isinstance(inference, dict):
                meta["inference"] = inference
            await conv.hub.publish("llm.final", open_message.id, {"id": open_message.id, "text": text}, meta)
        await write_call(self.prompts, self.prompts.finish, rec.conv_id, rec.turn_id, DONE, "", now_ms())

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
        """Stop accepting prompts; let running turns finish within the grace period, and record the rest
        as interrupted. Queued prompts stay queued in the store: the next start runs them."""
        self._closing = True
        for conv in self._live.values():
            conv.queue.clear()  # durable: the next start finds them queued
        workers = [c.worker for c in self._live.values() if c.worker and not c.worker.done()]
        if workers:
            _, still = await asyncio.wait(workers, timeout=grace_s)
            for conv in self._live.values():
                if conv.running is not None:
                    conv.running.cancel_code = INTERRUPTED
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        await self.hubs.flush_all()
        for conv in list(self._live.values()):
            await self._mark_closed(conv)

    async def _mark_closed(self, conv: Conversation) -> None:
        """Record that every event of the conversation is written (only for indexed conversations, and
        only when it is true: after a failed write the conversation is left as it was)."""
        if conv.hub.version == 0 and not conv.restored:
            return  # a socket was opened, nothing was ever said: keep it out of the index
        if not conv.hub.fully_written:
            log.warning("conversation %s: not every event was written; not marking it closed", conv.conv_id)
            return
        # Every seq handed out is written: the next process may go on right after the last one.
        await write_call(self.timeline, self.timeline.settle_seq, conv.conv_id, conv.hub.version)
        await write_call(self.timeline, self.timeline.upsert_conversation, self._idle_record(conv, CLOSED))


__all__ = [
    "CLOSED",
    "Conversation",
    "ConversationNotFound",
    "ConversationService",
    "FairSlots",
    "IdempotencyKeyReused",
    "ServiceClosing",
    "TooManyConversations",
    "TooManyPrompts",
    "may_use",
]
