"""The conversation service on real SQLite stores and the real offline engine: queueing, switching, the
pointer, history, idempotency, durable prompts and crash recovery (scale-out.md §1, runtime-truth.md §1)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from webchat.conversations.service import ConversationService, FairSlots
from webchat.runtimes.profiles import load_registries
from webchat.runtimes.resolve import ResolvedRuntime, resolve_runtime
from webchat.stores.prompts import IdempotencyKeyReused, NewPrompt, PromptStateError
from webchat.stores.sqlite.prompt_store import SQLitePromptStore
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.sqlite.turn_store import SQLiteTurnStore
from webchat.stores.timeline import ConversationRecord
from webchat.stores.turns import open_turn_store
from webchat.turns import keys

REGISTRIES = load_registries()


def runtime(slug: str, **options: Any) -> ResolvedRuntime:
    rt = resolve_runtime(REGISTRIES, profile=slug)
    if options:
        doc = rt.document()
        doc["options"] = {**doc["options"], **options}
        doc.pop("runtime_fingerprint")
        rt = ResolvedRuntime(**{k: v for k, v in doc.items()})
    return rt


class Stores:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.turns = open_turn_store(data / "turns.db")
        self.timeline = SQLiteTimelineStore(data / "timeline.db")
        self.prompts = SQLitePromptStore(self.timeline)

    def service(self, **kw: Any) -> ConversationService:
        return ConversationService(self.turns, self.timeline, self.prompts, **kw)

    def close(self) -> None:
        self.turns.close()
        self.timeline.close()


@contextmanager
def stores(data: Path) -> Iterator[Stores]:
    s = Stores(data)
    try:
        yield s
    finally:
        s.close()


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


async def idle(svc: ConversationService, conv_id: str, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while True:
            conv = svc.live(conv_id)
            if conv is not None and not conv.busy and (conv.worker is None or conv.worker.done()):
                return
            await asyncio.sleep(0.01)


def final_history(s: Stores, conv_id: str) -> list[tuple[str, str, str]]:
    """(turn_id, runtime_key, inference_id) of every turn row, in runtime-history order."""
    return [(r.turn_id, r.runtime_key, r.inference_id) for r in s.turns.runtime_history(conv_id)]


def test_a_queued_prompt_runs_on_its_own_runtime_and_the_pointer_follows_the_last_request(
    tmp_path: Path,
) -> None:
    with stores(tmp_path) as s:

        async def main() -> None:
            svc = s.service()
            slow = runtime("default", token_delay_ms=20)
            first = await svc.submit("c1", "tell me about pelicans and herons", slow, "k1")
            second = await svc.submit("c1", "now plan a trip", runtime("planner"), "k2")
            third = await svc.submit("c1", "and quickly", runtime("fast"), "k3")
            assert (first[0], second[0], third[0]) == (200, 202, 202)
            assert (second[1]["queue_position"], third[1]["queue_position"]) == (1, 2)
            # The pointer names the runtime of the latest request, at once, before anything ran.
            assert await svc.pointer("c1") == "fast"
            assert s.timeline.get_conversation("c1").runtime_key == "fast"  # type: ignore[union-attr]
            await idle(svc, "c1")
            rows = final_history(s, "c1")
            assert [(t, k) for t, k, _ in rows] == [
                (first[1]["turn_id"], "default"),
                (second[1]["turn_id"], "planner"),
                (third[1]["turn_id"], "fast"),
            ]
            assert rows[0][2] == first[1]["inference_id"]
            assert len({i for _, _, i in rows}) == 3
            statuses = [p.status for p in s.prompts.conversation_prompts("c1")]
            assert statuses == ["done", "done", "done"]
            # Each turn was given the prior turns as history, whatever runtime produced them.
            last = s.turns.load_turn("c1", third[1]["session_id"], third[1]["turn_id"])[0].turn
            texts = [b.payload.get("text", "") for b in last.blocks if b.kind == "user"]
            assert texts == ["tell me about pelicans and herons", "now plan a trip", "and quickly"]
            await svc.shutdown(1)

        run(main)


def test_a_switch_while_a_turn_runs_never_relabels_it(tmp_path: Path) -> None:
    with stores(tmp_path) as s:

        async def main() -> None:
            svc = s.service()
            status, body = await svc.submit(
                "c1", "a long answer please " * 5, runtime("default", token_delay_ms=10), "k1"
            )
            assert status == 200
            await asyncio.sleep(0.05)
            await svc.submit("c1", "switch", runtime("planner"), "k2")
            await idle(svc, "c1")
            snaps = s.turns.load_turn("c1", body["session_id"], body["turn_id"])
            assert {sn.runtime_key for sn in snaps} == {"default"}
            assert {sn.inference_id for sn in snaps} == {body["inference_id"]}
            meta = snaps[0].turn.metadata[keys.RUNTIME]
            assert meta["runtime_key"] == "default"
            await svc.shutdown(1)

        run(main)


def test_idempotency_is_durable_and_scoped(tmp_path: Path) -> None:
    with stores(tmp_path) as s:

        async def first_life() -> dict[str, Any]:
            svc = s.service()
            status, body = await svc.submit(None, "hello", runtime("fast"), "key-1")
            assert status == 200
            # A retry (with or without the conversation id it was given) returns the same answer.
            assert await svc.submit(None, "hello", runtime("fast"), "key-1") == (200, body)
            assert await svc.submit(body["conv_id"], "hello", runtime("fast"), "key-1") == (200, body)
            with pytest.raises(IdempotencyKeyReused, match="another conversation"):
                await svc.submit("other-conv", "hello", runtime("fast"), "key-1")
            with pytest.raises(IdempotencyKeyReused, match="another prompt"):
                await svc.submit(body["conv_id"], "hello again", runtime("fast"), "key-1")
            # Keys are per user: another user's key of the same text is a different prompt.
            other = await svc.submit(None, "hello", runtime("fast"), "key-1", user_id="bob")
            assert other[1]["conv_id"] != body["conv_id"]
            await idle(svc, body["conv_id"])
            await svc.shutdown(1)
            return body

        body = run(first_life)

        async def second_life() -> None:
            svc = s.service()
            assert await svc.submit(None, "hello", runtime("fast"), "key-1") == (200, body)
            with pytest.raises(IdempotencyKeyReused):
                await svc.submit("another", "hello", runtime("fast"), "key-1")
            await svc.shutdown(1)

        run(second_life)
        # Nothing ran twice: one prompt row, one turn, for key-1.
        assert [p.idempotency_key for p in s.prompts.conversation_prompts(body["conv_id"])] == ["key-1"]
        assert len(s.turns.runtime_history(body["conv_id"])) == 1


def test_concurrent_requests_with_one_key_run_one_prompt(tmp_path: Path) -> None:
    with stores(tmp_path) as s:

        async def main() -> None:
            svc = s.service()
            results = await asyncio.gather(
                *(svc.submit("c1", "same", runtime("fast"), "dup") for _ in range(8))
            )
            assert len({json.dumps(r, sort_keys=True) for r in results}) == 1
            await idle(svc, "c1")
            assert len(s.prompts.conversation_prompts("c1")) == 1
            await svc.shutdown(1)

        run(main)


def crash_leftovers(s: Stores) -> tuple[str, str, str]:
    """What a process killed mid-turn leaves: a running prompt whose turn has only ``pre_inference``
    and a streaming timeline message, and two queued prompts on two runtimes."""
    rt = runtime("default")
    conv = ConversationRecord(conv_id="c1", session_id="s1", runtime_key="planner", last_activity_ms=1)
    ids = []
    for n, (prompt_rt, text) in enumerate(
        [(rt, "first prompt"), (runtime("planner"), "second prompt"), (runtime("fast"), "third prompt")]
    ):
        turn_id = f"t{n}"
        s.prompts.accept(
            NewPrompt(
                conv_id="c1",
                turn_id=turn_id,
                session_id="s1",
                prompt=text,
                runtime_key=prompt_rt.runtime_key,
                runtime_fingerprint=prompt_rt.fingerprint,
                runtime=prompt_rt.document(),
                idempotency_key=f"k{n}",
                response_status=200 if n == 0 else 202,
                response={"turn_id": turn_id},
                accepted_at_ms=1000 + n,
            ),
            conv,
        )
        ids.append(turn_id)
    s.prompts.mark_running("c1", "t0", "inf-0", 2000)
    from webchat.turns.model import Block, Turn

    pre = Turn(
        id="t0",
        blocks=[Block(kind="user", role="user", payload={"text": "first prompt"}, id="t0#user")],
        metadata={keys.SESSION_ID: "s1", keys.INFERENCE_ID: "inf-0", keys.RUNTIME: rt.metadata()},
    )
    s.turns.save_snapshot("c1", "s1", pre, "pre_inference", 2001, runtime_key="default", inference_id="inf-0")
    from webchat.stores.timeline import Entity

    s.timeline.apply(
        "c1",
        5,
        [
            Entity(
                "t0:assistant",
                "message",
                2002,
                2003,
                5,
                {"role": "assistant", "content": "half an ans", "streaming": True, "turn_id": "t0"},
            )
        ],
    )
    return ids[0], ids[1], ids[2]


def test_recovery_records_the_interrupted_turn_and_runs_the_queue_once_in_order(tmp_path: Path) -> None:
    with stores(tmp_path) as s:
        crash_leftovers(s)

        async def main() -> None:
            svc = s.service()
            report = await svc.recover()
            assert report == {"interrupted": 1, "completed": 0, "queued": 2, "not_run": 0}
            await idle(svc, "c1")
            await svc.shutdown(1)

        run(main)
        prompts = {p.turn_id: p for p in s.prompts.conversation_prompts("c1")}
        assert {t: (p.status, p.error_code) for t, p in prompts.items()} == {
            "t0": ("failed", "interrupted"),
            "t1": ("done", ""),
            "t2": ("done", ""),
        }
        assert prompts["t1"].started_at_ms <= prompts["t2"].started_at_ms
        # The interrupted turn keeps what was streamed, marked partial, with its own runtime and inference.
        latest = s.turns.load_turn("c1", "s1", "t0")[0]
        assert (latest.phase, latest.runtime_key, latest.inference_id) == (
            "post_inference",
            "default",
            "inf-0",
        )
        assert latest.turn.metadata[keys.ERROR]["code"] == "interrupted"
        partial = latest.turn.blocks[-1]
        assert partial.payload == {"text": "half an ans"} and partial.metadata == {"partial": True}
        # Its timeline message is closed, with the error shown.
        entity = s.timeline.get_entity("c1", "t0:assistant")
        assert entity is not None and entity.props["streaming"] is False
        assert entity.props["error"]["code"] == "interrupted"
        # Queued prompts ran on their own runtimes, and were given the interrupted prompt as history.
        rows = {r.turn_id: r.runtime_key for r in s.turns.runtime_history("c1")}
        assert rows == {"t0": "default", "t1": "planner", "t2": "fast"}
        t1 = s.turns.load_turn("c1", "s1", "t1")[0].turn
        assert [b.payload.get("text") for b in t1.blocks if b.kind == "user"] == [
            "first prompt",
            "second prompt",
        ]
        # Recovering again finds nothing to do: nothing runs twice.
        before = {t: len(s.turns.load_turn("c1", "s1", t)) for t in ("t0", "t1", "t2")}

        async def again() -> None:
            svc = s.service()
            assert await svc.recover() == {"interrupted": 0, "completed": 0, "queued": 0, "not_run": 0}
            await svc.shutdown(1)

        run(again)
        assert {t: len(s.turns.load_turn("c1", "s1", t)) for t in ("t0", "t1", "t2")} == before


def test_a_queued_prompt_whose_stored_runtime_is_damaged_is_not_run_and_says_so(tmp_path: Path) -> None:
    with stores(tmp_path) as s:
        crash_leftovers(s)
        s.timeline.run_write(
            lambda conn: conn.execute(
                "UPDATE webchat_prompts SET runtime_json = ? WHERE turn_id = 't1'",
                ('{"runtime_key": "planner"}',),
            )
        )

        async def main() -> None:
            svc = s.service()
            assert await svc.recover() == {"interrupted": 1, "completed": 0, "queued": 1, "not_run": 1}
            await idle(svc, "c1")
            await svc.shutdown(1)

        run(main)
        prompt = s.prompts.get("c1", "t1")
        assert prompt is not None and (prompt.status, prompt.error_code) == ("not_run", "not_run")
        entity = s.timeline.get_entity("c1", "t1:assistant")
        assert entity is not None and entity.props["error"]["code"] == "not_run"
        assert {r.turn_id for r in s.turns.runtime_history("c1")} == {"t0", "t2"}


def test_history_after_a_restart_follows_prompt_order_not_timestamps(tmp_path: Path) -> None:
    """Two turns whose snapshots carry the same millisecond: the history is still the later prompt's."""
    with stores(tmp_path) as s:

        async def first_life() -> tuple[str, str]:
            svc = s.service()
            a = await svc.submit("c1", "remember pelican", runtime("fast"), "a")
            await idle(svc, "c1")
            b = await svc.submit("c1", "remember heron", runtime("fast"), "b")
            await idle(svc, "c1")
            await svc.shutdown(1)
            return a[1]["turn_id"], b[1]["turn_id"]

        a, b = run(first_life)
        # Make the final snapshots of both turns share one timestamp, and the earlier turn's other phases
        # newer still: a lookup by timestamp would pick the wrong turn.
        assert isinstance(s.turns, SQLiteTurnStore)
        s.turns._writer.run(
            lambda c: c.execute(
                "UPDATE turn_block_membership SET snapshot_created_at_ms = CASE "
                "WHEN phase = 'final' THEN 5000 ELSE 6000 + ordinal END "
                "WHERE conv_id = 'c1' AND (phase = 'final' OR turn_id = ?)",
                (a,),
            )
        )

        async def second_life() -> None:
            svc = s.service()
            conv = await svc.open("c1", create=False)
            texts = [blk.payload.get("text") for blk in conv.history if blk.kind == "user"]
            assert texts == ["remember pelican", "remember heron"]
            await svc.shutdown(1)

        run(second_life)
        assert a != b


def test_shutdown_keeps_queued_prompts_queued_and_records_the_running_one_as_interrupted(
    tmp_path: Path,
) -> None:
    with stores(tmp_path) as s:

        async def main() -> tuple[dict[str, Any], dict[str, Any]]:
            svc = s.service()
            _, running = await svc.submit("c1", "long " * 40, runtime("default", token_delay_ms=30), "k1")
            _, queued = await svc.submit("c1", "later", runtime("planner"), "k2")
            await asyncio.sleep(0.2)
            await svc.shutdown(0.05)
            return running, queued

        running, queued = run(main)
        assert s.prompts.get("c1", running["turn_id"]).status == "failed"  # type: ignore[union-attr]
        assert s.prompts.get("c1", running["turn_id"]).error_code == "interrupted"  # type: ignore[union-attr]
        assert s.prompts.get("c1", queued["turn_id"]).status == "queued"  # type: ignore[union-attr]
        latest = s.turns.load_turn("c1", running["session_id"], running["turn_id"])[0]
        assert latest.turn.metadata[keys.ERROR]["code"] == "interrupted"

        async def next_start() -> None:
            svc = s.service()
            assert await svc.recover() == {"interrupted": 0, "completed": 0, "queued": 1, "not_run": 0}
            await idle(svc, "c1")
            await svc.shutdown(1)

        run(next_start)
        assert s.prompts.get("c1", queued["turn_id"]).status == "done"  # type: ignore[union-attr]
        row = [r for r in s.turns.runtime_history("c1") if r.turn_id == queued["turn_id"]]
        assert row and row[0].runtime_key == "planner"


def test_the_prompt_state_machine_refuses_impossible_moves(tmp_path: Path) -> None:
    with stores(tmp_path) as s:
        crash_leftovers(s)
        with pytest.raises(PromptStateError, match="already runs"):
            s.prompts.mark_running("c1", "t1", "inf-1", 1)
        s.prompts.finish("c1", "t0", "done", "", 3)
        with pytest.raises(PromptStateError, match="cannot become"):
            s.prompts.finish("c1", "t0", "failed", "x", 4)
        with pytest.raises(PromptStateError, match="cannot become"):
            s.prompts.finish("c1", "t1", "done", "", 4)  # never ran
        s.prompts.finish("c1", "t1", "not_run", "not_run", 4)
        with pytest.raises(PromptStateError, match="no prompt"):
            s.prompts.mark_running("c1", "nope", "i", 1)


def test_fair_slots_serve_waiters_in_acceptance_order() -> None:
    async def main() -> list[int]:
        slots = FairSlots(1)
        order: list[int] = []
        await slots.acquire(0)

        async def waiter(n: int) -> None:
            await slots.acquire(n)
            order.append(n)
            await asyncio.sleep(0)
            slots.release()

        tasks = [asyncio.create_task(waiter(n)) for n in (5, 3, 9, 1)]
        await asyncio.sleep(0.01)
        slots.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == [1, 3, 5, 9]


def test_a_conversation_whose_frames_were_not_written_is_not_marked_closed_and_keeps_its_seqs(
    tmp_path: Path,
) -> None:
    """Every timeline write fails (a full disk, text the store refuses): the stop must not claim the
    conversation was written, and the next process must not hand out a seq a client already saw."""

    class RefusingTimeline(SQLiteTimelineStore):
        def apply_batch(self, conv_id: str, batch: list[tuple[int, list[Any]]]) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    turns = open_turn_store(tmp_path / "turns.db")
    timeline = RefusingTimeline(tmp_path / "timeline.db")
    prompts = SQLitePromptStore(timeline)

    async def first_life() -> list[int]:
        svc = ConversationService(turns, timeline, prompts)
        conv = await svc.open("c1", create=True)
        sub = conv.hub.subscribe()
        await svc.submit("c1", "hello", runtime("fast"), "k1")
        await idle(svc, "c1")
        seen = []
        while sub.pending:
            seen.append((await sub.get()).seq)
        await svc.shutdown(1)
        return seen

    try:
        seen = asyncio.run(first_life())
        assert seen and timeline.current_version("c1") == 0
        record = timeline.get_conversation("c1")
        assert record is not None and record.status != "closed"
    finally:
        timeline.close()
    with stores(tmp_path) as s:

        async def second_life() -> int:
            svc = s.service()
            conv = await svc.open("c1", create=False)
            sub = conv.hub.subscribe()
            await svc.submit("c1", "again", runtime("fast"), "k2")
            first = (await sub.get()).seq
            await idle(svc, "c1")
            await svc.shutdown(1)
            return first

        assert asyncio.run(second_life()) > max(seen)
        turns.close()


def test_a_turn_that_finished_just_before_the_crash_is_recorded_done_not_interrupted(tmp_path: Path) -> None:
    """The process died after the final snapshot was written but before the prompt row said done: the
    turn ran once and finished, so it must not be relabelled as failed."""
    from webchat.turns.model import Block, Turn

    with stores(tmp_path) as s:
        crash_leftovers(s)
        final = Turn(
            id="t0",
            blocks=[
                Block(kind="user", role="user", payload={"text": "first prompt"}, id="t0#user"),
                Block(kind="llm_text", role="assistant", payload={"text": "the whole answer"}, id="t0#1"),
            ],
            metadata={
                keys.SESSION_ID: "s1",
                keys.INFERENCE_ID: "inf-0",
                keys.RUNTIME: {"runtime_key": "default"},
            },
        )
        s.turns.save_snapshot("c1", "s1", final, "final", 2010, runtime_key="default", inference_id="inf-0")

        async def main() -> None:
            svc = s.service()
            assert await svc.recover() == {"interrupted": 0, "completed": 1, "queued": 2, "not_run": 0}
            await idle(svc, "c1")
            await svc.shutdown(1)

        run(main)
        prompt = s.prompts.get("c1", "t0")
        assert prompt is not None and (prompt.status, prompt.error_code) == ("done", "")
        phases = [sn.phase for sn in s.turns.load_turn("c1", "s1", "t0")]
        assert phases == ["final", "pre_inference"]  # no error snapshot was added
        entity = s.timeline.get_entity("c1", "t0:assistant")
        assert entity is not None and entity.props["streaming"] is False
        assert entity.props["content"] == "the whole answer" and "error" not in entity.props
        t1 = s.turns.load_turn("c1", "s1", "t1")[0].turn
        assert "the whole answer" in [b.payload.get("text") for b in t1.blocks]


def test_a_prompt_sent_once_the_answer_is_out_starts_at_once_and_both_rows_end_right(tmp_path: Path) -> None:
    """A client that sends its next prompt as soon as it reads ``llm.final`` is told "started", not
    "queued behind a turn that already answered"; the first prompt's row is closed in the same
    transaction that accepts the second."""
    with stores(tmp_path) as s:

        async def main() -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
            svc = s.service()
            first = await svc.submit("c1", "first question", runtime("fast"), "k1")
            conv = svc.live("c1")
            assert conv is not None
            sub = conv.hub.subscribe()
            async with asyncio.timeout(20):
                while (await sub.get()).type != "llm.final":
                    pass
                # The frame is out (a real client reads it over the network first); the worker has
                # decided the outcome but not yet closed the first prompt's row.
                while conv.settling is None:
                    await asyncio.sleep(0)
            assert conv.running is not None
            second = await svc.submit("c1", "second question", runtime("fast"), "k2")
            await idle(svc, "c1")
            await svc.shutdown(1)
            return first, second

        first, second = run(main)
        assert (first[0], second[0]) == (200, 200)
        assert second[1]["status"] == "started" and second[1]["inference_id"]
        rows = s.prompts.conversation_prompts("c1")
        assert [(p.status, p.error_code) for p in rows] == [("done", ""), ("done", "")]
        assert rows[0].finished_at_ms <= rows[1].started_at_ms
        assert [t for t, _, _ in final_history(s, "c1")] == [first[1]["turn_id"], second[1]["turn_id"]]


def test_accepting_a_prompt_can_settle_the_running_one_and_finishing_it_again_changes_nothing(
    tmp_path: Path,
) -> None:
    from webchat.stores.prompts import Settle

    with stores(tmp_path) as s:
        crash_leftovers(s)  # t0 running, t1 and t2 queued in c1
        s.prompts.finish("c1", "t1", "not_run", "not_run", 5)
        s.prompts.finish("c1", "t2", "not_run", "not_run", 5)
        index = s.timeline.get_conversation("c1")
        assert index is not None

        def new(turn: str, key: str, settles: Settle | None) -> NewPrompt:
            return NewPrompt(
                conv_id="c1",
                turn_id=turn,
                session_id="s1",
                prompt="next",
                runtime_key="fast",
                runtime_fingerprint="fp",
                runtime={"runtime_key": "fast"},
                idempotency_key=key,
                response_status=200,
                response={"status": "started"},
                accepted_at_ms=10,
                inference_id=f"inf-{turn}",
                settles=settles,
            )

        with pytest.raises(PromptStateError, match="already runs"):
            s.prompts.accept(new("t3", "k3", None), index)
        with pytest.raises(ValueError, match="not a final status"):
            s.prompts.accept(new("t3", "k3", Settle("t0", "running", "", 9)), index)
        assert s.prompts.get("c1", "t3") is None  # nothing of a refused acceptance stays
        record, replayed = s.prompts.accept(new("t3", "k3", Settle("t0", "failed", "boom", 9)), index)
        assert not replayed and record.status == "running"
        t0 = s.prompts.get("c1", "t0")
        assert t0 is not None and (t0.status, t0.error_code, t0.finished_at_ms) == ("failed", "boom", 9)
        # The worker records the same end afterwards: a no-op, the first record stands.
        again = s.prompts.finish("c1", "t0", "failed", "boom", 12)
        assert again.finished_at_ms == 9
        # Another end is still refused.
        with pytest.raises(PromptStateError, match="cannot become"):
            s.prompts.finish("c1", "t0", "done", "", 13)
