"""The PostgreSQL turn store: the tables, columns, index names and save rules of runtime-truth.md §3.

A save is one transaction per snapshot with the upsert rules of the SQLite store: ``turn_created_at_ms``
keeps the earliest value, the turn's JSON follows the newest ``updated_at_ms``, ``runtime_key`` /
``inference_id`` are replaced only by a non-empty value and never cleared, blocks are content-addressed and
inserted once. Several instances may save at once: blocks are inserted in key order so two saves sharing
blocks never wait on each other in a cycle, and a save that still meets a deadlock or a serialization
failure is retried.
"""

from __future__ import annotations

import time
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors

from webchat.stores.migrations.backfill import resolve_inference_id, resolve_runtime_key
from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import Component, Step
from webchat.stores.protocol import Snapshot, StoreError, TurnQuery, TurnRow
from webchat.stores.sqlite.turn_schema import INDEXES
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

# The same names and columns as turns.db (runtime-truth.md §3); BIGINT for the millisecond times.
_TABLES = (
    """CREATE TABLE turns (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    turn_created_at_ms BIGINT NOT NULL,
    turn_metadata_json TEXT NOT NULL DEFAULT '{}',
    turn_data_json TEXT NOT NULL DEFAULT '{}',
    runtime_key TEXT NOT NULL DEFAULT '',
    inference_id TEXT NOT NULL DEFAULT '',
    updated_at_ms BIGINT NOT NULL,
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
    first_seen_at_ms BIGINT NOT NULL,
    PRIMARY KEY (block_id, content_hash)
)""",
    """CREATE TABLE turn_block_membership (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    snapshot_created_at_ms BIGINT NOT NULL,
    ordinal INTEGER NOT NULL,
    block_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id, phase, snapshot_created_at_ms, ordinal),
    FOREIGN KEY (conv_id, session_id, turn_id) REFERENCES turns (conv_id, session_id, turn_id)
        ON DELETE CASCADE,
    FOREIGN KEY (block_id, content_hash) REFERENCES blocks (block_id, content_hash)
)""",
)

# Versions line up with turns.db's, so `db check` reads the same number on both backends.
COMPONENT: Final = Component(
    "turns",
    (
        Step("normalized tables with runtime_key / inference_id", _TABLES),
        # A PostgreSQL turn store starts at this layout: there is no legacy row to fill.
        Step("timestamps filled and runtime truth backfilled", ()),
        Step(
            "the contract's indexes",
            tuple(f"CREATE INDEX IF NOT EXISTS {name} ON {columns}" for name, columns in INDEXES.items()),
        ),
    ),
)

_UPSERT_TURN_SQL = """
INSERT INTO turns AS t (conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json,
                        turn_data_json, runtime_key, inference_id, updated_at_ms)
VALUES (%(conv_id)s, %(session_id)s, %(turn_id)s, %(at)s, %(meta)s, %(data)s, %(runtime_key)s,
        %(inference_id)s, %(at)s)
ON CONFLICT (conv_id, session_id, turn_id) DO UPDATE SET
    turn_created_at_ms = LEAST(t.turn_created_at_ms, excluded.turn_created_at_ms),
    turn_metadata_json = CASE WHEN excluded.updated_at_ms >= t.updated_at_ms
                              THEN excluded.turn_metadata_json ELSE t.turn_metadata_json END,
    turn_data_json = CASE WHEN excluded.updated_at_ms >= t.updated_at_ms
                          THEN excluded.turn_data_json ELSE t.turn_data_json END,
    runtime_key = CASE WHEN excluded.runtime_key = '' THEN t.runtime_key ELSE excluded.runtime_key END,
    inference_id = CASE WHEN excluded.inference_id = '' THEN t.inference_id ELSE excluded.inference_id END,
    updated_at_ms = GREATEST(t.updated_at_ms, excluded.updated_at_ms)
"""
_DELETE_MEMBERSHIP_SQL = """
DELETE FROM turn_block_membership
WHERE conv_id = %s AND session_id = %s AND turn_id = %s AND phase = %s AND snapshot_created_at_ms = %s
"""
_INSERT_BLOCK_SQL = """
INSERT INTO blocks (block_id, content_hash, hash_algorithm, kind, role, payload_json, block_metadata_json,
                    first_seen_at_ms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (block_id, content_hash) DO NOTHING
"""
_INSERT_MEMBERSHIP_SQL = """
INSERT INTO turn_block_membership (conv_id, session_id, turn_id, phase, snapshot_created_at_ms, ordinal,
                                   block_id, content_hash)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""
_LIST_MARK = "%s"
_LOAD_TURN_SQL = load_turn_sql(_LIST_MARK)
_TURN_ROW_SQL = turn_row_sql(_LIST_MARK)
_RUNTIME_HISTORY_SQL = runtime_history_sql(_LIST_MARK)

# A save that meets a deadlock or a serialization failure is run again this many times in all.
SAVE_ATTEMPTS: Final = 4
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


def save_snapshot_pg(
    conn: psycopg.Connection,
    conv_id: str,
    session_id: str,
    turn: Turn,
    phase: str,
    created_at_ms: int,
    runtime_key: str,
    inference_id: str,
) -> None:
    """The statements of one snapshot save; the caller owns the transaction."""
    blocks, keys = block_rows(turn, created_at_ms)
    conn.execute(
        _UPSERT_TURN_SQL,
        {
            "conv_id": conv_id,
            "session_id": session_id,
            "turn_id": turn.id,
            "at": created_at_ms,
            "meta": json_text(turn.metadata),
            "data": json_text(turn.data),
            "runtime_key": runtime_key,
            "inference_id": inference_id,
        },
    )
    conn.execute(_DELETE_MEMBERSHIP_SQL, (conv_id, session_id, turn.id, phase, created_at_ms))
    if not blocks:
        return
    with conn.cursor() as cur:
        # Key order (and each key once): concurrent saves of shared blocks queue, never deadlock.
        unique = {(row[0], row[1]): row for row in blocks}
        cur.executemany(_INSERT_BLOCK_SQL, [unique[key] for key in sorted(unique)])
        cur.executemany(
            _INSERT_MEMBERSHIP_SQL,
            [
                (conv_id, session_id, turn.id, phase, created_at_ms, ordinal, block_id, content_hash)
                for ordinal, (block_id, content_hash) in enumerate(keys)
            ],
        )


class PostgresTurnStore:
    """A :class:`~webchat.stores.protocol.TurnStore` in a PostgreSQL database.

    The schema must be migrated (:func:`webchat.stores.postgres.migrations.migrate` with
    :data:`COMPONENT`). The store uses the :class:`Database` it is given and closes it only when
    ``owns_database`` is set.
    """

    def __init__(self, db: Database, *, owns_database: bool = False) -> None:
        self.db = db
        self._owns_database = owns_database

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
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            try:
                with self.db.connection() as conn:
                    save_snapshot_pg(
                        conn, conv_id, session_id, turn, phase, int(created_at_ms), runtime_key, inference_id
                    )
                return
            except _RETRYABLE:
                if attempt == SAVE_ATTEMPTS:
                    raise
                time.sleep(0.01 * attempt)
            except psycopg.DataError as exc:
                # e.g. a NUL character, which PostgreSQL text cannot hold.
                raise StoreError(f"{self.db.label}: cannot save turn {turn.id}: {exc}") from exc

    # -- reads --------------------------------------------------------------------------------------

    def _rows(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        with self.db.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def list_snapshots(self, query: TurnQuery) -> list[Snapshot]:
        sql, params = list_snapshots_sql(query, _LIST_MARK)
        return assemble(self._rows(sql, params))

    def load_turn(self, conv_id: str, session_id: str, turn_id: str) -> list[Snapshot]:
        return assemble(self._rows(_LOAD_TURN_SQL, (conv_id, session_id, turn_id)))

    def turn_row(self, conv_id: str, session_id: str, turn_id: str) -> TurnRow | None:
        rows = self._rows(_TURN_ROW_SQL, (conv_id, session_id, turn_id))
        return TurnRow(*rows[0]) if rows else None

    def runtime_history(self, conv_id: str) -> list[TurnRow]:
        return [TurnRow(*row) for row in self._rows(_RUNTIME_HISTORY_SQL, (conv_id,))]

    def latest_snapshot(self, conv_id: str) -> Snapshot | None:
        items = self.list_snapshots(TurnQuery(conv_id=conv_id, limit=1))
        return items[0] if items else None

    def close(self) -> None:
        if self._owns_database:
            self.db.close()


__all__ = ["COMPONENT", "SAVE_ATTEMPTS", "PostgresTurnStore", "save_snapshot_pg"]
