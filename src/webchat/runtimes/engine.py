"""The provider-neutral engine interface the turn runner calls.

An engine gets the turn's blocks as they will be recorded and returns one model reply, streaming text
deltas as they arrive. Block conventions in ``turn.blocks``:

=============  =========  ==========================================
kind           role       payload
=============  =========  ==========================================
``system``     system     ``{text}`` — the runtime's system prompt
``user``       user       ``{text}`` — history prompts and the new prompt (the last one)
``llm_text``   assistant  ``{text}`` — earlier answers
``tool_call``  assistant  ``{id, name, args}``
``tool_use``   tool       ``{id, result}`` or ``{id, error}``
=============  =========  ==========================================

Tool calls and results after the last ``user`` block belong to the current turn's tool loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from webchat.runtimes.resolve import ResolvedRuntime
from webchat.turns.model import Turn

DeltaSink = Callable[[str], Awaitable[None]]
"""Called with each text delta, in order; the deltas of one reply concatenate to its ``text``."""


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
        }


@dataclass
class ModelReply:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    provider: str = ""
    request_model: str = ""
    response_model: str = ""
    response_id: str = ""
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)


class EngineError(Exception):
    """An inference that failed. ``partial_text`` is what was streamed before the failure."""

    def __init__(self, message: str, *, code: str = "engine_failed", partial_text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.partial_text = partial_text


@runtime_checkable
class Engine(Protocol):
    provider: str

    async def complete(self, turn: Turn, runtime: ResolvedRuntime, on_delta: DeltaSink) -> ModelReply:
        """Run one model call over ``turn.blocks``; raise :class:`EngineError` on failure."""
        ...


def build_engine(runtime: ResolvedRuntime) -> Engine:
    """The engine for a runtime. Only ``offline`` runs in this release."""
    if runtime.engine == "offline":
        from webchat.runtimes.offline import OfflineEngine

        return OfflineEngine()
    if runtime.engine in ("openai", "anthropic"):
        raise EngineError(
            f"engine {runtime.engine!r} is not available yet (profile {runtime.profile_slug!r})",
            code="engine_unavailable",
        )
    raise EngineError(f"unknown engine {runtime.engine!r}", code="engine_unavailable")
