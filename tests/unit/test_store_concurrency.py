"""Concurrent writers on one turns.db: threads of one process and a second OS process (§3)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

from webchat.stores.protocol import TurnQuery
from webchat.stores.turns import open_turn_store
from webchat.turns.model import Block, Turn

THREADS = 8
TURNS_PER_THREAD = 10
PHASES = ("pre_inference", "post_inference", "final")
CHILD_SNAPSHOTS = 150

CHILD = """
import sys, time
from webchat.stores.turns import open_turn_store
from webchat.turns.model import Block, Turn

path, count = sys.argv[1], int(sys.argv[2])
store = open_turn_store(path)
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    turn = Turn(
        id=f"p-{i}",
        blocks=[
            Block(kind="system", role="system", payload={"text": "shared"}, id="sys"),
            Block(kind="user", role="user", payload={"text": f"child {i}"}),
        ],
        metadata={"webchat.runtime@v1": "child"},
    )
    store.save_snapshot("c-proc", "s-proc", turn, "final", 1000 + i, inference_id=f"inf-p-{i}")
store.close()
print("done", flush=True)
"""


def thread_turn(thread: int, i: int, phase: str) -> Turn:
    blocks = [
        Block(kind="system", role="system", payload={"text": "shared"}, id="sys"),
        Block(kind="user", role="user", payload={"text": f"thread {thread} turn {i}"}),
    ]
    if phase != "pre_inference":
        blocks.append(Block(kind="llm_text", role="assistant", payload={"text": f"answer {thread}/{i}"}))
    return Turn(id=f"t{thread}-{i}", blocks=blocks)


def test_threads_and_a_second_process_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "turns.db"
    store = open_turn_store(path)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(CHILD_SNAPSHOTS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    errors: list[BaseException] = []
    stop_reading = threading.Event()
    start = threading.Barrier(THREADS + 2)

    def writer(thread: int) -> None:
        try:
            start.wait()
            for i in range(TURNS_PER_THREAD):
                for offset, phase in enumerate(PHASES):
                    store.save_snapshot(
                        f"c{thread % 2}",
                        f"s{thread}",
                        thread_turn(thread, i, phase),
                        phase,
                        10_000 + i * 10 + offset,
                        runtime_key=f"rt-{thread}",
                        inference_id=f"inf-{thread}-{i}",
                    )
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            start.wait()
            while not stop_reading.is_set():
                for conv in ("c0", "c1", "c-proc"):
                    store.list_snapshots(TurnQuery(conv_id=conv, limit=50))
        except BaseException as exc:
            errors.append(exc)

    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        child.stdin.write("go\n")
        child.stdin.flush()
        start.wait()
        for t in threads[:-1]:
            t.join(timeout=60)
        out, err = child.communicate(timeout=60)
        stop_reading.set()
        threads[-1].join(timeout=60)
    finally:
        stop_reading.set()
        if child.poll() is None:
            child.kill()
            child.wait()
        store.close()

    assert not errors, errors
    assert child.returncode == 0, err
    # Both processes start writing at the same barrier; whether their writes overlapped is a matter of
    # scheduling, not something a test may assert with a clock. What must hold either way is below.
    assert out.split()[-1] == "done"
    assert "locked" not in err and "StoreError" not in err

    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        snapshots = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT conv_id, session_id, turn_id, phase, "
            "snapshot_created_at_ms FROM turn_block_membership)"
        ).fetchone()[0]
        assert snapshots == THREADS * TURNS_PER_THREAD * len(PHASES) + CHILD_SNAPSHOTS
        assert (
            conn.execute("SELECT count(*) FROM turns").fetchone()[0]
            == THREADS * TURNS_PER_THREAD + CHILD_SNAPSHOTS
        )
        memberships = conn.execute("SELECT count(*) FROM turn_block_membership").fetchone()[0]
        assert memberships == THREADS * TURNS_PER_THREAD * (2 + 3 + 3) + CHILD_SNAPSHOTS * 2
        # the shared block is stored once, whoever wrote it first
        assert conn.execute("SELECT count(*) FROM blocks WHERE block_id = 'sys'").fetchone()[0] == 1
        # every turn kept its own runtime truth
        wrong = conn.execute(
            "SELECT count(*) FROM turns WHERE NOT ("
            "(conv_id = 'c-proc' AND runtime_key = 'child' AND inference_id = 'inf-' || turn_id) OR "
            "(conv_id <> 'c-proc' AND runtime_key = 'rt-' || substr(session_id, 2) "
            " AND inference_id = 'inf-' || substr(turn_id, 2)))"
        ).fetchone()[0]
        assert wrong == 0
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
