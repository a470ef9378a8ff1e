"""Shared test fixtures."""

from __future__ import annotations

import os

# Tests never touch the user's real data directory.
os.environ.setdefault("WEBCHAT_DATA_DIR", "/nonexistent-webchat-test-data-dir")

from collections.abc import Iterator

import pytest

from tests.pg_server import PostgresServer
from webchat.runtimes.profiles import DEFAULT_PROVIDER_KEY_ENVS, allow_key_envs


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no real provider keys: built-in provider profiles appear only when a test sets one."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _default_key_allow_list() -> Iterator[None]:
    """Each test starts with the default provider-key allow-list (an app or a test may change it)."""
    allow_key_envs(DEFAULT_PROVIDER_KEY_ENVS)
    yield
    allow_key_envs(DEFAULT_PROVIDER_KEY_ENVS)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (started on first use; see tests/pg_server.py)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test; dropped afterwards."""
    dsn = postgres_server.create_database()
    try:
        yield dsn
    finally:
        postgres_server.drop_database(dsn)
