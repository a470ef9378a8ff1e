"""The event envelope of the ``/ws`` stream: ``{"sem": true, "event": {type, id, seq, data, metadata?}}``.

``seq`` strictly increases per conversation for the life of the conversation; the hub assigns it and
the timeline version is the last ``seq`` applied, so a client can hydrate and then replay frames with
``seq`` above the snapshot version.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

WS_HELLO: Final = "ws.hello"
WS_PONG: Final = "ws.pong"
CHAT_MESSAGE: Final = "chat.message"
CHAT_QUEUED: Final = "chat.queued"
CHAT_TURN_DONE: Final = "chat.turn_done"
LLM_START: Final = "llm.start"
LLM_DELTA: Final = "llm.delta"
LLM_FINAL: Final = "llm.final"
LLM_ERROR: Final = "llm.error"
TOOL_START: Final = "tool.start"
TOOL_RESULT: Final = "tool.result"
TOOL_DONE: Final = "tool.done"
TIMELINE_UPSERT: Final = "timeline.upsert"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _fallback(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def encode(value: Any) -> str:
    """Compact JSON; values JSON cannot represent (datetimes, paths…) become strings, never an error."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_fallback)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types, exactly as a client decoding :func:`encode` output would see it."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.loads(encode(value))


@dataclass(frozen=True)
class Event:
    """One stream event. ``ts_ms`` is server-side only (it is not part of the frame)."""

    type: str
    id: str
    seq: int
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    ts_ms: int = 0

    def frame(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.type, "id": self.id, "seq": self.seq, "data": self.data}
        if self.metadata is not None:
            event["metadata"] = self.metadata
        return {"sem": True, "event": event}

    @cached_property
    def frame_json(self) -> str:
        """The frame as sent on the socket, encoded once however many subscribers receive it."""
        return encode(self.frame())

    @classmethod
    def from_frame(cls, frame: dict[str, Any], ts_ms: int = 0) -> Event:
        """Decode a frame (as a client would); raises ``ValueError`` when it is not a ``sem`` frame."""
        event = frame.get("event") if isinstance(frame, dict) and frame.get("sem") is True else None
        if not isinstance(event, dict):
            raise ValueError("not a sem frame")
        data = event.get("data")
        metadata = event.get("metadata")
        return cls(
            type=str(event.get("type", "")),
            id=str(event.get("id", "")),
            seq=int(event.get("seq", 0)),
            data=data if isinstance(data, dict) else {},
            metadata=metadata if isinstance(metadata, dict) else None,
            ts_ms=ts_ms,
        )
