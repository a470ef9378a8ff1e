"""Versioned PostgreSQL schema migrations (scale-out.md §2).

Each component (turns, timeline, prompts, auth, profiles …) is an ordered list of steps; its version is the
number of steps applied, recorded in ``webchat_schema_migrations`` (the table the SQLite stores use too).
:func:`migrate` runs every pending step of the given components in one transaction under
``pg_advisory_xact_lock``: instances starting together serialize, and a failed step leaves nothing
half-applied. A database recording a newer version than this code knows is refused before anything runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import psycopg

from webchat.stores.postgres.database import Database
from webchat.stores.protocol import SchemaTooNewError, StoreError

VERSIONS_TABLE: Final = "webchat_schema_migrations"
VERSIONS_DDL: Final = f"""CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (component, version)
)"""
# The advisory lock every web-chat migration takes (one 64-bit key: "webchat" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x77656263686174
MIGRATE_HINT: Final = "run `web-chat db migrate --database-url URL`"


@dataclass(frozen=True)
class Step:
    """One schema step: a name for ``db`` reports and the statements it runs, in order."""

    name: str
    statements: tuple[str, ...]


@dataclass(frozen=True)
class Component:
    name: str
    steps: tuple[Step, ...]

    @property
    def version(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class Applied:
    component: str
    from_version: int
    to_version: int
    steps: tuple[str, ...]


def recorded_versions(conn: psycopg.Connection) -> dict[str, int]:
    """``component -> version`` as recorded (empty when the database was never migrated)."""
    row = conn.execute("SELECT to_regclass(%s)", (VERSIONS_TABLE,)).fetchone()
    if row is None or row[0] is None:
        return {}
    rows = conn.execute(f"SELECT component, MAX(version) FROM {VERSIONS_TABLE} GROUP BY component")
    return {str(name): int(version) for name, version in rows}


def _refuse_newer(label: str, versions: dict[str, int], components: Sequence[Component]) -> None:
    for component in components:
        recorded = versions.get(component.name, 0)
        if recorded > component.version:
            raise SchemaTooNewError(
                f"{label}: the {component.name} schema is version {recorded}, newer than this web-chat "
                f"knows ({component.version}); upgrade web-chat rather than risk damaging the data"
            )


def migrate_connection(
    conn: psycopg.Connection, components: Sequence[Component], *, label: str = "database"
) -> list[Applied]:
    """Apply the pending steps on ``conn`` inside the caller's transaction (see :func:`migrate`)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
    conn.execute(VERSIONS_DDL)
    versions = recorded_versions(conn)
    _refuse_newer(label, versions, components)
    applied = []
    for component in components:
        current = versions.get(component.name, 0)
        pending = component.steps[current:]
        for number, step in enumerate(pending, current + 1):
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {VERSIONS_TABLE} (component, version, name, applied_at_ms) "
                "VALUES (%s, %s, %s, %s)",
                (component.name, number, step.name, int(time.time() * 1000)),
            )
        if pending:
            applied.append(
                Applied(component.name, current, component.version, tuple(s.name for s in pending))
            )
    return applied


def migrate(db: Database, components: Sequence[Component]) -> list[Applied]:
    """Bring ``components`` to this code's versions: one transaction, one advisory lock."""
    try:
        with db.connection() as conn:
            return migrate_connection(conn, components, label=db.label)
    except psycopg.Error as exc:
        raise StoreError(f"{db.label}: migration failed: {str(exc).strip().splitlines()[0]}") from exc


def require_current(db: Database, components: Sequence[Component]) -> None:
    """Refuse a database that is not migrated to this code's versions (older: migrate it; newer: refuse)."""
    with db.connection() as conn:
        versions = recorded_versions(conn)
    _refuse_newer(db.label, versions, components)
    for component in components:
        recorded = versions.get(component.name, 0)
        if recorded < component.version:
            raise StoreError(
                f"{db.label}: the {component.name} schema is not migrated (version {recorded} of "
                f"{component.version}); {MIGRATE_HINT} first"
            )


__all__ = [
    "MIGRATION_LOCK_KEY",
    "Applied",
    "Component",
    "Step",
    "migrate",
    "migrate_connection",
    "recorded_versions",
    "require_current",
]
