"""The auth store protocol, the same tests against SQLite (a file) and PostgreSQL (a real server).

Users, passwords, tokens, sessions, several stores on one backend, threads, races, what is stored, and a
schema with the same table, column and index names on both.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher

from webchat.auth.base import SCHEMA_NAME, AuthStoreBase
from webchat.auth.passwords import make_hasher
from webchat.auth.pg_store import AUTH_COMPONENT, PostgresAuthStore
from webchat.auth.store import (
    AUTH_DB_NAME,
    DAY_MS,
    TOUCH_INTERVAL_MS,
    AuthError,
    Principal,
    SQLiteAuthStore,
)
from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import migrate
from webchat.stores.protocol import StoreError

T0 = 1_700_000_000_000
PASSWORD = "correct horse battery"
# Cheap parameters: these tests add many users; the defaults are checked in tests/unit/test_auth_store.py.
FAST = make_hasher(time_cost=1, memory_cost=8192, parallelism=1)
TABLES = ("auth_users", "auth_tokens", "auth_sessions")


class Clock:
    """Epoch milliseconds that only move when a test says so."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class Backend:
    """One store's storage: opens stores on it (each on its own connections, like another process) and
    reads its tables directly."""

    name = ""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.opened: list[AuthStoreBase] = []

    def open(self, *, hasher: PasswordHasher = FAST, clock: Callable[[], int] | None = None) -> AuthStoreBase:
        store = self._open(hasher, clock or self.clock)
        self.opened.append(store)
        return store

    def _open(self, hasher: PasswordHasher, clock: Callable[[], int]) -> AuthStoreBase:
        raise NotImplementedError

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def close(self) -> None:
        for store in self.opened:
            store.close()


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path, clock: Clock) -> None:
        super().__init__(clock)
        self.path = path

    def _open(self, hasher: PasswordHasher, clock: Callable[[], int]) -> AuthStoreBase:
        return SQLiteAuthStore(self.path, hasher=hasher, clock=clock)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, dsn: str, clock: Clock) -> None:
        super().__init__(clock)
        self.dsn = dsn
        self.databases: list[Database] = []
        migrate(self._database(), [AUTH_COMPONENT])

    def _database(self) -> Database:
        db = Database(self.dsn, max_size=4)
        self.databases.append(db)
        return db

    def _open(self, hasher: PasswordHasher, clock: Callable[[], int]) -> AuthStoreBase:
        return PostgresAuthStore(self._database(), hasher=hasher, clock=clock)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]

    def close(self) -> None:
        super().close()
        for db in self.databases:
            db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Backend]:
    b: Backend
    if request.param == "sqlite":
        b = SQLiteBackend(tmp_path / "data" / AUTH_DB_NAME, clock)
    else:
        b = PostgresBackend(request.getfixturevalue("pg_dsn"), clock)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def store(backend: Backend) -> AuthStoreBase:
    return backend.open()


def code_of(fn: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(AuthError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    assert str(info.value) and "\n" not in str(info.value)
    return info.value.code


def run_together(*fns: Callable[[], object]) -> list[object]:
    """Each fn in its own thread, released at once; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(fns))
    results: list[object] = [None] * len(fns)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fns[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- users --------------------------------------------------------------------------------------------


def test_add_user_and_look_it_up_case_insensitively(store: AuthStoreBase) -> None:
    user = store.add_user("Alice.W-1_", PASSWORD, admin=True)
    assert user.username == "Alice.W-1_" and user.role == "admin" and user.enabled
    assert user.created_at_ms == T0 and user.disabled_at_ms == 0
    assert len(user.user_id) == 18 and user.user_id.startswith("u_") and int(user.user_id[2:], 16) >= 0
    assert store.get_user("alice.w-1_") == user
    assert store.get_user("ALICE.W-1_") == user
    assert store.user_by_id(user.user_id) == user
    assert store.get_user("bob") is None and store.user_by_id("u_0000000000000000") is None
    assert store.add_user("bob", PASSWORD).role == "user"


@pytest.mark.parametrize("user_id", ["", "u_\x00", "u_\udcff", "U_" + "0" * 16])
def test_user_by_id_of_no_user(store: AuthStoreBase, user_id: str) -> None:
    store.add_user("alice", PASSWORD)
    assert store.user_by_id(user_id) is None


@pytest.mark.parametrize(
    "name",
    ["", "-alice", ".alice", "_alice", "al ice", "alice!", "élodie", "a" * 65, "alice\n", "al/ice", "a\x00"],
)
def test_invalid_usernames(store: AuthStoreBase, name: str) -> None:
    assert code_of(store.add_user, name, PASSWORD) == "invalid_username"
    assert store.list_users() == []
    assert store.get_user(name) is None
    assert store.check_password(name, PASSWORD) is None


def test_username_length_limits(store: AuthStoreBase) -> None:
    assert store.add_user("a", PASSWORD).username == "a"
    assert store.add_user("9" * 64, PASSWORD).username == "9" * 64


def test_user_exists_case_insensitively(store: AuthStoreBase) -> None:
    store.add_user("alice", PASSWORD)
    assert code_of(store.add_user, "ALICE", PASSWORD) == "user_exists"
    assert [u.username for u in store.list_users()] == ["alice"]


@pytest.mark.parametrize("password", ["", "short7!", "x" * 1025, "eight\x00chars", "surrogate\udcff"])
def test_weak_passwords(store: AuthStoreBase, password: str) -> None:
    assert code_of(store.add_user, "alice", password) == "weak_password"
    assert store.get_user("alice") is None


def test_password_length_limits(store: AuthStoreBase) -> None:
    store.add_user("alice", "8 chars!")
    store.add_user("bob", "é" * 1024)
    assert store.check_password("alice", "8 chars!") is not None
    assert store.check_password("bob", "é" * 1024) is not None


def test_list_users_in_creation_order(store: AuthStoreBase, clock: Clock) -> None:
    for name in ["carol", "alice", "bob"]:
        store.add_user(name, PASSWORD)
        clock.advance(1)
    assert [u.username for u in store.list_users()] == ["carol", "alice", "bob"]


def test_disable_and_enable(store: AuthStoreBase, clock: Clock) -> None:
    store.add_user("alice", PASSWORD)
    clock.advance(5)
    disabled = store.set_disabled("alice", True)
    assert not disabled.enabled and disabled.disabled_at_ms == T0 + 5
    clock.advance(5)
    # Disabling again keeps the first time.
    assert store.set_disabled("ALICE", True).disabled_at_ms == T0 + 5
    assert store.check_password("alice", PASSWORD) is None
    assert store.set_disabled("alice", False).enabled
    assert store.check_password("alice", PASSWORD) is not None
    assert code_of(store.set_disabled, "nobody", True) == "unknown_user"
    assert code_of(store.set_disabled, "no\x00body", True) == "unknown_user"


def test_has_admin_counts_only_enabled_admins_and_first_admin_is_the_earliest(
    store: AuthStoreBase, clock: Clock
) -> None:
    assert not store.has_admin() and store.first_admin() is None
    store.add_user("user1", PASSWORD)
    assert not store.has_admin() and store.first_admin() is None
    clock.advance(1)
    first = store.add_user("root", PASSWORD, admin=True)
    clock.advance(1)
    store.add_user("root2", PASSWORD, admin=True)
    assert store.has_admin()
    store.set_disabled("root", True)
    assert store.has_admin()
    store.set_disabled("root2", True)
    assert not store.has_admin()
    first_admin = store.first_admin()
    assert first_admin is not None and first_admin.user_id == first.user_id


def test_first_admin_among_admins_created_in_the_same_millisecond(store: AuthStoreBase) -> None:
    first = store.add_user("zed", PASSWORD, admin=True)
    store.add_user("amy", PASSWORD, admin=True)
    # Changing the first one (a new row version in PostgreSQL) does not change the order.
    store.set_disabled("zed", True)
    store.set_disabled("zed", False)
    store.set_password("zed", "a new password")
    first_admin = store.first_admin()
    assert first_admin is not None and first_admin.user_id == first.user_id


def test_check_password(store: AuthStoreBase) -> None:
    alice = store.add_user("alice", PASSWORD)
    assert store.check_password("alice", PASSWORD) == alice
    assert store.check_password("Alice", PASSWORD) == alice
    assert store.check_password("alice", PASSWORD + "x") is None
    assert store.check_password("nobody", PASSWORD) is None
    assert store.check_password("not a name!", PASSWORD) is None
    assert store.check_password("alice", "") is None
    assert store.check_password("alice", "\x00\udcff") is None


def test_set_password(store: AuthStoreBase) -> None:
    store.add_user("alice", PASSWORD)
    store.set_password("alice", "a new password")
    assert store.check_password("alice", PASSWORD) is None
    assert store.check_password("alice", "a new password") is not None
    assert code_of(store.set_password, "alice", "short") == "weak_password"
    assert code_of(store.set_password, "nobody", "a new password") == "unknown_user"


def test_check_password_rehashes_a_hash_made_with_other_parameters(backend: Backend) -> None:
    backend.open().add_user("alice", PASSWORD)
    stronger = make_hasher(time_cost=2, memory_cost=8192, parallelism=1)
    store = backend.open(hasher=stronger)
    assert store.check_password("alice", "wrong password") is None
    before = backend.rows("SELECT password_hash FROM auth_users")
    assert len(before) == 1 and str(before[0][0]).startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert store.check_password("alice", PASSWORD) is not None
    after = backend.rows("SELECT password_hash FROM auth_users")
    assert len(after) == 1 and str(after[0][0]).startswith("$argon2id$v=19$m=8192,t=2,p=1$")
    assert store.check_password("alice", PASSWORD) is not None
    assert backend.rows("SELECT password_hash FROM auth_users") == after


def test_unknown_user_login_still_verifies_a_hash(store: AuthStoreBase) -> None:
    """No timing assertion: the dummy hash exists only once an unknown user was tried, and is argon2."""
    assert store._dummy_hash is None
    assert store.check_password("nobody", PASSWORD) is None
    dummy = store._dummy_hash
    assert dummy is not None and dummy.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    store.check_password("nobody-else", PASSWORD)
    assert store._dummy_hash == dummy


# -- tokens -------------------------------------------------------------------------------------------


def test_token_lifecycle(store: AuthStoreBase, clock: Clock) -> None:
    alice = store.add_user("alice", PASSWORD, admin=True)
    info, secret = store.create_token("ALICE", label="ci")
    assert secret.startswith("wct_") and len(secret) == 4 + 43
    assert info.token_id.startswith("tok_") and len(info.token_id) == 16
    assert (info.user_id, info.username, info.label) == (alice.user_id, "alice", "ci")
    assert (info.created_at_ms, info.expires_at_ms, info.revoked_at_ms, info.last_used_at_ms) == (T0, 0, 0, 0)
    assert store.list_tokens() == [info]
    assert store.principal_for_token(secret) == Principal(alice.user_id, "alice", "admin", "token")
    assert store.principal_for_token(secret).is_admin  # type: ignore[union-attr]
    revoked = store.revoke_token(info.token_id)
    assert revoked.revoked_at_ms == T0 and revoked.status(T0) == "revoked"
    assert store.principal_for_token(secret) is None
    clock.advance(10)
    assert store.revoke_token(info.token_id).revoked_at_ms == T0
    assert code_of(store.revoke_token, "tok_000000000000") == "unknown_token"
    assert code_of(store.revoke_token, "tok_\x00") == "unknown_token"


def test_token_of_a_plain_user_is_not_admin(store: AuthStoreBase) -> None:
    store.add_user("bob", PASSWORD)
    _, secret = store.create_token("bob")
    principal = store.principal_for_token(secret)
    assert principal is not None and principal.role == "user" and not principal.is_admin


def test_token_expiry(store: AuthStoreBase, clock: Clock) -> None:
    store.add_user("alice", PASSWORD)
    info, secret = store.create_token("alice", expires_days=2)
    assert info.expires_at_ms == T0 + 2 * DAY_MS
    clock.advance(2 * DAY_MS - 1)
    assert store.principal_for_token(secret) is not None
    clock.advance(1)
    assert store.principal_for_token(secret) is None
    assert store.list_tokens()[0].status(clock()) == "expired"


@pytest.mark.parametrize("days", [0, -1, 3651, True])
def test_invalid_expiry(store: AuthStoreBase, days: int) -> None:
    store.add_user("alice", PASSWORD)
    assert code_of(store.create_token, "alice", expires_days=days) == "invalid_expiry"
    assert store.list_tokens() == []


def test_expiry_limits(store: AuthStoreBase) -> None:
    store.add_user("alice", PASSWORD)
    assert store.create_token("alice", expires_days=1)[0].expires_at_ms == T0 + DAY_MS
    assert store.create_token("alice", expires_days=3650)[0].expires_at_ms == T0 + 3650 * DAY_MS


def test_token_for_unknown_user_and_invalid_labels(store: AuthStoreBase) -> None:
    assert code_of(store.create_token, "nobody") == "unknown_user"
    store.add_user("alice", PASSWORD)
    assert code_of(store.create_token, "alice", label="x" * 201) == "invalid_label"
    assert code_of(store.create_token, "alice", label="nul\x00") == "invalid_label"
    assert code_of(store.create_token, "alice", label="\udcff") == "invalid_label"
    assert code_of(store.list_tokens, "nobody") == "unknown_user"
    assert store.list_tokens() == []
    assert store.create_token("alice", label="é" * 200)[0].label == "é" * 200
    assert [t.label for t in store.list_tokens()] == ["é" * 200]


def test_disabled_user_tokens_are_refused_until_enabled(store: AuthStoreBase) -> None:
    store.add_user("alice", PASSWORD)
    _, secret = store.create_token("alice")
    store.set_disabled("alice", True)
    assert store.principal_for_token(secret) is None
    store.set_disabled("alice", False)
    assert store.principal_for_token(secret) is not None


def test_last_used_is_written_at_most_once_a_minute(store: AuthStoreBase, clock: Clock) -> None:
    store.add_user("alice", PASSWORD)
    info, secret = store.create_token("alice")
    assert store.principal_for_token(secret) is not None
    assert store.list_tokens()[0].last_used_at_ms == T0
    clock.advance(TOUCH_INTERVAL_MS - 1)
    assert store.principal_for_token(secret) is not None
    assert store.list_tokens()[0].last_used_at_ms == T0
    clock.advance(1)
    assert store.principal_for_token(secret) is not None
    assert store.list_tokens()[0].last_used_at_ms == T0 + TOUCH_INTERVAL_MS
    assert info.last_used_at_ms == 0


def test_list_tokens_all_or_one_user(store: AuthStoreBase, clock: Clock) -> None:
    store.add_user("alice", PASSWORD)
    store.add_user("bob", PASSWORD)
    a1, _ = store.create_token("alice", label="one")
    clock.advance(1)
    b1, _ = store.create_token("bob")
    clock.advance(1)
    a2, _ = store.create_token("alice", label="two")
    assert [t.token_id for t in store.list_tokens()] == [a1.token_id, b1.token_id, a2.token_id]
    assert [t.token_id for t in store.list_tokens("Alice")] == [a1.token_id, a2.token_id]
    assert [t.token_id for t in store.list_tokens("bob")] == [b1.token_id]


@pytest.mark.parametrize("secret", ["", "wct_", "wct_" + "a" * 5000, "wct_é", "\x00", "wct_\udcff"])
def test_malformed_secrets_are_refused(store: AuthStoreBase, secret: str) -> None:
    alice = store.add_user("alice", PASSWORD)
    store.create_token("alice")
    cookie = store.create_session(alice.user_id)
    assert store.principal_for_token(secret) is None
    assert store.principal_for_session(secret, idle_timeout_ms=DAY_MS) is None
    store.end_session(secret)
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is not None


def test_a_session_cookie_is_not_a_token_and_a_token_is_not_a_session(store: AuthStoreBase) -> None:
    alice = store.add_user("alice", PASSWORD)
    _, token = store.create_token("alice")
    cookie = store.create_session(alice.user_id)
    assert store.principal_for_token(cookie) is None
    assert store.principal_for_session(token, idle_timeout_ms=DAY_MS) is None


# -- sessions -----------------------------------------------------------------------------------------


def test_session_lifecycle(store: AuthStoreBase) -> None:
    alice = store.add_user("alice", PASSWORD)
    cookie = store.create_session(alice.user_id)
    assert len(cookie) == 43
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) == Principal(
        alice.user_id, "alice", "user", "session"
    )
    store.end_session(cookie)
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
    store.end_session(cookie)


def test_idle_session_expires_and_is_deleted(store: AuthStoreBase, backend: Backend, clock: Clock) -> None:
    alice = store.add_user("alice", PASSWORD)
    cookie = store.create_session(alice.user_id)
    idle = 30 * TOUCH_INTERVAL_MS
    clock.advance(idle)
    assert store.principal_for_session(cookie, idle_timeout_ms=idle) is not None  # and touched
    clock.advance(idle)
    assert store.principal_for_session(cookie, idle_timeout_ms=idle) is not None
    clock.advance(idle + 1)
    assert store.principal_for_session(cookie, idle_timeout_ms=idle) is None
    assert backend.rows("SELECT COUNT(*) FROM auth_sessions") == [(0,)]
    # Gone for good: a longer timeout does not bring it back.
    assert store.principal_for_session(cookie, idle_timeout_ms=100 * idle) is None


def test_last_seen_is_written_at_most_once_a_minute(
    store: AuthStoreBase, backend: Backend, clock: Clock
) -> None:
    alice = store.add_user("alice", PASSWORD)
    cookie = store.create_session(alice.user_id)
    assert backend.rows("SELECT created_at_ms, last_seen_ms FROM auth_sessions") == [(T0, T0)]
    clock.advance(TOUCH_INTERVAL_MS - 1)
    store.principal_for_session(cookie, idle_timeout_ms=DAY_MS)
    assert backend.rows("SELECT last_seen_ms FROM auth_sessions") == [(T0,)]
    clock.advance(1)
    store.principal_for_session(cookie, idle_timeout_ms=DAY_MS)
    assert backend.rows("SELECT created_at_ms, last_seen_ms FROM auth_sessions") == [
        (T0, T0 + TOUCH_INTERVAL_MS)
    ]


def test_disabled_user_has_no_session_and_disabling_ends_them(store: AuthStoreBase) -> None:
    alice = store.add_user("alice", PASSWORD)
    cookie = store.create_session(alice.user_id)
    store.set_disabled("alice", True)
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
    assert code_of(store.create_session, alice.user_id) == "user_disabled"
    store.set_disabled("alice", False)
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
    assert code_of(store.create_session, "u_0000000000000000") == "unknown_user"
    assert code_of(store.create_session, "u_\x00") == "unknown_user"


def test_set_password_ends_that_users_sessions_only(store: AuthStoreBase) -> None:
    alice = store.add_user("alice", PASSWORD)
    bob = store.add_user("bob", PASSWORD)
    a1, a2 = store.create_session(alice.user_id), store.create_session(alice.user_id)
    b1 = store.create_session(bob.user_id)
    _, token = store.create_token("alice")
    store.set_password("alice", "a new password")
    assert store.principal_for_session(a1, idle_timeout_ms=DAY_MS) is None
    assert store.principal_for_session(a2, idle_timeout_ms=DAY_MS) is None
    assert store.principal_for_session(b1, idle_timeout_ms=DAY_MS) is not None
    assert store.principal_for_token(token) is not None


def test_purge_sessions(store: AuthStoreBase, clock: Clock) -> None:
    alice = store.add_user("alice", PASSWORD)
    old = store.create_session(alice.user_id)
    clock.advance(10 * TOUCH_INTERVAL_MS)
    fresh = store.create_session(alice.user_id)
    assert store.purge_sessions(idle_timeout_ms=5 * TOUCH_INTERVAL_MS) == 1
    assert store.principal_for_session(old, idle_timeout_ms=DAY_MS) is None
    assert store.principal_for_session(fresh, idle_timeout_ms=DAY_MS) is not None
    assert store.purge_sessions(idle_timeout_ms=5 * TOUCH_INTERVAL_MS) == 0


# -- the backend --------------------------------------------------------------------------------------


def test_the_schema_version_is_recorded(store: AuthStoreBase, backend: Backend) -> None:
    assert backend.rows("SELECT component, version, name FROM webchat_schema_migrations") == [
        ("auth", 1, SCHEMA_NAME)
    ]


def test_a_second_store_sees_every_change(backend: Backend) -> None:
    """The server's store sees what the CLI's store (other connections) writes, on the next call."""
    server, cli = backend.open(), backend.open()
    assert not server.has_admin()
    alice = cli.add_user("alice", PASSWORD, admin=True)
    assert server.has_admin() and server.get_user("alice") == alice
    assert server.first_admin() == alice
    info, token = cli.create_token("alice")
    cookie = server.create_session(alice.user_id)
    assert server.principal_for_token(token) is not None
    cli.revoke_token(info.token_id)
    assert server.principal_for_token(token) is None
    cli.set_password("alice", "a new password")
    assert server.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
    assert server.check_password("alice", "a new password") is not None
    cookie = server.create_session(alice.user_id)
    cli.set_disabled("alice", True)
    assert server.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
    assert server.check_password("alice", "a new password") is None
    assert not server.has_admin()


def test_nothing_secret_is_stored_in_clear(store: AuthStoreBase, backend: Backend) -> None:
    alice = store.add_user("alice", "a memorable secret phrase", admin=True)
    store.set_password("alice", "the second secret phrase")
    _, token = store.create_token("alice", label="ci")
    cookie = store.create_session(alice.user_id)
    assert store.principal_for_token(token) is not None
    stored = repr([backend.rows(f"SELECT * FROM {table}") for table in TABLES])
    assert "'alice'" in stored and "'ci'" in stored  # the check reads the data that was written
    for secret in ["a memorable secret phrase", "the second secret phrase", token, token[4:], cookie]:
        assert secret not in stored, secret


def test_closed_store_raises_store_error(store: AuthStoreBase) -> None:
    store.close()
    with pytest.raises(StoreError, match=r"^auth store is closed$"):
        store.list_users()
    with pytest.raises(StoreError, match=r"^auth store is closed$"):
        store.add_user("alice", PASSWORD)
    store.close()


def test_threads_share_one_store(store: AuthStoreBase) -> None:
    alice = store.add_user("alice", PASSWORD)
    _, token = store.create_token("alice")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(20):
                assert store.principal_for_token(token) is not None
                cookie = store.create_session(alice.user_id)
                assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is not None
                store.end_session(cookie)
            store.create_token("alice", label=f"t{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(t.label for t in store.list_tokens()) == ["", "t0", "t1", "t2", "t3"]


def test_one_of_several_stores_adding_one_name_at_once_wins(backend: Backend) -> None:
    stores = [backend.open() for _ in range(4)]
    names = ["alice", "ALICE", "Alice", "aLiCe"]
    results = run_together(*[partial(s.add_user, n, PASSWORD) for s, n in zip(stores, names, strict=True)])
    winners = [r for r in results if not isinstance(r, BaseException)]
    codes = [r.code for r in results if isinstance(r, AuthError)]
    assert len(winners) == 1 and codes == ["user_exists"] * 3
    assert stores[0].list_users() == winners


def test_two_stores_disabling_at_once_keep_the_first_time(backend: Backend, clock: Clock) -> None:
    for round_ in range(5):
        name = f"user{round_}"
        backend.open().add_user(name, PASSWORD)
        early, late = backend.open(clock=lambda: T0 + 5), backend.open(clock=lambda: T0 + 10)
        results = run_together(
            partial(early.set_disabled, name, True), partial(late.set_disabled, name, True)
        )
        stored = early.get_user(name)
        assert stored is not None and stored.disabled_at_ms in (T0 + 5, T0 + 10)
        assert results == [stored, stored]


def test_a_login_racing_a_disable_leaves_no_session_behind(backend: Backend) -> None:
    admin, web = backend.open(), backend.open()
    alice = admin.add_user("alice", PASSWORD)
    cookies: list[str] = []
    refused: list[str] = []
    started = threading.Event()

    def log_in_until_refused() -> None:
        while True:
            try:
                cookies.append(web.create_session(alice.user_id))
            except AuthError as exc:
                refused.append(exc.code)
                return
            if len(cookies) == 3:
                started.set()

    thread = threading.Thread(target=log_in_until_refused)
    thread.start()
    started.wait()
    admin.set_disabled("alice", True)
    thread.join()
    assert refused == ["user_disabled"]
    admin.set_disabled("alice", False)
    assert [c for c in cookies if web.principal_for_session(c, idle_timeout_ms=DAY_MS) is not None] == []
    assert backend.rows("SELECT COUNT(*) FROM auth_sessions") == [(0,)]


# -- the schema, side by side -------------------------------------------------------------------------


def sqlite_schema(path: Path) -> dict[str, Any]:
    """Per table: (column, type, not null) in order, and (index name, unique) — an automatic index under the
    name PostgreSQL gives the same constraint (``T_pkey``, ``T_COLUMN_key``)."""
    conn = sqlite3.connect(path)
    try:
        schema: dict[str, Any] = {}
        for table in TABLES:
            columns = [
                # A SQLite primary key may hold NULL (a historic quirk); the store never writes one.
                (name, kind, bool(notnull or pk))
                for _, name, kind, notnull, _, pk in conn.execute(f"PRAGMA table_info({table})")
            ]
            indexes = set()
            for _, name, unique, origin, _ in conn.execute(f"PRAGMA index_list({table})"):
                cols = [row[2] for row in conn.execute(f"PRAGMA index_info({name})")]
                portable = {"pk": f"{table}_pkey", "u": f"{table}_{'_'.join(cols)}_key"}.get(origin, name)
                indexes.add((portable, bool(unique)))
            schema[table] = (columns, indexes)
        names = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'auth%' ORDER BY name"
        ).fetchall()
        schema["tables"] = [n for (n,) in names]
        return schema
    finally:
        conn.close()


def postgres_schema(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        schema: dict[str, Any] = {}
        for table in TABLES:
            columns = conn.execute(
                "SELECT column_name, data_type, is_nullable = 'NO' FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            indexes = conn.execute(
                "SELECT i.relname, x.indisunique FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname = %s",
                (table,),
            ).fetchall()
            schema[table] = (columns, set(indexes))
        names = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'auth%' "
            "ORDER BY tablename"
        ).fetchall()
        schema["tables"] = [n for (n,) in names]
        return schema


def test_postgres_has_the_sqlite_tables_columns_and_indexes(tmp_path: Path, pg_dsn: str) -> None:
    path = tmp_path / AUTH_DB_NAME
    SQLiteAuthStore(path, hasher=FAST).close()
    db = Database(pg_dsn, max_size=1)
    try:
        migrate(db, [AUTH_COMPONENT])
    finally:
        db.close()
    lite, pg = sqlite_schema(path), postgres_schema(pg_dsn)
    types = {"TEXT": "text", "INTEGER": "bigint"}
    assert lite["tables"] == pg["tables"] == ["auth_sessions", "auth_tokens", "auth_users"]
    for table in TABLES:
        lite_columns, lite_indexes = lite[table]
        pg_columns, pg_indexes = pg[table]
        expected = [(name, types[kind], notnull) for name, kind, notnull in lite_columns]
        if table == "auth_users":
            expected.append(("rowid", "bigint", True))  # SQLite's implicit rowid, explicit in PostgreSQL
        assert pg_columns == expected, table
        assert pg_indexes == lite_indexes, table
    assert lite["auth_users"][1] == {("auth_users_pkey", True), ("auth_users_username_key", True)}
    assert lite["auth_tokens"][1] == {
        ("auth_tokens_pkey", True),
        ("auth_tokens_secret_sha256_key", True),
        ("auth_tokens_user", False),
    }
    assert lite["auth_sessions"][1] == {("auth_sessions_pkey", True), ("auth_sessions_user", False)}
