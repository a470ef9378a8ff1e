"""Upgrade a ``turns.db`` in place: every legacy layout of runtime-truth.md §4, then backfill (§5).

The upgrade is a list of versioned steps. Each step is additive and idempotent; batched steps keep a
cursor in ``webchat_migration_state`` inside the same transaction as the batch, so a process killed
half-way leaves a store the next run completes. A file lock keeps two processes from migrating at
once, and bounded batches keep a live writer from waiting long for the write lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from webchat.stores.migrations.backfill import (
    Resolution,
    resolve_inference_id,
    resolve_metadata_json,
    resolve_runtime_key,
    sql_decidable,
    sql_decided_inference_id,
    sql_decided_runtime_key,
    sql_never_an_object,
)
from webchat.stores.owner import StoreBusy, StoreOwner
from webchat.stores.protocol import SchemaTooNewError, StoreError
from webchat.stores.sqlite.connection import connect, run_in_transaction
from webchat.stores.sqlite.turn_schema import (
    BLOCKS_ADDABLE_COLUMNS,
    COMPONENT,
    INDEXES,
    SCHEMA_VERSION,
    TABLES_DDL,
    TURNS_ADDABLE_COLUMNS,
    VERSION_TABLES_DDL,
    columns,
    index_names,
    quote_ident,
    recorded_version,
    table_exists,
)
from webchat.stores.sqlite.turn_store import save_snapshot_tx, turn_write_sql
from webchat.turns.serde import TurnFormatError, turn_from_yaml

DEFAULT_BATCH_SIZE = 20_000
# Lock hold time after which the row pass pauses, and for how long (see _LockPacer).
YIELD_AFTER_S = 0.4
YIELD_FOR_S = 0.12
# Before a statement that holds the lock for long (an index build), pause if the lock was held longer
# than this since the last pause, so a writer never waits for two long holders in a row.
YIELD_BEFORE_LONG_S = 0.1
INDEX_SORTER_THREADS = 4
DEFAULT_LOCK_TIMEOUT_S = 30.0
LEGACY_TABLE = "turn_snapshots"
UNPARSEABLE_TABLE = "webchat_legacy_unparseable"
MAX_REPORTED_UNPARSEABLE = 50

Progress = Callable[[str, int, int], None]

STEP_NAMES = {1: "normalized schema", 2: "timestamps and runtime/inference backfill", 3: "indexes"}


@dataclass
class UnparseableRow:
    table: str
    rowid: int
    conv_id: str
    session_id: str
    turn_id: str
    phase: str
    error: str


@dataclass
class MigrationReport:
    path: str
    dry_run: bool
    layout: str = ""
    schema_version_before: int = 0
    schema_version_after: int = 0
    steps_applied: list[str] = field(default_factory=list)
    tables_created: list[str] = field(default_factory=list)
    columns_added: list[str] = field(default_factory=list)
    indexes_created: list[str] = field(default_factory=list)
    legacy_table: str = ""
    legacy_rows_total: int = 0
    legacy_rows_converted: int = 0
    legacy_rows_unparseable: int = 0
    unparseable: list[UnparseableRow] = field(default_factory=list)
    timestamps_filled: int = 0
    backfilled_runtime_key: int = 0
    backfilled_inference_id: int = 0
    invalid_metadata: int = 0
    total_turns: int = 0
    missing_runtime_key: int = 0
    missing_inference_id: int = 0
    timeline: dict[str, Any] | None = None
    elapsed_s: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.steps_applied
            or self.tables_created
            or self.columns_added
            or self.indexes_created
            or self.legacy_rows_converted
            or self.timestamps_filled
            or self.backfilled_runtime_key
            or self.backfilled_inference_id
        )

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["changed"] = self.changed
        return doc


# -- layout detection --------------------------------------------------------------------------------


def detect_layout(conn: sqlite3.Connection) -> str:
    cols = columns(conn, "turns")
    if not cols:
        return "fresh"
    if "payload" in cols and "phase" in cols:
        return "single-table (run_id)" if "run_id" in cols and "session_id" not in cols else "single-table"
    if "turn_metadata_json" in cols:
        if "runtime_key" in cols and "inference_id" in cols:
            return "current"
        return "normalized pre-cutover"
    raise StoreError(f"unrecognised turns table layout (columns: {', '.join(cols)})")


def _is_snapshot_table(conn: sqlite3.Connection, name: str) -> bool:
    cols = columns(conn, name)
    return {"conv_id", "turn_id", "phase", "created_at_ms", "payload"} <= set(cols) and (
        "session_id" in cols or "run_id" in cols
    )


def kept_snapshot_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'turn_snapshots%' ORDER BY name"
    )
    return [name for (name,) in rows if _is_snapshot_table(conn, name)]


def _kept_table_name(conn: sqlite3.Connection) -> str:
    name, n = LEGACY_TABLE, 1
    while table_exists(conn, name):
        n += 1
        name = f"{LEGACY_TABLE}_{n}"
    return name


def _session_column(conn: sqlite3.Connection, table: str) -> str:
    return "session_id" if "session_id" in columns(conn, table) else "run_id"


# -- helpers -----------------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _cursor(conn: sqlite3.Connection, step: str) -> int:
    if not table_exists(conn, "webchat_migration_state"):
        return 0
    row = conn.execute(
        "SELECT cursor FROM webchat_migration_state WHERE component = ? AND step = ?", (COMPONENT, step)
    ).fetchone()
    return int(row[0]) if row else 0


def _set_cursor(conn: sqlite3.Connection, step: str, value: int) -> None:
    conn.execute(
        "INSERT INTO webchat_migration_state (component, step, cursor) VALUES (?, ?, ?) "
        "ON CONFLICT (component, step) DO UPDATE SET cursor = excluded.cursor",
        (COMPONENT, step, value),
    )


def _record_version(conn: sqlite3.Connection, version: int) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO webchat_schema_migrations (component, version, name, applied_at_ms) "
        "VALUES (?, ?, ?, ?)",
        (COMPONENT, version, STEP_NAMES[version], _now_ms()),
    )


def _count(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def _rowid_batches(
    conn: sqlite3.Connection, table: str, start_after: int, size: int
) -> Iterator[tuple[int, int]]:
    """Half-open rowid ranges ``(lo, hi]`` covering the table past ``start_after``."""
    row = conn.execute(f"SELECT MAX(rowid) FROM {quote_ident(table)}").fetchone()
    top = int(row[0] or 0)
    lo = start_after
    while lo < top:
        hi = min(lo + size, top)
        yield lo, hi
        lo = hi


def _missing_counts(conn: sqlite3.Connection) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(runtime_key = ''), 0), COALESCE(SUM(inference_id = ''), 0) FROM turns"
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def _timeline_summary(timeline_db: Path | None) -> dict[str, Any] | None:
    """Read the conversation index for reporting only: its pointer is never copied into a turn."""
    if timeline_db is None:
        return None
    if not timeline_db.exists():
        return {"path": str(timeline_db), "error": "file does not exist"}
    conn = connect(timeline_db, readonly=True)
    try:
        if not table_exists(conn, "timeline_conversations"):
            return {"path": str(timeline_db), "conversations": 0, "with_pointer": 0}
        total, with_pointer = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(runtime_key <> ''), 0) FROM timeline_conversations"
        ).fetchone()
        return {
            "path": str(timeline_db),
            "conversations": int(total),
            "with_pointer": int(with_pointer),
            "note": "conversation pointers are reported only; they are never copied into turns",
        }
    finally:
        conn.close()


# -- the Python resolver as SQL functions, for the rows the SQL resolver leaves undecided ----------------


class _ResolverFunctions:
    """``webchat_runtime_key(json)`` / ``webchat_inference_id(json)``, counting invalid metadata."""

    def __init__(self) -> None:
        self._last_text: Any = None
        self._last: Resolution = Resolution("", "", True)
        self.invalid = 0

    def _resolve(self, text: Any) -> Resolution:
        # SQLite hands each call a new str object: compare by value (the row's two calls share one parse).
        if text != self._last_text:
            self._last_text = text
            self._last = resolve_metadata_json(text)
        return self._last

    def runtime_key(self, text: Any) -> str:
        res = self._resolve(text)
        if not res.valid:
            self.invalid += 1
        return res.runtime_key

    def inference_id(self, text: Any, runtime_key: Any) -> str:
        res = self._resolve(text)
        # A row whose runtime_key was already set never went through runtime_key(): count it here.
        if runtime_key and not res.valid:
            self.invalid += 1
        return res.inference_id

    def invalid_metadata(self) -> str:
        """Count a row whose metadata SQL already knows is not a JSON object; resolves it to ``''``."""
        self.invalid += 1
        return ""

    def install(self, conn: sqlite3.Connection) -> None:
        # Not deterministic: SQLite would otherwise evaluate a constant call once per statement.
        conn.create_function("webchat_invalid_metadata", 0, self.invalid_metadata)
        conn.create_function("webchat_runtime_key", 1, self.runtime_key, deterministic=True)
        conn.create_function("webchat_inference_id", 2, self.inference_id, deterministic=True)


# -- steps -------------------------------------------------------------------------------------------


def _step_schema(conn: sqlite3.Connection, report: MigrationReport) -> None:
    """Step 1: version tables, legacy tables moved aside, missing tables and columns added."""

    def ddl(c: sqlite3.Connection) -> None:
        for stmt in VERSION_TABLES_DDL:
            c.execute(stmt)
        if report.layout.startswith("single-table"):
            kept = _kept_table_name(c)
            c.execute(f"ALTER TABLE turns RENAME TO {quote_ident(kept)}")
            # Index names of the old table must not shadow the contract's names on the new tables.
            for name, tbl in index_names(c).items():
                if tbl == kept and name in INDEXES:
                    sql = c.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
                    c.execute(f"DROP INDEX {quote_ident(name)}")
                    c.execute(sql.replace(name, f"{kept}_{name}", 1))
            report.legacy_table = kept
        for table, stmt in TABLES_DDL.items():
            if not table_exists(c, table):
                c.execute(stmt)
                report.tables_created.append(table)
        for table, addable in (("turns", TURNS_ADDABLE_COLUMNS), ("blocks", BLOCKS_ADDABLE_COLUMNS)):
            have = columns(c, table)
            for name, decl in addable.items():
                if name not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                    report.columns_added.append(f"{table}.{name}")
        c.execute(
            f"""CREATE TABLE IF NOT EXISTS {UNPARSEABLE_TABLE} (
    source_table TEXT NOT NULL, source_rowid INTEGER NOT NULL, conv_id TEXT NOT NULL DEFAULT '',
    session_id TEXT NOT NULL DEFAULT '', turn_id TEXT NOT NULL DEFAULT '', phase TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL, PRIMARY KEY (source_table, source_rowid))"""
        )

    run_in_transaction(conn, ddl)


class _LockPacer:
    """Counts how long the migration held the write lock since its last pause, and pauses when asked.

    A writer blocked on the lock polls it about every 100 ms (SQLite's busy handler), so a pause longer
    than that lets a live server in. Small stores never reach the thresholds and never sleep.
    """

    def __init__(self) -> None:
        self.held = 0.0

    def run(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        began = time.monotonic()
        try:
            return run_in_transaction(conn, fn)
        finally:
            self.held += time.monotonic() - began

    def pause_after(self, threshold_s: float) -> None:
        if self.held >= threshold_s:
            time.sleep(YIELD_FOR_S)
            self.held = 0.0


def _convert_kept_tables(
    conn: sqlite3.Connection,
    report: MigrationReport,
    batch_size: int,
    progress: Progress | None,
    pacer: _LockPacer,
) -> None:
    """Rebuild normalized rows from the YAML payloads of every kept single-table snapshot table."""
    for table in kept_snapshot_tables(conn):
        report.legacy_table = report.legacy_table or table
        session_col = _session_column(conn, table)
        step = f"convert:{table}"
        start = _cursor(conn, step)
        total = _count(conn, f"SELECT COUNT(*) FROM {quote_ident(table)} WHERE rowid > ?", (start,))
        report.legacy_rows_total += _count(conn, f"SELECT COUNT(*) FROM {quote_ident(table)}")
        done = 0
        select = (
            f"SELECT rowid, conv_id, {session_col}, turn_id, phase, created_at_ms, payload "
            f"FROM {quote_ident(table)} WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
        )
        # YAML parsing is the slow part: small batches keep each write transaction short.
        for lo, hi in _rowid_batches(conn, table, start, max(1, batch_size // 20)):
            rows = conn.execute(select, (lo, hi)).fetchall()

            def convert(
                c: sqlite3.Connection,
                rows: list[Any] = rows,
                hi: int = hi,
                table: str = table,
                step: str = step,
            ) -> int:
                n = 0
                write_sql = turn_write_sql(c)
                for rowid, conv_id, session_id, turn_id, phase, created, payload in rows:
                    ids = (str(conv_id or ""), str(session_id or ""), str(turn_id or ""), str(phase or ""))
                    try:
                        if isinstance(payload, bytes):
                            payload = payload.decode("utf-8")
                        turn = turn_from_yaml(payload or "")
                        turn.id = ids[2]
                        rk, inf = resolve_runtime_key(turn.metadata), resolve_inference_id(turn.metadata)
                        before = c.execute(
                            "SELECT runtime_key, inference_id FROM turns "
                            "WHERE conv_id = ? AND session_id = ? AND turn_id = ?",
                            ids[:3],
                        ).fetchone() or ("", "")
                        c.execute("SAVEPOINT convert_row")
                        try:
                            save_snapshot_tx(
                                c,
                                *ids[:2],
                                turn,
                                ids[3],
                                int(created or 0),
                                rk,
                                inf,
                                fill_only=True,
                                sql=write_sql,
                            )
                        except BaseException:
                            c.execute("ROLLBACK TO convert_row")
                            raise
                        finally:
                            c.execute("RELEASE convert_row")
                    except (
                        TurnFormatError,
                        ValueError,
                        TypeError,
                        UnicodeDecodeError,
                        RecursionError,
                    ) as exc:
                        c.execute(
                            f"INSERT OR REPLACE INTO {UNPARSEABLE_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (table, rowid, *ids, str(exc)[:500]),
                        )
                        report.legacy_rows_unparseable += 1
                        if len(report.unparseable) < MAX_REPORTED_UNPARSEABLE:
                            report.unparseable.append(UnparseableRow(table, rowid, *ids, str(exc)[:200]))
                        continue
                    report.backfilled_runtime_key += int(not before[0] and bool(rk))
                    report.backfilled_inference_id += int(not before[1] and bool(inf))
                    n += 1
                _set_cursor(c, step, hi)
                return n

            report.legacy_rows_converted += pacer.run(conn, convert)
            pacer.pause_after(YIELD_AFTER_S)
            done += len(rows)
            if progress:
                progress(f"converting {table}", done, total)


def _row_pass(
    conn: sqlite3.Connection,
    report: MigrationReport,
    batch_size: int,
    progress: Progress | None,
    pacer: _LockPacer,
) -> None:
    """Step 2: fill timestamps and backfill runtime_key / inference_id, in bounded rowid batches."""
    cols = columns(conn, "turns")
    created_expr = "turn_created_at_ms"
    if "created_at_ms" in cols:
        created_expr = (
            "(CASE WHEN turn_created_at_ms = 0 THEN COALESCE(created_at_ms, 0) ELSE turn_created_at_ms END)"
        )
    resolver = _ResolverFunctions()
    resolver.install(conn)
    # Timestamps and values are separate statements: the old indexes contain updated_at_ms, so touching
    # it on every row would rewrite their entries for the whole table.
    fill_times = f"""
UPDATE turns SET
    turn_created_at_ms = {created_expr},
    updated_at_ms = CASE WHEN updated_at_ms = 0 THEN {created_expr} ELSE updated_at_ms END
WHERE rowid > ? AND rowid <= ? AND (updated_at_ms = 0 OR turn_created_at_ms = 0) AND {created_expr} <> 0
"""
    # The resolver runs in SQL (JSON1); Python's resolve_metadata_json is called only for the rows the
    # SQL cannot decide, so every row gets exactly the §5 answer (see backfill.py). Calling Python for
    # every row made the row pass take 2.4-2.6x a set-based UPDATE on small rows. Two statements, so
    # that the test for "SQL can decide this row" runs once per row rather than once per column.
    doc = "turn_metadata_json"
    pending = "rowid > ? AND rowid <= ? AND (runtime_key = '' OR inference_id = '')"
    backfill_in_sql = f"""
UPDATE turns SET
    runtime_key = CASE WHEN runtime_key = ''
                       THEN COALESCE({sql_decided_runtime_key(doc)}, webchat_runtime_key({doc}))
                       ELSE runtime_key END,
    inference_id = CASE WHEN inference_id = ''
                        THEN COALESCE({sql_decided_inference_id(doc)},
                                      webchat_inference_id({doc}, runtime_key))
                        ELSE inference_id END
WHERE {pending} AND {sql_decidable(doc)}
"""
    # Invalid metadata is counted once per row, as the resolver functions count it.
    backfill_rest = f"""
UPDATE turns SET
    runtime_key = CASE WHEN runtime_key <> '' THEN runtime_key
                       WHEN {sql_never_an_object(doc)} THEN webchat_invalid_metadata()
                       ELSE webchat_runtime_key({doc}) END,
    inference_id = CASE WHEN inference_id <> '' THEN inference_id
                        WHEN {sql_never_an_object(doc)}
                        THEN CASE WHEN runtime_key <> '' THEN webchat_invalid_metadata() ELSE '' END
                        ELSE webchat_inference_id({doc}, runtime_key) END
WHERE {pending} AND NOT {sql_decidable(doc)}
"""
    # What a batch filled is what it emptied out of the two columns. These read only the two columns
    # (last in the row): no JSON, no text.
    empties = """
SELECT COALESCE(SUM(runtime_key = ''), 0), COALESCE(SUM(inference_id = ''), 0)
FROM turns WHERE rowid > ? AND rowid <= ? AND (runtime_key = '' OR inference_id = '')
"""
    step = "rows"
    start = _cursor(conn, step)
    top = int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM turns").fetchone()[0])
    for lo, hi in _rowid_batches(conn, "turns", start, batch_size):

        def batch(c: sqlite3.Connection, lo: int = lo, hi: int = hi) -> tuple[int, int, int]:
            times = c.execute(fill_times, (lo, hi)).rowcount
            empty_rk, empty_inf = c.execute(empties, (lo, hi)).fetchone()
            c.execute(backfill_in_sql, (lo, hi))
            c.execute(backfill_rest, (lo, hi))
            still_rk, still_inf = c.execute(empties, (lo, hi)).fetchone()
            _set_cursor(c, step, hi)
            return times, int(empty_rk) - int(still_rk), int(empty_inf) - int(still_inf)

        times, filled_rk, filled_inf = pacer.run(conn, batch)
        report.timestamps_filled += times
        report.backfilled_runtime_key += filled_rk
        report.backfilled_inference_id += filled_inf
        pacer.pause_after(YIELD_AFTER_S)
        if progress:
            progress("backfilling runtime_key / inference_id", hi - start, top - start)
    report.invalid_metadata += resolver.invalid


def _step_indexes(
    conn: sqlite3.Connection, report: MigrationReport, progress: Progress | None, pacer: _LockPacer
) -> None:
    """Step 3: the contract's indexes, one short transaction each."""
    existing = index_names(conn)
    missing = [name for name in INDEXES if name not in existing]
    # An index is built by one statement that holds the write lock throughout; SQLite's multi-threaded
    # sorter shortens it (measured on 1M turns: 1.09 s -> 0.86 s per index with 4 worker threads).
    conn.execute(f"PRAGMA threads = {INDEX_SORTER_THREADS}")
    for i, name in enumerate(missing, 1):
        # Each build is one statement that holds the write lock throughout (about 0.9 s per turns index
        # on 1M turns). Let a writer that queued behind the row pass or the previous build in first, so
        # that it never waits for two long lock holders in a row.
        pacer.pause_after(YIELD_BEFORE_LONG_S)
        statement = f"CREATE INDEX IF NOT EXISTS {name} ON {INDEXES[name]}"

        def create(c: sqlite3.Connection, statement: str = statement) -> None:
            c.execute(statement)

        pacer.run(conn, create)
        report.indexes_created.append(name)
        if progress:
            progress("creating indexes", i, len(missing))


# -- entry points ------------------------------------------------------------------------------------


def migrate_turns_db(
    path: str | Path,
    *,
    dry_run: bool = False,
    create: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    timeline_db: str | Path | None = None,
    progress: Progress | None = None,
    summarize: bool = True,
    owned: bool = False,
) -> MigrationReport:
    """Bring a turns.db to :data:`SCHEMA_VERSION`; with ``dry_run`` only say what would change.

    The store's owner lock (:mod:`webchat.stores.owner`) is held while migrating, so a migration never
    runs beside another one or beside a server using the store; ``owned`` says the caller holds it.
    """
    started = time.monotonic()
    path = Path(path)
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    report = MigrationReport(path=str(path), dry_run=dry_run)
    report.timeline = _timeline_summary(Path(timeline_db) if timeline_db else None)
    if not path.exists():
        if dry_run or not create:
            raise StoreError(f"{path}: no such store")
        path.parent.mkdir(parents=True, exist_ok=True)
    if dry_run:
        from webchat.stores.migrations.plan import plan_turns_db

        plan_turns_db(path, report)
        report.elapsed_s = time.monotonic() - started
        return report
    owner = StoreOwner([] if owned else [path], "web-chat db migrate")
    try:
        owner.acquire(lock_timeout_s)
        try:
            if path.exists() and path.stat().st_size:
                # Refuse a newer schema before touching the file at all (connect() switches it to WAL).
                probe = connect(path, readonly=True)
                try:
                    check_version(probe, path)
                finally:
                    probe.close()
            conn = connect(path)
            try:
                _migrate_locked(conn, report, batch_size, progress, summarize)
            finally:
                conn.close()
        finally:
            owner.release()
    except StoreBusy as exc:
        raise StoreBusy(f"{exc} (waited {lock_timeout_s:.0f}s); stop it or try again later") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc
    report.elapsed_s = time.monotonic() - started
    return report


def check_version(conn: sqlite3.Connection, path: Path) -> int:
    version = recorded_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path}: schema version {version} is newer than this web-chat supports ({SCHEMA_VERSION}); "
            "upgrade web-chat instead of opening this store with an older release"
        )
    return version


def _migrate_locked(
    conn: sqlite3.Connection,
    report: MigrationReport,
    batch_size: int,
    progress: Progress | None,
    summarize: bool,
) -> None:
    path = Path(report.path)
    version = report.schema_version_before = check_version(conn, path)
    report.layout = detect_layout(conn)
    if version < 1:
        _step_schema(conn, report)
    # A kept table may hold rows a killed run did not convert yet (its cursor says where it stopped).
    pacer = _LockPacer()
    _convert_kept_tables(conn, report, batch_size, progress, pacer)
    if version < 1:
        run_in_transaction(conn, lambda c: _record_version(c, 1))
        report.steps_applied.append(STEP_NAMES[1])
    if version < 2:
        _row_pass(conn, report, batch_size, progress, pacer)
        run_in_transaction(conn, lambda c: _record_version(c, 2))
        report.steps_applied.append(STEP_NAMES[2])
    if version < 3:
        _step_indexes(conn, report, progress, pacer)
        run_in_transaction(conn, lambda c: _record_version(c, 3))
        report.steps_applied.append(STEP_NAMES[3])
    report.schema_version_after = recorded_version(conn)
    if summarize:
        report.total_turns, report.missing_runtime_key, report.missing_inference_id = _missing_counts(conn)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MigrationReport",
    "UnparseableRow",
    "check_version",
    "detect_layout",
    "migrate_turns_db",
]
