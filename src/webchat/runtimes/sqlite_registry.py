"""Writable profile registries kept in SQLite (``<data dir>/profiles.db``).

YAML registries (and the built-in one) are read-only; the profiles of a SQLite registry can be created,
changed and deleted over HTTP (http-api.md "Profiles"). Design:

- **Schema** (``PRAGMA user_version = 1``)::

      profile_registries(slug PK, created_at_ms)
      profiles(registry_slug → profile_registries.slug, slug, document_json, version,
               created_at_ms, updated_at_ms, deleted_at_ms NULL, PK(registry_slug, slug))

  ``document_json`` is the validated profile without slug and version: ``{display_name, description,
  runtime, policy}``. A deleted profile stays as a tombstone (``deleted_at_ms`` set) so that creating it
  again continues its version numbers: a client holding a version of the old profile cannot change the
  new one by accident.
- **One writable registry**, slug ``local`` (:data:`WRITABLE_REGISTRY_SLUG`), is created when missing.
- **Shared with PostgreSQL** (:mod:`webchat.runtimes.profile_store`): validation, versions, errors,
  :class:`ProfileWriter` and the load order below; this module holds the SQLite schema and statements.
- **Validation** is the YAML rule set: every document goes through :func:`parse_registry` (pydantic
  models, tool names, secret-looking option keys, URLs with credentials, ``api_key_env`` as a NAME).
  Profiles never hold secret values, so none is ever stored. Rows are validated again when loaded; a
  row that no longer validates stops the server from starting, like a broken YAML file would.
- **Load order**: :func:`open_profile_store` puts the SQLite registry right after the built-in registry
  and before the ``--profiles`` files, so a YAML file wins over it ("later wins"): a file whose registry
  slug is ``local`` hides the SQLite registry entirely (writes then answer ``read_only_registry``), and an
  unqualified profile slug found in a file and in ``local`` resolves to the file's profile. The SQLite
  registry never becomes the default registry (it may be empty).
- **Writes** go through one :class:`~webchat.stores.sqlite.connection.Writer`; the version check
  (``expected_version``) runs inside the ``BEGIN IMMEDIATE`` transaction, so two writers cannot both
  win. The in-memory :class:`ProfileRegistry` is updated after the commit, on the event loop thread,
  under one lock (:class:`ProfileWriter`), so ``POST /chat/{slug}`` sees a new profile at once. Two
  server processes sharing a data dir never lose an update, but each one only sees its own writes until
  it restarts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final

from webchat.runtimes.profile_store import (
    DOCUMENT_KEYS,
    SERVER_KEYS,
    WRITABLE_REGISTRY_SLUG,
    InvalidProfile,
    KeyEnvNotAllowed,
    ProfileExists,
    ProfileNotFound,
    ProfileStore,
    ProfileTransaction,
    ProfileWriteError,
    ProfileWriter,
    ReadOnlyRegistry,
    StoredRow,
    T,
    VersionConflict,
    WritableProfileRegistry,
    attach_registry,
    attach_store,
    merge_patch,
    now_ms,
    stored_document,
)
from webchat.runtimes.profiles import Registries
from webchat.runtimes.tools import ToolRegistry
from webchat.stores.protocol import StoreError
from webchat.stores.sqlite.connection import Writer, connect

PROFILES_DB_NAME: Final = "profiles.db"
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS profile_registries (
    slug          TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    registry_slug TEXT NOT NULL REFERENCES profile_registries(slug) ON DELETE CASCADE,
    slug          TEXT NOT NULL,
    document_json TEXT NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER,
    PRIMARY KEY (registry_slug, slug)
);
"""


class _SQLiteTransaction:
    """:class:`ProfileTransaction` on a connection inside ``BEGIN IMMEDIATE`` (writes are serialized)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def lock_registry(self, registry_slug: str) -> bool:
        found = self.conn.execute("SELECT 1 FROM profile_registries WHERE slug = ?", (registry_slug,))
        return found.fetchone() is not None

    def row(self, registry_slug: str, slug: str) -> StoredRow | None:
        found = self.conn.execute(
            "SELECT document_json, version, deleted_at_ms FROM profiles WHERE registry_slug = ? AND slug = ?",
            (registry_slug, slug),
        ).fetchone()
        if found is None:
            return None
        return StoredRow(slug, json.loads(found[0]), int(found[1]), deleted=found[2] is not None)

    def put(self, registry_slug: str, slug: str, document_json: str, version: int, at_ms: int) -> None:
        self.conn.execute(
            "INSERT INTO profiles(registry_slug, slug, document_json, version, created_at_ms,"
            " updated_at_ms, deleted_at_ms) VALUES (?, ?, ?, ?, ?, ?, NULL)"
            " ON CONFLICT(registry_slug, slug) DO UPDATE SET document_json = excluded.document_json,"
            " version = excluded.version, created_at_ms = excluded.created_at_ms,"
            " updated_at_ms = excluded.updated_at_ms, deleted_at_ms = NULL",
            (registry_slug, slug, document_json, version, at_ms, at_ms),
        )

    def change(self, registry_slug: str, slug: str, document_json: str, version: int, at_ms: int) -> None:
        self.conn.execute(
            "UPDATE profiles SET document_json = ?, version = ?, updated_at_ms = ?"
            " WHERE registry_slug = ? AND slug = ?",
            (document_json, version, at_ms, registry_slug, slug),
        )

    def tombstone(self, registry_slug: str, slug: str, at_ms: int) -> None:
        self.conn.execute(
            "UPDATE profiles SET deleted_at_ms = ?, updated_at_ms = ? WHERE registry_slug = ? AND slug = ?",
            (at_ms, at_ms, registry_slug, slug),
        )


class SQLiteProfileStore(ProfileStore):
    """The profiles of the writable registries in one SQLite file. Methods block; call them off-loop."""

    def __init__(self, path: str | Path, *, tools: ToolRegistry | None = None) -> None:
        self.path = Path(path)
        super().__init__(label=str(self.path), origin=str(self.path), source=self.path, tools=tools)
        self._writer = Writer(self.path, name="webchat-profiles-writer")
        try:
            self._writer.run(self._migrate)
        except BaseException:
            self._writer.close()
            raise

    # --- schema -----------------------------------------------------------------------------------

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"profiles database has schema version {found}; this release knows {SCHEMA_VERSION}"
            )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT OR IGNORE INTO profile_registries(slug, created_at_ms) VALUES (?, ?)",
            (WRITABLE_REGISTRY_SLUG, now_ms()),
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._writer.close()

    # --- reads ------------------------------------------------------------------------------------

    def registry_slugs(self) -> list[str]:
        conn = connect(self.path, readonly=True)
        try:
            return [str(r[0]) for r in conn.execute("SELECT slug FROM profile_registries ORDER BY slug")]
        finally:
            conn.close()

    def _live_rows(self, registry_slug: str) -> list[tuple[str, str, int]]:
        conn = connect(self.path, readonly=True)
        try:
            rows = conn.execute(
                "SELECT slug, document_json, version FROM profiles"
                " WHERE registry_slug = ? AND deleted_at_ms IS NULL ORDER BY slug",
                (registry_slug,),
            ).fetchall()
        finally:
            conn.close()
        return [(str(slug), str(doc), int(version)) for slug, doc, version in rows]

    # --- writes -----------------------------------------------------------------------------------

    def _transaction(self, fn: Callable[[ProfileTransaction], T]) -> T:
        return self._writer.run(lambda conn: fn(_SQLiteTransaction(conn)))


def open_profile_store(path: str | Path, registries: Registries) -> ProfileWriter:
    """Open (creating if needed) ``profiles.db`` and attach its registries; raises on a broken file.

    Blocking: call it with ``asyncio.to_thread`` from a lifespan. Close with ``writer.store.close()``.
    """
    return attach_store(SQLiteProfileStore(path, tools=registries.tools), registries)


__all__ = [
    "DOCUMENT_KEYS",
    "PROFILES_DB_NAME",
    "SCHEMA_VERSION",
    "SERVER_KEYS",
    "WRITABLE_REGISTRY_SLUG",
    "InvalidProfile",
    "KeyEnvNotAllowed",
    "ProfileExists",
    "ProfileNotFound",
    "ProfileWriteError",
    "ProfileWriter",
    "ReadOnlyRegistry",
    "SQLiteProfileStore",
    "VersionConflict",
    "WritableProfileRegistry",
    "attach_registry",
    "merge_patch",
    "open_profile_store",
    "stored_document",
]
