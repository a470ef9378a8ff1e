"""The PostgreSQL prompt store: ``webchat_prompts`` beside the timeline tables, in one database.

Same table, columns and index names as the SQLite store's. ``accept`` upserts the conversation index row in
its own transaction, so the "prompts" component needs the "timeline" one: migrate them in that order,
``migrate(db, [timeline_store.COMPONENT, prompt_store.COMPONENT])`` (:data:`COMPONENTS`).

PostgreSQL runs transactions concurrently where SQLite had one writer thread. Every state change of a
conversation's prompts (accept, mark_running, finish) first takes a transaction-scoped advisory lock on the
conversation, so position assignment and "one running prompt per conversation" see every earlier change.
``accept_seq`` comes from a sequence, drawn under that lock: strictly increasing across conversations
(gaps are possible, order is what counts). Two acceptances of one idempotency key for different
conversations meet at the unique index; the loser retries and finds the winner's row.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Final

import psycopg
from psycopg import errors

from webchat.stores.postgres import timeline_store
from webchat.stores.postgres.database import Database
from webchat.stores.postgres.migrations import Component, Step, require_current
from webchat.stores.prompts import (
    FINISHED,
    QUEUED,
    RUNNING,
    IdempotencyKeyReused,
    NewPrompt,
    PromptRecord,
    PromptStateError,
)
from webchat.stores.protocol import StoreError
from webchat.stores.sqlite.prompt_store import (
    NEXT_STATUSES,
    accepted_record,
    dump_document,
    finish_changes,
    prompt_record,
)
from webchat.stores.sqlite.timeline_store import conversation_params
from webchat.stores.timeline import ConversationRecord

COMPONENT: Final = Component(
    "prompts",
    (
        Step(
            "durable prompt queue",
            (
                """CREATE TABLE webchat_prompts (
    conv_id TEXT COLLATE "C" NOT NULL,
    position BIGINT NOT NULL,
    turn_id TEXT COLLATE "C" NOT NULL,
    session_id TEXT NOT NULL DEFAULT '',
    user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    accept_seq BIGINT NOT NULL,
    prompt TEXT NOT NULL,
    runtime_key TEXT NOT NULL DEFAULT '',
    runtime_fingerprint TEXT NOT NULL DEFAULT '',
    runtime_json TEXT NOT NULL DEFAULT '{}',
    idempotency_key TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL DEFAULT 'queued',
    inference_id TEXT NOT NULL DEFAULT '',
    response_status INTEGER NOT NULL DEFAULT 0,
    response_json TEXT NOT NULL DEFAULT '{}',
    error_code TEXT NOT NULL DEFAULT '',
    accepted_at_ms BIGINT NOT NULL DEFAULT 0,
    started_at_ms BIGINT NOT NULL DEFAULT 0,
    finished_at_ms BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_id, position)
)""",
                # Idempotency is scoped to the user: one key names one prompt (scale-out.md §1).
                "CREATE UNIQUE INDEX webchat_prompts_by_idempotency_key "
                "ON webchat_prompts (user_id, idempotency_key)",
                "CREATE UNIQUE INDEX webchat_prompts_by_turn ON webchat_prompts (turn_id)",
                "CREATE INDEX webchat_prompts_by_status ON webchat_prompts (status, accept_seq)",
                "CREATE INDEX webchat_prompts_by_accept_seq ON webchat_prompts (accept_seq)",
                "CREATE SEQUENCE webchat_prompts_accept_seq AS BIGINT",
            ),
        ),
    ),
)
# The order to migrate them in: accept writes the timeline's conversation index.
COMPONENTS: Final = (timeline_store.COMPONENT, COMPONENT)

# Namespace of the per-conversation advisory locks (the two-key space; the migration lock uses the other).
CONVERSATION_LOCK_SPACE: Final = 0x77636376  # "wccv"
_LOCK_SQL: Final = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_KEY_INDEX: Final = "webchat_prompts_by_idempotency_key"
# Attempts of one acceptance that lost an idempotency-key race (the next one finds the winner's row).
_ACCEPT_ATTEMPTS: Final = 3

_COLUMNS: Final = (
    "conv_id, position, turn_id, session_id, user_id, accept_seq, prompt, runtime_key, runtime_fingerprint, "
    "runtime_json, idempotency_key, status, inference_id, response_status, response_json, error_code, "
    "accepted_at_ms, started_at_ms, finished_at_ms"
)
_FIND_KEY_SQL: Final = f"SELECT {_COLUMNS} FROM webchat_prompts WHERE user_id = %s AND idempotency_key = %s"
_FIND_TURN_SQL: Final = f"SELECT {_COLUMNS} FROM webchat_prompts WHERE conv_id = %s AND turn_id = %s"
_NEXT_POSITION_SQL: Final = (
    "SELECT COALESCE((SELECT MAX(position) FROM webchat_prompts WHERE conv_id = %s), 0) + 1, "
    "nextval('webchat_prompts_accept_seq')"
)
_INSERT_PROMPT_SQL: Final = (
    f"INSERT INTO webchat_prompts ({_COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '', %s, %s, 0)"
)
_OTHER_RUNNING_SQL: Final = (
    "SELECT turn_id FROM webchat_prompts WHERE conv_id = %s AND status = 'running' AND turn_id <> %s"
)
_START_SQL: Final = (
    "UPDATE webchat_prompts SET status = %s, inference_id = %s, started_at_ms = %s "
    "WHERE conv_id = %s AND position = %s"
)
_FINISH_SQL: Final = (
    "UPDATE webchat_prompts SET status = %s, error_code = %s, finished_at_ms = %s "
    "WHERE conv_id = %s AND position = %s"
)


class _KeyRace(Exception):
    """Another transaction committed the same idempotency key first."""


def _lock_conversation(conn: psycopg.Connection, conv_id: str) -> None:
    conn.execute(_LOCK_SQL, (CONVERSATION_LOCK_SPACE, conv_id))


def _refuse_if_another_runs(conn: psycopg.Connection, conv_id: str, turn_id: str) -> None:
    """One running prompt per conversation (the caller holds the conversation's lock)."""
    other = conn.execute(_OTHER_RUNNING_SQL, (conv_id, turn_id)).fetchone()
    if other is not None:
        raise PromptStateError(f"conversation {conv_id} already runs prompt {other[0]}; one at a time")


def _transition_in(
    conn: psycopg.Connection, conv_id: str, turn_id: str, status: str, sql: str, changes: dict[str, Any]
) -> PromptRecord:
    row = conn.execute(_FIND_TURN_SQL, (conv_id, turn_id)).fetchone()
    if row is None:
        raise PromptStateError(f"no prompt {turn_id} in conversation {conv_id}")
    current = prompt_record(row)
    if status in FINISHED and current.status == status and current.error_code == changes["error_code"]:
        return current  # recorded already, with the next prompt's acceptance
    if current.status not in NEXT_STATUSES[status]:
        raise PromptStateError(f"prompt {turn_id} is {current.status}; it cannot become {status}")
    if status == RUNNING:
        _refuse_if_another_runs(conn, conv_id, turn_id)
    conn.execute(sql, (status, *changes.values(), conv_id, current.position))
    return replace(current, status=status, **changes)


def _replay(known: PromptRecord, prompt: NewPrompt) -> PromptRecord:
    same_conv = known.conv_id == prompt.conv_id or not prompt.conv_id_given
    if not same_conv or known.prompt != prompt.prompt:
        what = "conversation" if not same_conv else "prompt"
        raise IdempotencyKeyReused(
            f"idempotency key {prompt.idempotency_key!r} was already used for another {what}"
        )
    return known


class PostgresPromptStore:
    """A :class:`~webchat.stores.prompts.PromptStore` in a PostgreSQL database migrated with
    :data:`COMPONENTS`. Like the timeline store, it never closes the database it was given."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._closed = False
        require_current(db, COMPONENTS)

    def _conn(self) -> AbstractContextManager[psycopg.Connection]:
        if self._closed:
            raise StoreError(f"{self.db.label}: prompt store is closed")
        return self.db.connection()

    def _one(self, sql: str, params: tuple[Any, ...]) -> PromptRecord | None:
        with self._conn() as conn:
            row = conn.execute(sql, params).fetchone()
        return prompt_record(row) if row else None

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[PromptRecord]:
        with self._conn() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [prompt_record(row) for row in rows]

    # -- writes -------------------------------------------------------------------------------------

    def accept(self, prompt: NewPrompt, conversation: ConversationRecord) -> tuple[PromptRecord, bool]:
        if not prompt.idempotency_key:
            raise ValueError("a prompt needs an idempotency key")
        conv_params = conversation_params(conversation)
        for attempt in range(1, _ACCEPT_ATTEMPTS + 1):
            try:
                with self._conn() as conn:
                    return self._accept_in(conn, prompt, conv_params)
            except _KeyRace:
                if attempt == _ACCEPT_ATTEMPTS:
                    raise StoreError(
                        f"idempotency key {prompt.idempotency_key!r}: still contended after "
                        f"{_ACCEPT_ATTEMPTS} attempts"
                    ) from None
        raise AssertionError("unreachable")

    def _accept_in(
        self, conn: psycopg.Connection, prompt: NewPrompt, conv_params: tuple[Any, ...]
    ) -> tuple[PromptRecord, bool]:
        _lock_conversation(conn, prompt.conv_id)
        row = conn.execute(_FIND_KEY_SQL, (prompt.user_id, prompt.idempotency_key)).fetchone()
        if row is not None:
            return _replay(prompt_record(row), prompt), True
        if prompt.inference_id:
            done = prompt.settles
            if done is not None:
                if done.status not in FINISHED:
                    raise ValueError(f"not a final status: {done.status!r}")
                changes = finish_changes(done.error_code, done.at_ms)
                _transition_in(conn, prompt.conv_id, done.turn_id, done.status, _FINISH_SQL, changes)
            _refuse_if_another_runs(conn, prompt.conv_id, prompt.turn_id)
        position, accept_seq = conn.execute(_NEXT_POSITION_SQL, (prompt.conv_id,)).fetchone() or (0, 0)
        try:
            # A savepoint: losing the key race must not abort the transaction before it is rolled back.
            with conn.transaction():
                conn.execute(
                    _INSERT_PROMPT_SQL,
                    (
                        prompt.conv_id,
                        position,
                        prompt.turn_id,
                        prompt.session_id,
                        prompt.user_id,
                        accept_seq,
                        prompt.prompt,
                        prompt.runtime_key,
                        prompt.runtime_fingerprint,
                        dump_document(prompt.runtime),
                        prompt.idempotency_key,
                        RUNNING if prompt.inference_id else QUEUED,
                        prompt.inference_id,
                        prompt.response_status,
                        dump_document(prompt.response),
                        prompt.accepted_at_ms,
                        prompt.accepted_at_ms if prompt.inference_id else 0,
                    ),
                )
        except errors.UniqueViolation as exc:
            if exc.diag.constraint_name == _KEY_INDEX:
                raise _KeyRace from exc
            raise
        conn.execute(timeline_store.UPSERT_CONVERSATION_SQL, conv_params)
        return accepted_record(prompt, int(position), int(accept_seq)), False

    def _transition(
        self, conv_id: str, turn_id: str, status: str, sql: str, changes: dict[str, Any]
    ) -> PromptRecord:
        with self._conn() as conn:
            _lock_conversation(conn, conv_id)
            return _transition_in(conn, conv_id, turn_id, status, sql, changes)

    def mark_running(self, conv_id: str, turn_id: str, inference_id: str, at_ms: int) -> PromptRecord:
        if not inference_id:
            raise ValueError("a running prompt needs its inference id")
        changes = {"inference_id": inference_id, "started_at_ms": int(at_ms)}
        return self._transition(conv_id, turn_id, RUNNING, _START_SQL, changes)

    def finish(self, conv_id: str, turn_id: str, status: str, error_code: str, at_ms: int) -> PromptRecord:
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status!r}")
        return self._transition(conv_id, turn_id, status, _FINISH_SQL, finish_changes(error_code, at_ms))

    # -- reads --------------------------------------------------------------------------------------

    def find_key(self, user_id: str, idempotency_key: str) -> PromptRecord | None:
        return self._one(_FIND_KEY_SQL, (user_id, idempotency_key))

    def get(self, conv_id: str, turn_id: str) -> PromptRecord | None:
        return self._one(_FIND_TURN_SQL, (conv_id, turn_id))

    def by_status(self, *statuses: str) -> list[PromptRecord]:
        if not statuses:
            return []
        sql = f"SELECT {_COLUMNS} FROM webchat_prompts WHERE status = ANY(%s) ORDER BY accept_seq"
        return self._all(sql, (list(statuses),))

    def conversation_prompts(self, conv_id: str) -> list[PromptRecord]:
        return self._all(
            f"SELECT {_COLUMNS} FROM webchat_prompts WHERE conv_id = %s ORDER BY position", (conv_id,)
        )

    def last_finished(self, conv_id: str) -> PromptRecord | None:
        sql = (
            f"SELECT {_COLUMNS} FROM webchat_prompts WHERE conv_id = %s AND started_at_ms > 0 "
            "AND status = ANY(%s) ORDER BY position DESC LIMIT 1"
        )
        return self._one(sql, (conv_id, sorted(FINISHED)))

    def close(self) -> None:
        """Mark the store closed; the database belongs to whoever opened it."""
        self._closed = True
