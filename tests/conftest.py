"""Shared test fixtures."""

from __future__ import annotations

import os

# Tests never touch the user's real data directory.
os.environ.setdefault("WEBCHAT_DATA_DIR", "/nonexistent-webchat-test-data-dir")

from collections.abc import Iterator

import pytest

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
