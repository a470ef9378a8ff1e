"""Writes from async code run on their store's own lane: one thread per database file, in order, and a
write stuck on one file never holds up writes to another (stores/offload.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from webchat.stores.offload import write_call
from webchat.stores.sqlite.prompt_store import SQLitePromptStore
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.timeline import ConversationRecord
from webchat.stores.turns import open_turn_store


def test_each_file_has_one_lane_and_a_stuck_file_does_not_hold_up_another(tmp_path: Path) -> None:
    turns = open_turn_store(tmp_path / "turns.db")
    timeline = SQLiteTimelineStore(tmp_path / "timeline.db")
    prompts = SQLitePromptStore(timeline)
    release = threading.Event()
    try:
        # The prompt store shares the timeline's file, so it shares its lane; turns.db has its own.
        assert prompts.write_executor is timeline.write_executor
        assert turns.write_executor is not timeline.write_executor

        def stuck() -> str:
            release.wait(20)
            return threading.current_thread().name

        async def main() -> tuple[list[str], str, bool]:
            blocked = asyncio.ensure_future(write_call(turns, stuck))
            await asyncio.sleep(0.05)
            names = []
            for n in range(3):
                record = ConversationRecord(conv_id=f"c{n}", session_id="s", runtime_key="fast")
                await asyncio.wait_for(write_call(timeline, timeline.upsert_conversation, record), 10)
                names.append(await write_call(timeline, lambda: threading.current_thread().name))
            still_blocked = not blocked.done()
            release.set()
            return names, await blocked, still_blocked

        names, turns_thread, still_blocked = asyncio.run(main())
        assert still_blocked  # the timeline writes finished while turns.db's lane was busy
        assert len(set(names)) == 1 and names[0].startswith("webchat-timeline-writer")
        assert turns_thread.startswith("webchat-turns-writer")
        assert [r.conv_id for r in timeline.list_conversations(10)] != []
    finally:
        release.set()
        turns.close()
        timeline.close()


def test_a_store_without_a_lane_runs_on_the_default_pool() -> None:
    class Plain:
        def write(self, x: int, *, y: int) -> tuple[int, str]:
            return x + y, threading.current_thread().name

    plain = Plain()

    async def main() -> tuple[int, str]:
        return await write_call(plain, plain.write, 2, y=3)

    total, name = asyncio.run(main())
    assert total == 5 and name != threading.main_thread().name


def test_closing_a_store_waits_for_the_writes_queued_on_its_lane(tmp_path: Path) -> None:
    """A write still running on the lane while another thread closed the store's connections crashed
    the interpreter (SQLite segfault) in the suite; close now lets queued writes finish first."""
    import time

    timeline = SQLiteTimelineStore(tmp_path / "timeline.db")
    started = threading.Event()

    def slow_write_that_reads() -> object:
        started.set()
        time.sleep(0.2)
        timeline.upsert_conversation(ConversationRecord(conv_id="c1", session_id="s", runtime_key="fast"))
        return timeline.get_conversation("c1")

    executor = timeline.write_executor
    assert executor is not None
    pending = executor.submit(slow_write_that_reads)
    assert started.wait(10)
    timeline.close()
    assert pending.done() and pending.exception() is None
    assert getattr(pending.result(), "conv_id", None) == "c1"
