"""Shared test fixtures."""

from __future__ import annotations

import os

# Tests never touch the user's real data directory.
os.environ.setdefault("WEBCHAT_DATA_DIR", "/nonexistent-webchat-test-data-dir")
