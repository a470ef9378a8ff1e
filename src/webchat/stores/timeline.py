"""The timeline store protocol: hydration entities, their versions, and the conversation index.

Two things live in ``timeline.db``:

- the **timeline**: per conversation, the entities a client renders (messages, tool calls), each
  stamped with the ``seq`` of the event that last changed it, plus the conversation's current
  version (the highest ``seq`` applied). ``GET /api/timeline`` serves it;
- the **conversation index**: one row per conversation whose ``runtime_key`` is the conversation
  POINTER (which runtime the next prompt uses). It never says which runtime produced a turn; the turn
  store holds that truth (runtime-truth.md §1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Entity:
    """One timeline entity as hydration returns it."""

    id: str
    kind: str
    created_at_ms: int
    updated_at_ms: int
    version: int
    props: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at_ms": self.created_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "version": self.version,
            "props": self.props,
        }


@dataclass(frozen=True)
class TimelineSnapshot:
    """Entities written after ``since_version`` in first-seen order; ``version`` is the conversation's."""

    conv_id: str
    version: int
    entities: list[Entity]

    def to_dict(self) -> dict[str, Any]:
        return {
            "conv_id": self.conv_id,
            "version": self.version,
            "entities": [e.to_dict() for e in self.entities],
        }


@dataclass(frozen=True)
class ConversationRecord:
    """A row of the conversation index. ``runtime_key`` is the pointer, never a turn's runtime."""

    conv_id: str
    session_id: str = ""
    runtime_key: str = ""
    created_at_ms: int = 0
    last_activity_ms: int = 0
    last_seen_version: int = 0
    has_timeline: bool = True
    status: str = "active"
    last_error: str = ""
    # Who created the conversation: set by its first accepted prompt and never changed afterwards.
    owner_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KindCount:
    """How many entities of one kind a conversation holds (``web-chat timeline stats``)."""

    conv_id: str
    kind: str
    entities: int
    max_entity_version: int
    version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimelineProblem:
    """A version inconsistency found by :meth:`TimelineStore.verify`."""

    check: str
    conv_id: str
    entity_id: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class TimelineStore(Protocol):
    def apply(self, conv_id: str, seq: int, entities: list[Entity]) -> None:
        """In one transaction: version = max(version, seq), and upsert each entity at version ``seq``.

        ``created_at_ms`` of an entity is kept from its first write. The conversation index row (created
        when missing) records the progress: ``last_seen_version`` and ``last_activity_ms`` only grow.
        """

    def apply_batch(self, conv_id: str, batch: list[tuple[int, list[Entity]]]) -> None:
        """Several ``(seq, entities)`` in one transaction, in seq order."""
        ...

    def current_version(self, conv_id: str) -> int:
        """The conversation's version (the last applied ``seq``); 0 when unknown."""

    def reserved_seq(self, conv_id: str) -> int:
        """The highest seq reserved for the conversation (0 when none): the next process starts above it."""

    def reserve_seq(self, conv_id: str, upto: int) -> None:
        """Durably reserve every seq up to ``upto`` (reservations only grow) before any frame carries one."""

    def settle_seq(self, conv_id: str, last_delivered: int) -> None:
        """Give back the unused part of the reservation: only when no seq above ``last_delivered`` was
        ever handed out (a clean stop with every event written), so the next process goes on without a
        gap. Never below the written version."""

    def snapshot(self, conv_id: str, since_version: int = 0, limit: int | None = None) -> TimelineSnapshot:
        """Entities with ``version > since_version`` in first-seen order, read in one transaction."""

    def get_entity(self, conv_id: str, entity_id: str) -> Entity | None: ...

    def upsert_conversation(self, rec: ConversationRecord) -> None:
        """Insert or update an index row.

        ``created_at_ms`` is kept from the first insert; ``runtime_key``, ``session_id``, ``status`` and
        ``last_error`` are replaced only by a non-empty value (an empty pointer never clears the pointer);
        ``last_activity_ms`` and ``last_seen_version`` only grow; ``has_timeline`` once set stays set;
        ``owner_id`` is written by the insert only.
        """

    def get_conversation(self, conv_id: str) -> ConversationRecord | None: ...

    def list_conversations(
        self, limit: int = 100, since_ms: int = 0, *, owner_id: str | None = None
    ) -> list[ConversationRecord]:
        """Index rows with ``last_activity_ms >= since_ms`` (and of ``owner_id``, when given), newest
        activity first, ties by ``conv_id``."""

    def set_pointer(self, conv_id: str, runtime_key: str, at_ms: int) -> None:
        """Move the conversation pointer to a non-empty ``runtime_key`` (creating the row when missing)."""

    def stats(self) -> list[KindCount]:
        """Entity counts per conversation and kind."""

    def verify(self) -> list[TimelineProblem]:
        """Version consistency problems; empty when the store is consistent."""

    def close(self) -> None: ...
