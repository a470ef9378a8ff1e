"""Opening the turn store: the one place callers get a :class:`TurnStore` from."""

from __future__ import annotations

from pathlib import Path

from webchat.stores.migrations.turns_sqlite import migrate_turns_db
from webchat.stores.protocol import StoreError, TurnStore
from webchat.stores.sqlite.turn_store import SQLiteTurnStore


def open_turn_store(path: str | Path, *, create: bool = True, owned: bool = False) -> TurnStore:
    """Open (and first upgrade in place, if needed) the turn store at ``path``.

    ``owned``: the caller holds the store's owner lock (a serving process). Only SQLite files are
    supported today; a ``postgresql://`` DSN is rejected with a clear error.
    """
    text = str(path)
    if text.startswith(("postgres://", "postgresql://")):
        raise StoreError("PostgreSQL turn stores are not available in this release; use a SQLite file")
    migrate_turns_db(Path(path), create=create, summarize=False, owned=owned)
    return SQLiteTurnStore(path)
