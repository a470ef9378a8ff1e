"""The backends every conformance suite runs on: a SQLite file in tmp_path, or a fresh PostgreSQL database
(tests/pg_server.py). Suites parametrize their fixtures over ``BACKENDS``, so each test runs once on each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import migrate
from webchat.stores.postgres.prompt_store import COMPONENTS, PostgresPromptStore
from webchat.stores.postgres.timeline_store import PostgresTimelineStore
from webchat.stores.postgres.turn_store import PostgresTurnStore
from webchat.stores.prompts import PromptStore
from webchat.stores.protocol import TurnStore
from webchat.stores.sqlite.prompt_store import SQLitePromptStore
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.sqlite.turn_store import SQLiteTurnStore
from webchat.stores.timeline import TimelineStore
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


@dataclass
class Stores:
    """A timeline store and the prompt store beside it, on one backend."""

    backend: str
    timeline: TimelineStore
    prompts: PromptStore
    db: Database | None = None

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one raw statement (``?`` placeholders on both backends) and return its rows."""
        return raw(self.timeline, sql, params)


def raw(store: object, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One raw statement on a store's database, committed; ``?`` placeholders on both backends."""
    if isinstance(store, SQLiteTimelineStore):
        conn = sqlite3.connect(store.path)
        try:
            with conn:
                return [tuple(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()
    assert isinstance(store, PostgresTimelineStore)
    with store.db.connection() as pg:
        cur = pg.execute(sql.replace("?", "%s"), params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []


@contextmanager
def open_stores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, pool: int = 4
) -> Iterator[Stores]:
    """Both stores on ``backend``; closed (and the PostgreSQL database dropped) afterwards."""
    if backend == "sqlite":
        timeline = SQLiteTimelineStore(tmp_path / "timeline.db")
        try:
            yield Stores(backend, timeline, SQLitePromptStore(timeline))
        finally:
            timeline.close()
        return
    db = Database(request.getfixturevalue("pg_dsn"), max_size=pool)
    try:
        migrate(db, COMPONENTS)
        pg_timeline = PostgresTimelineStore(db)
        pg_prompts = PostgresPromptStore(db)
        try:
            yield Stores(backend, pg_timeline, pg_prompts, db)
        finally:
            pg_prompts.close()
            pg_timeline.close()
    finally:
        db.close()
