"""The SQLite prompt store: ``webchat_prompts`` in ``timeline.db``, written by the timeline's writer.

Living in the same file as the conversation index lets a prompt row and the pointer move commit in one
transaction, and sharing the writer thread keeps two writers of one process from waiting on each other.
"""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any, Final

from webchat.stores.prompts import (
    CANCELLED,
    DONE,
    FAILED,
    FINISHED,
    NOT_RUN,
    QUEUED,
    RUNNING,
    IdempotencyKeyReused,
    NewPrompt,
    PromptRecord,
    PromptStateError,
)
from webchat.stores.sqlite.timeline_store import (
    UPSERT_CONVERSATION_SQL,
    SQLiteTimelineStore,
    conversation_params,
)
from webchat.stores.timeline import ConversationRecord

_COLUMNS: Final = (
    "conv_id, position, turn_id, session_id, user_id, accept_seq, prompt, runtime_key, runtime_fingerprint, "
    "runtime_json, idempotency_key, status, inference_id, response_status, response_json, error_code, "
    "accepted_at_ms, started_at_ms, finished_at_ms"
)
# The statements of each state change (bench/store.py runs the same ones on a raw connection).
FIND_KEY_SQL: Final = f"SELECT {_COLUMNS} FROM webchat_prompts WHERE user_id = ? AND idempotency_key = ?"
FIND_TURN_SQL: Final = f"SELECT {_COLUMNS} FROM webchat_prompts WHERE conv_id = ? AND turn_id = ?"
NEXT_POSITION_SQL: Final = (
    "SELECT COALESCE((SELECT MAX(position) FROM webchat_prompts WHERE conv_id = ?), 0) + 1, "
    "COALESCE((SELECT MAX(accept_seq) FROM webchat_prompts), 0) + 1"
)
INSERT_PROMPT_SQL: Final = (
    f"INSERT INTO webchat_prompts ({_COLUMNS}) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, 0)"
)
OTHER_RUNNING_SQL: Final = (
    "SELECT turn_id FROM webchat_prompts WHERE conv_id = ? AND status = 'running' AND turn_id <> ?"
)
START_SQL: Final = (
    "UPDATE webchat_prompts SET status = ?, inference_id = ?, started_at_ms = ? "
    "WHERE conv_id = ? AND position = ?"
)
FINISH_SQL: Final = (
    "UPDATE webchat_prompts SET status = ?, error_code = ?, finished_at_ms = ? "
    "WHERE conv_id = ? AND position = ?"
)
# Which status may follow which (scale-out.md §1).
NEXT_STATUSES: Final = {
    RUNNING: frozenset({QUEUED}),
    DONE: frozenset({RUNNING}),
    FAILED: frozenset({RUNNING}),
    CANCELLED: frozenset({RUNNING, QUEUED}),
    NOT_RUN: frozenset({QUEUED}),
}


def prompt_record(row: sqlite3.Row | tuple[Any, ...]) -> PromptRecord:
    (
        conv_id,
        position,
        turn_id,
        session_id,
        user_id,
        accept_seq,
        prompt,
        runtime_key,
        fingerprint,
        runtime_json,
        key,
        status,
        inference_id,
        response_status,
        response_json,
        error_code,
        accepted,
        started,
        finished,
    ) = row
    return PromptRecord(
        conv_id=str(conv_id),
        position=int(position),
        turn_id=str(turn_id),
        session_id=str(session_id),
        user_id=str(user_id),
        accept_seq=int(accept_seq),
        prompt=str(prompt),
        runtime_key=str(runtime_key),
        runtime_fingerprint=str(fingerprint),
        runtime=_object(runtime_json),
        idempotency_key=str(key),
        status=str(status),
        inference_id=str(inference_id),
        response_status=int(response_status),
        response=_object(response_json),
        error_code=str(error_code),
        accepted_at_ms=int(accepted),
        started_at_ms=int(started),
        finished_at_ms=int(finished),
    )


def _refuse_if_another_runs(conn: sqlite3.Connection, conv_id: str, turn_id: str) -> None:
    """One running prompt per conversation."""
    other = conn.execute(OTHER_RUNNING_SQL, (conv_id, turn_id)).fetchone()
    if other is not None:
        raise PromptStateError(f"conversation {conv_id} already runs prompt {other[0]}; one at a time")


def _transition_in(
    conn: sqlite3.Connection,
    conv_id: str,
    turn_id: str,
    status: str,
    sql: str,
    changes: dict[str, Any],
) -> PromptRecord:
    row = conn.execute(FIND_TURN_SQL, (conv_id, turn_id)).fetchone()
    current = prompt_record(row) if row else None
    if current is None:
        raise PromptStateError(f"no prompt {turn_id} in conversation {conv_id}")
    if status in FINISHED and current.status == status and current.error_code == changes["error_code"]:
        return current  # recorded already, with the next prompt's acceptance
    if current.status not in NEXT_STATUSES[status]:
        raise PromptStateError(f"prompt {turn_id} is {current.status}; it cannot become {status}")
    if status == RUNNING:
        _refuse_if_another_runs(conn, conv_id, turn_id)
    conn.execute(sql, (status, *changes.values(), conv_id, current.position))
    return replace(current, status=status, **changes)


def finish_changes(error_code: str, at_ms: int) -> dict[str, Any]:
    return {"error_code": error_code, "finished_at_ms": int(at_ms)}


def accepted_record(prompt: NewPrompt, position: int, accept_seq: int) -> PromptRecord:
    return PromptRecord(
        conv_id=prompt.conv_id,
        position=position,
        turn_id=prompt.turn_id,
        session_id=prompt.session_id,
        user_id=prompt.user_id,
        accept_seq=accept_seq,
        prompt=prompt.prompt,
        runtime_key=prompt.runtime_key,
        runtime_fingerprint=prompt.runtime_fingerprint,
        runtime=prompt.runtime,
        idempotency_key=prompt.idempotency_key,
        status=RUNNING if prompt.inference_id else QUEUED,
        inference_id=prompt.inference_id,
        response_status=prompt.response_status,
        response=prompt.response,
        error_code="",
        accepted_at_ms=prompt.accepted_at_ms,
        started_at_ms=prompt.accepted_at_ms if prompt.inference_id else 0,
        finished_at_ms=0,
    )


def _object(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def dump_document(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class SQLitePromptStore:
    """A :class:`~webchat.stores.prompts.PromptStore` in the timeline store's file."""

    def __init__(self, timeline: SQLiteTimelineStore) -> None:
        if timeline.readonly:
            raise ValueError("the prompt store needs a writable timeline store")
        self._timeline = timeline

    @property
    def write_executor(self) -> Executor | None:
        """The timeline store's: the two share one file and one writer."""
        return self._timeline.write_executor

    def _read(self) -> sqlite3.Connection:
        return self._timeline.read_connection()

    def _one(self, sql: str, params: tuple[Any, ...]) -> PromptRecord | None:
        row = self._read().execute(sql, params).fetchone()
        return prompt_record(row) if row else None

    # -- writes -------------------------------------------------------------------------------------

    def accept(self, prompt: NewPrompt, conversation: ConversationRecord) -> tuple[PromptRecord, bool]:
        if not prompt.idempotency_key:
            raise ValueError("a prompt needs an idempotency key")
        conv_params = conversation_params(conversation)

        def tx(conn: sqlite3.Connection) -> tuple[PromptRecord, bool]:
            row = conn.execute(FIND_KEY_SQL, (prompt.user_id, prompt.idempotency_key)).fetchone()
            known = prompt_record(row) if row else None
            if known is not None:
                same_conv = known.conv_id == prompt.conv_id or not prompt.conv_id_given
                if not same_conv or known.prompt != prompt.prompt:
                    what = "conversation" if not same_conv else "prompt"
                    raise IdempotencyKeyReused(
                        f"idempotency key {prompt.idempotency_key!r} was already used for another {what}"
                    )
                return known, True
            if prompt.inference_id:
                done = prompt.settles
                if done is not None:
                    if done.status not in FINISHED:
                        raise ValueError(f"not a final status: {done.status!r}")
                    changes = finish_changes(done.error_code, done.at_ms)
                    _transition_in(conn, prompt.conv_id, done.turn_id, done.status, FINISH_SQL, changes)
                _refuse_if_another_runs(conn, prompt.conv_id, prompt.turn_id)
            position, accept_seq = conn.execute(NEXT_POSITION_SQL, (prompt.conv_id,)).fetchone()
            conn.execute(
                INSERT_PROMPT_SQL,
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
            conn.execute(UPSERT_CONVERSATION_SQL, conv_params)
            return accepted_record(prompt, int(position), int(accept_seq)), False

        return self._timeline.run_write(tx)

    def _transition(
        self,
        conv_id: str,
        turn_id: str,
        status: str,
        sql: str,
        changes: dict[str, Any],
    ) -> PromptRecord:
        return self._timeline.run_write(
            lambda conn: _transition_in(conn, conv_id, turn_id, status, sql, changes)
        )

    def mark_running(self, conv_id: str, turn_id: str, inference_id: str, at_ms: int) -> PromptRecord:
        if not inference_id:
            raise ValueError("a running prompt needs its inference id")
        return self._transition(
            conv_id,
            turn_id,
            RUNNING,
            START_SQL,
            {"inference_id": inference_id, "started_at_ms": int(at_ms)},
        )

    def finish(self, conv_id: str, turn_id: str, status: str, error_code: str, at_ms: int) -> PromptRecord:
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status!r}")
        return self._transition(
            conv_id,
            turn_id,
            status,
            FINISH_SQL,
            finish_changes(error_code, at_ms),
        )

    # -- reads --------------------------------------------------------------------------------------

    def find_key(self, user_id: str, idempotency_key: str) -> PromptRecord | None:
        return self._one(FIND_KEY_SQL, (user_id, idempotency_key))

    def get(self, conv_id: str, turn_id: str) -> PromptRecord | None:
        return self._one(FIND_TURN_SQL, (conv_id, turn_id))

    def by_status(self, *statuses: str) -> list[PromptRecord]:
        if not statuses:
            return []
        marks = ", ".join("?" for _ in statuses)
        sql = f"SELECT {_COLUMNS} FROM webchat_prompts WHERE status IN ({marks}) ORDER BY accept_seq"
        return [prompt_record(row) for row in self._read().execute(sql, statuses)]

    def conversation_prompts(self, conv_id: str) -> list[PromptRecord]:
        sql = f"SELECT {_COLUMNS} FROM webchat_prompts WHERE conv_id = ? ORDER BY position"
        return [prompt_record(row) for row in self._read().execute(sql, (conv_id,))]

    def last_finished(self, conv_id: str) -> PromptRecord | None:
        marks = ", ".join("?" for _ in FINISHED)
        sql = (
            f"SELECT {_COLUMNS} FROM webchat_prompts WHERE conv_id = ? AND started_at_ms > 0 "
            f"AND status IN ({marks}) ORDER BY position DESC LIMIT 1"
        )
        row = self._read().execute(sql, (conv_id, *sorted(FINISHED))).fetchone()
        return prompt_record(row) if row else None

    def close(self) -> None:
        """The prompt store owns no connection of its own: closing the timeline store closes it."""
