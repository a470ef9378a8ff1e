"""Fixtures of the conformance suites: each store protocol's tests run on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.backends import BACKENDS, TurnBackend


@pytest.fixture(params=BACKENDS)
def turn_backend(request: pytest.FixtureRequest, tmp_path: Path) -> TurnBackend:
    if request.param == "postgresql":
        return TurnBackend("postgresql", request.getfixturevalue("pg_dsn"))
    return TurnBackend("sqlite", str(tmp_path / "turns.db"))
