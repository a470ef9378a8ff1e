"""kill -9 at random points, with conversations streaming and prompts queued: nothing lost, nothing run
twice, seq strictly increasing across the restart, runtime labels unchanged (scale-out.md §1).

Each round starts a real ``web-chat serve``, opens sockets on several conversations, posts one prompt that
starts and two that queue per conversation (alternating runtimes), waits a random time, and SIGKILLs the
server. The next start must record the prompt that was running as an interrupted turn, close its
timeline entities, and run every queued prompt exactly once, on the runtime its own request resolved.
The seed is printed, so a failing round can be replayed with ``CRASH_SEED``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.client import FrameCollector
from tests.e2e.conftest import Server, start_server

PROFILES = """
slug: crash
profiles:
  drip:
    display_name: Drip
    description: streams slowly, so a kill lands mid-turn
    runtime:
      engine: offline
      system_prompt: You are terse.
      options: {token_delay_ms: 25}
  trickle:
    display_name: Trickle
    description: another slow runtime, so queued prompts switch runtimes
    runtime:
      engine: offline
      system_prompt: You are friendly.
      options: {token_delay_ms: 15}
"""
CONVERSATIONS = 4
ROUNDS = 3
FINISHED = {"done", "failed", "cancelled", "not_run"}


@dataclass
class Accepted:
    conv_id: str
    turn_id: str
    runtime_key: str
    status_code: int
    inference_id: str = ""


@dataclass
class Round:
    accepted: list[Accepted] = field(default_factory=list)
    seen: dict[str, list[int]] = field(default_factory=dict)  # conv_id -> seqs a client saw


def post(srv: Server, conv_id: str, prompt: str, profile: str) -> Accepted:
    resp = httpx.post(
        f"{srv.base_url}/chat", json={"prompt": prompt, "conv_id": conv_id, "profile": profile}, timeout=10
    )
    assert resp.status_code in (200, 202), resp.text
    body = resp.json()
    return Accepted(
        conv_id, body["turn_id"], body["runtime_key"], resp.status_code, body.get("inference_id", "")
    )


def prompts_table(data: Path) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(f"file:{data / 'timeline.db'}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        return {row["turn_id"]: dict(row) for row in conn.execute("SELECT * FROM webchat_prompts")}
    finally:
        conn.close()


def turn_rows(data: Path) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(f"file:{data / 'turns.db'}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        rows = {row["turn_id"]: dict(row) for row in conn.execute("SELECT * FROM turns")}
        for turn_id, row in rows.items():
            row["phases"] = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT phase FROM turn_block_membership WHERE turn_id = ?", (turn_id,)
                )
            ]
        return rows
    finally:
        conn.close()


def integrity(data: Path) -> None:
    for name in ("turns.db", "timeline.db"):
        conn = sqlite3.connect(f"file:{data / name}?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", name
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == [], name
        finally:
            conn.close()
    verify = subprocess.run(
        [sys.executable, "-m", "webchat", "timeline", "verify", "--timeline-db", str(data / "timeline.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def wait_all_finished(data: Path, turn_ids: set[str], timeout: float = 90) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        rows = prompts_table(data)
        if all(rows.get(t, {}).get("status") in FINISHED for t in turn_ids):
            return rows
        time.sleep(0.1)
    pending = {
        t: rows.get(t, {}).get("status") for t in turn_ids if rows.get(t, {}).get("status") not in FINISHED
    }
    raise AssertionError(f"prompts not finished after restart: {pending}")


def one_round(srv: Server, rng: random.Random, convs: list[str], rnd: Round) -> None:
    collectors: dict[str, FrameCollector] = {}
    try:
        for i, c in enumerate(convs):
            profiles = ["drip", "trickle", "drip"] if i % 2 == 0 else ["trickle", "drip", "trickle"]
            for n, profile in enumerate(profiles):
                words = " ".join(f"w{k}" for k in range(rng.randint(20, 40)))
                rnd.accepted.append(post(srv, c, f"round prompt {n}: {words}", profile))
                if c not in collectors:
                    # A socket opens once the conversation exists; it replays what this process sent.
                    collectors[c] = FrameCollector(srv.ws_url, c, since_seq=0)
                    collectors[c].wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        # Three sequential turns of >= 20 words at >= 15 ms a word outlast 0.6 s: the kill always lands
        # while a prompt runs and others wait.
        time.sleep(rng.uniform(0.05, 0.6))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=10)
        time.sleep(0.2)  # let the collectors read what was already on the wire
        for c, col in collectors.items():
            rnd.seen.setdefault(c, []).extend(
                e["seq"] for e in col.events() if e["type"] not in ("ws.hello", "ws.pong")
            )
    finally:
        for col in collectors.values():
            col.close()


def check_after_restart(
    srv: Server, data: Path, rnd: Round, before: dict[str, int], restarted_ms: int
) -> dict[str, int]:
    """Every accepted prompt finished exactly once; returns the highest seq seen per conversation."""
    turn_ids = {a.turn_id for a in rnd.accepted}
    # Sockets opened after the restart see the queued prompts run, with seq above everything seen before.
    convs = sorted({a.conv_id for a in rnd.accepted})
    collectors = {c: FrameCollector(srv.ws_url, c) for c in convs}
    try:
        prompts = wait_all_finished(data, turn_ids)
        for col in collectors.values():
            col.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        time.sleep(0.3)
        top: dict[str, int] = {}
        for c, col in collectors.items():
            new = [e["seq"] for e in col.events() if e["type"] not in ("ws.hello", "ws.pong")]
            assert new == sorted(set(new)), f"{c}: seq not strictly increasing on one socket: {new}"
            old = rnd.seen.get(c, []) + ([before[c]] if c in before else [])
            assert old == [] or not new or min(new) > max(old), f"{c}: a seq came back after the restart"
            hydrated = httpx.get(f"{srv.base_url}/api/timeline", params={"conv_id": c}).json()
            top[c] = max([hydrated["version"], *new, *old])
            # No entity of the conversation is left streaming or running.
            for entity in hydrated["entities"]:
                assert entity["props"].get("streaming") is not True, entity
                assert entity["props"].get("status") != "running", entity
    finally:
        for col in collectors.values():
            col.close()
    turns = turn_rows(data)
    interrupted_per_conv: dict[str, int] = {}
    for a in rnd.accepted:
        p = prompts[a.turn_id]
        assert p["runtime_key"] == a.runtime_key
        if p["status"] == "not_run":
            raise AssertionError(f"a queued prompt was dropped: {p}")
        assert p["status"] in ("done", "failed"), p
        row = turns[a.turn_id]
        # Runtime labels unchanged: the turn ran on the runtime its own request resolved.
        assert row["runtime_key"] == a.runtime_key, (row["runtime_key"], a)
        assert row["inference_id"] == p["inference_id"] != ""
        if a.status_code == 200:
            assert row["inference_id"] == a.inference_id
        meta = json.loads(row["turn_metadata_json"])
        if p["status"] == "done":
            assert "final" in row["phases"] and "webchat.error@v1" not in meta
        else:
            # The prompt that was running when the server died: recorded once, as interrupted.
            assert p["error_code"] == "interrupted", p
            assert meta["webchat.error@v1"]["code"] == "interrupted"
            assert "final" not in row["phases"]
            interrupted_per_conv[a.conv_id] = interrupted_per_conv.get(a.conv_id, 0) + 1
            entity = httpx.get(f"{srv.base_url}/api/timeline", params={"conv_id": a.conv_id}).json()[
                "entities"
            ]
            message = [e for e in entity if e["id"].startswith(f"{a.turn_id}:assistant")]
            assert message and message[-1]["props"]["error"]["code"] == "interrupted"
    # Prompts still queued at the kill ran after the restart (a 202 is a promise).
    assert any(prompts[a.turn_id]["started_at_ms"] >= restarted_ms for a in rnd.accepted)
    # Only the prompt running at the kill can have been interrupted: one per conversation at most.
    assert all(n <= 1 for n in interrupted_per_conv.values()), interrupted_per_conv
    return top


def test_kill_9_at_random_points_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))
    print(f"CRASH_SEED={seed}")
    rng = random.Random(seed)
    profiles = tmp_path / "crash.yaml"
    profiles.write_text(PROFILES)
    data = tmp_path / "data"
    convs = [str(uuid.uuid4()) for _ in range(CONVERSATIONS)]
    top: dict[str, int] = {}
    all_turns: set[str] = set()
    srv = start_server(data, "--profiles", str(profiles))
    try:
        for _ in range(ROUNDS):
            rnd = Round()
            one_round(srv, rng, convs, rnd)
            all_turns |= {a.turn_id for a in rnd.accepted}
            restarted_ms = int(time.time() * 1000)
            srv = start_server(data, "--profiles", str(profiles))
            top = check_after_restart(srv, data, rnd, top, restarted_ms)
            integrity(data)
        # Across every round: exactly one turn per accepted prompt, and no other turn at all.
        turns = turn_rows(data)
        assert set(turns) == all_turns
        prompts = prompts_table(data)
        assert set(prompts) == all_turns and {p["status"] for p in prompts.values()} <= {"done", "failed"}
        # The rounds did exercise both paths: interrupted turns, and queued prompts run after a restart.
        assert any(p["error_code"] == "interrupted" for p in prompts.values())
        assert sum(p["status"] == "done" for p in prompts.values()) >= CONVERSATIONS
    finally:
        srv.stop()
