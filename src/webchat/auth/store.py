"""The SQLite auth store: users, API tokens and browser sessions in ``auth.db`` (security.md).

Unlike turns.db and timeline.db, auth.db is not under the serving process's owner lock: ``web-chat
users …`` and ``web-chat tokens …`` write it while ``serve`` runs, so every call reads the file afresh
(WAL, busy_timeout) and a change made by the CLI applies to the server's next request. What is checked,
stored and returned is :mod:`webchat.auth.base`'s, shared with the PostgreSQL store.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from argon2 import PasswordHasher

from webchat.auth.base import (
    CLOSED_MESSAGE,
    COMPONENT,
    DAY_MS,
    EXPIRES_DAYS_MAX,
    LABEL_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    ROLES,
    SCHEMA_NAME,
    SECRET_MAX,
    TOKEN_PREFIX,
    TOUCH_INTERVAL_MS,
    USERNAME_MAX,
    AuthError,
    AuthStoreBase,
    Conflict,
    Connection,
    Dialect,
    Principal,
    Statements,
    TokenInfo,
    User,
    check_expires_days,
    check_label,
    check_password_rules,
    check_username,
    now_ms,
)
from webchat.stores.protocol import SchemaTooNewError, StoreError
from webchat.stores.sqlite.connection import connect, run_in_transaction
from webchat.stores.sqlite.turn_schema import VERSION_TABLES_DDL, recorded_version

T = TypeVar("T")

AUTH_DB_NAME: Final = "auth.db"
SCHEMA_VERSION: Final = 1

_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS auth_users (
    user_id TEXT PRIMARY KEY,
    username TEXT NOT NULL COLLATE NOCASE UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    disabled_at_ms INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS auth_tokens (
    token_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES auth_users (user_id),
    secret_sha256 TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL DEFAULT 0,
    revoked_at_ms INTEGER NOT NULL DEFAULT 0,
    last_used_at_ms INTEGER NOT NULL DEFAULT 0
)""",
    "CREATE INDEX IF NOT EXISTS auth_tokens_user ON auth_tokens (user_id)",
    """CREATE TABLE IF NOT EXISTS auth_sessions (
    session_sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES auth_users (user_id),
    created_at_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS auth_sessions_user ON auth_sessions (user_id)",
)


class SQLiteAuthStore(AuthStoreBase):
    """Users, tokens and sessions in one SQLite file, safe to call from several threads.

    One connection guarded by one lock: writes are rare and each call is one or two indexed statements.
    Every write transaction is ``BEGIN IMMEDIATE``, so it excludes other writers, in this process and in
    others, without row locks. ``clock`` (epoch milliseconds) is for tests of expiry.
    """

    # NOCASE: username's column collation.
    statements = Statements(Dialect(param="?", username_is="username = ?", for_update="", for_share=""))

    def __init__(
        self, path: Path, *, hasher: PasswordHasher | None = None, clock: Callable[[], int] | None = None
    ) -> None:
        super().__init__(hasher=hasher, clock=clock)
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Password hashes are for this account only; SQLite gives the -wal and -shm files the
            # database file's mode.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            os.close(fd)
        conn = connect(self.path)
        try:
            version = recorded_version(conn, COMPONENT)
            if version > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"{self.path}: auth schema version {version} is newer than this web-chat supports "
                    f"({SCHEMA_VERSION}); upgrade web-chat instead of opening this store with an older "
                    "release"
                )
            if version < SCHEMA_VERSION:
                run_in_transaction(conn, self._create_schema)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{self.path}: cannot use auth store: {exc}") from exc
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        for ddl in (*VERSION_TABLES_DDL, *_DDL):
            conn.execute(ddl)
        conn.execute(
            "INSERT OR IGNORE INTO webchat_schema_migrations (component, version, name, applied_at_ms) "
            "VALUES (?, ?, ?, ?)",
            (COMPONENT, SCHEMA_VERSION, SCHEMA_NAME, self._clock()),
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- plumbing -------------------------------------------------------------------------------------

    def _conn_or_fail(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(CLOSED_MESSAGE)
        return self._conn

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._lock:
            try:
                return fn(self._conn_or_fail())
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot read auth store: {exc}") from exc

    def _write(self, fn: Callable[[Connection], T]) -> T:
        with self._lock:
            try:
                return run_in_transaction(self._conn_or_fail(), fn)
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"{self.path}: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot write auth store: {exc}") from exc

    def _touch(self, sql: str, params: tuple[Any, ...]) -> None:
        """One best-effort UPDATE of a last-used time: a busy file must not fail the request it records."""
        with self._lock:
            if self._conn is None:
                return
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute(sql, params)


__all__ = [
    "AUTH_DB_NAME",
    "COMPONENT",
    "DAY_MS",
    "EXPIRES_DAYS_MAX",
    "LABEL_MAX",
    "PASSWORD_MAX",
    "PASSWORD_MIN",
    "ROLES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SECRET_MAX",
    "TOKEN_PREFIX",
    "TOUCH_INTERVAL_MS",
    "USERNAME_MAX",
    "AuthError",
    "Principal",
    "SQLiteAuthStore",
    "TokenInfo",
    "User",
    "check_expires_days",
    "check_label",
    "check_password_rules",
    "check_username",
    "now_ms",
]
