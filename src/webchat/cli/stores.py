"""Opening stores for the read commands: every unusable store is one error line and exit 2 (cli.md).

Unusable means missing, a directory where the file should be, not a SQLite database (corrupt), a schema
newer than this web-chat, or - for commands that read turns - a store ``web-chat db migrate`` has not
upgraded yet. Read commands open stores read-only and never create, migrate or change a file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from webchat.cli.output import fail
from webchat.stores.migrations.checks import MIGRATE_HINT
from webchat.stores.migrations.turns_sqlite import check_version, detect_layout
from webchat.stores.protocol import StoreError
from webchat.stores.sqlite.connection import connect
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.sqlite.turn_schema import SCHEMA_VERSION, recorded_version
from webchat.stores.sqlite.turn_store import SQLiteTurnStore

TURNS_HINT = "check --data-dir / --turns-db"
TIMELINE_HINT = "check --data-dir / --timeline-db"


def require_file(path: Path, what: str, hint: str) -> None:
    """Exit 2 unless ``path`` is an existing file (SQLite reports a directory as a disk I/O error)."""
    if not path.exists():
        raise fail(f"{path}: no such {what} ({hint})")
    if path.is_dir():
        raise fail(f"{path}: is a directory, not a {what} file ({hint})")


def _connect_turns(path: Path) -> sqlite3.Connection:
    require_file(path, "store", TURNS_HINT)
    try:
        conn = connect(path, readonly=True)
    except StoreError as exc:
        raise fail(str(exc)) from exc
    try:
        # The first read of the file: a corrupt or non-SQLite file fails here.
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        check_version(conn, path)
    except StoreError as exc:
        conn.close()
        raise fail(str(exc)) from exc
    except sqlite3.Error as exc:
        conn.close()
        raise fail(f"{path}: cannot read store: {exc}") from exc
    return conn


def _require_migrated(conn: sqlite3.Connection, path: Path) -> None:
    version = recorded_version(conn)
    if version < SCHEMA_VERSION:
        try:
            layout = detect_layout(conn)
        except StoreError:
            layout = "unrecognised"
        raise fail(
            f"{path}: store is not migrated (layout {layout}, schema version {version} of {SCHEMA_VERSION}); "
            f"{MIGRATE_HINT} first"
        )


@contextmanager
def turns_connection(path: Path, *, migrated: bool = True) -> Iterator[sqlite3.Connection]:
    """A read-only connection to turns.db; ``migrated`` also refuses a store not yet migrated."""
    conn = _connect_turns(path)
    try:
        if migrated:
            _require_migrated(conn, path)
        yield conn
    except StoreError as exc:
        raise fail(str(exc)) from exc
    except sqlite3.Error as exc:
        raise fail(f"{path}: cannot read store: {exc}") from exc
    finally:
        conn.close()


@contextmanager
def turn_store(path: Path) -> Iterator[SQLiteTurnStore]:
    """The turn store for reading snapshots; the file is checked first (it is never migrated from here)."""
    with turns_connection(path):
        pass
    try:
        store = SQLiteTurnStore(path)
    except StoreError as exc:
        raise fail(str(exc)) from exc
    try:
        yield store
    except StoreError as exc:
        raise fail(str(exc)) from exc
    except sqlite3.Error as exc:
        raise fail(f"{path}: cannot read store: {exc}") from exc
    finally:
        store.close()


@contextmanager
def timeline_store(path: Path) -> Iterator[SQLiteTimelineStore]:
    """timeline.db opened read-only: a read command never creates, migrates or changes the file."""
    require_file(path, "timeline store", TIMELINE_HINT)
    try:
        store = SQLiteTimelineStore(path, readonly=True)
    except StoreError as exc:
        raise fail(str(exc)) from exc
    try:
        yield store
    except StoreError as exc:
        raise fail(str(exc)) from exc
    except sqlite3.Error as exc:
        raise fail(f"{path}: cannot read timeline store: {exc}") from exc
    finally:
        store.close()


def unknown_conversation(conv_id: str) -> typer.Exit:
    """What the debug API answers with 404 ``unknown_conversation``: one line, exit 1 (nothing found)."""
    return fail(f"unknown conversation: {conv_id}", code=1)


def conversation_has_turns(conn: sqlite3.Connection, conv_id: str) -> bool:
    return conn.execute("SELECT 1 FROM turns WHERE conv_id = ? LIMIT 1", (conv_id,)).fetchone() is not None


def conversation_in_timeline(path: Path, conv_id: str) -> bool:
    """Whether timeline.db knows ``conv_id`` (a conversation may exist before its first turn is stored).

    Only a second source for turn commands, as for the debug API: a missing or unusable timeline.db
    counts as not knowing the conversation (the command's own store was checked already).
    """
    if not path.is_file():
        return False
    try:
        store = SQLiteTimelineStore(path, readonly=True)
    except StoreError:
        return False
    try:
        return timeline_knows(store, conv_id)
    except (StoreError, sqlite3.Error):
        return False
    finally:
        store.close()


def timeline_knows(store: SQLiteTimelineStore, conv_id: str) -> bool:
    """A conversation record, a version or an entity (a store ``timeline verify`` would fault may lack
    one of them) makes a conversation known."""
    return (
        store.get_conversation(conv_id) is not None
        or store.current_version(conv_id) > 0
        or bool(store.snapshot(conv_id, limit=1).entities)
    )
