"""The SQLite turn store: phase snapshots of turns, content-addressed blocks, per-turn runtime truth."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from webchat.stores.migrations.backfill import resolve_inference_id, resolve_runtime_key
from webchat.stores.protocol import Snapshot, StoreError, TurnQuery, TurnRow
from webchat.stores.sqlite.connection import Readers, Writer
from webchat.stores.sqlite.turn_schema import LEGACY_TURN_WRITE_COLUMNS, columns, unwritable_turn_columns
from webchat.stores.turn_rows import (
    assemble,
    block_rows,
    json_text,
    list_snapshots_sql,
    load_turn_sql,
    runtime_history_sql,
    turn_row_sql,
    validate_ids,
)
from webchat.turns.model import Turn

# Parameters are numbered so that legacy columns can reuse a value: ?4 is the snapshot's creation time.
_UPSERT_TURN_TEMPLATE = """
INSERT INTO turns (conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json, turn_data_json,
                   runtime_key, inference_id, updated_at_ms{legacy_columns})
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9{legacy_values})
ON CONFLICT (conv_id, session_id, turn_id) DO UPDATE SET
    turn_created_at_ms = MIN(turns.turn_created_at_ms, excluded.turn_created_at_ms),
    turn_metadata_json = CASE WHEN excluded.updated_at_ms >= turns.updated_at_ms
                              THEN excluded.turn_metadata_json ELSE turns.turn_metadata_json END,
    turn_data_json = CASE WHEN excluded.updated_at_ms >= turns.updated_at_ms
                          THEN excluded.turn_data_json ELSE turns.turn_data_json END,
    runtime_key = CASE WHEN {keep_runtime} THEN turns.runtime_key ELSE excluded.runtime_key END,
    inference_id = CASE WHEN {keep_inference} THEN turns.inference_id ELSE excluded.inference_id END,
    updated_at_ms = MAX(turns.updated_at_ms, excluded.updated_at_ms){legacy_updates}
"""
# How a save fills each legacy column it knows (turn_schema.LEGACY_TURN_WRITE_COLUMNS): the value on
# insert, and the update on conflict. The legacy creation time follows turn_created_at_ms's MIN rule, so
# an old reader of the column sees the same time as the contract's column.
_LEGACY_COLUMN_SQL = {
    "created_at_ms": (
        "?4",
        "COALESCE(MIN(turns.created_at_ms, excluded.created_at_ms), excluded.created_at_ms)",
    ),
}


@dataclass(frozen=True)
class TurnWriteSql:
    """The two forms of the turns upsert, for one table's columns."""

    # A save replaces runtime_key / inference_id only with a non-empty value, never clears them (§3).
    upsert: str
    # Converting a legacy snapshot only fills empty values, so it can never overwrite what a newer
    # writer recorded for the same turn.
    fill: str


def _write_sql(legacy: Sequence[str] = ()) -> TurnWriteSql:
    parts = {
        "legacy_columns": "".join(f", {name}" for name in legacy),
        "legacy_values": "".join(f", {_LEGACY_COLUMN_SQL[name][0]}" for name in legacy),
        "legacy_updates": "".join(f",\n    {name} = {_LEGACY_COLUMN_SQL[name][1]}" for name in legacy),
    }
    return TurnWriteSql(
        upsert=_UPSERT_TURN_TEMPLATE.format(
            keep_runtime="excluded.runtime_key = ''", keep_inference="excluded.inference_id = ''", **parts
        ),
        fill=_UPSERT_TURN_TEMPLATE.format(
            keep_runtime="turns.runtime_key <> ''", keep_inference="turns.inference_id <> ''", **parts
        ),
    )


CONTRACT_WRITE_SQL: Final = _write_sql()
_UPSERT_TURN_SQL = CONTRACT_WRITE_SQL.upsert
_FILL_TURN_SQL = CONTRACT_WRITE_SQL.fill


def turn_write_sql(conn: sqlite3.Connection) -> TurnWriteSql:
    """The upsert for this store's ``turns`` table, or :class:`StoreError` when no save could succeed.

    Why not rebuild the table instead: SQLite cannot change a column's default in place, and a rebuild
    rewrites every row under one write lock, drops and recreates the table an operator's own queries
    and backups know, and turns an additive upgrade into a destructive one if it is interrupted at the
    wrong moment. Writing the legacy column on every save changes no existing row and keeps the column
    meaningful for whatever still reads it.
    """
    cols = columns(conn, "turns")
    unwritable = unwritable_turn_columns(cols)
    if unwritable:
        names = ", ".join(f"turns.{name}" for name in unwritable)
        raise StoreError(
            f"column {names} is NOT NULL without a default and web-chat does not know what to write "
            "there, so no new turn could be saved; give it a default or make it nullable "
            "(see `web-chat help webchat-runtime-truth-migration-playbook`)"
        )
    legacy = tuple(name for name in LEGACY_TURN_WRITE_COLUMNS if name in cols)
    return _write_sql(legacy) if legacy else CONTRACT_WRITE_SQL


_LOAD_TURN_SQL = load_turn_sql("?")
_TURN_ROW_SQL = turn_row_sql("?")
_RUNTIME_HISTORY_SQL = runtime_history_sql("?")

_DELETE_MEMBERSHIP_SQL = """
DELETE FROM turn_block_membership
WHERE conv_id = ? AND session_id = ? AND turn_id = ? AND phase = ? AND snapshot_created_at_ms = ?
"""
_INSERT_BLOCK_SQL = """
INSERT OR IGNORE INTO blocks (block_id, content_hash, hash_algorithm, kind, role, payload_json,
                              block_metadata_json, first_seen_at_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_MEMBERSHIP_SQL = """
INSERT INTO turn_block_membership (conv_id, session_id, turn_id, phase, snapshot_created_at_ms, ordinal,
                                   block_id, content_hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""


def save_snapshot_tx(
    conn: sqlite3.Connection,
    conv_id: str,
    session_id: str,
    turn: Turn,
    phase: str,
    created_at_ms: int,
    runtime_key: str,
    inference_id: str,
    *,
    fill_only: bool = False,
    sql: TurnWriteSql = CONTRACT_WRITE_SQL,
) -> None:
    """The statements of one snapshot save; the caller owns the transaction.

    ``sql`` comes from :func:`turn_write_sql` for the connection's store (the default fits a store
    created by this code).
    """
    turn_id = turn.id
    blocks, keys = block_rows(turn, created_at_ms)
    conn.execute(
        sql.fill if fill_only else sql.upsert,
        (
            conv_id,
            session_id,
            turn_id,
            created_at_ms,
            json_text(turn.metadata),
            json_text(turn.data),
            runtime_key,
            inference_id,
            created_at_ms,
        ),
    )
    conn.execute(_DELETE_MEMBERSHIP_SQL, (conv_id, session_id, turn_id, phase, created_at_ms))
    if blocks:
        conn.executemany(_INSERT_BLOCK_SQL, blocks)
        conn.executemany(
            _INSERT_MEMBERSHIP_SQL,
            [
                (conv_id, session_id, turn_id, phase, created_at_ms, ordinal, block_id, content_hash)
                for ordinal, (block_id, content_hash) in enumerate(keys)
            ],
        )


class SQLiteTurnStore:
    """A :class:`~webchat.stores.protocol.TurnStore` on one SQLite file.

    Open it with :func:`webchat.stores.open_turn_store`, which migrates the file first.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such store")
        self._writer_lock = threading.Lock()
        self._writer_instance: Writer | None = None
        self._readers = Readers(self.path)
        try:
            # Decided once at open: a table no save could write to is refused here, not at the first turn.
            self._write_sql = turn_write_sql(self._readers.get())
        except StoreError as exc:
            self._readers.close()
            raise StoreError(f"{self.path}: {exc}") from exc
        except BaseException:
            self._readers.close()
            raise

    @property
    def _writer(self) -> Writer:
        # Started on the first write, so read-only users (CLI, reports) never open the file for writing.
        with self._writer_lock:
            if self._writer_instance is None:
                self._writer_instance = Writer(self.path, name="webchat-turns-writer")
            return self._writer_instance

    @property
    def write_executor(self) -> Executor:
        """Where async callers run this store's writes (see :func:`webchat.stores.offload.write_call`)."""
        return self._writer.executor

    # -- writes -------------------------------------------------------------------------------------

    def save_snapshot(
        self,
        conv_id: str,
        session_id: str,
        turn: Turn,
        phase: str,
        created_at_ms: int,
        *,
        runtime_key: str = "",
        inference_id: str = "",
    ) -> None:
        validate_ids(conv_id=conv_id, session_id=session_id, turn_id=turn.id, phase=phase)
        # The turn's own metadata is the fallback source of its truth; never the conversation pointer.
        runtime_key = runtime_key.strip() or resolve_runtime_key(turn.metadata)
        inference_id = inference_id.strip() or resolve_inference_id(turn.metadata)
        snapshot = turn.copy()  # the caller may keep mutating its turn while the writer works
        self._writer.run(
            lambda conn: save_snapshot_tx(
                conn,
                conv_id,
                session_id,
                snapshot,
                phase,
                int(created_at_ms),
                runtime_key,
                inference_id,
                sql=self._write_sql,
            )
        )

    # -- reads --------------------------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        return self._readers.get()

    def list_snapshots(self, query: TurnQuery) -> list[Snapshot]:
        sql, params = list_snapshots_sql(query, "?")
        return assemble(self._read().execute(sql, params))

    def load_turn(self, conv_id: str, session_id: str, turn_id: str) -> list[Snapshot]:
        return assemble(self._read().execute(_LOAD_TURN_SQL, (conv_id, session_id, turn_id)))

    def turn_row(self, conv_id: str, session_id: str, turn_id: str) -> TurnRow | None:
        row = self._read().execute(_TURN_ROW_SQL, (conv_id, session_id, turn_id)).fetchone()
        return TurnRow(*row) if row else None

    def runtime_history(self, conv_id: str) -> list[TurnRow]:
        rows = self._read().execute(_RUNTIME_HISTORY_SQL, (conv_id,))
        return [TurnRow(*row) for row in rows]

    def latest_snapshot(self, conv_id: str) -> Snapshot | None:
        items = self.list_snapshots(TurnQuery(conv_id=conv_id, limit=1))
        return items[0] if items else None

    def close(self) -> None:
        with self._writer_lock:
            if self._writer_instance is not None:
                self._writer_instance.close()
        self._readers.close()


__all__ = [
    "CONTRACT_WRITE_SQL",
    "SQLiteTurnStore",
    "StoreError",
    "TurnWriteSql",
    "block_rows",
    "save_snapshot_tx",
    "turn_write_sql",
]
