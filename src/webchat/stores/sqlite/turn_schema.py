"""The ``turns.db`` schema of runtime-truth.md §3, and small introspection helpers."""

from __future__ import annotations

import sqlite3
from typing import Final

COMPONENT: Final = "turns"

# The schema version this code writes. A store recording a higher version is refused.
#   1  normalized tables with runtime_key / inference_id (legacy layouts converted)
#   2  timestamps filled and runtime_key / inference_id backfilled from turn metadata
#   3  the contract's indexes (built after the backfill so its updates do not maintain them)
SCHEMA_VERSION: Final = 3

VERSION_TABLES_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS webchat_schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at_ms INTEGER NOT NULL,
    PRIMARY KEY (component, version)
)""",
    """CREATE TABLE IF NOT EXISTS webchat_migration_state (
    component TEXT NOT NULL,
    step TEXT NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (component, step)
)""",
)

TURNS_DDL: Final = """CREATE TABLE IF NOT EXISTS turns (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    turn_created_at_ms INTEGER NOT NULL,
    turn_metadata_json TEXT NOT NULL DEFAULT '{}',
    turn_data_json TEXT NOT NULL DEFAULT '{}',
    runtime_key TEXT NOT NULL DEFAULT '',
    inference_id TEXT NOT NULL DEFAULT '',
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id)
)"""

BLOCKS_DDL: Final = """CREATE TABLE IF NOT EXISTS blocks (
    block_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    hash_algorithm TEXT NOT NULL DEFAULT 'sha256-canonical-json-v1',
    kind TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT '',
    payload_json TEXT NOT NULL DEFAULT '{}',
    block_metadata_json TEXT NOT NULL DEFAULT '{}',
    first_seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (block_id, content_hash)
)"""

MEMBERSHIP_DDL: Final = """CREATE TABLE IF NOT EXISTS turn_block_membership (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    snapshot_created_at_ms INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    block_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id, phase, snapshot_created_at_ms, ordinal),
    FOREIGN KEY (conv_id, session_id, turn_id) REFERENCES turns(conv_id, session_id, turn_id)
        ON DELETE CASCADE,
    FOREIGN KEY (block_id, content_hash) REFERENCES blocks(block_id, content_hash)
)"""

TABLES_DDL: Final = {"turns": TURNS_DDL, "blocks": BLOCKS_DDL, "turn_block_membership": MEMBERSHIP_DDL}

# Columns a legacy ``turns`` table may lack, with the definition used to add them in place.
TURNS_ADDABLE_COLUMNS: Final = {
    "turn_created_at_ms": "INTEGER NOT NULL DEFAULT 0",
    "turn_metadata_json": "TEXT NOT NULL DEFAULT '{}'",
    "turn_data_json": "TEXT NOT NULL DEFAULT '{}'",
    "runtime_key": "TEXT NOT NULL DEFAULT ''",
    "inference_id": "TEXT NOT NULL DEFAULT ''",
    "updated_at_ms": "INTEGER NOT NULL DEFAULT 0",
}
BLOCKS_ADDABLE_COLUMNS: Final = {
    "hash_algorithm": "TEXT NOT NULL DEFAULT 'sha256-canonical-json-v1'",
    "role": "TEXT NOT NULL DEFAULT ''",
    "payload_json": "TEXT NOT NULL DEFAULT '{}'",
    "block_metadata_json": "TEXT NOT NULL DEFAULT '{}'",
    "first_seen_at_ms": "INTEGER NOT NULL DEFAULT 0",
}

# Index names are part of the contract: operators query them.
INDEXES: Final = {
    "turns_by_conv_session": "turns(conv_id, session_id, updated_at_ms DESC)",
    "turns_by_session": "turns(session_id, updated_at_ms DESC)",
    "turns_by_conv_runtime_updated": "turns(conv_id, runtime_key, updated_at_ms DESC)",
    "turns_by_conv_inference_updated": "turns(conv_id, inference_id, updated_at_ms DESC)",
    "blocks_by_kind_role": "blocks(kind, role)",
    "turn_block_membership_by_turn_phase": (
        "turn_block_membership(conv_id, session_id, turn_id, phase, snapshot_created_at_ms DESC, ordinal)"
    ),
    "turn_block_membership_by_block": "turn_block_membership(block_id, content_hash)",
}
REQUIRED_CHECK_INDEXES: Final = ("turns_by_conv_runtime_updated", "turns_by_conv_inference_updated")

# The columns a turn save writes (runtime-truth.md §3).
TURN_WRITE_COLUMNS: Final = (
    "conv_id",
    "session_id",
    "turn_id",
    "turn_created_at_ms",
    "turn_metadata_json",
    "turn_data_json",
    "runtime_key",
    "inference_id",
    "updated_at_ms",
)
# Legacy ``turns`` columns that upgrades keep (nothing is dropped) and that a save still fills, because
# some layouts declare them NOT NULL without a default: ``created_at_ms`` is the turn's creation time.
LEGACY_TURN_WRITE_COLUMNS: Final = ("created_at_ms",)


def unwritable_turn_columns(cols: dict[str, sqlite3.Row | tuple]) -> list[str]:
    """Columns of ``turns`` a save would leave out although SQLite requires a value in them.

    Such a column makes every new turn fail to save; a store that has one is refused at open and
    reported by ``web-chat db check`` rather than discovered when the first chat turn is lost.
    """
    known = set(TURN_WRITE_COLUMNS) | set(LEGACY_TURN_WRITE_COLUMNS)
    pk_cols = [row for row in cols.values() if int(tuple(row)[5])]
    out = []
    for row in cols.values():
        _, name, col_type, not_null, default, pk = tuple(row)
        if name in known or not int(not_null) or default is not None:
            continue
        # An INTEGER PRIMARY KEY is the rowid: SQLite assigns it when the insert leaves it out.
        if int(pk) and len(pk_cols) == 1 and str(col_type).upper() == "INTEGER":
            continue
        out.append(str(name))
    return out


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def columns(conn: sqlite3.Connection, table: str) -> dict[str, sqlite3.Row | tuple]:
    """``name -> (cid, name, type, notnull, dflt_value, pk)`` for a table (empty when it does not exist)."""
    return {row[1]: row for row in conn.execute(f"PRAGMA table_info({quote_ident(table)})")}


def index_names(conn: sqlite3.Connection) -> dict[str, str]:
    """``index name -> table name`` for every named index."""
    rows = conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND name IS NOT NULL")
    return {name: tbl for name, tbl in rows}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def recorded_version(conn: sqlite3.Connection, component: str = COMPONENT) -> int:
    if not table_exists(conn, "webchat_schema_migrations"):
        return 0
    row = conn.execute(
        "SELECT COALESCE(MAX(version), 0) FROM webchat_schema_migrations WHERE component = ?", (component,)
    ).fetchone()
    return int(row[0])
