"""What every auth store shares (security.md): the records, the rules for names, passwords, labels and expiry,
the secrets and their digests, and what each call checks, writes and returns.

A backend (SQLite: :mod:`webchat.auth.store`, PostgreSQL: :mod:`webchat.auth.pg_store`) gives a
:class:`Dialect` and three ways to run statements: ``_read`` and ``_write`` (one transaction each, a unique
constraint's refusal raised as :class:`Conflict`) and ``_touch`` (one best-effort statement). The logic is
written here, once; the backends differ only in how a statement reaches the database.

Nothing secret is stored in clear: passwords as argon2id hashes, API tokens and session cookies as SHA-256
hex digests of their secret. The secrets are random (32 bytes), so a fast digest is enough.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, TypeVar

from argon2 import PasswordHasher

from webchat.auth.passwords import DEFAULT_HASHER, hash_password, needs_rehash, verify_password
from webchat.stores.protocol import StoreError

T = TypeVar("T")

COMPONENT: Final = "auth"
SCHEMA_NAME: Final = "users, api tokens and browser sessions"

ROLES: Final = ("admin", "user")

USERNAME_MAX: Final = 64
PASSWORD_MIN: Final = 8
PASSWORD_MAX: Final = 1024
EXPIRES_DAYS_MAX: Final = 3650
LABEL_MAX: Final = 200
DAY_MS: Final = 86_400_000
# last_used_at_ms / last_seen_ms are written at most this often per token or session: a request that
# only checks a credential does not write to the store.
TOUCH_INTERVAL_MS: Final = 60_000
# Longer than any secret this store hands out ("wct_" + 43 characters, or 43 characters).
SECRET_MAX: Final = 256

TOKEN_PREFIX: Final = "wct_"
_USERNAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

CLOSED_MESSAGE: Final = "auth store is closed"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class User:
    user_id: str  # "u_" + 16 random hex; stable, never reused
    username: str  # as given; unique case-insensitively
    role: str  # "admin" | "user"
    created_at_ms: int
    disabled_at_ms: int  # 0 = enabled

    @property
    def enabled(self) -> bool:
        return self.disabled_at_ms == 0


@dataclass(frozen=True)
class TokenInfo:
    token_id: str  # "tok_" + 12 random hex: what `tokens list` shows and `tokens revoke ID` takes
    user_id: str
    username: str
    label: str
    created_at_ms: int
    expires_at_ms: int  # 0 = never
    revoked_at_ms: int  # 0 = active
    last_used_at_ms: int  # 0 = never used

    def status(self, at_ms: int) -> str:
        """``active``, ``revoked`` or ``expired`` at ``at_ms``."""
        if self.revoked_at_ms:
            return "revoked"
        if self.expires_at_ms and at_ms >= self.expires_at_ms:
            return "expired"
        return "active"


@dataclass(frozen=True)
class Principal:
    """Who a request is. via: "token" | "session" (the server adds "local" and "debug_token")."""

    user_id: str
    username: str
    role: str
    via: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class AuthError(Exception):
    """One line for people (str(exc)) and a stable code (exc.code):
    invalid_username, user_exists, unknown_user, user_disabled, weak_password, unknown_token,
    invalid_expiry, invalid_label."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Conflict(StoreError):
    """A write refused by a unique constraint (another writer got there first)."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _well_formed(secret: object) -> bool:
    """A value that could be a secret this store handed out; anything else is refused before hashing."""
    return isinstance(secret, str) and 0 < len(secret) <= SECRET_MAX and secret.isascii()


def _storable(text: object) -> bool:
    """Text every backend can store and compare: no NUL (PostgreSQL refuses it), encodable as UTF-8."""
    if not isinstance(text, str) or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_username(username: object) -> bool:
    return isinstance(username, str) and _USERNAME_RE.fullmatch(username) is not None


def check_username(username: str) -> str:
    if not isinstance(username, str) or not 1 <= len(username) <= USERNAME_MAX or not _is_username(username):
        raise AuthError(
            "invalid_username",
            f"invalid username {username!r}: 1-{USERNAME_MAX} characters of letters, digits, '.', '_' "
            "and '-', starting with a letter or digit",
        )
    return username


def check_password_rules(password: str) -> str:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AuthError(
            "weak_password", f"the password must have {PASSWORD_MIN} to {PASSWORD_MAX} characters"
        )
    if "\x00" in password:
        raise AuthError("weak_password", "the password must not contain a NUL character")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise AuthError("weak_password", "the password is not valid text (it cannot be UTF-8)") from None
    return password


def check_expires_days(expires_days: int | None) -> int | None:
    if expires_days is None:
        return None
    if (
        isinstance(expires_days, bool)
        or not isinstance(expires_days, int)
        or not 1 <= expires_days <= EXPIRES_DAYS_MAX
    ):
        raise AuthError(
            "invalid_expiry", f"--expires-days must be a whole number of days from 1 to {EXPIRES_DAYS_MAX}"
        )
    return expires_days


def check_label(label: str) -> str:
    if not isinstance(label, str) or len(label) > LABEL_MAX:
        raise AuthError("invalid_label", f"the label must have at most {LABEL_MAX} characters")
    if not _storable(label):
        raise AuthError("invalid_label", "the label must be text without NUL characters")
    return label


def _user(row: Any) -> User:
    user_id, username, role, created, disabled = row
    return User(str(user_id), str(username), str(role), int(created), int(disabled))


def _token(row: Any) -> TokenInfo:
    token_id, user_id, username, label, created, expires, revoked, used = row
    return TokenInfo(
        str(token_id),
        str(user_id),
        str(username),
        str(label),
        int(created),
        int(expires),
        int(revoked),
        int(used),
    )


def _unknown_user(username: str) -> AuthError:
    return AuthError("unknown_user", f"no user named {username!r}")


def _unknown_token(token_id: str) -> AuthError:
    return AuthError("unknown_token", f"no token with id {token_id!r} (see 'web-chat tokens list')")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the shared logic needs of a backend's connection: ``sqlite3`` and ``psycopg`` both have it."""

    def execute(self, sql: Any, params: Any = ..., /) -> Cursor: ...


@dataclass(frozen=True)
class Dialect:
    """How a backend's SQL differs from the statements below, which are written with ``?`` placeholders."""

    param: str  # the placeholder that replaces "?": "?" (sqlite3) or "%s" (psycopg)
    username_is: str  # auth_users.username equals the parameter, case-insensitively
    # Appended to the SELECT of a user row that the transaction then changes (for_update) or relies on
    # (for_share); empty where the transaction already excludes every other writer.
    for_update: str
    for_share: str


_USER_COLUMNS: Final = "user_id, username, role, created_at_ms, disabled_at_ms"
_TOKEN_SELECT: Final = (
    "SELECT t.token_id, t.user_id, u.username, t.label, t.created_at_ms, t.expires_at_ms, "
    "t.revoked_at_ms, t.last_used_at_ms FROM auth_tokens t JOIN auth_users u ON u.user_id = t.user_id"
)


class Statements:
    """Every statement of the auth store in one backend's dialect."""

    def __init__(self, d: Dialect) -> None:
        def sql(text: str) -> str:
            return text.replace("?", d.param)

        by_name = f"SELECT {_USER_COLUMNS} FROM auth_users WHERE {d.username_is}"
        self.user_by_name = sql(by_name)
        self.user_by_name_for_update = sql(by_name + d.for_update)
        self.login = sql(f"SELECT {_USER_COLUMNS}, password_hash FROM auth_users WHERE {d.username_is}")
        self.user_by_id = sql(f"SELECT {_USER_COLUMNS} FROM auth_users WHERE user_id = ?")
        self.session_user = sql(
            "SELECT username, disabled_at_ms FROM auth_users WHERE user_id = ?" + d.for_share
        )
        self.list_users = f"SELECT {_USER_COLUMNS} FROM auth_users ORDER BY created_at_ms, user_id"
        self.insert_user = sql(
            "INSERT INTO auth_users (user_id, username, role, password_hash, created_at_ms, disabled_at_ms) "
            "VALUES (?, ?, ?, ?, ?, 0)"
        )
        self.disable = sql("UPDATE auth_users SET disabled_at_ms = ? WHERE user_id = ?")
        self.enable = sql("UPDATE auth_users SET disabled_at_ms = 0 WHERE user_id = ?")
        self.set_hash = sql("UPDATE auth_users SET password_hash = ? WHERE user_id = ?")
        self.rehash = sql("UPDATE auth_users SET password_hash = ? WHERE user_id = ? AND password_hash = ?")
        self.has_admin = "SELECT 1 FROM auth_users WHERE role = 'admin' AND disabled_at_ms = 0 LIMIT 1"
        # rowid: SQLite's implicit one; an identity column of that name in PostgreSQL.
        self.first_admin = (
            f"SELECT {_USER_COLUMNS} FROM auth_users WHERE role = 'admin' "
            "ORDER BY created_at_ms, rowid LIMIT 1"
        )
        self.insert_token = sql(
            "INSERT INTO auth_tokens (token_id, user_id, secret_sha256, label, created_at_ms, expires_at_ms, "
            "revoked_at_ms, last_used_at_ms) VALUES (?, ?, ?, ?, ?, ?, 0, 0)"
        )
        self.all_tokens = f"{_TOKEN_SELECT} ORDER BY t.created_at_ms, t.token_id"
        self.user_tokens = sql(f"{_TOKEN_SELECT} WHERE t.user_id = ? ORDER BY t.created_at_ms, t.token_id")
        self.revoke = sql("UPDATE auth_tokens SET revoked_at_ms = ? WHERE token_id = ? AND revoked_at_ms = 0")
        self.token_by_id = sql(f"{_TOKEN_SELECT} WHERE t.token_id = ?")
        self.token_principal = sql(
            "SELECT t.token_id, t.expires_at_ms, t.revoked_at_ms, t.last_used_at_ms, u.user_id, u.username, "
            "u.role, u.disabled_at_ms FROM auth_tokens t JOIN auth_users u ON u.user_id = t.user_id "
            "WHERE t.secret_sha256 = ?"
        )
        self.touch_token = sql(
            "UPDATE auth_tokens SET last_used_at_ms = ? WHERE token_id = ? AND last_used_at_ms <= ?"
        )
        self.insert_session = sql(
            "INSERT INTO auth_sessions (session_sha256, user_id, created_at_ms, last_seen_ms) "
            "VALUES (?, ?, ?, ?)"
        )
        self.session_principal = sql(
            "SELECT s.last_seen_ms, u.user_id, u.username, u.role, u.disabled_at_ms FROM auth_sessions s "
            "JOIN auth_users u ON u.user_id = s.user_id WHERE s.session_sha256 = ?"
        )
        self.touch_session = sql(
            "UPDATE auth_sessions SET last_seen_ms = ? WHERE session_sha256 = ? AND last_seen_ms <= ?"
        )
        self.delete_session = sql("DELETE FROM auth_sessions WHERE session_sha256 = ?")
        self.delete_user_sessions = sql("DELETE FROM auth_sessions WHERE user_id = ?")
        self.purge_sessions = sql("DELETE FROM auth_sessions WHERE last_seen_ms < ?")


class AuthStoreBase(ABC):
    """Users, tokens and sessions: the behaviour both backends share (see the module doc).

    Password hashing (tens of milliseconds by design) runs outside any transaction, so that a login does
    not hold up other requests' token checks. ``clock`` (epoch milliseconds) is for tests of expiry.
    """

    statements: ClassVar[Statements]

    def __init__(
        self, *, hasher: PasswordHasher | None = None, clock: Callable[[], int] | None = None
    ) -> None:
        self._hasher = hasher or DEFAULT_HASHER
        self._clock = clock or now_ms
        self._dummy_hash: str | None = None

    # -- what a backend provides ----------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _read(self, fn: Callable[[Connection], T]) -> T:
        """``fn(conn)`` in one read transaction; database errors as StoreError."""

    @abstractmethod
    def _write(self, fn: Callable[[Connection], T]) -> T:
        """``fn(conn)`` in one write transaction; a unique constraint's refusal as Conflict."""

    @abstractmethod
    def _touch(self, sql: str, params: tuple[Any, ...]) -> None:
        """One best-effort write (a last-used time, an expired session): a failure is ignored."""

    # -- plumbing -------------------------------------------------------------------------------------

    def _user_row(self, conn: Connection, username: str, *, for_update: bool = False) -> User | None:
        if not _is_username(username):
            return None  # no stored name looks like it, and every backend can compare it
        sql = self.statements.user_by_name_for_update if for_update else self.statements.user_by_name
        row = conn.execute(sql, (username,)).fetchone()
        return _user(row) if row else None

    def _require_user(self, conn: Connection, username: str, *, for_update: bool = False) -> User:
        user = self._user_row(conn, username, for_update=for_update)
        if user is None:
            raise _unknown_user(username)
        return user

    def _execute(self, sql: str, params: tuple[Any, ...]) -> int:
        """One statement in its own write transaction; returns how many rows it changed."""
        return self._write(lambda conn: conn.execute(sql, params).rowcount)

    # -- users ----------------------------------------------------------------------------------------

    def add_user(self, username: str, password: str, *, admin: bool = False) -> User:
        check_username(username)
        check_password_rules(password)
        existing = self.get_user(username)
        if existing is not None:
            raise AuthError("user_exists", f"a user named {existing.username!r} already exists")
        hashed = hash_password(password, hasher=self._hasher)
        user = User(
            user_id="u_" + secrets.token_hex(8),
            username=username,
            role="admin" if admin else "user",
            created_at_ms=self._clock(),
            disabled_at_ms=0,
        )
        params = (user.user_id, user.username, user.role, hashed, user.created_at_ms)
        try:
            self._execute(self.statements.insert_user, params)
        except Conflict:
            # Another writer added the same name between the check above and this insert.
            raise AuthError("user_exists", f"a user named {username!r} already exists") from None
        return user

    def get_user(self, username: str) -> User | None:
        if not _is_username(username):
            return None
        return self._read(lambda conn: self._user_row(conn, username))

    def user_by_id(self, user_id: str) -> User | None:
        if not _storable(user_id):
            return None

        def read(conn: Connection) -> User | None:
            row = conn.execute(self.statements.user_by_id, (user_id,)).fetchone()
            return _user(row) if row else None

        return self._read(read)

    def list_users(self) -> list[User]:
        return self._read(
            lambda conn: [_user(row) for row in conn.execute(self.statements.list_users).fetchall()]
        )

    def set_disabled(self, username: str, disabled: bool) -> User:
        """Disable (ending the user's browser sessions) or enable a user; returns the user as it is now.

        Disabling an already disabled user keeps the time it was first disabled. Tokens are kept: they
        are refused while the user is disabled and work again once the user is enabled.
        """
        at = self._clock()

        def update(conn: Connection) -> User:
            user = self._require_user(conn, username, for_update=True)
            if disabled and user.enabled:
                conn.execute(self.statements.disable, (at, user.user_id))
            elif not disabled and not user.enabled:
                conn.execute(self.statements.enable, (user.user_id,))
            if disabled:
                conn.execute(self.statements.delete_user_sessions, (user.user_id,))
            return self._require_user(conn, username)

        return self._write(update)

    def set_password(self, username: str, password: str) -> None:
        """Replace the password and end every browser session of the user (tokens are kept)."""
        check_password_rules(password)
        if self.get_user(username) is None:
            raise _unknown_user(username)
        hashed = hash_password(password, hasher=self._hasher)

        def update(conn: Connection) -> None:
            user = self._require_user(conn, username, for_update=True)
            conn.execute(self.statements.set_hash, (hashed, user.user_id))
            conn.execute(self.statements.delete_user_sessions, (user.user_id,))

        self._write(update)

    def has_admin(self) -> bool:
        """Whether an enabled admin exists."""
        return self._read(lambda conn: conn.execute(self.statements.has_admin).fetchone() is not None)

    def first_admin(self) -> User | None:
        """The earliest-created admin, enabled or not (conversations from before users exist are theirs)."""

        def read(conn: Connection) -> User | None:
            row = conn.execute(self.statements.first_admin).fetchone()
            return _user(row) if row else None

        return self._read(read)

    def _dummy(self) -> str:
        # Computed once, on the first login attempt for an unknown user: opening the store stays cheap.
        if self._dummy_hash is None:
            self._dummy_hash = hash_password(secrets.token_urlsafe(16), hasher=self._hasher)
        return self._dummy_hash

    def check_password(self, username: str, password: str) -> User | None:
        """The user, when ``password`` is theirs and they are enabled; None otherwise.

        An unknown user still costs one verification (against a dummy hash) so that the time taken does
        not tell which usernames exist. A hash made with other parameters than the store's is replaced.
        """
        if not isinstance(password, str):
            return None
        row = None
        if _is_username(username):
            row = self._read(lambda conn: conn.execute(self.statements.login, (username,)).fetchone())
        if row is None:
            verify_password(self._dummy(), password, hasher=self._hasher)
            return None
        user, stored = _user(row[:5]), str(row[5])
        if not verify_password(stored, password, hasher=self._hasher) or not user.enabled:
            return None
        if needs_rehash(stored, hasher=self._hasher):
            fresh = hash_password(password, hasher=self._hasher)
            # Only if the hash is still the one verified: a password changed meanwhile stays changed.
            self._execute(self.statements.rehash, (fresh, user.user_id, stored))
        return user

    # -- tokens ---------------------------------------------------------------------------------------

    def create_token(
        self, username: str, *, label: str = "", expires_days: int | None = None
    ) -> tuple[TokenInfo, str]:
        """A new API token for the user: its info and its secret, which is not stored and not shown again."""
        days = check_expires_days(expires_days)
        check_label(label)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        at = self._clock()

        def insert(conn: Connection) -> TokenInfo:
            user = self._require_user(conn, username)
            info = TokenInfo(
                token_id="tok_" + secrets.token_hex(6),
                user_id=user.user_id,
                username=user.username,
                label=label,
                created_at_ms=at,
                expires_at_ms=at + days * DAY_MS if days else 0,
                revoked_at_ms=0,
                last_used_at_ms=0,
            )
            conn.execute(
                self.statements.insert_token,
                (info.token_id, info.user_id, _digest(secret), label, at, info.expires_at_ms),
            )
            return info

        return self._write(insert), secret

    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        """Every token (revoked and expired ones too), or one user's, oldest first."""

        def read(conn: Connection) -> list[TokenInfo]:
            if username is None:
                rows = conn.execute(self.statements.all_tokens).fetchall()
            else:
                user = self._require_user(conn, username)
                rows = conn.execute(self.statements.user_tokens, (user.user_id,)).fetchall()
            return [_token(row) for row in rows]

        return self._read(read)

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revoke a token; revoking it again keeps the first revocation time."""
        if not _storable(token_id):
            raise _unknown_token(token_id)
        at = self._clock()

        def update(conn: Connection) -> TokenInfo:
            conn.execute(self.statements.revoke, (at, token_id))
            row = conn.execute(self.statements.token_by_id, (token_id,)).fetchone()
            if row is None:
                raise _unknown_token(token_id)
            return _token(row)

        return self._write(update)

    def principal_for_token(self, secret: str) -> Principal | None:
        """Who the bearer of ``secret`` is: None unless the token is known, active and its user enabled."""
        if not _well_formed(secret):
            return None
        digest = _digest(secret)
        row = self._read(lambda conn: conn.execute(self.statements.token_principal, (digest,)).fetchone())
        if row is None:
            return None
        token_id, expires, revoked, used, user_id, username, role, disabled = row
        at = self._clock()
        if revoked or (expires and at >= expires) or disabled:
            return None
        if at - used >= TOUCH_INTERVAL_MS:
            self._touch(self.statements.touch_token, (at, token_id, at - TOUCH_INTERVAL_MS))
        return Principal(str(user_id), str(username), str(role), "token")

    # -- browser sessions -----------------------------------------------------------------------------

    def create_session(self, user_id: str) -> str:
        """A new session for an enabled user; returns the cookie value (only its digest is stored)."""
        if not _storable(user_id):
            raise AuthError("unknown_user", f"no user with id {user_id!r}")
        secret = secrets.token_urlsafe(32)
        at = self._clock()

        def insert(conn: Connection) -> None:
            # Locked (where the backend needs it) so that disabling the user or changing their password
            # either sees this session and ends it, or happens first and is seen here.
            found = conn.execute(self.statements.session_user, (user_id,)).fetchone()
            if found is None:
                raise AuthError("unknown_user", f"no user with id {user_id!r}")
            if found[1]:
                raise AuthError("user_disabled", f"user {found[0]!r} is disabled")
            conn.execute(self.statements.insert_session, (_digest(secret), user_id, at, at))

        self._write(insert)
        return secret

    def principal_for_session(self, secret: str, *, idle_timeout_ms: int) -> Principal | None:
        """Who holds the session cookie ``secret``: None for an unknown session, a disabled user, or a
        session idle for longer than ``idle_timeout_ms`` (that one is deleted).

        last_seen is written at most once a minute, so a session may end up to a minute before
        ``idle_timeout_ms`` has passed since its very last request.
        """
        if not _well_formed(secret):
            return None
        digest = _digest(secret)
        row = self._read(lambda conn: conn.execute(self.statements.session_principal, (digest,)).fetchone())
        if row is None:
            return None
        last_seen, user_id, username, role, disabled = row
        at = self._clock()
        if at - last_seen > idle_timeout_ms:
            self._touch(self.statements.delete_session, (digest,))
            return None
        if disabled:
            return None
        if at - last_seen >= TOUCH_INTERVAL_MS:
            self._touch(self.statements.touch_session, (at, digest, at - TOUCH_INTERVAL_MS))
        return Principal(str(user_id), str(username), str(role), "session")

    def end_session(self, secret: str) -> None:
        """Forget a session (logout); an unknown or malformed cookie value changes nothing."""
        if not _well_formed(secret):
            return
        digest = _digest(secret)
        self._execute(self.statements.delete_session, (digest,))

    def purge_sessions(self, *, idle_timeout_ms: int) -> int:
        """Delete every session idle for longer than ``idle_timeout_ms``; returns how many."""
        cutoff = self._clock() - idle_timeout_ms
        return self._execute(self.statements.purge_sessions, (cutoff,))
