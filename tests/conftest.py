"""Shared test fixtures."""

from __future__ import annotations

import os

# Tests never touch the user's real data directory.
os.environ.setdefault("WEBCHAT_DATA_DIR", "/nonexistent-webchat-test-data-dir")

import pytest

# Under CI=true every skip is a failure (see tests/prerequisites.py).
from tests.prerequisites import pytest_runtest_makereport  # noqa: F401


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no real provider keys: built-in provider profiles appear only when a test sets one."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
