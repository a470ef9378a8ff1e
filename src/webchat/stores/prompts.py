"""The durable prompt queue and idempotency store (scale-out.md §1), behind one protocol.

A prompt row is committed before ``POST /chat`` answers. Its status runs
``queued → running → done | failed | cancelled | not_run``; at most one prompt of a conversation is
``running``. The row also holds the request's idempotency key, scoped to the user, and the response that
was given, so a retry gets the same answer after a restart. The SQLite implementation lives beside the
timeline (same file, same writer); a PostgreSQL one implements the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from webchat.stores.protocol import StoreError
from webchat.stores.timeline import ConversationRecord

QUEUED: Final = "queued"
RUNNING: Final = "running"
DONE: Final = "done"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
NOT_RUN: Final = "not_run"
STATUSES: Final = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, NOT_RUN)
FINISHED: Final = frozenset({DONE, FAILED, CANCELLED, NOT_RUN})


class IdempotencyKeyReused(StoreError):
    """The key already names another prompt (another conversation, or other prompt text)."""


class PromptStateError(StoreError):
    """A status change the state machine does not allow (e.g. finishing a prompt twice)."""


@dataclass(frozen=True)
class Settle:
    """The end of a running prompt whose outcome is decided (its last frame is out), recorded together with
    the next prompt's acceptance so that one can start at once."""

    turn_id: str
    status: str
    error_code: str
    at_ms: int


@dataclass(frozen=True)
class NewPrompt:
    """A prompt as accepted, before it has a position in its conversation's queue."""

    conv_id: str
    turn_id: str
    session_id: str
    prompt: str
    runtime_key: str
    runtime_fingerprint: str
    runtime: dict[str, Any]
    idempotency_key: str
    response_status: int
    response: dict[str, Any]
    accepted_at_ms: int
    user_id: str = ""
    # True when the request named its conversation; a retry without conv_id still matches the key.
    conv_id_given: bool = True
    # Set when the prompt starts at once: the row is written ``running`` with it, in the same transaction.
    inference_id: str = ""
    # The conversation's running prompt, finished in the same transaction (only with ``inference_id``).
    settles: Settle | None = None


@dataclass(frozen=True)
class PromptRecord:
    conv_id: str
    position: int
    turn_id: str
    session_id: str
    user_id: str
    accept_seq: int
    prompt: str
    runtime_key: str
    runtime_fingerprint: str
    runtime: dict[str, Any] = field(repr=False)
    idempotency_key: str
    status: str
    inference_id: str
    response_status: int
    response: dict[str, Any] = field(repr=False)
    error_code: str
    accepted_at_ms: int
    started_at_ms: int
    finished_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "conv_id": self.conv_id,
            "position": self.position,
            "turn_id": self.turn_id,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "prompt": self.prompt,
            "runtime_key": self.runtime_key,
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "inference_id": self.inference_id,
            "error_code": self.error_code,
            "accepted_at_ms": self.accepted_at_ms,
            "started_at_ms": self.started_at_ms,
            "finished_at_ms": self.finished_at_ms,
        }


@runtime_checkable
class PromptStore(Protocol):
    def accept(self, prompt: NewPrompt, conversation: ConversationRecord) -> tuple[PromptRecord, bool]:
        """In one transaction: look the idempotency key up (scoped to the user); when it is new, append the
        prompt to its conversation's queue as ``queued`` (``running`` when it carries its inference id,
        refused if another prompt of the conversation runs, unless it is the one ``settles`` finishes first in
        the same transaction) and upsert the conversation index row (the
        pointer move). Returns ``(record, replayed)``; a replay changes nothing.

        Raises :class:`IdempotencyKeyReused` when the key names a prompt of another conversation or with
        other text.
        """

    def find_key(self, user_id: str, idempotency_key: str) -> PromptRecord | None:
        """The prompt a key names, if any (a read; :meth:`accept` decides atomically)."""

    def mark_running(self, conv_id: str, turn_id: str, inference_id: str, at_ms: int) -> PromptRecord:
        """``queued → running`` with its inference id; refused while another prompt of it runs."""

    def finish(self, conv_id: str, turn_id: str, status: str, error_code: str, at_ms: int) -> PromptRecord:
        """``running → done|failed|cancelled`` or ``queued → not_run|cancelled``. Finishing a prompt again
        with the status and code it ended with changes nothing (the acceptance of the next prompt may
        have recorded it first, see :class:`Settle`)."""

    def get(self, conv_id: str, turn_id: str) -> PromptRecord | None: ...

    def by_status(self, *statuses: str) -> list[PromptRecord]:
        """Prompts in any of ``statuses``, in the order they were accepted (across conversations)."""

    def conversation_prompts(self, conv_id: str) -> list[PromptRecord]:
        """One conversation's prompts in queue order."""

    def last_finished(self, conv_id: str) -> PromptRecord | None:
        """The conversation's latest prompt (by position) that ran and ended: its turn holds the history."""
