"""Shared test fixtures."""

from __future__ import annotations

import os

# Tests never touch the user's real data directory.
os.environ.setdefault("WEBCHAT_DATA_DIR", "/nonexistent-webchat-test-data-dir")

import pytest


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no real provider keys: built-in provider profiles appear only when a test sets one."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
