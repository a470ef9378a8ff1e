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

import asyncio
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from webchat.runtimes.profiles import (
    BUILTIN_REGISTRY_SLUG,
    Profile,
    ProfileError,
    ProfileRegistry,
    Registries,
    api_key_env_for,
    check_storable,
    key_env_allowed,
    key_env_refusal,
    parse_registry,
)
from webchat.runtimes.resolve import UnknownProfile
from webchat.runtimes.tools import ToolRegistry, default_tool_registry
from webchat.stores.protocol import StoreError
from webchat.stores.sqlite.connection import Writer, connect
from webchat.turns.keys import normalize_slug

PROFILES_DB_NAME: Final = "profiles.db"
WRITABLE_REGISTRY_SLUG: Final = "local"
SCHEMA_VERSION: Final = 1
# Document keys a client may write; ``slug`` is the identity and ``version`` is managed by the store.
DOCUMENT_KEYS: Final[tuple[str, ...]] = ("display_name", "description", "runtime", "policy")
# Keys of a GET document that a client may send back unchanged; they are ignored on create.
SERVER_KEYS: Final[tuple[str, ...]] = ("version", "is_default", "registry")

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


class ProfileWriteError(Exception):
    """A profile write that was refused; ``status`` and ``code`` are the HTTP error (nothing changed)."""

    status: int = 400
    code: str = "invalid_profile"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidProfile(ProfileWriteError):
    status = 400
    code = "invalid_profile"


class KeyEnvNotAllowed(ProfileWriteError):
    status = 400
    code = "api_key_env_not_allowed"


class ProfileExists(ProfileWriteError):
    status = 409
    code = "profile_exists"


class ProfileNotFound(ProfileWriteError):
    status = 404
    code = "unknown_profile"


class VersionConflict(ProfileWriteError):
    status = 409
    code = "version_conflict"


class ReadOnlyRegistry(ProfileWriteError):
    status = 409
    code = "read_only_registry"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class WritableProfileRegistry(ProfileRegistry):
    """A registry backed by SQLite. It may be empty: then it has no default profile (404, not a crash)."""

    @property
    def default_profile_slug(self) -> str:
        if not self.profiles:
            raise UnknownProfile(f"registry {self.slug!r} has no profiles yet")
        return super().default_profile_slug


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge recursively, ``null`` removes a key, others replace."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def stored_document(profile: Profile) -> dict[str, Any]:
    """What a row keeps: the validated profile without slug and version."""
    doc = profile.document()
    return {key: doc[key] for key in DOCUMENT_KEYS}


@dataclass(frozen=True)
class _Row:
    slug: str
    document: dict[str, Any]
    version: int


class SQLiteProfileStore:
    """The profiles of the writable registries in one SQLite file. Methods block; call them off-loop."""

    def __init__(self, path: str | Path, *, tools: ToolRegistry | None = None) -> None:
        self.path = Path(path)
        self.tools = tools if tools is not None else default_tool_registry()
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
            (WRITABLE_REGISTRY_SLUG, _now_ms()),
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._writer.close()

    # --- validation -------------------------------------------------------------------------------

    def validate(
        self, registry_slug: str, slug: str, document: Mapping[str, Any], version: int = 1
    ) -> Profile:
        """The profile ``document`` describes, checked with the YAML rules; raises :class:`InvalidProfile`."""
        body = dict(document)
        body["version"] = version
        try:
            registry = parse_registry(
                {"slug": registry_slug, "profiles": {slug: body}},
                source=f"registry {registry_slug!r}",
                tools=self.tools,
            )
        except ProfileError as exc:
            raise InvalidProfile(str(exc)) from None
        return next(iter(registry.profiles.values()))

    # --- reads ------------------------------------------------------------------------------------

    def registry_slugs(self) -> list[str]:
        conn = connect(self.path, readonly=True)
        try:
            return [str(r[0]) for r in conn.execute("SELECT slug FROM profile_registries ORDER BY slug")]
        finally:
            conn.close()

    def _rows(self, registry_slug: str) -> list[_Row]:
        conn = connect(self.path, readonly=True)
        try:
            rows = conn.execute(
                "SELECT slug, document_json, version FROM profiles"
                " WHERE registry_slug = ? AND deleted_at_ms IS NULL ORDER BY slug",
                (registry_slug,),
            ).fetchall()
        finally:
            conn.close()
        return [_Row(str(slug), json.loads(doc), int(version)) for slug, doc, version in rows]

    def load_registry(self, registry_slug: str = WRITABLE_REGISTRY_SLUG) -> WritableProfileRegistry:
        """The registry as stored, every profile validated again; raises :class:`ProfileError`."""
        profiles: dict[str, Profile] = {}
        for row in self._rows(registry_slug):
            try:
                profiles[row.slug] = self.validate(registry_slug, row.slug, row.document, row.version)
            except InvalidProfile as exc:
                raise ProfileError(f"{self.path}: stored profile {row.slug!r} is invalid: {exc}") from None
        return WritableProfileRegistry(
            slug=registry_slug, profiles=profiles, source=self.path, read_only=False
        )

    # --- writes -----------------------------------------------------------------------------------

    def create(self, registry_slug: str, slug: str, document: Mapping[str, Any]) -> Profile:
        """Store a new profile at version 1 (or one above its tombstone); :class:`ProfileExists` if live."""
        _check_storable(document)
        _check_key_env(self.validate(registry_slug, slug, document))  # fail before touching the database

        def txn(conn: sqlite3.Connection) -> Profile:
            self._require_registry(conn, registry_slug)
            row = conn.execute(
                "SELECT version, deleted_at_ms FROM profiles WHERE registry_slug = ? AND slug = ?",
                (registry_slug, slug),
            ).fetchone()
            if row is not None and row[1] is None:
                raise ProfileExists(f"profile {slug!r} already exists in registry {registry_slug!r}")
            version = 1 if row is None else int(row[0]) + 1
            profile = self.validate(registry_slug, slug, document, version)
            now = _now_ms()
            conn.execute(
                "INSERT INTO profiles(registry_slug, slug, document_json, version, created_at_ms,"
                " updated_at_ms, deleted_at_ms) VALUES (?, ?, ?, ?, ?, ?, NULL)"
                " ON CONFLICT(registry_slug, slug) DO UPDATE SET document_json = excluded.document_json,"
                " version = excluded.version, created_at_ms = excluded.created_at_ms,"
                " updated_at_ms = excluded.updated_at_ms, deleted_at_ms = NULL",
                (registry_slug, slug, _dumps(stored_document(profile)), version, now, now),
            )
            return profile

        return self._writer.run(txn)

    def update(
        self, registry_slug: str, slug: str, changes: Mapping[str, Any], expected_version: int
    ) -> Profile:
        """Merge-patch ``changes`` into the stored document; the version must be ``expected_version``."""
        unknown = sorted(str(k) for k in changes if k not in DOCUMENT_KEYS)
        if unknown:
            raise InvalidProfile(
                f"cannot change {', '.join(unknown)} (changeable: {', '.join(DOCUMENT_KEYS)})"
            )
        _check_storable(changes)

        def txn(conn: sqlite3.Connection) -> Profile:
            current = self._live_row(conn, registry_slug, slug)
            if current.version != expected_version:
                raise VersionConflict(
                    f"profile {slug!r} is at version {current.version}, not {expected_version}"
                )
            merged = merge_patch(current.document, dict(changes))
            profile = _check_key_env(self.validate(registry_slug, slug, merged, current.version + 1))
            conn.execute(
                "UPDATE profiles SET document_json = ?, version = ?, updated_at_ms = ?"
                " WHERE registry_slug = ? AND slug = ?",
                (_dumps(stored_document(profile)), profile.version, _now_ms(), registry_slug, slug),
            )
            return profile

        return self._writer.run(txn)

    def delete(self, registry_slug: str, slug: str, expected_version: int) -> None:
        """Delete a profile (keeping a tombstone); the version must be ``expected_version``."""

        def txn(conn: sqlite3.Connection) -> None:
            current = self._live_row(conn, registry_slug, slug)
            if current.version != expected_version:
                raise VersionConflict(
                    f"profile {slug!r} is at version {current.version}, not {expected_version}"
                )
            now = _now_ms()
            conn.execute(
                "UPDATE profiles SET deleted_at_ms = ?, updated_at_ms = ?"
                " WHERE registry_slug = ? AND slug = ?",
                (now, now, registry_slug, slug),
            )

        self._writer.run(txn)

    @staticmethod
    def _require_registry(conn: sqlite3.Connection, registry_slug: str) -> None:
        if (
            conn.execute("SELECT 1 FROM profile_registries WHERE slug = ?", (registry_slug,)).fetchone()
            is None
        ):
            raise ReadOnlyRegistry(f"registry {registry_slug!r} is not a writable registry")

    @staticmethod
    def _live_row(conn: sqlite3.Connection, registry_slug: str, slug: str) -> _Row:
        row = conn.execute(
            "SELECT document_json, version FROM profiles"
            " WHERE registry_slug = ? AND slug = ? AND deleted_at_ms IS NULL",
            (registry_slug, slug),
        ).fetchone()
        if row is None:
            raise ProfileNotFound(f"unknown profile: {slug!r} in registry {registry_slug!r}")
        return _Row(slug, json.loads(row[0]), int(row[1]))


def _check_key_env(profile: Profile) -> Profile:
    # A write naming a variable off the allow-list is refused outright; a stored one (written before the
    # list changed) still loads, as a profile that cannot run.
    rt = profile.runtime
    name = api_key_env_for(rt.engine, rt.base_url, rt.api_key_env)
    if name is not None and not key_env_allowed(name):
        raise KeyEnvNotAllowed(key_env_refusal(name))
    return profile


def _check_storable(document: Mapping[str, Any]) -> None:
    # Only new writes are checked: rows already stored (NUL was once accepted) must keep loading.
    try:
        check_storable(document, "profile")
    except ProfileError as exc:
        raise InvalidProfile(str(exc)) from None


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _slug(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidProfile(f"{what} must be a string")
    try:
        return normalize_slug(value)
    except ValueError:
        raise InvalidProfile(
            f"invalid {what} {value!r} (lower-case letters, digits, '.', '_', '-')"
        ) from None


class ProfileWriter:
    """The async face of a :class:`SQLiteProfileStore` bound to the server's :class:`Registries`.

    Each write runs the SQLite transaction in a worker thread and then, still under one lock and on the
    calling (event loop) thread, replaces the in-memory registry's profile dict. Readers on the loop
    therefore always see a committed state and never a dict changing under them.
    """

    def __init__(self, store: SQLiteProfileStore, registries: Registries) -> None:
        self.store = store
        self.registries = registries
        self._lock: asyncio.Lock | None = None

    def close(self) -> None:
        self.store.close()

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def writable(self, registry_slug: str) -> WritableProfileRegistry:
        """The registry to write to; :class:`ReadOnlyRegistry` unless it is one this store serves."""
        reg = self.registries.get(registry_slug)
        if isinstance(reg, WritableProfileRegistry) and not reg.read_only and reg.source == self.store.path:
            return reg
        raise ReadOnlyRegistry(
            f"registry {registry_slug!r} is read-only (YAML or built-in); "
            f"writable registries: {', '.join(self.writable_slugs()) or 'none'}"
        )

    def writable_slugs(self) -> list[str]:
        return [
            reg.slug
            for reg in self.registries
            if isinstance(reg, WritableProfileRegistry) and reg.source == self.store.path
        ]

    def default_writable(self) -> str:
        slugs = self.writable_slugs()
        if WRITABLE_REGISTRY_SLUG in slugs:
            return WRITABLE_REGISTRY_SLUG
        if not slugs:
            raise ReadOnlyRegistry("no writable registry is loaded (a YAML file may hide it)")
        return slugs[0]

    async def create(self, registry_slug: str, document: Mapping[str, Any]) -> Profile:
        """Create from a profile document with ``slug`` (GET documents' server keys are ignored)."""
        body = {k: v for k, v in document.items() if k not in SERVER_KEYS}
        slug = _slug(body.pop("slug", None), "profile slug")
        async with self._get_lock():
            reg = self.writable(registry_slug)
            profile = await asyncio.to_thread(self.store.create, reg.slug, slug, body)
            reg.profiles = {**reg.profiles, slug: profile}
        return profile

    async def update(
        self, registry_slug: str, slug: str, changes: Mapping[str, Any], expected_version: int
    ) -> Profile:
        async with self._get_lock():
            reg = self.writable(registry_slug)
            profile = await asyncio.to_thread(self.store.update, reg.slug, slug, changes, expected_version)
            reg.profiles = {**reg.profiles, slug: profile}
        return profile

    async def delete(self, registry_slug: str, slug: str, expected_version: int) -> None:
        async with self._get_lock():
            reg = self.writable(registry_slug)
            await asyncio.to_thread(self.store.delete, reg.slug, slug, expected_version)
            reg.profiles = {k: v for k, v in reg.profiles.items() if k != slug}


def attach_registry(registries: Registries, registry: ProfileRegistry) -> bool:
    """Insert ``registry`` after the built-in registry and before the YAML files (files win).

    Returns False (and adds nothing) when a file already provides a registry with that slug. The
    default registry does not change.
    """
    if registry.slug in registries:
        return False
    default = registries.default_registry
    later = [reg for reg in registries if reg.slug != BUILTIN_REGISTRY_SLUG]
    registries.add(registry)
    for reg in later:
        registries.add(reg)  # re-adding moves it to the end, after ``registry``
    registries.default_registry = default
    return True


def open_profile_store(path: str | Path, registries: Registries) -> ProfileWriter:
    """Open (creating if needed) ``profiles.db`` and attach its registries; raises on a broken file.

    Blocking: call it with ``asyncio.to_thread`` from a lifespan. Close with ``writer.store.close()``.
    """
    store = SQLiteProfileStore(path, tools=registries.tools)
    try:
        for slug in store.registry_slugs():
            attach_registry(registries, store.load_registry(slug))
    except BaseException:
        store.close()
        raise
    return ProfileWriter(store, registries)
