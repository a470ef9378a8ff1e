"""Benchmark: the SQLite turn store against raw ``sqlite3`` doing the same work.

Saves: N phase snapshots (default 20,000; 4-8 blocks each, realistic text) through
``SQLiteTurnStore.save_snapshot`` (opened with ``open_turn_store`` on a fresh file) vs a plain connection
running the statements ``save_snapshot_tx`` runs, one ``BEGIN IMMEDIATE`` ... ``COMMIT`` per snapshot, on
a fresh file with the same pragmas. The durable prompt queue is on the path too, as a server runs it:
each turn's prompt is accepted as started (with its pointer move, one transaction) before its
``pre_inference`` snapshot and finished after its ``final`` one, through ``SQLitePromptStore`` on
``timeline.db`` vs the same
statements on a raw connection. Target: store >= 70% of raw saves/s.

Listing: a 2,000-turn conversation (4 phases per turn, 3-6 blocks per snapshot) among smaller ones;
median time of ``list_snapshots(TurnQuery(conv_id=..., limit=200))`` vs one hand-written SQL query
returning the same rows, ``fetchall()`` on a plain connection. Target: store <= 2.0 x raw.

Run ``.venv/bin/python bench/store.py [--quick] [--profile]``. The machine this runs on may be shared:
saves take the best of several rounds, listing runs alternate store and raw.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webchat.stores.prompts import NewPrompt
from webchat.stores.protocol import TurnQuery
from webchat.stores.sqlite.prompt_store import (
    FIND_KEY_SQL,
    FIND_TURN_SQL,
    FINISH_SQL,
    INSERT_PROMPT_SQL,
    NEXT_POSITION_SQL,
    OTHER_RUNNING_SQL,
    SQLitePromptStore,
)
from webchat.stores.sqlite.timeline_store import (
    UPSERT_CONVERSATION_SQL,
    SQLiteTimelineStore,
    conversation_params,
)
from webchat.stores.sqlite.turn_store import (
    _DELETE_MEMBERSHIP_SQL,
    _INSERT_BLOCK_SQL,
    _INSERT_MEMBERSHIP_SQL,
    _UPSERT_TURN_SQL,
    save_snapshot_tx,
)
from webchat.stores.timeline import ConversationRecord
from webchat.stores.turns import open_turn_store
from webchat.turns.model import Block, Turn

FULL_SAVES = 20_000
QUICK_SAVES = 2_000
FULL_LIST_TURNS = 2_000
QUICK_LIST_TURNS = 500
FULL_LIST_RUNS = 30
QUICK_LIST_RUNS = 10
LIST_LIMIT = 200
OTHER_CONVERSATIONS = 20
OTHER_CONVERSATION_TURNS = 100

FULL_ROUNDS = 3
QUICK_ROUNDS = 1

TARGET_SAVE_RATIO = 0.70
TARGET_LIST_RATIO = 2.0

PHASES = ("pre_inference", "post_inference", "post_tools", "final")
RUNTIMES = ("default", "planner", "gpt-4o-mini", "coder")

# fmt: off
WORDS = (
    "the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with", "as", "this", "be",
    "are", "was", "by", "from", "at", "or", "an", "not", "can", "you", "we", "they", "your", "have",
    "will", "if", "what", "which", "there", "their", "when", "more", "about", "would", "should", "could",
    "into", "than", "then", "each", "database", "index", "query", "migration", "runtime", "profile",
    "model", "provider", "token", "stream", "server", "client", "request", "response", "latency",
    "timeout", "retry", "cache", "memory", "batch", "transaction", "schema", "column", "table", "row",
    "commit", "lock", "python", "sqlite", "json", "yaml", "config", "deploy", "container", "kubernetes",
    "service", "endpoint", "function", "parameter", "value", "error", "warning", "result", "output",
    "input", "file", "path", "directory", "user", "session", "conversation", "turn", "block", "summary",
    "analysis", "report", "plan", "step", "first", "second", "next", "finally", "however", "because",
    "therefore", "example", "performance", "benchmark", "measure", "compare", "improve", "reduce",
    "increase", "check", "verify", "test", "build", "release",
)
# fmt: on


@dataclass
class Save:
    conv_id: str
    session_id: str
    turn: Turn
    phase: str
    created_at_ms: int
    runtime_key: str
    inference_id: str


class TextMaker:
    """Deterministic prose, ids and turn payloads."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def text(self, low: int, high: int) -> str:
        rng = self.rng
        n = rng.randint(low, high)
        sentences: list[str] = []
        while n > 0:
            k = min(n, rng.randint(6, 18))
            words = rng.choices(WORDS, k=k)
            sentences.append(" ".join(words).capitalize() + rng.choice((".", ".", ".", "?", ":")))
            n -= k
        return " ".join(sentences)

    def system(self) -> Block:
        return Block(
            kind="system",
            role="system",
            payload={"text": "You are a helpful assistant. " + self.text(40, 90)},
            id=self.uid(),
        )

    def user(self) -> Block:
        return Block(kind="user", role="user", payload={"text": self.text(10, 70)}, id=self.uid())

    def answer(self, inference_id: str) -> Block:
        return Block(
            kind="llm_text",
            role="assistant",
            payload={"text": self.text(40, 260)},
            metadata={"webchat.inference_id@v1": inference_id},
            id=self.uid(),
        )

    def tool_call(self) -> Block:
        call_id = f"call_{self.rng.getrandbits(64):016x}"
        name = self.rng.choice(("web_search", "read_file", "run_sql", "calculator"))
        return Block(
            kind="tool_call",
            role="assistant",
            payload={"id": call_id, "name": name, "args": {"query": self.text(3, 12), "limit": 5}},
            id=self.uid(),
        )

    def tool_use(self, call: Block) -> Block:
        return Block(
            kind="tool_use",
            role="tool",
            payload={"id": call.payload["id"], "result": self.text(60, 300)},
            metadata={"duration_ms": self.rng.randint(20, 4000)},
            id=self.uid(),
        )

    def metadata(self, session_id: str, runtime_key: str, inference_id: str) -> dict[str, Any]:
        return {
            "webchat.session_id@v1": session_id,
            "webchat.inference_id@v1": inference_id,
            "webchat.runtime@v1": {
                "runtime_key": runtime_key,
                "profile_slug": runtime_key,
                "registry_slug": "default",
                "profile_version": 1,
                "runtime_fingerprint": "sha256:" + hashlib.sha256(runtime_key.encode()).hexdigest(),
            },
        }


def conversation(
    maker: TextMaker, turns: int, history_blocks: tuple[int, int], clock: list[int]
) -> list[Save]:
    """The four phase snapshots of each turn of one conversation, oldest first.

    Each snapshot holds the system prompt, the last ``history_blocks`` blocks of earlier turns (bounded,
    not the whole history), the prompt, then what the phase produced. ``clock`` is a shared ms counter.
    """
    rng = maker.rng
    conv_id, session_id = maker.uid(), maker.uid()
    system = maker.system()
    history: list[Block] = []
    runtime_key = rng.choice(RUNTIMES)
    out: list[Save] = []
    for _ in range(turns):
        if rng.random() < 0.05:
            runtime_key = rng.choice(RUNTIMES)
        inference_id = maker.uid()
        turn_id = maker.uid()
        keep = rng.randint(*history_blocks)
        base = [system, *(history[-keep:] if keep else []), maker.user()]
        call = maker.tool_call()
        result = maker.tool_use(call)
        answer = maker.answer(inference_id)
        produced: tuple[list[Block], ...] = ([], [call], [call, result], [call, result, answer])
        meta = maker.metadata(session_id, runtime_key, inference_id)
        for phase, extra in zip(PHASES, produced, strict=True):
            clock[0] += rng.randint(50, 3_000)
            turn = Turn(id=turn_id, blocks=[*base, *extra], metadata=dict(meta), data={"attempt": 1})
            out.append(Save(conv_id, session_id, turn, phase, clock[0], runtime_key, inference_id))
        history.extend((base[-1], answer))
    return out


# -- raw sqlite3 ---------------------------------------------------------------------------------------

_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def raw_connection(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A plain connection with the store's pragmas (WAL, synchronous=NORMAL, busy_timeout, foreign keys)."""
    if readonly:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def raw_save(conn: sqlite3.Connection, s: Save) -> None:
    """One snapshot the way ``save_snapshot_tx`` writes it, with the encoding and hashing done inline."""
    turn = s.turn
    blocks: list[tuple[Any, ...]] = []
    members: list[tuple[Any, ...]] = []
    for ordinal, block in enumerate(turn.blocks):
        block_id = block.id or f"{turn.id}#{ordinal}"
        payload = _encode(block.payload or {})
        metadata = _encode(block.metadata or {})
        kind, role = _encode(block.kind), _encode(block.role)
        material = f'{{"kind":{kind},"role":{role},"payload":{payload},"metadata":{metadata}}}'
        digest = hashlib.sha256(material.encode("utf-8")).hexdigest()
        blocks.append(
            (
                block_id,
                digest,
                "sha256-canonical-json-v1",
                block.kind,
                block.role,
                payload,
                metadata,
                s.created_at_ms,
            )
        )
        members.append(
            (s.conv_id, s.session_id, turn.id, s.phase, s.created_at_ms, ordinal, block_id, digest)
        )
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        _UPSERT_TURN_SQL,
        (
            s.conv_id,
            s.session_id,
            turn.id,
            s.created_at_ms,
            _encode(turn.metadata),
            _encode(turn.data),
            s.runtime_key,
            s.inference_id,
            s.created_at_ms,
        ),
    )
    conn.execute(_DELETE_MEMBERSHIP_SQL, (s.conv_id, s.session_id, turn.id, s.phase, s.created_at_ms))
    conn.executemany(_INSERT_BLOCK_SQL, blocks)
    conn.executemany(_INSERT_MEMBERSHIP_SQL, members)
    conn.execute("COMMIT")


def fresh_store_file(path: Path) -> None:
    """Create the schema exactly as the store does, then close it."""
    open_turn_store(path).close()


def contents_digest(path: Path) -> str:
    """A digest of every stored row, to check both contenders wrote the same data."""
    conn = sqlite3.connect(str(path))
    h = hashlib.sha256()
    for sql in (
        "SELECT * FROM turns ORDER BY conv_id, session_id, turn_id",
        "SELECT * FROM blocks ORDER BY block_id, content_hash",
        "SELECT * FROM turn_block_membership ORDER BY conv_id, session_id, turn_id, phase, "
        "snapshot_created_at_ms, ordinal",
    ):
        for row in conn.execute(sql):
            h.update(repr(row).encode())
    conn.close()
    return h.hexdigest()


def prompts_digest(path: Path) -> str:
    conn = sqlite3.connect(str(path))
    h = hashlib.sha256()
    for sql in (
        "SELECT * FROM webchat_prompts ORDER BY conv_id, position",
        "SELECT * FROM timeline_conversations ORDER BY conv_id",
    ):
        for row in conn.execute(sql):
            h.update(repr(row).encode())
    conn.close()
    return h.hexdigest()


# -- saves ---------------------------------------------------------------------------------------------


def new_prompt(s: Save) -> tuple[NewPrompt, ConversationRecord]:
    """The prompt row and conversation index row a server writes when it accepts the prompt of ``s``."""
    prompt = NewPrompt(
        conv_id=s.conv_id,
        turn_id=s.turn.id,
        session_id=s.session_id,
        prompt="the prompt of " + s.turn.id,
        runtime_key=s.runtime_key,
        runtime_fingerprint="sha256:" + s.runtime_key,
        runtime={"runtime_key": s.runtime_key, "engine": "offline", "options": {}},
        idempotency_key=s.inference_id,
        response_status=200,
        response={"status": "started", "turn_id": s.turn.id, "inference_id": s.inference_id},
        accepted_at_ms=s.created_at_ms,
        inference_id=s.inference_id,
    )
    conv = ConversationRecord(
        conv_id=s.conv_id,
        session_id=s.session_id,
        runtime_key=s.runtime_key,
        created_at_ms=s.created_at_ms,
        last_activity_ms=s.created_at_ms,
        status="active",
    )
    return prompt, conv


def timeline_file(path: Path) -> Path:
    return path.with_name(path.stem + "_timeline.db")


def bench_store_saves(path: Path, saves: list[Save]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads: the stores write on their writer threads) for every save."""
    store = open_turn_store(path)
    timeline = SQLiteTimelineStore(timeline_file(path))
    prompts = SQLitePromptStore(timeline)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for s in saves:
            if s.phase == "pre_inference":
                prompt, conv = new_prompt(s)
                prompts.accept(prompt, conv)
            store.save_snapshot(
                s.conv_id,
                s.session_id,
                s.turn,
                s.phase,
                s.created_at_ms,
                runtime_key=s.runtime_key,
                inference_id=s.inference_id,
            )
            if s.phase == "final":
                prompts.finish(s.conv_id, s.turn.id, "done", "", s.created_at_ms)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        store.close()
        timeline.close()


def raw_accept_and_start(conn: sqlite3.Connection, s: Save) -> None:
    """The prompt store's accept transaction for a prompt that starts at once, as plain statements."""
    prompt, conv = new_prompt(s)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(FIND_KEY_SQL, (prompt.user_id, prompt.idempotency_key)).fetchone()
    conn.execute(OTHER_RUNNING_SQL, (prompt.conv_id, prompt.turn_id)).fetchone()
    position, accept_seq = conn.execute(NEXT_POSITION_SQL, (prompt.conv_id,)).fetchone()
    conn.execute(
        INSERT_PROMPT_SQL,
        (
            prompt.conv_id,
            position,
            prompt.turn_id,
            prompt.session_id,
            prompt.user_id,
            accept_seq,
            prompt.prompt,
            prompt.runtime_key,
            prompt.runtime_fingerprint,
            _encode(prompt.runtime),
            prompt.idempotency_key,
            "running",
            prompt.inference_id,
            prompt.response_status,
            _encode(prompt.response),
            prompt.accepted_at_ms,
            prompt.accepted_at_ms,
        ),
    )
    conn.execute(UPSERT_CONVERSATION_SQL, conversation_params(conv))
    conn.execute("COMMIT")


def raw_finish(conn: sqlite3.Connection, s: Save) -> None:
    conn.execute("BEGIN IMMEDIATE")
    row = conn.execute(FIND_TURN_SQL, (s.conv_id, s.turn.id)).fetchone()
    conn.execute(FINISH_SQL, ("done", "", s.created_at_ms, s.conv_id, row[1]))
    conn.execute("COMMIT")


def bench_raw_saves(path: Path, saves: list[Save]) -> tuple[float, float]:
    fresh_store_file(path)
    SQLiteTimelineStore(timeline_file(path)).close()
    conn = raw_connection(path)
    tl = raw_connection(timeline_file(path))
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for s in saves:
            if s.phase == "pre_inference":
                raw_accept_and_start(tl, s)
            raw_save(conn, s)
            if s.phase == "final":
                raw_finish(tl, s)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        conn.close()
        tl.close()


# -- listing -------------------------------------------------------------------------------------------

_PHASE_RANK = "CASE {col} " + " ".join(f"WHEN '{p}' THEN {i}" for i, p in enumerate(PHASES)) + " END"

# CROSS JOIN fixes the join order (SQLite's way of hand-tuning a plan): the 200 newest snapshots first,
# then their turn rows, membership rows and blocks by primary key.
RAW_LIST_SQL = f"""
WITH newest AS (
    SELECT session_id, turn_id, phase, snapshot_created_at_ms AS created
    FROM turn_block_membership
    WHERE conv_id = :conv AND ordinal = 0
    ORDER BY snapshot_created_at_ms DESC, {_PHASE_RANK.format(col="phase")} DESC,
             turn_id DESC, session_id DESC
    LIMIT :limit
)
SELECT :conv, n.session_id, n.turn_id, n.phase, n.created,
       t.runtime_key, t.inference_id, t.turn_metadata_json, t.turn_data_json,
       m.ordinal, b.block_id, b.kind, b.role, b.payload_json, b.block_metadata_json
FROM newest AS n
CROSS JOIN turns AS t ON t.conv_id = :conv AND t.session_id = n.session_id AND t.turn_id = n.turn_id
CROSS JOIN turn_block_membership AS m
  ON m.conv_id = :conv AND m.session_id = n.session_id AND m.turn_id = n.turn_id
 AND m.phase = n.phase AND m.snapshot_created_at_ms = n.created
CROSS JOIN blocks AS b ON b.block_id = m.block_id AND b.content_hash = m.content_hash
ORDER BY n.created DESC, {_PHASE_RANK.format(col="n.phase")} DESC, n.turn_id DESC, n.session_id DESC,
         m.ordinal
"""


def build_listing_store(path: Path, seed: int, turns: int) -> tuple[str, int]:
    """One big conversation among smaller ones, written in one transaction with the store's statements."""
    maker = TextMaker(seed + 7)
    clock = [1_750_000_000_000]
    big = conversation(maker, turns, (1, 1), clock)
    others = [
        conversation(maker, OTHER_CONVERSATION_TURNS, (1, 1), clock) for _ in range(OTHER_CONVERSATIONS)
    ]
    # Interleave in time: a busy server writes many conversations at once.
    everything = sorted([*big, *(s for conv in others for s in conv)], key=lambda s: s.created_at_ms)
    for i, s in enumerate(everything):
        s.created_at_ms = 1_750_000_000_000 + i * 1_000
    fresh_store_file(path)
    conn = raw_connection(path)
    conn.execute("BEGIN IMMEDIATE")
    for s in everything:
        save_snapshot_tx(
            conn, s.conv_id, s.session_id, s.turn, s.phase, s.created_at_ms, s.runtime_key, s.inference_id
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA optimize")
    conn.close()
    return big[0].conv_id, len(everything)


def interleaved_medians_ms(a: Any, b: Any, runs: int) -> tuple[float, float]:
    """Median ms of ``a()`` and of ``b()``, run alternately (order swapped each run) after a warm-up."""
    a()
    b()
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(runs):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            fn = a if which == 0 else b
            started = time.perf_counter()
            fn()
            times[which].append(time.perf_counter() - started)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def bench_listing(
    path: Path, conv_id: str, runs: int, profile: cProfile.Profile | None
) -> tuple[float, float, int, int]:
    store = open_turn_store(path)
    conn = raw_connection(path, readonly=True)
    query = TurnQuery(conv_id=conv_id, limit=LIST_LIMIT)
    params = {"conv": conv_id, "limit": LIST_LIMIT}
    try:
        snapshots = store.list_snapshots(query)
        rows = conn.execute(RAW_LIST_SQL, params).fetchall()
        # Same rows, same order.
        flat = [
            (s.session_id, s.turn_id, s.phase, s.created_at_ms, b.id)
            for s in snapshots
            for b in s.turn.blocks
        ]
        assert flat == [(r[1], r[2], r[3], r[4], r[10]) for r in rows], "store and raw query disagree"
        store_ms, raw_ms = interleaved_medians_ms(
            lambda: store.list_snapshots(query), lambda: conn.execute(RAW_LIST_SQL, params).fetchall(), runs
        )
        if profile:
            profile.enable()
            for _ in range(runs):
                store.list_snapshots(query)
            profile.disable()
    finally:
        conn.close()
        store.close()
    return store_ms, raw_ms, len(snapshots), len(rows)


# -- main ----------------------------------------------------------------------------------------------


def make_saves(seed: int, n: int) -> list[Save]:
    """Whole turns (4 phases each) of several conversations, interleaved in time like concurrent chats."""
    maker = TextMaker(seed)
    clock = [1_750_000_000_000]
    per_conv = max(1, n // 4 // 10)
    saves: list[Save] = []
    while len(saves) < n:
        saves.extend(conversation(maker, per_conv, (2, 3), clock))
    return sorted(saves[:n], key=lambda s: s.created_at_ms)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_profile(title: str, profile: cProfile.Profile) -> None:
    print(f"\n--- cProfile: {title} (top 15 by internal time) ---")
    pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test, < 20 s)")
    parser.add_argument("--saves", type=int, help=f"snapshots to save (default {FULL_SAVES:,})")
    parser.add_argument(
        "--list-turns", type=int, help=f"turns in the listed conversation ({FULL_LIST_TURNS:,})"
    )
    parser.add_argument("--runs", type=int, help=f"listing runs for the median (default {FULL_LIST_RUNS})")
    parser.add_argument("--rounds", type=int, help=f"save rounds, best kept (default {FULL_ROUNDS})")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of list_snapshots")
    parser.add_argument("--workdir", help="parent of the temporary directory the store files go to")
    args = parser.parse_args(argv)

    n_saves = args.saves or (QUICK_SAVES if args.quick else FULL_SAVES)
    list_turns = args.list_turns or (QUICK_LIST_TURNS if args.quick else FULL_LIST_TURNS)
    runs = args.runs or (QUICK_LIST_RUNS if args.quick else FULL_LIST_RUNS)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="webchat-bench-store-", dir=args.workdir))

    print(f"# bench/store.py  {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"# machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; load average {load_average()}"
    )
    list_profile = cProfile.Profile() if args.profile else None
    try:
        saves = make_saves(args.seed, n_saves)
        blocks = [len(s.turn.blocks) for s in saves]
        print(
            f"\nsaves: {len(saves):,} snapshots, {min(blocks)}-{max(blocks)} blocks each "
            f"(mean {statistics.mean(blocks):.1f}), {len({s.conv_id for s in saves})} conversations; "
            f"{rounds} round(s) of raw then store, each on a fresh file, best round kept"
        )
        store_runs: list[tuple[float, float]] = []
        raw_runs: list[tuple[float, float]] = []
        same = True
        for i in range(rounds):
            raw_path, store_path = workdir / f"saves_raw_{i}.db", workdir / f"saves_store_{i}.db"
            raw_runs.append(bench_raw_saves(raw_path, saves))
            store_runs.append(bench_store_saves(store_path, saves))
            if i == 0:
                same = contents_digest(raw_path) == contents_digest(store_path) and prompts_digest(
                    timeline_file(raw_path)
                ) == prompts_digest(timeline_file(store_path))
            for path in (raw_path, store_path, timeline_file(raw_path), timeline_file(store_path)):
                for f in workdir.glob(path.name + "*"):
                    f.unlink()
        n = len(saves)
        store_rate, raw_rate = n / min(w for w, _ in store_runs), n / min(w for w, _ in raw_runs)
        save_ratio = store_rate / raw_rate

        def detail(runs: list[tuple[float, float]]) -> str:
            walls = ", ".join(f"{n / w:.0f}" for w, _ in runs)
            cpu_us = min(c for _, c in runs) / n * 1e6
            return f"rounds {walls}; CPU {cpu_us:.0f} us/save"

        print(f"  store  save_snapshot + prompt queue    {store_rate:8.0f} saves/s  ({detail(store_runs)})")
        print(f"  raw    sqlite3, same statements        {raw_rate:8.0f} saves/s  ({detail(raw_runs)})")
        print(f"  store / raw = {save_ratio:.0%} (best round of each)   target >= {TARGET_SAVE_RATIO:.0%}")
        print(f"  both wrote identical rows: {same}")

        listing = workdir / "listing.db"
        conv_id, total_snaps = build_listing_store(listing, args.seed, list_turns)
        store_ms, raw_ms, n_snaps, n_rows = bench_listing(listing, conv_id, runs, list_profile)
        list_ratio = store_ms / raw_ms
        print(
            f"\nlisting: conversation of {list_turns:,} turns x 4 phases, store of {total_snaps:,} "
            f"snapshots; limit {LIST_LIMIT} -> {n_snaps} snapshots, {n_rows} block rows; "
            f"median of {runs} runs"
        )
        print(f"  store  list_snapshots                  {store_ms:8.2f} ms")
        print(f"  raw    one SQL query, fetchall()       {raw_ms:8.2f} ms")
        print(f"  store / raw = {list_ratio:.2f} x   target <= {TARGET_LIST_RATIO:.1f} x")

        print(f"\n# load average at end: {load_average()}")
        for ok, label in (
            (save_ratio >= TARGET_SAVE_RATIO, f"store saves/s >= {TARGET_SAVE_RATIO:.0%} of raw sqlite3"),
            (list_ratio <= TARGET_LIST_RATIO, f"list_snapshots <= {TARGET_LIST_RATIO:.1f} x the raw query"),
        ):
            print(f"{verdict(ok)}  {label}")
        if list_profile:
            print_profile("list_snapshots", list_profile)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
