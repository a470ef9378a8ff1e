"""``--dry-run``: compute what a migration would change, through a read-only connection.

Nothing is written: the file is opened with ``mode=ro``, so its bytes and its modification time stay as
they were. The numbers are computed with the same resolver the migration uses.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from webchat.stores.migrations.backfill import (
    resolve_inference_id,
    resolve_metadata_json,
    resolve_runtime_key,
)
from webchat.stores.migrations.turns_sqlite import (
    LEGACY_TABLE,
    MAX_REPORTED_UNPARSEABLE,
    STEP_NAMES,
    MigrationReport,
    UnparseableRow,
    _cursor,
    _session_column,
    check_version,
    detect_layout,
    kept_snapshot_tables,
)
from webchat.stores.protocol import StoreError
from webchat.stores.sqlite.connection import connect
from webchat.stores.sqlite.turn_schema import (
    BLOCKS_ADDABLE_COLUMNS,
    INDEXES,
    SCHEMA_VERSION,
    TABLES_DDL,
    TURNS_ADDABLE_COLUMNS,
    columns,
    index_names,
    quote_ident,
    table_exists,
)
from webchat.turns.serde import TurnFormatError, turn_from_yaml


def plan_turns_db(path: Path, report: MigrationReport) -> None:
    try:
        conn = connect(path, readonly=True)
    except StoreError:
        raise
    try:
        _plan(conn, path, report)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc
    finally:
        conn.close()


def _plan(conn: sqlite3.Connection, path: Path, report: MigrationReport) -> None:
    version = report.schema_version_before = check_version(conn, path)
    report.layout = detect_layout(conn)
    report.schema_version_after = SCHEMA_VERSION
    report.steps_applied = [STEP_NAMES[v] for v in range(version + 1, SCHEMA_VERSION + 1)]
    single = report.layout.startswith("single-table")
    # Per turn key: (resolved runtime, resolved inference) merged across snapshots, first non-empty wins.
    legacy_turns: dict[tuple[str, str, str], tuple[str, str]] = {}

    tables = [] if single else list(kept_snapshot_tables(conn))
    if single:
        report.legacy_table = LEGACY_TABLE if not table_exists(conn, LEGACY_TABLE) else f"{LEGACY_TABLE}_2"
    if version < 1:
        report.tables_created = [t for t in TABLES_DDL if single or not table_exists(conn, t)]
        if not single:
            for table, addable in (("turns", TURNS_ADDABLE_COLUMNS), ("blocks", BLOCKS_ADDABLE_COLUMNS)):
                have = columns(conn, table)
                if have:
                    report.columns_added += [f"{table}.{c}" for c in addable if c not in have]

    sources = [("turns", 0)] if single else [(t, _cursor(conn, f"convert:{t}")) for t in tables]
    for table, start in sources:
        report.legacy_table = report.legacy_table or table
        session_col = _session_column(conn, table)
        report.legacy_rows_total += int(
            conn.execute(f"SELECT COUNT(*) FROM {quote_ident(table)}").fetchone()[0]
        )
        rows = conn.execute(
            f"SELECT rowid, conv_id, {session_col}, turn_id, phase, payload FROM {quote_ident(table)} "
            "WHERE rowid > ? ORDER BY rowid",
            (start,),
        )
        kept_name = report.legacy_table if single else table
        for rowid, conv_id, session_id, turn_id, phase, payload in rows:
            ids = (str(conv_id or ""), str(session_id or ""), str(turn_id or ""), str(phase or ""))
            try:
                if isinstance(payload, bytes):
                    payload = payload.decode("utf-8")
                turn = turn_from_yaml(payload or "")
            except (TurnFormatError, ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
                report.legacy_rows_unparseable += 1
                if len(report.unparseable) < MAX_REPORTED_UNPARSEABLE:
                    report.unparseable.append(UnparseableRow(kept_name, rowid, *ids, str(exc)[:200]))
                continue
            report.legacy_rows_converted += 1
            key = ids[:3]
            rk, inf = legacy_turns.get(key, ("", ""))
            legacy_turns[key] = (
                rk or resolve_runtime_key(turn.metadata),
                inf or resolve_inference_id(turn.metadata),
            )

    turn_cols = columns(conn, "turns") if not single else {}
    existing: dict[tuple[str, str, str], tuple[str, str]] = {}
    if turn_cols:
        rk_col = "runtime_key" if "runtime_key" in turn_cols else "''"
        inf_col = "inference_id" if "inference_id" in turn_cols else "''"
        ts_cols = [c for c in ("updated_at_ms", "turn_created_at_ms") if c in turn_cols]
        created_src = (
            "created_at_ms"
            if "created_at_ms" in turn_cols
            else ("turn_created_at_ms" if "turn_created_at_ms" in turn_cols else "0")
        )
        ts_missing = " OR ".join(f"{c} = 0" for c in ts_cols) if len(ts_cols) == 2 else "1"
        if version < 2:
            report.timestamps_filled = int(
                conn.execute(
                    f"SELECT COUNT(*) FROM turns WHERE ({ts_missing}) AND COALESCE({created_src}, 0) <> 0"
                ).fetchone()[0]
            )
        rows = conn.execute(
            f"SELECT conv_id, session_id, turn_id, {rk_col}, {inf_col}, turn_metadata_json FROM turns"
        )
        for conv_id, session_id, turn_id, rk, inf, meta in rows:
            key = (conv_id, session_id, turn_id)
            if version < 2 and (not rk or not inf):
                res = resolve_metadata_json(meta)
                if not res.valid:
                    report.invalid_metadata += 1
                if not rk and res.runtime_key:
                    report.backfilled_runtime_key += 1
                    rk = res.runtime_key
                if not inf and res.inference_id:
                    report.backfilled_inference_id += 1
                    inf = res.inference_id
            existing[key] = (rk, inf)
    for key, (rk, inf) in legacy_turns.items():
        old_rk, old_inf = existing.get(key, ("", ""))
        report.backfilled_runtime_key += int(not old_rk and bool(rk))
        report.backfilled_inference_id += int(not old_inf and bool(inf))
        existing[key] = (old_rk or rk, old_inf or inf)
    if single:
        report.timestamps_filled = 0

    have_indexes = index_names(conn)
    report.indexes_created = [
        n for n in INDEXES if n not in have_indexes or (single and have_indexes[n] == "turns")
    ]
    if version >= 3:
        report.indexes_created = []
    report.total_turns = len(existing)
    report.missing_runtime_key = sum(1 for rk, _ in existing.values() if not rk)
    report.missing_inference_id = sum(1 for _, inf in existing.values() if not inf)
