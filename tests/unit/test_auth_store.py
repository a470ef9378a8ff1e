"""The auth store on real SQLite files: users, passwords, tokens, sessions and what the file holds."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from webchat.auth.passwords import (
    hash_password,
    make_hasher,
    needs_rehash,
    verify_password,
)
from webchat.auth.store import (
    AUTH_DB_NAME,
    DAY_MS,
    TOUCH_INTERVAL_MS,
    AuthError,
    Principal,
    SQLiteAuthStore,
)
from webchat.stores.protocol import SchemaTooNewError, StoreError

T0 = 1_700_000_000_000
PASSWORD = "correct horse battery"
# Cheap parameters: these tests add many users; the defaults are checked in test_default_parameters.
FAST = make_hasher(time_cost=1, memory_cost=8192, parallelism=1)


class Clock:
    """Epoch milliseconds that only move when a test says so."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / AUTH_DB_NAME


@pytest.fixture
def store(db_path: Path, clock: Clock) -> Iterator[SQLiteAuthStore]:
    s = SQLiteAuthStore(db_path, hasher=FAST, clock=clock)
    yield s
    s.close()


def code_of(fn: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(AuthError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    assert str(info.value) and "\n" not in str(info.value)
    return info.value.code


def raw_row(path: Path, sql: str, params: tuple[object, ...] = ()) -> tuple[object, ...] | None:
    conn = sqlite3.connect(path)
    try:
        row: tuple[object, ...] | None = conn.execute(sql, params).fetchone()
        return row
    finally:
        conn.close()


# -- passwords ----------------------------------------------------------------------------------------


def test_default_parameters_are_the_rfc_9106_low_memory_profile() -> None:
    stored = hash_password("a password")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, "a password")
    assert not verify_password(stored, "another password")
    assert not needs_rehash(stored)


def test_verify_password_is_false_for_invalid_hashes() -> None:
    for bogus in ["", "plain text", "$argon2id$v=19$m=8,t=1,p=1$bad", "$argon2id$é", "\udcff"]:
        assert verify_password(bogus, "a password") is False
    assert verify_password(hash_password("pw", hasher=FAST), "\udcff") is False
    assert needs_rehash("not a hash")


def test_a_hash_from_another_hasher_verifies_but_needs_rehash() -> None:
    stored = hash_password("a password", hasher=FAST)
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert verify_password(stored, "a password")
    assert needs_rehash(stored)
    assert not needs_rehash(stored, hasher=FAST)


# -- users --------------------------------------------------------------------------------------------


def test_add_user_and_look_it_up_case_insensitively(store: SQLiteAuthStore) -> None:
    user = store.add_user("Alice.W-1_", PASSWORD, admin=True)
    assert user.username == "Alice.W-1_" and user.role == "admin" and user.enabled
    assert user.created_at_ms == T0 and user.disabled_at_ms == 0
    assert len(user.user_id) == 18 and user.user_id.startswith("u_") and int(user.user_id[2:], 16) >= 0
    assert store.get_user("alice.w-1_") == user
    assert store.get_user("ALICE.W-1_") == user
    assert store.user_by_id(user.user_id) == user
    assert store.get_user("bob") is None and store.user_by_id("u_0000000000000000") is None
    assert store.add_user("bob", PASSWORD).role == "user"


@pytest.mark.parametrize(
    "name",
    ["", "-alice", ".alice", "_alice", "al ice", "alice!", "élodie", "a" * 65, "alice\n", "al/ice"],
)
def test_invalid_usernames(store: SQLiteAuthStore, name: str) -> None:
    assert code_of(store.add_user, name, PASSWORD) == "invalid_username"
    assert store.list_users() == []


def test_username_length_limits(store: SQLiteAuthStore) -> None:
    assert store.add_user("a", PASSWORD).username == "a"
    assert store.add_user("9" * 64, PASSWORD).username == "9" * 64


def test_user_exists_case_insensitively(store: SQLiteAuthStore) -> None:
    store.add_user("alice", PASSWORD)
    assert code_of(store.add_user, "ALICE", PASSWORD) == "user_exists"
    assert [u.username for u in store.list_users()] == ["alice"]


@pytest.mark.parametrize("password", ["", "short7!", "x" * 1025, "eight\x00chars", "surrogate\udcff"])
def test_weak_passwords(store: SQLiteAuthStore, password: str) -> None:
    assert code_of(store.add_user, "alice", password) == "weak_password"
    assert store.get_user("alice") is None


def test_password_length_limits(store: SQLiteAuthStore) -> None:
    store.add_user("alice", "8 chars!")
    store.add_user("bob", "é" * 1024)
    assert store.check_password("alice", "8 chars!") is not None
    assert store.check_password("bob", "é" * 1024) is not None


def test_list_users_in_creation_order(store: SQLiteAuthStore, clock: Clock) -> None:
    for name in ["carol", "alice", "bob"]:
        store.add_user(name, PASSWORD)
        clock.advance(1)
    assert [u.username for u in store.list_users()] == ["carol", "alice", "bob"]


def test_disable_and_enable(store: SQLiteAuthStore, clock: Clock) -> None:
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


def test_has_admin_counts_only_enabled_admins_and_first_admin_is_the_earliest(
    store: SQLiteAuthStore, clock: Clock
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


def test_first_admin_among_admins_created_in_the_same_millisecond(store: SQLiteAuthStore) -> None:
    first = store.add_user("zed", PASSWORD, admin=True)
    store.add_user("amy", PASSWORD, admin=True)
    first_admin = store.first_admin()
    assert first_admin is not None and first_admin.user_id == first.user_id


def test_check_password(store: SQLiteAuthStore) -> None:
    alice = store.add_user("alice", PASSWORD)
    assert store.check_password("alice", PASSWORD) == alice
    assert store.check_password("Alice", PASSWORD) == alice
    assert store.check_password("alice", PASSWORD + "x") is None
    assert store.check_password("nobody", PASSWORD) is None
    assert store.check_password("not a name!", PASSWORD) is None
    assert store.check_password("alice", "") is None


def test_set_password(store: SQLiteAuthStore) -> None:
    store.add_user("alice", PASSWORD)
    store.set_password("alice", "a new password")
    assert store.check_password("alice", PASSWORD) is None
    assert store.check_password("alice", "a new password") is not None
    assert code_of(store.set_password, "alice", "short") == "weak_password"
    assert code_of(store.set_password, "nobody", "a new password") == "unknown_user"


def test_check_password_rehashes_a_hash_made_with_other_parameters(db_path: Path, clock: Clock) -> None:
    old = SQLiteAuthStore(db_path, hasher=FAST, clock=clock)
    old.add_user("alice", PASSWORD)
    old.close()
    stronger = make_hasher(time_cost=2, memory_cost=8192, parallelism=1)
    store = SQLiteAuthStore(db_path, hasher=stronger, clock=clock)
    try:
        assert store.check_password("alice", "wrong password") is None
        before = raw_row(db_path, "SELECT password_hash FROM auth_users")
        assert before is not None and str(before[0]).startswith("$argon2id$v=19$m=8192,t=1,p=1$")
        assert store.check_password("alice", PASSWORD) is not None
        after = raw_row(db_path, "SELECT password_hash FROM auth_users")
        assert after is not None and str(after[0]).startswith("$argon2id$v=19$m=8192,t=2,p=1$")
        assert store.check_password("alice", PASSWORD) is not None
        assert raw_row(db_path, "SELECT password_hash FROM auth_users") == after
    finally:
        store.close()


def test_unknown_user_login_still_verifies_a_hash(store: SQLiteAuthStore) -> None:
    """No timing assertion: the dummy hash exists only once an unknown user was tried, and is argon2."""
    assert store._dummy_hash is None
    assert store.check_password("nobody", PASSWORD) is None
    dummy = store._dummy_hash
    assert dummy is not None and dummy.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    store.check_password("nobody-else", PASSWORD)
    assert store._dummy_hash == dummy


# -- tokens -------------------------------------------------------------------------------------------


def test_token_lifecycle(store: SQLiteAuthStore, clock: Clock) -> None:
    alice = store.add_user("alice", PASSWORD, admin=True)
    info, secret = store.create_token("ALICE", label="ci")
    assert secret.startswith("wct_") and len(secret) == 4 + 43
    assert info.token_id.startswith("tok_") and len(info.token_id) == 16
    assert (info.user_id, info.username, info.label) == (alice.user_id, "alice", "ci")
    assert (info.created_at_ms, info.expires_at_ms, info.revoked_at_ms, info.last_used_at_ms) == (T0, 0, 0, 0)
    assert store.principal_for_token(secret) == Principal(alice.user_id, "alice", "admin", "token")
    assert store.principal_for_token(secret).is_admin  # type: ignore[union-attr]
    revoked = store.revoke_token(info.token_id)
    assert revoked.revoked_at_ms == T0 and revoked.status(T0) == "revoked"
    assert store.principal_for_token(secret) is None
    clock.advance(10)
    assert store.revoke_token(info.token_id).revoked_at_ms == T0
    assert code_of(store.revoke_token, "tok_000000000000") == "unknown_token"


def test_token_of_a_plain_user_is_not_admin(store: SQLiteAuthStore) -> None:
    store.add_user("bob", PASSWORD)
    _, secret = store.create_token("bob")
    principal = store.principal_for_token(secret)
    assert principal is not None and principal.role == "user" and not principal.is_admin


def test_token_expiry(store: SQLiteAuthStore, clock: Clock) -> None:
    store.add_user("alice", PASSWORD)
    info, secret = store.create_token("alice", expires_days=2)
    assert info.expires_at_ms == T0 + 2 * DAY_MS
    clock.advance(2 * DAY_MS - 1)
    assert store.principal_for_token(secret) is not None
    clock.advance(1)
    assert store.principal_for_token(secret) is None
    assert store.list_tokens()[0].status(clock()) == "expired"


@pytest.mark.parametrize("days", [0, -1, 3651, True])
def test_invalid_expiry(store: SQLiteAuthStore, days: int) -> None:
    store.add_user("alice", PASSWORD)
    assert code_of(store.create_token, "alice", expires_days=days) == "invalid_expiry"
    assert store.list_tokens() == []


def test_expiry_limits(store: SQLiteAuthStore) -> None:
    store.add_user("alice", PASSWORD)
    assert store.create_token("alice", expires_days=1)[0].expires_at_ms == T0 + DAY_MS
    assert store.create_token("alice", expires_days=3650)[0].expires_at_ms == T0 + 3650 * DAY_MS


def test_token_for_unknown_user_and_overlong_label(store: SQLiteAuthStore) -> None:
    assert code_of(store.create_token, "nobody") == "unknown_user"
    store.add_user("alice", PASSWORD)
    assert code_of(store.create_token, "alice", label="x" * 201) == "invalid_label"
    assert code_of(store.list_tokens, "nobody") == "unknown_user"


def test_disabled_user_tokens_are_refused_until_enabled(store: SQLiteAuthStore) -> None:
    store.add_user("alice", PASSWORD)
    _, secret = store.create_token("alice")
    store.set_disabled("alice", True)
    assert store.principal_for_token(secret) is None
    store.set_disabled("alice", False)
    assert store.principal_for_token(secret) is not None


def test_last_used_is_written_at_most_once_a_minute(store: SQLiteAuthStore, clock: Clock) -> None:
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


def test_list_tokens_all_or_one_user(store: SQLiteAuthStore, clock: Clock) -> None:
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
def test_malformed_secrets_are_refused(store: SQLiteAuthStore, secret: str) -> None:
    alice = store.add_user("alice", PASSWORD)
    store.create_token("alice")
    store.create_session(alice.user_id)
    assert store.principal_for_token(secret) is None
    assert store.principal_for_session(secret, idle_timeout_ms=DAY_MS) is None
    store.end_session(secret)


def test_a_session_cookie_is_not_a_token_and_a_token_is_not_a_session(store: SQLiteAuthStore) -> None:
    alice = store.add_user("alice", PASSWORD)
    _, token = store.create_token("alice")
    cookie = store.create_session(alice.user_id)
    assert store.principal_for_token(cookie) is None
    assert store.principal_for_session(token, idle_timeout_ms=DAY_MS) is None


# -- sessions -----------------------------------------------------------------------------------------


def test_session_lifecycle(store: SQLiteAuthStore, clock: Clock) -> None:
    alice = store.add_user("alice", PASSWORD)
    cookie = store.create_session(alice.user_id)
    assert len(cookie) == 43
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) == Principal(
        alice.user_id, "alice", "user", "session"
    )
    store.end_session(cookie)
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
    store.end_session(cookie)


def test_idle_session_expires_and_is_deleted(store: SQLiteAuthStore, db_path: Path, clock: Clock) -> None:
    alice = store.add_user("alice", PASSWORD)
    cookie = store.create_session(alice.user_id)
    idle = 30 * TOUCH_INTERVAL_MS
    clock.advance(idle)
    assert store.principal_for_session(cookie, idle_timeout_ms=idle) is not None  # and touched
    clock.advance(idle)
    assert store.principal_for_session(cookie, idle_timeout_ms=idle) is not None
    clock.advance(idle + 1)
    assert store.principal_for_session(cookie, idle_timeout_ms=idle) is None
    assert raw_row(db_path, "SELECT COUNT(*) FROM auth_sessions") == (0,)
    # Gone for good: a longer timeout does not bring it back.
    assert store.principal_for_session(cookie, idle_timeout_ms=100 * idle) is None


def test_last_seen_is_written_at_most_once_a_minute(
    store: SQLiteAuthStore, db_path: Path, clock: Clock
) -> None:
    alice = store.add_user("alice", PASSWORD)
    cookie = store.create_session(alice.user_id)
    clock.advance(TOUCH_INTERVAL_MS - 1)
    store.principal_for_session(cookie, idle_timeout_ms=DAY_MS)
    assert raw_row(db_path, "SELECT last_seen_ms FROM auth_sessions") == (T0,)
    clock.advance(1)
    store.principal_for_session(cookie, idle_timeout_ms=DAY_MS)
    assert raw_row(db_path, "SELECT last_seen_ms FROM auth_sessions") == (T0 + TOUCH_INTERVAL_MS,)


def test_disabled_user_has_no_session_and_disabling_ends_them(store: SQLiteAuthStore) -> None:
    alice = store.add_user("alice", PASSWORD)
    cookie = store.create_session(alice.user_id)
    store.set_disabled("alice", True)
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
    assert code_of(store.create_session, alice.user_id) == "user_disabled"
    store.set_disabled("alice", False)
    assert store.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
    assert code_of(store.create_session, "u_0000000000000000") == "unknown_user"


def test_set_password_ends_that_users_sessions_only(store: SQLiteAuthStore) -> None:
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


def test_purge_sessions(store: SQLiteAuthStore, clock: Clock) -> None:
    alice = store.add_user("alice", PASSWORD)
    old = store.create_session(alice.user_id)
    clock.advance(10 * TOUCH_INTERVAL_MS)
    fresh = store.create_session(alice.user_id)
    assert store.purge_sessions(idle_timeout_ms=5 * TOUCH_INTERVAL_MS) == 1
    assert store.principal_for_session(old, idle_timeout_ms=DAY_MS) is None
    assert store.principal_for_session(fresh, idle_timeout_ms=DAY_MS) is not None


# -- the file -----------------------------------------------------------------------------------------


def test_a_second_store_on_the_same_file_sees_every_change(db_path: Path, clock: Clock) -> None:
    """The server's store sees what the CLI's store (another connection) writes, on the next call."""
    server = SQLiteAuthStore(db_path, hasher=FAST, clock=clock)
    cli = SQLiteAuthStore(db_path, hasher=FAST, clock=clock)
    try:
        assert not server.has_admin()
        alice = cli.add_user("alice", PASSWORD, admin=True)
        assert server.has_admin() and server.get_user("alice") == alice
        info, token = cli.create_token("alice")
        cookie = server.create_session(alice.user_id)
        assert server.principal_for_token(token) is not None
        cli.revoke_token(info.token_id)
        assert server.principal_for_token(token) is None
        cli.set_password("alice", "a new password")
        assert server.principal_for_session(cookie, idle_timeout_ms=DAY_MS) is None
        assert server.check_password("alice", "a new password") is not None
        cli.set_disabled("alice", True)
        assert server.check_password("alice", "a new password") is None
        assert not server.has_admin()
    finally:
        server.close()
        cli.close()


def test_nothing_secret_is_in_the_file_in_clear(db_path: Path, clock: Clock) -> None:
    store = SQLiteAuthStore(db_path, hasher=FAST, clock=clock)
    alice = store.add_user("alice", "a memorable secret phrase", admin=True)
    store.set_password("alice", "the second secret phrase")
    _, token = store.create_token("alice", label="ci")
    cookie = store.create_session(alice.user_id)
    assert store.principal_for_token(token) is not None
    store.close()
    raw = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(AUTH_DB_NAME))
    assert b"alice" in raw and b"ci" in raw  # the check reads the data that was written
    for secret in ["a memorable secret phrase", "the second secret phrase", token, token[4:], cookie]:
        assert secret.encode() not in raw, secret
    # The file and its WAL are readable by their owner only.
    for path in db_path.parent.iterdir():
        assert os.stat(path).st_mode & 0o077 == 0, path


def test_schema_version_is_recorded_and_a_newer_one_refused(db_path: Path) -> None:
    SQLiteAuthStore(db_path, hasher=FAST).close()
    assert raw_row(db_path, "SELECT version FROM webchat_schema_migrations WHERE component = 'auth'") == (1,)
    assert raw_row(db_path, "PRAGMA journal_mode") == ("wal",)
    SQLiteAuthStore(db_path, hasher=FAST).close()  # reopening changes nothing
    conn = sqlite3.connect(db_path)
    conn.execute("INSERT INTO webchat_schema_migrations VALUES ('auth', 2, 'newer', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNewError, match="auth schema version 2 is newer"):
        SQLiteAuthStore(db_path, hasher=FAST)


def test_a_file_that_is_not_sqlite_is_a_store_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"auth\.db"):
        SQLiteAuthStore(db_path, hasher=FAST)


def test_closed_store_raises_store_error(store: SQLiteAuthStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_users()
    store.close()


def test_threads_share_one_store(store: SQLiteAuthStore) -> None:
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
    assert len(store.list_tokens()) == 5
