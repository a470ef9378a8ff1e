"""The turn-store protocol: what callers may ask of any backend (SQLite now, PostgreSQL next)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

from webchat.turns.model import Turn
from webchat.turns.serde import turn_to_yaml


class StoreError(Exception):
    """A store could not be used (missing, corrupt, newer schema, locked past the timeout)."""


class SchemaTooNewError(StoreError):
    """The store was written by a newer web-chat; refusing to open it rather than risk damaging it."""


@dataclass(frozen=True)
class TurnQuery:
    conv_id: str = ""
    session_id: str = ""
    turn_id: str = ""
    phase: str = ""
    runtime_key: str = ""
    inference_id: str = ""
    since_ms: int = 0
    limit: int = 100


@dataclass
class Snapshot:
    """One phase snapshot of one turn, with the runtime truth of its turn row."""

    conv_id: str
    session_id: str
    turn_id: str
    phase: str
    created_at_ms: int
    runtime_key: str
    inference_id: str
    turn: Turn = field(repr=False)

    @cached_property
    def payload(self) -> str:
        """The turn as YAML text, the format operators and the debug API read."""
        return turn_to_yaml(self.turn)

    def parsed(self) -> dict[str, Any]:
        return self.turn.to_dict()

    def summary(self) -> dict[str, Any]:
        """The snapshot's identity and per-turn truth, as listings (CLI and debug API) show it."""
        return {
            "conv_id": self.conv_id,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "phase": self.phase,
            "runtime_key": self.runtime_key,
            "inference_id": self.inference_id,
            "created_at_ms": self.created_at_ms,
        }


@dataclass(frozen=True)
class TurnRow:
    """A turn's row: the per-turn truth, independent of any phase."""

    conv_id: str
    session_id: str
    turn_id: str
    runtime_key: str
    inference_id: str
    turn_created_at_ms: int
    updated_at_ms: int


@runtime_checkable
class TurnStore(Protocol):
    def save_snapshot(
        self,
        conv_id: str,
        session_id: str,
        turn: Turn,
        phase: str,
        created_at_ms: int,
        *,
        runtime_key: str = "",
        inference_id: str = "",
    ) -> None:
        """Persist one phase snapshot in one transaction (upsert rules of runtime-truth.md §3)."""

    def list_snapshots(self, query: TurnQuery) -> list[Snapshot]:
        """Snapshots of a conversation or session, newest first, filtered by the query."""

    def load_turn(self, conv_id: str, session_id: str, turn_id: str) -> list[Snapshot]:
        """Every phase snapshot of one turn, newest first; empty when the turn is unknown."""

    def runtime_history(self, conv_id: str) -> list[TurnRow]:
        """A conversation's turn rows ordered by ``updated_at_ms, turn_id`` (the per-turn truth)."""

    def latest_snapshot(self, conv_id: str) -> Snapshot | None:
        """The newest snapshot of a conversation (its full history), for restart recovery."""

    def close(self) -> None: ...
