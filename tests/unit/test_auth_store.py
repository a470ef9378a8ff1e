"""Password hashing, and what only the SQLite auth store has: a file, its mode, its schema version.

The store's behaviour (users, tokens, sessions) is tested on SQLite and PostgreSQL alike in
tests/conformance/test_auth_store.py.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from webchat.auth.passwords import (
    hash_password,
    make_hasher,
    needs_rehash,
    verify_password,
)
from webchat.auth.store import AUTH_DB_NAME, SQLiteAuthStore
from webchat.stores.protocol import SchemaTooNewError, StoreError

# Cheap parameters; the defaults are checked in test_default_parameters.
FAST = make_hasher(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / AUTH_DB_NAME


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


# -- the file -----------------------------------------------------------------------------------------


def test_nothing_secret_is_in_the_file_in_clear(db_path: Path) -> None:
    store = SQLiteAuthStore(db_path, hasher=FAST)
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
