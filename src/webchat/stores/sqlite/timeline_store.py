"""The SQLite timeline store: ``timeline.db`` with the reference implementation's tables.

Files written by the reference Go implementation open as they are: missing tables, columns and indexes
are added in place (never dropped), and entity documents it wrote (the whole entity as protojson,
``{"id", "kind", "props"...}``) are read back as their props. Every write of this process goes through
one :class:`~webchat.stores.sqlite.connection.Writer`.

A read-only store (``readonly=True``, used by the CLI) changes nothing, not even an old schema: columns
a file lacks read as their defaults and missing tables read as empty.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Final, TypeVar

from webchat.stores.protocol import SchemaTooNewError, StoreError
from webchat.stores.sqlite.connection import Readers, Writer
from webchat.stores.sqlite.turn_schema import (
    VERSION_TABLES_DDL,
    columns,
    index_names,
    quote_ident,
    recorded_version,
    table_exists,
)
from webchat.stores.timeline import ConversationRecord, Entity, KindCount, TimelineProblem, TimelineSnapshot

T = TypeVar("T")

COMPONENT: Final = "timeline"
SCHEMA_VERSION: Final = 3
SCHEMA_NAMES: Final = {
    1: "timeline entities, versions and conversation index",
    2: "durable prompt queue and seq reservations",
    3: "conversation owners",
}

TABLES_DDL: Final = {
    "timeline_versions": """CREATE TABLE IF NOT EXISTS timeline_versions (
    conv_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)""",
    "timeline_entities": """CREATE TABLE IF NOT EXISTS timeline_entities (
    conv_id TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    version INTEGER NOT NULL,
    entity_json TEXT NOT NULL,
    PRIMARY KEY (conv_id, entity_id)
)""",
    "timeline_conversations": """CREATE TABLE IF NOT EXISTS timeline_conversations (
    conv_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    runtime_key TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    last_activity_ms INTEGER NOT NULL,
    last_seen_version INTEGER NOT NULL DEFAULT 0,
    has_timeline INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'active',
    last_error TEXT NOT NULL DEFAULT '',
    owner_id TEXT NOT NULL DEFAULT ''
)""",
    # The highest seq a process may hand out for a conversation without writing here first: a seq is
    # reserved before any frame carries it, so no seq is ever reused, whatever fails afterwards.
    "timeline_seq_reservations": """CREATE TABLE IF NOT EXISTS timeline_seq_reservations (
    conv_id TEXT PRIMARY KEY,
    reserved INTEGER NOT NULL DEFAULT 0
)""",
    # The durable prompt queue (scale-out.md §1): a row is committed before POST /chat answers.
    "webchat_prompts": """CREATE TABLE IF NOT EXISTS webchat_prompts (
    conv_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    turn_id TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL DEFAULT '',
    accept_seq INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    runtime_key TEXT NOT NULL DEFAULT '',
    runtime_fingerprint TEXT NOT NULL DEFAULT '',
    runtime_json TEXT NOT NULL DEFAULT '{}',
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    inference_id TEXT NOT NULL DEFAULT '',
    response_status INTEGER NOT NULL DEFAULT 0,
    response_json TEXT NOT NULL DEFAULT '{}',
    error_code TEXT NOT NULL DEFAULT '',
    accepted_at_ms INTEGER NOT NULL DEFAULT 0,
    started_at_ms INTEGER NOT NULL DEFAULT 0,
    finished_at_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_id, position)
)""",
}

# Every non-key column as ``(type, default literal)``: how an older file gains it, and what a read-only
# store reads in its place.
COLUMNS: Final = {
    "timeline_versions": {"version": ("INTEGER", "0")},
    "timeline_entities": {
        "kind": ("TEXT", "''"),
        "created_at_ms": ("INTEGER", "0"),
        "updated_at_ms": ("INTEGER", "0"),
        "version": ("INTEGER", "0"),
        "entity_json": ("TEXT", "'{}'"),
    },
    "timeline_conversations": {
        "session_id": ("TEXT", "''"),
        "runtime_key": ("TEXT", "''"),
        "created_at_ms": ("INTEGER", "0"),
        "last_activity_ms": ("INTEGER", "0"),
        "last_seen_version": ("INTEGER", "0"),
        "has_timeline": ("INTEGER", "1"),
        "status": ("TEXT", "'active'"),
        "last_error": ("TEXT", "''"),
        # The user whose request created the conversation ('' : created before users, or in local mode;
        # such conversations belong to the first admin).
        "owner_id": ("TEXT", "''"),
    },
    "timeline_seq_reservations": {"reserved": ("INTEGER", "0")},
    "webchat_prompts": {
        "turn_id": ("TEXT", "''"),
        "session_id": ("TEXT", "''"),
        "user_id": ("TEXT", "''"),
        "accept_seq": ("INTEGER", "0"),
        "prompt": ("TEXT", "''"),
        "runtime_key": ("TEXT", "''"),
        "runtime_fingerprint": ("TEXT", "''"),
        "runtime_json": ("TEXT", "'{}'"),
        "idempotency_key": ("TEXT", "''"),
        "status": ("TEXT", "'queued'"),
        "inference_id": ("TEXT", "''"),
        "response_status": ("INTEGER", "0"),
        "response_json": ("TEXT", "'{}'"),
        "error_code": ("TEXT", "''"),
        "accepted_at_ms": ("INTEGER", "0"),
        "started_at_ms": ("INTEGER", "0"),
        "finished_at_ms": ("INTEGER", "0"),
    },
}

KEYS: Final = {
    "timeline_versions": ("conv_id",),
    "timeline_entities": ("conv_id", "entity_id"),
    "timeline_conversations": ("conv_id",),
    "timeline_seq_reservations": ("conv_id",),
    "webchat_prompts": ("conv_id", "position"),
}

INDEXES: Final = {
    "timeline_entities_by_version": "timeline_entities(conv_id, version)",
    "timeline_entities_by_created": "timeline_entities(conv_id, created_at_ms)",
    "timeline_conversations_by_last_activity": "timeline_conversations(last_activity_ms DESC, conv_id ASC)",
    "timeline_conversations_by_session": "timeline_conversations(session_id)",
    "timeline_conversations_by_owner": "timeline_conversations(owner_id, last_activity_ms DESC, conv_id ASC)",
    # Idempotency is scoped to the user: one key names one prompt (scale-out.md §1).
    "webchat_prompts_by_idempotency_key": "webchat_prompts(user_id, idempotency_key)",
    "webchat_prompts_by_turn": "webchat_prompts(turn_id)",
    "webchat_prompts_by_status": "webchat_prompts(status, accept_seq)",
    # MAX(accept_seq) at every accept reads one index entry, not the table.
    "webchat_prompts_by_accept_seq": "webchat_prompts(accept_seq)",
}
UNIQUE_INDEXES: Final = frozenset({"webchat_prompts_by_idempotency_key", "webchat_prompts_by_turn"})

_ENTITY_SELECT: Final = "entity_id, kind, created_at_ms, updated_at_ms, version, entity_json"
_CONVERSATION_SELECT: Final = (
    "conv_id, session_id, runtime_key, created_at_ms, last_activity_ms, last_seen_version, has_timeline, "
    "status, last_error, owner_id"
)

_UPSERT_VERSION_SQL: Final = """
INSERT INTO timeline_versions (conv_id, version) VALUES (?, ?)
ON CONFLICT (conv_id) DO UPDATE SET version = MAX(timeline_versions.version, excluded.version)
"""
# created_at_ms is kept from the first write; a write older than the stored one changes nothing.
_UPSERT_ENTITY_SQL: Final = """
INSERT INTO timeline_entities (conv_id, entity_id, kind, created_at_ms, updated_at_ms, version, entity_json)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (conv_id, entity_id) DO UPDATE SET
    kind = excluded.kind,
    updated_at_ms = excluded.updated_at_ms,
    version = excluded.version,
    entity_json = excluded.entity_json
WHERE excluded.version >= timeline_entities.version
"""
_PROGRESS_SQL: Final = """
INSERT INTO timeline_conversations (conv_id, session_id, created_at_ms, last_activity_ms, last_seen_version)
VALUES (?, '', ?, ?, ?)
ON CONFLICT (conv_id) DO UPDATE SET
    last_activity_ms = MAX(timeline_conversations.last_activity_ms, excluded.last_activity_ms),
    last_seen_version = MAX(timeline_conversations.last_seen_version, excluded.last_seen_version),
    has_timeline = 1
"""
UPSERT_CONVERSATION_SQL: Final = """
INSERT INTO timeline_conversations (conv_id, session_id, runtime_key, created_at_ms, last_activity_ms,
                                    last_seen_version, has_timeline, status, last_error, owner_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (conv_id) DO UPDATE SET
    session_id = CASE WHEN excluded.session_id <> '' THEN excluded.session_id
                      ELSE timeline_conversations.session_id END,
    runtime_key = CASE WHEN excluded.runtime_key <> '' THEN excluded.runtime_key
                       ELSE timeline_conversations.runtime_key END,
    created_at_ms = CASE WHEN timeline_conversations.created_at_ms > 0
                         THEN timeline_conversations.created_at_ms ELSE excluded.created_at_ms END,
    last_activity_ms = MAX(timeline_conversations.last_activity_ms, excluded.last_activity_ms),
    last_seen_version = MAX(timeline_conversations.last_seen_version, excluded.last_seen_version),
    has_timeline = MAX(timeline_conversations.has_timeline, excluded.has_timeline),
    status = CASE WHEN excluded.status <> '' THEN excluded.status ELSE timeline_conversations.status END,
    last_error = CASE WHEN excluded.last_error <> '' THEN excluded.last_error
                      ELSE timeline_conversations.last_error END
"""
_SET_POINTER_SQL: Final = """
INSERT INTO timeline_conversations (conv_id, session_id, runtime_key, created_at_ms, last_activity_ms)
VALUES (?, '', ?, ?, ?)
ON CONFLICT (conv_id) DO UPDATE SET
    runtime_key = excluded.runtime_key,
    last_activity_ms = MAX(timeline_conversations.last_activity_ms, excluded.last_activity_ms)
"""

# Keys of an entity document written by the reference implementation, besides its payload.
_LEGACY_ENVELOPE_KEYS: Final = frozenset(
    {"id", "kind", "createdAtMs", "updatedAtMs", "version", "meta", "typed"}
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_props(props: dict[str, Any]) -> str:
    """``entity_json``: compact JSON; values JSON cannot represent are stored as their text."""
    return json.dumps(props, ensure_ascii=False, separators=(",", ":"), default=str)


def check_version(conn: sqlite3.Connection, path: Path) -> int:
    version = recorded_version(conn, COMPONENT)
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path}: timeline schema version {version} is newer than this web-chat supports "
            f"({SCHEMA_VERSION}); upgrade web-chat instead of opening this store with an older release"
        )
    return version


def upgrade_schema(conn: sqlite3.Connection, *, dry_run: bool = False) -> list[str]:
    """Create missing tables, columns and indexes and record the schema version; never drops anything.

    The caller owns the transaction. Returns what changed (or, with ``dry_run``, what would change);
    running it again returns an empty list.
    """
    changes: list[str] = []
    for table, ddl in TABLES_DDL.items():
        if not table_exists(conn, table):
            changes.append(f"create table {table}")
            if not dry_run:
                conn.execute(ddl)
            continue
        present = columns(conn, table)
        for name, (sql_type, default) in COLUMNS[table].items():
            if name not in present:
                changes.append(f"add column {table}.{name}")
                if not dry_run:
                    conn.execute(
                        f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(name)} "
                        f"{sql_type} NOT NULL DEFAULT {default}"
                    )
    existing = index_names(conn)
    for name, target in INDEXES.items():
        if name not in existing:
            changes.append(f"create index {name}")
            if not dry_run:
                unique = "UNIQUE " if name in UNIQUE_INDEXES else ""
                conn.execute(f"CREATE {unique}INDEX IF NOT EXISTS {quote_ident(name)} ON {target}")
    if recorded_version(conn, COMPONENT) < SCHEMA_VERSION:
        changes.append(f"record timeline schema version {SCHEMA_VERSION}")
        if not dry_run:
            for ddl in VERSION_TABLES_DDL:
                conn.execute(ddl)
            conn.execute(
                "INSERT OR IGNORE INTO webchat_schema_migrations (component, version, name, applied_at_ms) "
                "VALUES (?, ?, ?, ?)",
                (COMPONENT, SCHEMA_VERSION, SCHEMA_NAMES[SCHEMA_VERSION], now_ms()),
            )
    return changes


def table_source(conn: sqlite3.Connection, table: str) -> str:
    """A FROM-clause source for ``table`` with every column of the current schema (and ``rowid``).

    The table itself when it is complete; otherwise a subquery where missing columns read as their
    defaults, or an empty row set when the table is missing: how a read-only store reads an old file.
    """
    present = columns(conn, table)
    missing = [c for c in COLUMNS[table] if c not in present]
    if present and not missing:
        return quote_ident(table)
    defaults = ", ".join(f"{COLUMNS[table][c][1]} AS {quote_ident(c)}" for c in missing)
    if present:
        return f"(SELECT *, rowid AS rowid, {defaults} FROM {quote_ident(table)})"
    keys = ", ".join(f"'' AS {quote_ident(k)}" for k in KEYS[table])
    return f"(SELECT {keys}, 0 AS rowid, {defaults} WHERE 0)"


def decode_props(raw: str, entity_id: str, kind: str) -> dict[str, Any]:
    """The props stored in ``entity_json``.

    web-chat stores the props object itself. The reference implementation stored the whole entity
    (``{"id", "kind", "props"}``, or, before that, ``{"id", "kind", "<kind>": {...}}``): its payload is
    returned. A value that is not a JSON object is kept under ``invalid_entity_json`` (``verify`` reports it).
    """
    try:
        doc = json.loads(raw)
    except (TypeError, ValueError):
        return {"invalid_entity_json": raw}
    if not isinstance(doc, dict):
        return {"invalid_entity_json": raw}
    if doc.get("id") != entity_id or doc.get("kind") != kind:
        return doc
    if isinstance(doc.get("props"), dict):
        return dict(doc["props"])
    payload = {k: v for k, v in doc.items() if k not in _LEGACY_ENVELOPE_KEYS}
    only = next(iter(payload.values())) if len(payload) == 1 else None
    return dict(only) if isinstance(only, dict) else payload


def _entity(row: sqlite3.Row | tuple[Any, ...]) -> Entity:
    entity_id, kind, created, updated, version, raw = row
    return Entity(
        id=str(entity_id),
        kind=str(kind),
        created_at_ms=int(created),
        updated_at_ms=int(updated),
        version=int(version),
        props=decode_props(raw, str(entity_id), str(kind)),
    )


def _record(row: sqlite3.Row | tuple[Any, ...]) -> ConversationRecord:
    conv_id, session_id, runtime_key, created, activity, seen, has_timeline, status, last_error, owner = row
    return ConversationRecord(
        conv_id=str(conv_id),
        session_id=str(session_id),
        runtime_key=str(runtime_key),
        created_at_ms=int(created),
        last_activity_ms=int(activity),
        last_seen_version=int(seen),
        has_timeline=bool(has_timeline),
        status=str(status) or "active",
        last_error=str(last_error),
        owner_id=str(owner),
    )


def conversation_params(rec: ConversationRecord) -> tuple[Any, ...]:
    """The parameters of :data:`UPSERT_CONVERSATION_SQL` for one index row."""
    _require_id("conv_id", rec.conv_id)
    return (
        rec.conv_id,
        rec.session_id.strip(),
        rec.runtime_key.strip(),
        int(rec.created_at_ms) or int(rec.last_activity_ms) or now_ms(),
        int(rec.last_activity_ms),
        int(rec.last_seen_version),
        1 if rec.has_timeline else 0,
        rec.status.strip(),
        rec.last_error,
        rec.owner_id,
    )


def _require_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


class SQLiteTimelineStore:
    """A :class:`~webchat.stores.timeline.TimelineStore` on one SQLite file.

    Opening read-write creates the file if needed and upgrades an older schema in place; opening
    ``readonly`` requires an existing file and changes nothing. Either refuses a newer schema.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._writer: Writer | None = None
        if readonly:
            if not self.path.exists():
                raise StoreError(f"{self.path}: no such timeline store")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = Writer(self.path, name="webchat-timeline-writer")
        self._readers = Readers(self.path)
        try:
            self._src = self._open_schema()
        except BaseException:
            self.close()
            raise

    def _open_schema(self) -> dict[str, str]:
        def upgrade(conn: sqlite3.Connection) -> None:
            check_version(conn, self.path)
            upgrade_schema(conn)

        try:
            if self._writer is not None:
                self._writer.run(upgrade)
            conn = self._readers.get()
            check_version(conn, self.path)
            return {table: table_source(conn, table) for table in TABLES_DDL}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot use timeline store: {exc}") from exc

    @property
    def readonly(self) -> bool:
        return self._writer is None

    def _read(self) -> sqlite3.Connection:
        return self._readers.get()

    def _write(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        self.run_write(fn)

    @property
    def write_executor(self) -> Executor | None:
        """Where async callers run this store's writes (see :func:`webchat.stores.offload.write_call`)."""
        return self._writer.executor if self._writer is not None else None

    def run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction on this file's writer thread (shared with the prompt
        store, which lives in the same file so a prompt and the pointer move commit together)."""
        if self._writer is None:
            raise StoreError(f"{self.path}: timeline store is open read-only")
        return self._writer.run(fn)

    def read_connection(self) -> sqlite3.Connection:
        return self._readers.get()

    def source(self, table: str) -> str:
        """The FROM-clause source of one of this file's tables (see :func:`table_source`)."""
        return self._src[table]

    # -- timeline -----------------------------------------------------------------------------------

    def apply(self, conv_id: str, seq: int, entities: list[Entity]) -> None:
        _require_id("conv_id", conv_id)
        if seq <= 0:
            raise ValueError("seq must be positive")
        for e in entities:
            _require_id("entity id", e.id)
            _require_id("entity kind", e.kind)
        rows = [
            (conv_id, e.id, e.kind, e.created_at_ms, e.updated_at_ms, seq, encode_props(e.props))
            for e in entities
        ]
        at = max((e.updated_at_ms for e in entities), default=0) or now_ms()

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(_UPSERT_VERSION_SQL, (conv_id, seq))
            if rows:
                conn.executemany(_UPSERT_ENTITY_SQL, rows)
            conn.execute(_PROGRESS_SQL, (conv_id, at, at, seq))

        self._write(tx)

    def apply_batch(self, conv_id: str, batch: list[tuple[int, list[Entity]]]) -> None:
        """Several events' projections in one transaction (the hub's write-behind flush).

        An entity touched by several events is written once, in the state and version of the last one.
        """
        if not batch:
            return
        _require_id("conv_id", conv_id)
        latest: dict[str, tuple[int, Entity]] = {}
        for seq, entities in batch:
            if seq <= 0:
                raise ValueError("seq must be positive")
            for e in entities:
                _require_id("entity id", e.id)
                _require_id("entity kind", e.kind)
                latest[e.id] = (seq, e)
        top = max(seq for seq, _ in batch)
        rows = [
            (conv_id, e.id, e.kind, e.created_at_ms, e.updated_at_ms, seq, encode_props(e.props))
            for seq, e in latest.values()
        ]
        at = max((e.updated_at_ms for _, e in latest.values()), default=0) or now_ms()

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(_UPSERT_VERSION_SQL, (conv_id, top))
            if rows:
                conn.executemany(_UPSERT_ENTITY_SQL, rows)
            conn.execute(_PROGRESS_SQL, (conv_id, at, at, top))

        self._write(tx)

    def current_version(self, conv_id: str) -> int:
        sql = f"SELECT version FROM {self._src['timeline_versions']} WHERE conv_id = ?"
        row = self._read().execute(sql, (conv_id,)).fetchone()
        return int(row[0]) if row else 0

    def snapshot(self, conv_id: str, since_version: int = 0, limit: int | None = None) -> TimelineSnapshot:
        sql = (
            f"SELECT {_ENTITY_SELECT} FROM {self._src['timeline_entities']} "
            "WHERE conv_id = ? AND version > ? ORDER BY created_at_ms, rowid LIMIT ?"
        )
        params = (conv_id, max(0, int(since_version)), -1 if limit is None else max(0, int(limit)))
        conn = self._read()
        # One read transaction: the version and the entities come from the same committed state.
        conn.execute("BEGIN")
        try:
            version = self.current_version(conv_id)
            entities = [_entity(row) for row in conn.execute(sql, params)]
        finally:
            conn.execute("COMMIT")
        return TimelineSnapshot(conv_id=conv_id, version=version, entities=entities)

    def get_entity(self, conv_id: str, entity_id: str) -> Entity | None:
        source = self._src["timeline_entities"]
        sql = f"SELECT {_ENTITY_SELECT} FROM {source} WHERE conv_id = ? AND entity_id = ?"
        row = self._read().execute(sql, (conv_id, entity_id)).fetchone()
        return _entity(row) if row else None

    # -- seq reservations ---------------------------------------------------------------------------

    def reserved_seq(self, conv_id: str) -> int:
        sql = f"SELECT reserved FROM {self._src['timeline_seq_reservations']} WHERE conv_id = ?"
        row = self._read().execute(sql, (conv_id,)).fetchone()
        return int(row[0]) if row else 0

    def reserve_seq(self, conv_id: str, upto: int) -> None:
        _require_id("conv_id", conv_id)
        params = (conv_id, int(upto))
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO timeline_seq_reservations (conv_id, reserved) VALUES (?, ?) "
                "ON CONFLICT (conv_id) DO UPDATE SET "
                "reserved = MAX(timeline_seq_reservations.reserved, excluded.reserved)",
                params,
            )
        )

    def settle_seq(self, conv_id: str, last_delivered: int) -> None:
        _require_id("conv_id", conv_id)
        params = (int(last_delivered), conv_id, conv_id)
        self._write(
            lambda conn: conn.execute(
                "UPDATE timeline_seq_reservations SET reserved = MAX(?, COALESCE("
                "(SELECT version FROM timeline_versions WHERE conv_id = ?), 0)) WHERE conv_id = ?",
                params,
            )
        )

    # -- conversation index -------------------------------------------------------------------------

    def upsert_conversation(self, rec: ConversationRecord) -> None:
        params = conversation_params(rec)
        self._write(lambda conn: conn.execute(UPSERT_CONVERSATION_SQL, params))

    def set_pointer(self, conv_id: str, runtime_key: str, at_ms: int) -> None:
        _require_id("conv_id", conv_id)
        params = (conv_id, _require_id("runtime_key", runtime_key).strip(), int(at_ms), int(at_ms))
        self._write(lambda conn: conn.execute(_SET_POINTER_SQL, params))

    def get_conversation(self, conv_id: str) -> ConversationRecord | None:
        sql = f"SELECT {_CONVERSATION_SELECT} FROM {self._src['timeline_conversations']} WHERE conv_id = ?"
        row = self._read().execute(sql, (conv_id,)).fetchone()
        return _record(row) if row else None

    def list_conversations(
        self, limit: int = 100, since_ms: int = 0, *, owner_id: str | None = None
    ) -> list[ConversationRecord]:
        where = "last_activity_ms >= ?"
        params: list[Any] = [int(since_ms)]
        if owner_id is not None:
            where += " AND owner_id = ?"
            params.append(owner_id)
        sql = (
            f"SELECT {_CONVERSATION_SELECT} FROM {self._src['timeline_conversations']} "
            f"WHERE {where} ORDER BY last_activity_ms DESC, conv_id ASC LIMIT ?"
        )
        rows = self._read().execute(sql, (*params, max(0, int(limit))))
        return [_record(row) for row in rows]

    # -- inspection ---------------------------------------------------------------------------------

    def stats(self) -> list[KindCount]:
        sql = f"""
SELECT e.conv_id, e.kind, COUNT(*), MAX(e.version), COALESCE(MAX(v.version), 0)
FROM {self._src["timeline_entities"]} AS e
LEFT JOIN {self._src["timeline_versions"]} AS v ON v.conv_id = e.conv_id
GROUP BY e.conv_id, e.kind ORDER BY e.conv_id, e.kind
"""
        rows = self._read().execute(sql)
        return [KindCount(str(c), str(k), int(n), int(top), int(v)) for c, k, n, top, v in rows]

    def verify(self) -> list[TimelineProblem]:
        entities, versions = self._src["timeline_entities"], self._src["timeline_versions"]
        conn = self._read()
        problems = [
            TimelineProblem(
                "entity_version_ahead", str(c), str(e), f"entity version {ev} > conversation version {cv}"
            )
            for c, e, ev, cv in conn.execute(
                f"SELECT e.conv_id, e.entity_id, e.version, v.version FROM {entities} AS e "
                f"JOIN {versions} AS v ON v.conv_id = e.conv_id WHERE e.version > v.version "
                "ORDER BY e.conv_id, e.entity_id"
            )
        ]
        problems += [
            TimelineProblem("missing_version_row", str(c), "", f"{n} entities but no version row")
            for c, n in conn.execute(
                f"SELECT e.conv_id, COUNT(*) FROM {entities} AS e LEFT JOIN {versions} AS v "
                "ON v.conv_id = e.conv_id WHERE v.conv_id IS NULL GROUP BY e.conv_id ORDER BY e.conv_id"
            )
        ]
        problems += [
            TimelineProblem("invalid_entity_json", str(c), str(e), f"not a JSON object: {raw[:80]!r}")
            for c, e, raw in conn.execute(
                f"SELECT conv_id, entity_id, entity_json FROM {entities} "
                "WHERE CASE WHEN json_valid(entity_json) THEN json_type(entity_json) <> 'object' ELSE 1 END "
                "ORDER BY conv_id, entity_id"
            )
        ]
        return problems

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._readers.close()
