"""Benchmark: upgrading a large pre-cutover ``turns.db`` in place (runtime-truth.md §4-5).

Builds a deterministic pre-cutover store (default 1,000,000 turns in ~1,000 conversations, metadata as a
Go-written store has it), gives every contender run its own byte-identical copy and measures:

(a) web-chat's ``migrate_turns_db`` (default batch size), in a child process (wall time and peak RSS);
(b) a set-based SQL pass: one transaction with ALTER TABLE, one ``json_extract`` UPDATE approximating the
    resolver, and the same CREATE INDEX statements web-chat runs;
(c) a row-by-row port of the reference algorithm: resolver in Python, one autocommitted UPDATE per row
    (all rows by default; ``--row-by-row-sample N`` times N rows and extrapolates linearly);

(a) and (b) run alternately ``--repeat`` times (default 2) and the best run of each is compared; then, on
another copy, how long a "live server" that saves a turn every ~20 ms waits for the write lock
while (a) runs in a child process.

Targets (reported, never asserted): (a) <= 2.0 x (b); (a) >= 5 x faster than (c); peak RSS of (a) < 200 MB;
max live-writer lock wait <= 1.0 s. Run ``.venv/bin/python bench/migrate.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from webchat.stores.migrations.backfill import resolve_metadata_json
from webchat.stores.migrations.turns_sqlite import migrate_turns_db
from webchat.stores.sqlite.turn_schema import INDEXES
from webchat.turns.keys import INFERENCE_ID_SOURCES, NESTED_VALUE_KEYS, RUNTIME_KEY_SOURCES

FULL_ROWS = 1_000_000
FULL_CONVERSATIONS = 1_000
QUICK_ROWS = 50_000
QUICK_CONVERSATIONS = 100
FULL_REPEAT = 2
# The small-row case: many turns whose turn_data_json is tiny, so the per-row resolver dominates.
SMALL_ROWS = 400_000
SMALL_CONVERSATIONS = 1_000

TARGET_VS_SET_BASED = 2.0
TARGET_VS_ROW_BY_ROW = 5.0
TARGET_PEAK_MB = 200.0
TARGET_MAX_WAIT_S = 1.0
LIVE_WRITE_INTERVAL_S = 0.020

OLD_INDEXES = ("turns_by_conv_session", "turns_by_session")

PRE_CUTOVER_DDL = (
    """CREATE TABLE turns (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    turn_created_at_ms INTEGER NOT NULL,
    turn_metadata_json TEXT NOT NULL DEFAULT '{}',
    turn_data_json TEXT NOT NULL DEFAULT '{}',
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id)
)""",
    """CREATE TABLE blocks (
    block_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    hash_algorithm TEXT NOT NULL DEFAULT 'sha256-canonical-json-v1',
    kind TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT '',
    payload_json TEXT NOT NULL DEFAULT '{}',
    block_metadata_json TEXT NOT NULL DEFAULT '{}',
    first_seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (block_id, content_hash)
)""",
    """CREATE TABLE turn_block_membership (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    snapshot_created_at_ms INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    block_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id, phase, snapshot_created_at_ms, ordinal),
    FOREIGN KEY (conv_id, session_id, turn_id)
        REFERENCES turns(conv_id, session_id, turn_id) ON DELETE CASCADE,
    FOREIGN KEY (block_id, content_hash) REFERENCES blocks(block_id, content_hash)
)""",
)

RUNTIMES = ("default", "planner", "gpt-4o-mini", "claude-sonnet", "coder", "research.v2", "local-llama-3")
PROVIDERS = {
    "default": ("openai", "gpt-4o"),
    "planner": ("anthropic", "claude-3-5-sonnet-20241022"),
    "gpt-4o-mini": ("openai", "gpt-4o-mini"),
    "claude-sonnet": ("anthropic", "claude-sonnet-4-20250514"),
    "coder": ("openai", "gpt-4.1"),
    "research.v2": ("openai", "o3-mini"),
    "local-llama-3": ("ollama", "llama3.1:8b"),
}
FINISH_REASONS = ("stop", "stop", "stop", "tool_calls", "length")


def _dumps(value: Any) -> str:
    # Go's encoding/json: compact, map keys sorted.
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# -- the pre-cutover store -----------------------------------------------------------------------------


class MetadataMaker:
    """Deterministic turn metadata in the proportions a Go-written store has."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.fingerprints = {rk: "sha256:" + f"{rng.getrandbits(256):064x}" for rk in RUNTIMES}
        self.kinds = {"canonical": 0, "geppetto": 0, "alias": 0, "none": 0, "odd": 0}

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def make(self, session_id: str, runtime: str) -> str:
        r = self.rng.random()
        if r < 0.60:
            self.kinds["canonical"] += 1
            return self.canonical(session_id, runtime)
        if r < 0.75:
            self.kinds["geppetto"] += 1
            return self.geppetto(session_id, runtime)
        if r < 0.85:
            self.kinds["alias"] += 1
            return self.alias(runtime)
        if r < 0.95:
            self.kinds["none"] += 1
            return self.none(session_id)
        self.kinds["odd"] += 1
        return self.odd(session_id, runtime)

    def canonical(self, session_id: str, runtime: str) -> str:
        rng = self.rng
        doc: dict[str, Any] = {
            "webchat.session_id@v1": session_id,
            "webchat.inference_id@v1": self.uid(),
            "webchat.runtime@v1": {
                "runtime_key": runtime,
                "profile_slug": runtime,
                "registry_slug": "default",
                "profile_version": rng.randint(1, 9),
                "runtime_fingerprint": self.fingerprints[runtime],
            },
        }
        if rng.random() < 0.7:
            provider, model = PROVIDERS[runtime]
            doc["webchat.inference@v1"] = {
                "provider": provider,
                "request_model": model,
                "response_model": model,
                "response_id": f"resp_{rng.getrandbits(96):024x}",
                "finish_reason": rng.choice(FINISH_REASONS),
                "usage": {
                    "input_tokens": rng.randint(50, 60_000),
                    "output_tokens": rng.randint(1, 4_000),
                    "cached_tokens": rng.choice((0, 0, 1024, 2048)),
                },
                "ttft_ms": rng.randint(150, 4_000),
                "duration_ms": rng.randint(400, 90_000),
            }
        return _dumps(doc)

    def geppetto(self, session_id: str, runtime: str) -> str:
        rng = self.rng
        shape = rng.random()
        value: Any = runtime
        if shape < 0.4:
            value = {"runtime_key": runtime, "profile": runtime, "registry": "default"}
        elif shape < 0.5:
            value = {"slug": runtime}
        doc = {
            "geppetto.session_id@v1": session_id,
            "geppetto.inference_id@v1": self.uid(),
            "geppetto.runtime@v1": value,
            "geppetto.turn_started_at_ms@v1": rng.randint(1_690_000_000_000, 1_700_000_000_000),
        }
        if rng.random() < 0.5:
            provider, model = PROVIDERS[runtime]
            doc["geppetto.inference@v1"] = {"provider": provider, "model": model, "stop_reason": "end_turn"}
        return _dumps(doc)

    def alias(self, runtime: str) -> str:
        rng = self.rng
        shape = rng.random()
        if shape < 0.5:
            return _dumps({"runtime": runtime, "inference_id": self.uid()})
        if shape < 0.8:
            return _dumps({"runtime_key": f"  {runtime}  ", "inference_id": rng.randint(1, 10**9)})
        return _dumps({"runtime": {"profile": runtime}, "inference_id": self.uid(), "source": "cli"})

    def none(self, session_id: str) -> str:
        shape = self.rng.random()
        if shape < 0.5:
            return _dumps({"webchat.session_id@v1": session_id})
        if shape < 0.8:
            return "{}"
        return _dumps({"title": "imported conversation", "tags": ["import", "legacy"]})

    def odd(self, session_id: str, runtime: str) -> str:
        rng = self.rng
        shape = rng.randrange(10)
        if shape == 0:
            return _dumps({"webchat.runtime@v1": True, "webchat.inference_id@v1": 1.5})
        if shape == 1:
            return _dumps({"webchat.runtime@v1": [runtime], "webchat.inference_id@v1": None})
        if shape == 2:
            return _dumps({"webchat.runtime@v1": "   ", "geppetto.runtime@v1": "", "inference_id": {}})
        if shape == 3:
            return _dumps({"webchat.runtime@v1": {"runtime_key": 3.5}, "webchat.inference_id@v1": self.uid()})
        if shape == 4:
            # Truncated write: not valid JSON.
            return _dumps({"webchat.session_id@v1": session_id, "webchat.runtime@v1": runtime})[:-9]
        if shape == 5:
            return _dumps([runtime, self.uid()])
        if shape == 6:
            return "null"
        if shape == 7:
            return ""
        if shape == 8:
            return "runtime=" + runtime
        return _dumps({"runtime": runtime.upper() + " ", "inference_id": False})


def turn_data(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return "{}"
    if r < 0.8:
        return _dumps({"geppetto.tool_config@v1": {"enabled": True, "max_iterations": rng.randint(1, 8)}})
    return _dumps({"geppetto.agent_mode@v1": rng.choice(("chat", "plan", "research")), "attempt": 1})


def generate(
    path: Path, rows: int, conversations: int, seed: int, *, tiny_data: bool = False
) -> dict[str, Any]:
    """Write the pre-cutover store: executemany in one transaction, deterministic for a given seed."""
    rng = random.Random(seed)
    maker = MetadataMaker(rng)
    conv_ids = [maker.uid() for _ in range(conversations)]
    sessions = {c: [maker.uid()] for c in conv_ids}
    runtime_of = {c: rng.choice(RUNTIMES) for c in conv_ids}
    meta_bytes = 0

    def produce() -> Any:
        nonlocal meta_bytes
        now = 1_700_000_000_000
        for _ in range(rows):
            conv = conv_ids[rng.randrange(conversations)]
            if rng.random() < 0.002:
                sessions[conv].append(maker.uid())
            if rng.random() < 0.01:
                runtime_of[conv] = rng.choice(RUNTIMES)
            session = sessions[conv][-1]
            now += rng.randint(1, 3_000)
            meta = maker.make(session, runtime_of[conv])
            meta_bytes += len(meta)
            data = "{}" if tiny_data else turn_data(rng)
            yield (conv, session, maker.uid(), now, meta, data, now + rng.randint(300, 60_000))

    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for stmt in PRE_CUTOVER_DDL:
        conn.execute(stmt)
    conn.executemany(
        "INSERT INTO turns (conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json, "
        "turn_data_json, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        produce(),
    )
    for name in OLD_INDEXES:
        conn.execute(f"CREATE INDEX {name} ON {INDEXES[name]}")
    conn.execute("COMMIT")
    # The reference implementation runs its stores in WAL mode; the mode is recorded in the file header.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return {"conv_ids": conv_ids, "kinds": dict(maker.kinds), "avg_meta_bytes": meta_bytes / max(rows, 1)}


def copy_store(src: Path, dst: Path) -> None:
    """A byte-identical copy (the source is closed and checkpointed: no -wal file to carry along)."""
    shutil.copyfile(src, dst)


# -- (a) web-chat, in a child process ------------------------------------------------------------------


def vm_hwm_kb() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_migrate(path: str) -> None:
    """Entry point of the child process: migrate, then print one JSON line with the figures."""
    events: list[tuple[float, str, int, int]] = []

    def progress(label: str, done: int, total: int) -> None:
        events.append((time.time(), label, done, total))

    baseline_kb = vm_hwm_kb()
    wall_start = time.time()
    started = time.perf_counter()
    report = migrate_turns_db(path, progress=progress)
    elapsed = time.perf_counter() - started
    out = {
        "elapsed_s": elapsed,
        "wall_start": wall_start,
        "vm_hwm_kb": vm_hwm_kb(),
        "vm_hwm_before_kb": baseline_kb,
        "events": events,
        "report": {
            k: getattr(report, k)
            for k in (
                "layout",
                "schema_version_after",
                "columns_added",
                "indexes_created",
                "backfilled_runtime_key",
                "backfilled_inference_id",
                "invalid_metadata",
                "total_turns",
                "missing_runtime_key",
                "missing_inference_id",
            )
        },
    }
    print(json.dumps(out))


def child_command(path: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child-migrate", str(path)]


def run_webchat(path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(child_command(path), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"web-chat migration child failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    result["children_maxrss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


# -- (b) set-based SQL pass ----------------------------------------------------------------------------


def _json_path(key: str) -> str:
    return f'$."{key}"'


def _sql_scalar(doc: str, path: str) -> str:
    """A string or integer at ``path`` as the resolver reads it (trimmed, non-empty), else NULL."""
    return (
        f"CASE json_type({doc}, '{path}') "
        f"WHEN 'text' THEN NULLIF(TRIM(json_extract({doc}, '{path}')), '') "
        f"WHEN 'integer' THEN CAST(json_extract({doc}, '{path}') AS TEXT) END"
    )


def _sql_source(doc: str, key: str) -> str:
    """One metadata source: a scalar, or an object holding a scalar under a nested key (one level)."""
    path = _json_path(key)
    nested = ", ".join(_sql_scalar(doc, f"{path}.{k}") for k in NESTED_VALUE_KEYS)
    return (
        f"CASE json_type({doc}, '{path}') "
        f"WHEN 'text' THEN NULLIF(TRIM(json_extract({doc}, '{path}')), '') "
        f"WHEN 'integer' THEN CAST(json_extract({doc}, '{path}') AS TEXT) "
        f"WHEN 'object' THEN COALESCE({nested}) END"
    )


def set_based_update_sql() -> str:
    doc = "turn_metadata_json"
    runtime = ", ".join(_sql_source(doc, k) for k in RUNTIME_KEY_SOURCES)
    inference = ", ".join(_sql_source(doc, k) for k in INFERENCE_ID_SOURCES)
    return (
        f"UPDATE turns SET runtime_key = COALESCE({runtime}, ''), "
        f"inference_id = COALESCE({inference}, '') WHERE json_valid({doc})"
    )


def plain_connection(path: Path) -> sqlite3.Connection:
    """A connection with the contract's pragmas (WAL, synchronous=NORMAL, busy_timeout, foreign keys)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def missing_indexes(conn: sqlite3.Connection) -> list[str]:
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return [name for name in INDEXES if name not in have]


def run_set_based(path: Path) -> dict[str, Any]:
    # The contract's pragmas and SQLite's default cache: measured faster for CREATE INDEX on this data than
    # the larger cache + in-memory temp store the web-chat migration sets.
    conn = plain_connection(path)
    update_sql = set_based_update_sql()
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ALTER TABLE turns ADD COLUMN runtime_key TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE turns ADD COLUMN inference_id TEXT NOT NULL DEFAULT ''")
    t_update = time.perf_counter()
    conn.execute(update_sql)
    t_index = time.perf_counter()
    built = missing_indexes(conn)
    for name in built:
        conn.execute(f"CREATE INDEX {name} ON {INDEXES[name]}")
    conn.execute("COMMIT")
    done = time.perf_counter()
    conn.close()
    return {
        "elapsed_s": done - started,
        "update_s": t_index - t_update,
        "index_s": done - t_index,
        "indexes": built,
    }


# -- (c) row-by-row port of the reference algorithm ----------------------------------------------------


def run_row_by_row(path: Path, sample: int) -> dict[str, Any]:
    conn = plain_connection(path)
    total = int(conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0])
    started = time.perf_counter()
    conn.execute("ALTER TABLE turns ADD COLUMN runtime_key TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE turns ADD COLUMN inference_id TEXT NOT NULL DEFAULT ''")
    alter_s = time.perf_counter() - started
    loop_start = time.perf_counter()
    seen = updated = 0
    last = 0
    while seen < sample:
        # Fetched in full before updating, so each UPDATE really commits on its own.
        chunk = conn.execute(
            "SELECT rowid, turn_metadata_json FROM turns WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (last, min(10_000, sample - seen)),
        ).fetchall()
        if not chunk:
            break
        for rowid, meta in chunk:
            res = resolve_metadata_json(meta)
            if res.runtime_key or res.inference_id:
                conn.execute(
                    "UPDATE turns SET runtime_key = ?, inference_id = ? WHERE rowid = ?",
                    (res.runtime_key, res.inference_id, rowid),
                )
                updated += 1
        seen += len(chunk)
        last = chunk[-1][0]
    loop_s = time.perf_counter() - loop_start
    index_start = time.perf_counter()
    built = missing_indexes(conn)
    for name in built:
        conn.execute(f"CREATE INDEX {name} ON {INDEXES[name]}")
    index_s = time.perf_counter() - index_start
    conn.close()
    loop_est = loop_s / max(seen, 1) * total
    return {
        "rows_timed": seen,
        "rows_total": total,
        "rows_updated": updated,
        "alter_s": alter_s,
        "loop_s": loop_s,
        "loop_est_s": loop_est,
        "index_s": index_s,
        "elapsed_s": alter_s + loop_est + index_s,
        "extrapolated": seen < total,
    }


# -- live writer during (a) ----------------------------------------------------------------------------


def live_writer(path: Path, conv_ids: list[str], seed: int) -> dict[str, Any]:
    """Save a turn every ~20 ms while the migration runs in a child; record each BEGIN IMMEDIATE wait."""
    rng = random.Random(seed + 1)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
    conn.execute("PRAGMA busy_timeout = 60000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    waits: list[tuple[float, float, bool]] = []  # (wall time at BEGIN, wait seconds, new columns present)
    proc = subprocess.Popen(child_command(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    now_ms = 1_800_000_000_000
    while proc.poll() is None:
        wall = time.time()
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        waited = time.perf_counter() - t0
        have = {row[1] for row in conn.execute("PRAGMA table_info(turns)")}
        now_ms += 20
        inference_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        values: dict[str, Any] = {
            "conv_id": rng.choice(conv_ids),
            "session_id": "live-session",
            "turn_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "turn_created_at_ms": now_ms,
            "turn_metadata_json": _dumps(
                {"webchat.inference_id@v1": inference_id, "webchat.runtime@v1": {"runtime_key": "default"}}
            ),
            "turn_data_json": "{}",
            "updated_at_ms": now_ms,
        }
        new_columns = "runtime_key" in have and "inference_id" in have
        if new_columns:
            values["runtime_key"] = "default"
            values["inference_id"] = inference_id
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        conn.execute(f"INSERT INTO turns ({names}) VALUES ({marks})", tuple(values.values()))
        conn.execute("COMMIT")
        waits.append((wall, waited, new_columns))
        time.sleep(LIVE_WRITE_INTERVAL_S)
    out, err = proc.communicate()
    conn.close()
    if proc.returncode != 0:
        raise RuntimeError(f"web-chat migration child failed:\n{err}")
    child = json.loads(out.strip().splitlines()[-1])
    return {"waits": waits, "child": child}


def breakdown(child: dict[str, Any]) -> str:
    """Seconds in the row pass, in each CREATE INDEX and in the rest, from the child's progress events."""
    start = child["wall_start"]
    indexes = child["report"]["indexes_created"]
    parts: list[str] = []
    row_end = start
    prev = start
    for when, label, done, _total in child["events"]:
        if label == "creating indexes" and 0 < done <= len(indexes):
            if when - prev >= 0.01:
                parts.append(f"{indexes[done - 1]} {when - prev:.2f} s")
        elif label.startswith("backfilling"):
            row_end = when
        prev = when
    rest = child["elapsed_s"] - (prev - start)
    return f"row pass {row_end - start:.2f} s, " + ", ".join(parts) + f", rest {rest:.2f} s"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def step_at(child: dict[str, Any], wall: float) -> str:
    """The migration step that was running at ``wall`` (from the child's progress events)."""
    indexes = child["report"]["indexes_created"]
    for when, label, done, _total in child["events"]:
        if when >= wall:
            if label == "creating indexes" and 0 < done <= len(indexes):
                return f"CREATE INDEX {indexes[done - 1]}"
            return f"{label} (batch ending at row {done})"
    return "after the last progress event (version record / summary)"


# -- reporting -----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def agreement(a: Path, b: Path) -> tuple[int, int, int]:
    """Rows whose runtime_key / inference_id differ between two migrated copies (rowid-aligned)."""
    conn = sqlite3.connect(str(a))
    conn.execute("ATTACH DATABASE ? AS other", (str(b),))
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(x.runtime_key <> y.runtime_key), 0), "
        "COALESCE(SUM(x.inference_id <> y.inference_id), 0) "
        "FROM main.turns AS x JOIN other.turns AS y ON x.rowid = y.rowid"
    ).fetchone()
    conn.close()
    return int(row[0]), int(row[1]), int(row[2])


def remove_store(path: Path) -> None:
    for f in path.parent.glob(path.name + "*"):
        f.unlink()


def seconds(runs: list[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test, < 20 s)")
    parser.add_argument(
        "--small-rows",
        action="store_true",
        help=f"the small-row case: {SMALL_ROWS:,} turns whose turn_data_json is '{{}}' (same metadata mix)",
    )
    parser.add_argument("--rows", type=int, help=f"turns to generate (default {FULL_ROWS:,})")
    parser.add_argument("--conversations", type=int, help=f"conversations (default {FULL_CONVERSATIONS:,})")
    parser.add_argument(
        "--repeat",
        type=int,
        help=f"runs of (a) and (b), alternating, best kept (default {FULL_REPEAT}; quick 1)",
    )
    parser.add_argument(
        "--row-by-row-sample",
        type=int,
        help="time (c) on the first N rows and extrapolate linearly (default: all rows; it is cheap here)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--workdir", help="parent of the temporary directory the store copies go to")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--child-migrate", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_migrate:
        child_migrate(args.child_migrate)
        return 0

    if args.small_rows:
        rows = args.rows or (QUICK_ROWS if args.quick else SMALL_ROWS)
        conversations = args.conversations or (QUICK_CONVERSATIONS if args.quick else SMALL_CONVERSATIONS)
    else:
        rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
        conversations = args.conversations or (QUICK_CONVERSATIONS if args.quick else FULL_CONVERSATIONS)
    repeat = max(1, args.repeat or (1 if args.quick else FULL_REPEAT))
    sample = min(rows, args.row_by_row_sample or rows)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="webchat-bench-migrate-", dir=args.workdir))

    print(f"# bench/migrate.py  {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"# machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )
    print(f"# load average at start: {load_average()} (other processes on the machine skew the figures)")
    kind = "small-row case, turn_data_json '{}'" if args.small_rows else "turn_data_json as generated"
    print(f"# store: {rows:,} pre-cutover turns ({kind}), {conversations:,} conversations, workdir {workdir}")
    try:
        source = workdir / "source.db"
        t = time.perf_counter()
        info = generate(source, rows, conversations, args.seed, tiny_data=args.small_rows)
        mix = ", ".join(f"{k} {v / rows:.0%}" for k, v in info["kinds"].items())
        print(
            f"generated in {time.perf_counter() - t:.1f} s: {source.stat().st_size / 1e6:.0f} MB, "
            f"metadata avg {info['avg_meta_bytes']:.0f} B ({mix})"
        )

        def fresh_copy(name: str) -> Path:
            dst = workdir / f"{name}.db"
            copy_store(source, dst)
            return dst

        # (a) and (b) alternate on fresh identical copies; the first (a) is the first child process, so
        # RUSAGE_CHILDREN is its own peak.
        a_runs: list[dict[str, Any]] = []
        b_runs: list[dict[str, Any]] = []
        diff = (0, 0, 0)
        for i in range(repeat):
            a_path = fresh_copy(f"webchat_{i}")
            a_runs.append(run_webchat(a_path))
            b_path = fresh_copy(f"set_based_{i}")
            b_runs.append(run_set_based(b_path))
            if i == 0:
                diff = agreement(a_path, b_path)
            remove_store(a_path)
            remove_store(b_path)
        a = min(a_runs, key=lambda r: r["elapsed_s"])
        b = min(b_runs, key=lambda r: r["elapsed_s"])
        rep = a["report"]
        print()
        print(
            f"(a) web-chat migrate_turns_db:    {a['elapsed_s']:8.2f} s  "
            f"(runs: {seconds([r['elapsed_s'] for r in a_runs])} s, in a child process)"
        )
        print(f"    best run: {breakdown(a)}")
        print(
            f"    backfilled runtime_key {rep['backfilled_runtime_key']:,}, inference_id "
            f"{rep['backfilled_inference_id']:,}, invalid metadata {rep['invalid_metadata']:,}; "
            f"indexes built: {', '.join(rep['indexes_created'])}"
        )
        print(
            f"(b) set-based SQL pass:           {b['elapsed_s']:8.2f} s  "
            f"(runs: {seconds([r['elapsed_s'] for r in b_runs])} s; best: UPDATE {b['update_s']:.2f} s, "
            f"CREATE INDEX x{len(b['indexes'])} {b['index_s']:.2f} s)"
        )
        print(
            f"    (b) approximates the resolver: differs from (a) on {diff[1]:,} runtime_key and "
            f"{diff[2]:,} inference_id of {diff[0]:,} rows"
        )
        c_path = fresh_copy("row_by_row")
        c = run_row_by_row(c_path, sample)
        remove_store(c_path)
        note = (
            f"timed on the first {c['rows_timed']:,} rows, extrapolated linearly to {c['rows_total']:,}"
            if c["extrapolated"]
            else f"all {c['rows_total']:,} rows timed"
        )
        per_row_us = c["loop_s"] / max(c["rows_timed"], 1) * 1e6
        print(
            f"(c) row-by-row reference port:    {c['elapsed_s']:8.2f} s  (per-row loop {c['loop_s']:.2f} s, "
            f"{note}, {per_row_us:.1f} us/row; CREATE INDEX {c['index_s']:.2f} s)"
        )

        ratio_b = a["elapsed_s"] / b["elapsed_s"]
        speedup_c = c["elapsed_s"] / a["elapsed_s"]
        peak_mb = max(r["vm_hwm_kb"] for r in a_runs) / 1024
        print()
        print(f"web-chat / set-based      = {ratio_b:5.2f} x   target <= {TARGET_VS_SET_BASED:.1f} x")
        print(f"row-by-row / web-chat     = {speedup_c:5.2f} x   target >= {TARGET_VS_ROW_BY_ROW:.1f} x")
        print(
            f"peak RSS of (a) child     = {peak_mb:6.1f} MB   target < {TARGET_PEAK_MB:.0f} MB   (VmHWM; "
            f"RUSAGE_CHILDREN ru_maxrss after the first run {a_runs[0]['children_maxrss_kb'] / 1024:.1f} MB; "
            f"after interpreter + imports {a['vm_hwm_before_kb'] / 1024:.1f} MB)"
        )

        live_path = fresh_copy("live")
        source.unlink()
        live = live_writer(live_path, info["conv_ids"], args.seed)
        remove_store(live_path)
        waits = live["waits"]
        child = live["child"]
        secs = [w for _, w, _ in waits] or [0.0]
        max_wait = max(secs)
        p99 = statistics.quantiles(secs, n=100, method="inclusive")[98] if len(secs) >= 2 else max_wait
        with_cols = sum(1 for *_, new in waits if new)
        print()
        print(
            f"live writer during (a) (migration {child['elapsed_s']:.2f} s): {len(waits):,} writes "
            f"({with_cols:,} with runtime_key/inference_id); "
            f"BEGIN IMMEDIATE wait max {max_wait * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, median {statistics.median(secs) * 1000:.1f} ms"
        )
        for wall, waited, _ in sorted(waits, key=lambda w: w[1], reverse=True)[:5]:
            if waited >= 0.05:
                offset = wall - child["wall_start"]
                print(
                    f"    waited {waited * 1000:6.0f} ms at +{offset:6.2f} s, during: {step_at(child, wall)}"
                )

        print()
        print(f"# load average at end: {load_average()}")
        for ok, label in (
            (ratio_b <= TARGET_VS_SET_BASED, f"web-chat <= {TARGET_VS_SET_BASED:.1f} x set-based SQL pass"),
            (
                speedup_c >= TARGET_VS_ROW_BY_ROW,
                f"web-chat >= {TARGET_VS_ROW_BY_ROW:.0f} x faster than row-by-row",
            ),
            (peak_mb < TARGET_PEAK_MB, f"peak memory of the web-chat migration < {TARGET_PEAK_MB:.0f} MB"),
            (max_wait <= TARGET_MAX_WAIT_S, f"live writer max lock wait <= {TARGET_MAX_WAIT_S:.1f} s"),
        ):
            print(f"{verdict(ok)}  {label}")
    finally:
        if args.keep:
            print(f"# files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
