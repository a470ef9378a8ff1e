"""Opening the turn store: the one place callers get a :class:`TurnStore` from."""

from __future__ import annotations

from pathlib import Path

from webchat.stores.migrations.turns_sqlite import migrate_turns_db
from webchat.stores.postgres.database import Database, is_postgres_url
from webchat.stores.postgres.migrations import migrate, require_current
from webchat.stores.postgres.turn_store import COMPONENT as PG_TURNS
from webchat.stores.postgres.turn_store import PostgresTurnStore
from webchat.stores.protocol import TurnStore
from webchat.stores.sqlite.turn_store import SQLiteTurnStore

__all__ = ["open_turn_store"]


def open_turn_store(path: str | Path, *, create: bool = True, owned: bool = False) -> TurnStore:
    """Open (and first upgrade in place, if needed) the turn store at ``path``: a SQLite file or a
    ``postgresql://`` URL.

    ``owned``: the caller holds the store's owner lock (a serving process; SQLite only). ``create=False``
    opens an existing store as it is: a PostgreSQL database must then already be migrated.
    """
    text = str(path)
    if is_postgres_url(text):
        db = Database(text)
        try:
            if create:
                migrate(db, [PG_TURNS])
            else:
                require_current(db, [PG_TURNS])
        except BaseException:
            db.close()
            raise
        return PostgresTurnStore(db, owns_database=True)
    migrate_turns_db(Path(path), create=create, summarize=False, owned=owned)
    return SQLiteTurnStore(path)
