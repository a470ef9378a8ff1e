"""Writable profile registries, whatever database keeps them (SQLite ``profiles.db`` or PostgreSQL).

This module holds everything that does not depend on the database: the write errors, validation, the
merge patch, the stored document, the version rules, loading a registry, :class:`ProfileWriter` and the
place of a writable registry among the others. A backend (:mod:`webchat.runtimes.sqlite_registry`,
:mod:`webchat.stores.postgres.profile_store`) supplies the reads and one :class:`ProfileTransaction` per
write; see the SQLite module for the schema and the design.

- **Versions.** A profile is created at version 1, or one above its tombstone: a deleted profile stays as a
  row with ``deleted_at_ms`` set, so a client holding a version of the old profile cannot change the new
  one by accident. Every update adds one. ``update`` and ``delete`` name the version they expect; any
  other current version is :class:`VersionConflict`, and nothing changes.
- **Atomicity.** A backend runs each write's reads and writes in one transaction in which no other write
  to the same registry interleaves (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a row lock on the registry),
  so of two racing writes with the same ``expected_version`` exactly one wins.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

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
from webchat.turns.keys import normalize_slug

T = TypeVar("T")

WRITABLE_REGISTRY_SLUG: Final = "local"
# Document keys a client may write; ``slug`` is the identity and ``version`` is managed by the store.
DOCUMENT_KEYS: Final[tuple[str, ...]] = ("display_name", "description", "runtime", "policy")
# Keys of a GET document that a client may send back unchanged; they are ignored on create.
SERVER_KEYS: Final[tuple[str, ...]] = ("version", "is_default", "registry")


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


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class WritableProfileRegistry(ProfileRegistry):
    """A registry kept in a database. It may be empty: then it has no default profile (404, not a crash).

    ``origin`` names the store that loaded it (:attr:`ProfileStore.origin`); only that store writes to it.
    """

    origin: str = field(default="", compare=False)

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
class StoredRow:
    """One row of ``profiles``: the stored document (parsed), its version, and whether it is a tombstone."""

    slug: str
    document: dict[str, Any]
    version: int
    deleted: bool = False


class ProfileTransaction(Protocol):
    """The statements of one write transaction, in a backend's SQL (see the module docstring)."""

    def lock_registry(self, registry_slug: str) -> bool:
        """Whether ``registry_slug`` is a writable registry; from here on no other write to it interleaves."""
        ...

    def row(self, registry_slug: str, slug: str) -> StoredRow | None:
        """The profile's row, tombstone included; None when it never existed."""
        ...

    def put(self, registry_slug: str, slug: str, document_json: str, version: int, at_ms: int) -> None:
        """Insert a live row, or turn the tombstone into one (created now)."""
        ...

    def change(self, registry_slug: str, slug: str, document_json: str, version: int, at_ms: int) -> None:
        """Replace the live row's document and version."""
        ...

    def tombstone(self, registry_slug: str, slug: str, at_ms: int) -> None:
        """Mark the live row deleted, keeping its version."""
        ...


class ProfileStore(ABC):
    """The profiles of the writable registries in one database. Methods block; call them off-loop.

    ``label`` names the store in messages, ``origin`` marks the registries it loads (a writer writes only
    to those) and ``source`` becomes their ``source``. Subclasses implement the reads and
    :meth:`_transaction`.
    """

    def __init__(
        self, *, label: str, origin: str, source: Path | None, tools: ToolRegistry | None = None
    ) -> None:
        self.label = label
        self.origin = origin
        self.source = source
        self.tools = tools if tools is not None else default_tool_registry()

    @abstractmethod
    def registry_slugs(self) -> list[str]:
        """The writable registries, by slug."""

    @abstractmethod
    def _live_rows(self, registry_slug: str) -> list[tuple[str, str, int]]:
        """``(slug, document_json, version)`` of the registry's live profiles, by slug."""

    @abstractmethod
    def _transaction(self, fn: Callable[[ProfileTransaction], T]) -> T:
        """Run ``fn`` in one write transaction; committed when it returns, rolled back when it raises."""

    @abstractmethod
    def close(self) -> None:
        """Release what the store holds (never a database it was given)."""

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

    def load_registry(self, registry_slug: str = WRITABLE_REGISTRY_SLUG) -> WritableProfileRegistry:
        """The registry as stored, every profile validated again; raises :class:`ProfileError`."""
        profiles: dict[str, Profile] = {}
        for slug, document_json, version in self._live_rows(registry_slug):
            try:
                profiles[slug] = self.validate(registry_slug, slug, json.loads(document_json), version)
            except InvalidProfile as exc:
                raise ProfileError(f"{self.label}: stored profile {slug!r} is invalid: {exc}") from None
        return WritableProfileRegistry(
            slug=registry_slug, profiles=profiles, source=self.source, read_only=False, origin=self.origin
        )

    # --- writes -----------------------------------------------------------------------------------

    def create(self, registry_slug: str, slug: str, document: Mapping[str, Any]) -> Profile:
        """Store a new profile at version 1 (or one above its tombstone); :class:`ProfileExists` if live."""
        _check_storable(document)
        _check_key_env(self.validate(registry_slug, slug, document))  # fail before touching the database

        def txn(t: ProfileTransaction) -> Profile:
            if not t.lock_registry(registry_slug):
                raise ReadOnlyRegistry(f"registry {registry_slug!r} is not a writable registry")
            row = t.row(registry_slug, slug)
            if row is not None and not row.deleted:
                raise ProfileExists(f"profile {slug!r} already exists in registry {registry_slug!r}")
            version = 1 if row is None else row.version + 1
            profile = self.validate(registry_slug, slug, document, version)
            t.put(registry_slug, slug, _dumps(stored_document(profile)), version, now_ms())
            return profile

        return self._transaction(txn)

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

        def txn(t: ProfileTransaction) -> Profile:
            current = _expected_row(t, registry_slug, slug, expected_version)
            merged = merge_patch(current.document, dict(changes))
            profile = _check_key_env(self.validate(registry_slug, slug, merged, current.version + 1))
            t.change(registry_slug, slug, _dumps(stored_document(profile)), profile.version, now_ms())
            return profile

        return self._transaction(txn)

    def delete(self, registry_slug: str, slug: str, expected_version: int) -> None:
        """Delete a profile (keeping a tombstone); the version must be ``expected_version``."""

        def txn(t: ProfileTransaction) -> None:
            _expected_row(t, registry_slug, slug, expected_version)
            t.tombstone(registry_slug, slug, now_ms())

        self._transaction(txn)


def _expected_row(t: ProfileTransaction, registry_slug: str, slug: str, expected_version: int) -> StoredRow:
    # Locking the registry first: the row read below is the latest committed one and stays so.
    row = t.row(registry_slug, slug) if t.lock_registry(registry_slug) else None
    if row is None or row.deleted:
        raise ProfileNotFound(f"unknown profile: {slug!r} in registry {registry_slug!r}")
    if row.version != expected_version:
        raise VersionConflict(f"profile {slug!r} is at version {row.version}, not {expected_version}")
    return row


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
    """The async face of a :class:`ProfileStore` bound to the server's :class:`Registries`.

    Each write runs the store's transaction in a worker thread and then, still under one lock and on the
    calling (event loop) thread, replaces the in-memory registry's profile dict. Readers on the loop
    therefore always see a committed state and never a dict changing under them.
    """

    def __init__(self, store: ProfileStore, registries: Registries) -> None:
        self.store = store
        self.registries = registries
        self._lock: asyncio.Lock | None = None

    def close(self) -> None:
        self.store.close()

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _serves(self, reg: ProfileRegistry | None) -> bool:
        return isinstance(reg, WritableProfileRegistry) and reg.origin == self.store.origin

    def writable(self, registry_slug: str) -> WritableProfileRegistry:
        """The registry to write to; :class:`ReadOnlyRegistry` unless it is one this store serves."""
        reg = self.registries.get(registry_slug)
        if isinstance(reg, WritableProfileRegistry) and not reg.read_only and self._serves(reg):
            return reg
        raise ReadOnlyRegistry(
            f"registry {registry_slug!r} is read-only (YAML or built-in); "
            f"writable registries: {', '.join(self.writable_slugs()) or 'none'}"
        )

    def writable_slugs(self) -> list[str]:
        return [reg.slug for reg in self.registries if self._serves(reg)]

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


def attach_store(store: ProfileStore, registries: Registries) -> ProfileWriter:
    """Attach every registry of ``store`` and return its writer; blocking.

    All registries load (and validate) before any is attached: when a stored profile no longer validates,
    nothing is attached, the store is closed and :class:`ProfileError` raised.
    """
    try:
        loaded = [store.load_registry(slug) for slug in store.registry_slugs()]
    except BaseException:
        store.close()
        raise
    for registry in loaded:
        attach_registry(registries, registry)
    return ProfileWriter(store, registries)
