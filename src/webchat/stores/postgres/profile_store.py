"""The writable profile registries in PostgreSQL: the same tables, rules and errors as ``profiles.db``.

Everything but the SQL is shared with SQLite (:mod:`webchat.runtimes.profile_store`). The schema is the
``profiles`` :class:`~webchat.stores.postgres.migrations.Component`: the tables, columns and keys of
``profiles.db`` (milliseconds as BIGINT, documents as JSON text), with the ``local`` registry.

**Concurrency.** Every write first takes ``SELECT … FOR UPDATE`` on its registry's row, so the writes to
one registry run one after another, from any number of threads, processes or instances; each statement
after the lock reads the latest committed rows (READ COMMITTED). Of two writes expecting the same version
exactly one wins and the other gets :class:`VersionConflict`; of two creates of one slug the second gets
:class:`ProfileExists`.

**Other instances.** A :class:`ProfileWriter` updates the in-memory registry of its own process only;
changes another instance commits are seen after a restart (a write here still checks them: a stale version
is a conflict, an existing slug is ``profile_exists``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

import psycopg

from webchat.runtimes.profile_store import (
    ProfileStore,
    ProfileTransaction,
    ProfileWriter,
    StoredRow,
    T,
    attach_store,
)
from webchat.runtimes.profiles import Registries
from webchat.runtimes.tools import ToolRegistry
from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import Component, Step, require_current
from webchat.stores.protocol import StoreError

PROFILES: Final = Component(
    "profiles",
    (
        Step(
            "profile registries and profiles, with the local registry",
            (
                """CREATE TABLE profile_registries (
    slug          TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
)""",
                """CREATE TABLE profiles (
    registry_slug TEXT NOT NULL REFERENCES profile_registries(slug) ON DELETE CASCADE,
    slug          TEXT NOT NULL,
    document_json TEXT NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT,
    PRIMARY KEY (registry_slug, slug)
)""",
                # 'local' is WRITABLE_REGISTRY_SLUG (a test holds them equal).
                "INSERT INTO profile_registries (slug, created_at_ms)"
                " VALUES ('local', (extract(epoch FROM clock_timestamp()) * 1000)::bigint)"
                " ON CONFLICT (slug) DO NOTHING",
            ),
        ),
    ),
)


class _PostgresTransaction:
    """:class:`ProfileTransaction` on a pooled connection inside one transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def lock_registry(self, registry_slug: str) -> bool:
        found = self.conn.execute(
            "SELECT 1 FROM profile_registries WHERE slug = %s FOR UPDATE", (registry_slug,)
        ).fetchone()
        return found is not None

    def row(self, registry_slug: str, slug: str) -> StoredRow | None:
        found = self.conn.execute(
            "SELECT document_json, version, deleted_at_ms FROM profiles"
            " WHERE registry_slug = %s AND slug = %s",
            (registry_slug, slug),
        ).fetchone()
        if found is None:
            return None
        return StoredRow(slug, json.loads(found[0]), int(found[1]), deleted=found[2] is not None)

    def put(self, registry_slug: str, slug: str, document_json: str, version: int, at_ms: int) -> None:
        self.conn.execute(
            "INSERT INTO profiles (registry_slug, slug, document_json, version, created_at_ms,"
            " updated_at_ms, deleted_at_ms) VALUES (%s, %s, %s, %s, %s, %s, NULL)"
            " ON CONFLICT (registry_slug, slug) DO UPDATE SET document_json = excluded.document_json,"
            " version = excluded.version, created_at_ms = excluded.created_at_ms,"
            " updated_at_ms = excluded.updated_at_ms, deleted_at_ms = NULL",
            (registry_slug, slug, document_json, version, at_ms, at_ms),
        )

    def change(self, registry_slug: str, slug: str, document_json: str, version: int, at_ms: int) -> None:
        self.conn.execute(
            "UPDATE profiles SET document_json = %s, version = %s, updated_at_ms = %s"
            " WHERE registry_slug = %s AND slug = %s",
            (document_json, version, at_ms, registry_slug, slug),
        )

    def tombstone(self, registry_slug: str, slug: str, at_ms: int) -> None:
        self.conn.execute(
            "UPDATE profiles SET deleted_at_ms = %s, updated_at_ms = %s"
            " WHERE registry_slug = %s AND slug = %s",
            (at_ms, at_ms, registry_slug, slug),
        )


class PostgresProfileStore(ProfileStore):
    """The profiles of the writable registries in a PostgreSQL database migrated with :data:`PROFILES`.

    Methods block; call them off-loop. The :class:`Database` stays the caller's: :meth:`close` leaves it open.
    """

    def __init__(self, db: Database, *, tools: ToolRegistry | None = None) -> None:
        super().__init__(label=db.label, origin=db.label, source=None, tools=tools)
        self.db = db

    def close(self) -> None:
        """Nothing to release: the connections belong to the database's pool."""

    def _failed(self, exc: psycopg.Error) -> StoreError:
        return StoreError(f"{self.label}: profiles: {str(exc).strip().splitlines()[0]}")

    # --- reads ------------------------------------------------------------------------------------

    def registry_slugs(self) -> list[str]:
        try:
            with self.db.connection() as conn:
                rows = conn.execute("SELECT slug FROM profile_registries ORDER BY slug").fetchall()
        except psycopg.Error as exc:
            raise self._failed(exc) from exc
        return [str(r[0]) for r in rows]

    def _live_rows(self, registry_slug: str) -> list[tuple[str, str, int]]:
        try:
            with self.db.connection() as conn:
                rows = conn.execute(
                    "SELECT slug, document_json, version FROM profiles"
                    " WHERE registry_slug = %s AND deleted_at_ms IS NULL ORDER BY slug",
                    (registry_slug,),
                ).fetchall()
        except psycopg.Error as exc:
            raise self._failed(exc) from exc
        return [(str(slug), str(doc), int(version)) for slug, doc, version in rows]

    # --- writes -----------------------------------------------------------------------------------

    def _transaction(self, fn: Callable[[ProfileTransaction], T]) -> T:
        try:
            with self.db.connection() as conn:
                return fn(_PostgresTransaction(conn))
        except psycopg.Error as exc:
            raise self._failed(exc) from exc


def open_pg_profile_store(db: Database, registries: Registries) -> ProfileWriter:
    """Attach the registries kept in ``db`` and return their writer; raises on an unmigrated database.

    Blocking. The schema must be current (``migrate(db, [PROFILES, …])`` first); ``writer.close()`` leaves
    ``db`` open.
    """
    require_current(db, [PROFILES])
    return attach_store(PostgresProfileStore(db, tools=registries.tools), registries)


__all__ = ["PROFILES", "PostgresProfileStore", "open_pg_profile_store"]
