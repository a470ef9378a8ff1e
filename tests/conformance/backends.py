"""The backends every conformance suite runs on: SQLite files and a real PostgreSQL (tests/pg_server.py).

A suite asks for ``turn_backend`` (see conftest.py): it is parametrized over both backends, so every test
of the suite runs once on each. ``rows`` reads the store's tables directly, whatever the backend.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from webchat.stores.postgres.turn_store import PostgresTurnStore
from webchat.stores.protocol import TurnStore
from webchat.stores.sqlite.turn_store import SQLiteTurnStore
from webchat.stores.turns import open_turn_store

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class TurnBackend:
    """Where a suite's turn store lives: a SQLite file path or a PostgreSQL URL."""

    name: str
    location: str

    def open(self) -> TurnStore:
        """Open the store (migrating it first), as ``web-chat serve`` does."""
        return open_turn_store(self.location)


def rows(store: object, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (written with ``?`` markers) read straight from the store's database."""
    if isinstance(store, SQLiteTurnStore):
        with closing(sqlite3.connect(f"{Path(store.path).resolve().as_uri()}?mode=ro", uri=True)) as conn:
            return conn.execute(sql, params).fetchall()
    if isinstance(store, PostgresTurnStore):
        with psycopg.connect(store.db.dsn) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]
    raise TypeError(f"not a store of a known backend: {store!r}")
