"""What both fake providers share: scripted behaviours chosen by a marker in the prompt, request records."""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Final

# A marker in the latest user message picks a behaviour; no marker: a plain streamed answer.
TOOL: Final = "[[tool]]"  # a calculator call with the text after the marker, then an answer using its result
TOOLS2: Final = "[[tools2]]"  # two calculator calls in one reply, their fragments interleaved
ERROR400: Final = "[[error400]]"  # HTTP 400 with the provider's error body
ERROR500: Final = "[[error500]]"  # HTTP 500 (retried by the SDK)
RATE_ONCE: Final = "[[429-once]]"  # HTTP 429 on the first attempt, then an answer
RATE_ALWAYS: Final = "[[429-always]]"  # HTTP 429 on every attempt
SLOW: Final = "[[slow]]"  # wait slow_s before answering (a read timeout before the first byte)
STALL: Final = "[[stall]]"  # stream a little, then go silent for slow_s (a read timeout mid-stream)
CUT: Final = "[[cut]]"  # stream a little, then drop the connection
NO_FINISH: Final = "[[no-finish]]"  # stream a little, then end the body cleanly without completing
ERROR_EVENT: Final = "[[error-event]]"  # stream a little, then an error inside the stream
MARKERS: Final = (
    TOOLS2,
    TOOL,
    ERROR400,
    ERROR500,
    RATE_ONCE,
    RATE_ALWAYS,
    SLOW,
    STALL,
    CUT,
    NO_FINISH,
    ERROR_EVENT,
)

_WORDS: Final = re.compile(r"\S+\s*")


def marker_of(prompt: str) -> str:
    return next((m for m in MARKERS if m in prompt), "")


def pieces(text: str) -> list[str]:
    """``text`` in streamable pieces (words with their trailing space); they join back to ``text``."""
    return _WORDS.findall(text) or [text]


def expression_after(prompt: str, marker: str) -> str:
    return prompt.split(marker, 1)[1].strip() or "6 * 7"


class BrokenStream(RuntimeError):
    """Raised inside a streaming body to make the server drop the connection mid-response."""


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeBase:
    """Request records and counters of one fake provider (thread-safe: the server runs in a thread)."""

    api_key: str
    slow_s: float = 3.0
    requests: list[Recorded] = field(default_factory=list)
    _attempts: dict[str, int] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, headers: dict[str, str], body: Any) -> None:
        with self._lock:
            self.requests.append(Recorded(path, headers, body))

    def attempt(self, key: str) -> int:
        """1 for the first request with this key, 2 for the next…"""
        with self._lock:
            self._attempts[key] = self._attempts.get(key, 0) + 1
            return self._attempts[key]

    def next_id(self) -> int:
        with self._lock:
            return int(next(self._ids))

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests]
