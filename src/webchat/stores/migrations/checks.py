"""The migration playbook's validation queries (runtime-truth.md §6), shared by the CLI and the docs.

Each query is kept as SQL text so that the help pages show exactly what ``web-chat db …`` runs.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Final

from webchat.stores.migrations.turns_sqlite import UNPARSEABLE_TABLE, kept_snapshot_tables
from webchat.stores.sqlite.turn_schema import (
    REQUIRED_CHECK_INDEXES,
    SCHEMA_VERSION,
    columns,
    index_names,
    recorded_version,
    table_exists,
    unwritable_turn_columns,
)

SQL_COLUMNS: Final = "PRAGMA table_info(turns);"
SQL_INDEXES: Final = (
    "SELECT name FROM sqlite_master WHERE type = 'index' "
    "AND name IN ('turns_by_conv_runtime_updated', 'turns_by_conv_inference_updated');"
)
SQL_HISTORY: Final = (
    "SELECT turn_id, runtime_key, inference_id, updated_at_ms FROM turns "
    "WHERE conv_id = ? ORDER BY updated_at_ms ASC, turn_id ASC;"
)
SQL_MISSING_COUNT: Final = (
    "SELECT COUNT(*) AS missing_runtime_or_inference FROM turns WHERE runtime_key = '' OR inference_id = '';"
)
SQL_MISSING_SPLIT: Final = (
    "SELECT COUNT(*) AS total_turns, SUM(runtime_key = '') AS missing_runtime_key, "
    "SUM(inference_id = '') AS missing_inference_id, "
    "SUM(runtime_key = '' OR inference_id = '') AS missing_runtime_or_inference FROM turns;"
)
SQL_CANDIDATES: Final = (
    "SELECT conv_id, session_id, turn_id, turn_metadata_json FROM turns "
    "WHERE runtime_key = '' OR inference_id = '' "
    "ORDER BY updated_at_ms DESC, conv_id, session_id, turn_id LIMIT ?;"
)

EXPECTED_COLUMNS: Final = {
    "runtime_key": ("TEXT", 1, "''"),
    "inference_id": ("TEXT", 1, "''"),
}
REQUIRED_COLUMNS: Final = (
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


@dataclass
class CheckResult:
    schema_version: int = 0
    expected_schema_version: int = SCHEMA_VERSION
    columns: list[dict[str, Any]] = field(default_factory=list)
    indexes: dict[str, bool] = field(default_factory=dict)
    # None while the store is not migrated: its turns have no runtime_key / inference_id to count yet.
    total_turns: int | None = None
    missing_runtime_or_inference: int | None = None
    missing_runtime_key: int | None = None
    missing_inference_id: int | None = None
    legacy_rows_unparseable: int = 0
    legacy_tables: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    needs_migration: bool = False

    @property
    def schema_ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_ok": self.schema_ok,
            "problems": self.problems,
            "schema_version": self.schema_version,
            "expected_schema_version": self.expected_schema_version,
            "columns": self.columns,
            "indexes": self.indexes,
            "total_turns": self.total_turns,
            "missing_runtime_or_inference": self.missing_runtime_or_inference,
            "missing_runtime_key": self.missing_runtime_key,
            "missing_inference_id": self.missing_inference_id,
            "legacy_tables": self.legacy_tables,
            "legacy_rows_unparseable": self.legacy_rows_unparseable,
        }


MIGRATE_HINT: Final = "run web-chat db migrate"


def run_check(conn: sqlite3.Connection) -> CheckResult:
    result = CheckResult(schema_version=recorded_version(conn))
    cols = columns(conn, "turns")
    # An older recorded version, or a turns table without the runtime-truth columns, is a store the
    # migration has not (fully) upgraded: the first problem says so and what to run.
    result.needs_migration = result.schema_version < SCHEMA_VERSION or not (
        "runtime_key" in cols and "inference_id" in cols
    )
    if result.needs_migration:
        result.problems.append(
            f"store is not migrated (schema version {result.schema_version} of {SCHEMA_VERSION}): "
            f"{MIGRATE_HINT}"
        )
    if not cols:
        result.problems.append("table turns does not exist")
        return result
    for name in REQUIRED_COLUMNS:
        row = cols.get(name)
        if row is None:
            result.columns.append(
                {"name": name, "present": False, "type": "", "not_null": False, "default": None}
            )
            result.problems.append(f"column turns.{name} is missing")
            continue
        _, _, col_type, not_null, default, _ = tuple(row)
        result.columns.append(
            {"name": name, "present": True, "type": col_type, "not_null": bool(not_null), "default": default}
        )
        expected = EXPECTED_COLUMNS.get(name)
        if expected and (str(col_type).upper(), int(not_null), default) != expected:
            result.problems.append(
                f"column turns.{name} is declared {col_type} {'NOT NULL' if not_null else 'NULL'} "
                f"DEFAULT {default}; expected TEXT NOT NULL DEFAULT ''"
            )
    for name in unwritable_turn_columns(cols):
        # A migrated store that cannot take a new turn is not ok, however clean its other columns are.
        result.problems.append(
            f"column turns.{name} is NOT NULL without a default and web-chat does not write it: "
            "new turns cannot be saved"
        )
    have = index_names(conn)
    for name in REQUIRED_CHECK_INDEXES:
        present = have.get(name) == "turns"
        result.indexes[name] = present
        if not present:
            result.problems.append(f"index {name} is missing")
    if "runtime_key" in cols and "inference_id" in cols:
        total, missing_rk, missing_inf, missing_any = conn.execute(SQL_MISSING_SPLIT).fetchone()
        result.total_turns = int(total)
        result.missing_runtime_key = int(missing_rk or 0)
        result.missing_inference_id = int(missing_inf or 0)
        result.missing_runtime_or_inference = int(missing_any or 0)
    result.legacy_tables = kept_snapshot_tables(conn)
    if table_exists(conn, UNPARSEABLE_TABLE):
        result.legacy_rows_unparseable = int(
            conn.execute(f"SELECT COUNT(*) FROM {UNPARSEABLE_TABLE}").fetchone()[0]
        )
    return result


def runtime_history(conn: sqlite3.Connection, conv_id: str) -> list[dict[str, Any]]:
    """Turn rows of one conversation with each runtime switch marked (``switch`` is True on change)."""
    out: list[dict[str, Any]] = []
    previous: str | None = None
    for turn_id, runtime_key, inference_id, updated_at_ms in conn.execute(SQL_HISTORY, (conv_id,)):
        out.append(
            {
                "turn_id": turn_id,
                "runtime_key": runtime_key,
                "inference_id": inference_id,
                "updated_at_ms": updated_at_ms,
                "switch": previous is not None and runtime_key != previous,
            }
        )
        previous = runtime_key
    return out


def missing_candidates(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    return [
        {"conv_id": c, "session_id": s, "turn_id": t, "turn_metadata_json": m}
        for c, s, t, m in conn.execute(SQL_CANDIDATES, (int(limit),))
    ]
